"""The six MedMNIST3D datasets (MedMNIST v2, Yang et al., Scientific Data 2023, CC BY 4.0).

Built on the ``medmnist`` package: names, label names, task type, download URLs and MD5 sums come
from ``medmnist.INFO``; downloading is :mod:`das.data.fetch` (MD5-verified). Reading is ours:
the npz is loaded once into a ``uint8`` tensor ``[N, T=D, C=1, H, W]`` (medmnist's per-item path
returns float64 arrays one at a time, far slower to batch).
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import medmnist
import numpy as np
import torch

from das.data.dataset import VolumeDataset

# The 3D flags, in medmnist's own order; the short names drop the "mnist3d" suffix.
MEDMNIST3D_FLAGS: tuple[str, ...] = tuple(flag for flag in medmnist.INFO if flag.endswith("mnist3d"))
SPLITS: tuple[str, ...] = ("train", "val", "test")
SIZES: tuple[int, ...] = tuple(medmnist.dataset.MedMNIST3D.available_sizes)


class DatasetNotFoundError(FileNotFoundError):
    """The dataset file is not on disk (and ``download`` was not asked for)."""


class CorruptDatasetError(ValueError):
    """The dataset file exists but cannot be read as a complete MedMNIST npz."""


def medmnist_flag(name: str) -> str:
    """``"adrenal"``, ``"AdrenalMNIST3D"`` or ``"adrenalmnist3d"`` -> ``"adrenalmnist3d"``."""
    key = name.lower() if isinstance(name, str) else name
    flag = key if key in MEDMNIST3D_FLAGS else f"{key}mnist3d"
    if flag not in MEDMNIST3D_FLAGS:
        short = [f.removesuffix("mnist3d") for f in MEDMNIST3D_FLAGS]
        raise ValueError(
            f"unknown MedMNIST3D name {name!r}; valid names: {', '.join(MEDMNIST3D_FLAGS)} "
            f"(or short: {', '.join(short)})"
        )
    return flag


def medmnist_filename(flag: str, size: int) -> str:
    """medmnist's file naming: ``{flag}.npz`` at 28, ``{flag}_{size}.npz`` otherwise."""
    return f"{flag}.npz" if size == 28 else f"{flag}_{size}.npz"


# A data checkout beside the clone (``<clone>/../shared/data/medmnist``) is used when it exists.
SIBLING_DATA_DIR = Path(__file__).resolve().parents[3] / "shared" / "data" / "medmnist"


def default_root() -> Path:
    """Where the MedMNIST npz files live; the one place that decides it.

    ``$DAS_DATA_DIR`` when set; else :data:`SIBLING_DATA_DIR` when that folder exists; else medmnist's
    default folder (``~/.medmnist``). ``DatasetNotFoundError`` when none applies.
    """
    env = os.environ.get("DAS_DATA_DIR")
    if env:
        return Path(env).expanduser()
    if SIBLING_DATA_DIR.is_dir():
        return SIBLING_DATA_DIR
    if medmnist.info.DEFAULT_ROOT is None:  # medmnist could not create ~/.medmnist
        raise DatasetNotFoundError("no data folder: pass root=..., or set the environment variable DAS_DATA_DIR")
    return Path(medmnist.info.DEFAULT_ROOT)


def download_medmnist3d(flag: str, size: int, root: Path) -> None:
    """Download ``flag`` at ``size`` into ``root`` unless a verified copy is there: the same
    MD5-checked path as ``python -m das.data.fetch`` (:func:`das.data.fetch.ensure_file`)."""
    from das.data.fetch import ensure_file  # fetch imports this module

    ensure_file(flag, size, root)


def check_size(flag: str, size: object) -> None:
    """``ValueError`` unless ``size`` is one MedMNIST3D comes in (28 or 64)."""
    if isinstance(size, bool) or size not in SIZES:
        raise ValueError(f"unknown size {size!r} for {flag}; valid sizes: {', '.join(map(str, SIZES))}")


def official_split_sizes(name: str, size: int = 28) -> dict[str, int]:
    """Volumes per split (``train``, ``val``, ``test``) of a MedMNIST3D dataset at ``size``, from
    ``medmnist.INFO``: no file needed. ``ValueError`` for an unknown name or size."""
    flag = medmnist_flag(name)
    check_size(flag, size)
    return {split: medmnist.INFO[flag]["n_samples"][split] for split in SPLITS}


def load_medmnist3d(
    name: str, split: str, size: int = 28, root: str | os.PathLike | None = None, download: bool = False
) -> VolumeDataset:
    """One split of a MedMNIST3D dataset as a :class:`VolumeDataset` (slices along the first axis).

    Args:
        name: medmnist flag (``"adrenalmnist3d"``) or short name (``"adrenal"``).
        split: ``"train"``, ``"val"`` or ``"test"`` (the official MedMNIST splits).
        size: 28 or 64 (volumes of size^3).
        root: folder holding the npz files; default :func:`default_root`.
        download: fetch the file when missing (needs the internet; MD5-verified).

    Raises:
        ValueError: unknown name, split or size.
        DatasetNotFoundError: the file is missing and ``download`` is false.
        CorruptDatasetError: the file is truncated, not an npz, lacks the split's arrays, holds
            volumes of another size than ``size``, or labels that are not whole numbers in
            ``[0, num_classes - 1]``.
    """
    flag = medmnist_flag(name)
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid splits: {', '.join(SPLITS)}")
    check_size(flag, size)
    folder = Path(root).expanduser() if root is not None else default_root()
    path = folder / medmnist_filename(flag, size)
    info = medmnist.INFO[flag]
    if not path.is_file():
        if download:
            download_medmnist3d(flag, size, folder)
        else:
            suffix = "" if size == 28 else f"_{size}"
            raise DatasetNotFoundError(
                f"{path.name} not found in {folder}. Get it with download=True (needs the internet), "
                f"or download it by hand from {info[f'url{suffix}']} (MD5 {info[f'MD5{suffix}']}) "
                f"into that folder; the folder comes from root=, else $DAS_DATA_DIR, else a shared/data/medmnist "
                f"checkout beside the clone, else ~/.medmnist."
            )
    images, labels = _read_split(path, split, size, len(info["label"]))
    return VolumeDataset(
        torch.from_numpy(images).unsqueeze(2),  # [N, D, H, W] -> [N, T=D, C=1, H, W]
        torch.from_numpy(labels.reshape(-1).astype(np.int64)),
        name=flag,
        task=info["task"],
        label_names=[info["label"][str(i)] for i in range(len(info["label"]))],
        split=split,
    )


def _read_split(path: Path, split: str, size: int, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """``{split}_images`` (uint8 ``[N, size, size, size]``) and ``{split}_labels`` (``[N, 1]``, whole
    numbers in ``[0, num_classes - 1]``) from the npz, with every way a damaged file can fail turned
    into one :class:`CorruptDatasetError`."""
    advice = f"delete {path} and download it again (download=True)"
    keys = (f"{split}_images", f"{split}_labels")
    try:
        with np.load(path) as npz:
            missing = [k for k in keys if k not in npz.files]
            if missing:
                raise CorruptDatasetError(
                    f"{path} lacks the array(s) {', '.join(missing)} "
                    f"(it has: {', '.join(npz.files) or 'none'}); "
                    f"the file is incomplete or not a MedMNIST file: {advice}"
                )
            images, labels = npz[keys[0]], npz[keys[1]]
    except CorruptDatasetError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise CorruptDatasetError(
            f"cannot read {path} ({type(error).__name__}: {error}); it is truncated or corrupt: {advice}"
        ) from error
    arrays = isinstance(images, np.ndarray) and isinstance(labels, np.ndarray)  # bad members load as bytes
    if not arrays or images.dtype != np.uint8 or images.ndim != 4 or labels.shape != (images.shape[0], 1):
        found = " and ".join(
            f"{a.dtype} {a.shape}" if isinstance(a, np.ndarray) else type(a).__name__ for a in (images, labels)
        )
        raise CorruptDatasetError(
            f"{path}: expected {keys[0]} uint8 [N, D, H, W] and {keys[1]} [N, 1], got {found}: {advice}"
        )
    if images.shape[1:] != (size, size, size):
        raise CorruptDatasetError(
            f"{path}: expected {keys[0]} of shape [N, {size}, {size}, {size}] for size={size}, got "
            f"{list(images.shape)} (a file of another size under this name?): {advice}"
        )
    _check_labels(path, keys[1], labels, num_classes, advice)
    return images, labels


def _check_labels(path: Path, key: str, labels: np.ndarray, num_classes: int, advice: str) -> None:
    """:class:`CorruptDatasetError` unless ``labels`` are whole numbers in ``[0, num_classes - 1]``:
    a fractional label would otherwise be truncated to a class silently."""
    if labels.dtype.kind not in "biuf":
        raise CorruptDatasetError(f"{path}: {key} must hold integer class labels, got dtype {labels.dtype}: {advice}")
    if labels.dtype.kind == "f":
        fractional = labels[~(np.isfinite(labels) & (labels == np.round(labels)))]
        if fractional.size:
            raise CorruptDatasetError(
                f"{path}: {key} must hold whole class labels, got {labels.dtype} values such as "
                f"{float(fractional.flat[0])}: {advice}"
            )
    if labels.size and (labels.min() < 0 or labels.max() > num_classes - 1):
        raise CorruptDatasetError(
            f"{path}: {key} must lie in [0, {num_classes - 1}] ({num_classes} classes), got range "
            f"[{labels.min()}, {labels.max()}]: {advice}"
        )
