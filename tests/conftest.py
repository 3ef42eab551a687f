"""Shared pytest fixtures."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(scope="session")
def medmnist_dir() -> Path:
    """Folder with the real ``adrenalmnist3d.npz`` and ``adrenalmnist3d_64.npz`` (never copied into the
    repository): ``das.data.medmnist3d.default_root()``; skips when the files are absent."""
    from das.data.medmnist3d import DatasetNotFoundError, default_root

    try:
        folder = default_root()
    except DatasetNotFoundError as error:
        pytest.skip(f"real MedMNIST data not found: {error}")
    missing = [f for f in ("adrenalmnist3d.npz", "adrenalmnist3d_64.npz") if not (folder / f).is_file()]
    if missing:
        pytest.skip(
            f"real MedMNIST data not found: {', '.join(missing)} missing in {folder} "
            f"(set DAS_DATA_DIR, or run python -m das.data.fetch --book)"
        )
    return folder


# Small split sizes for fake MedMNIST files: enough to check shapes, labels and loaders.
FAKE_SPLIT_SIZES = {"train": 6, "val": 3, "test": 4}


def write_medmnist_npz(path: Path, flag: str, size: int = 28, seed: int = 0) -> dict[str, np.ndarray]:
    """Write a small npz in the exact MedMNIST format (``{split}_images`` uint8 ``N x D x H x W``,
    ``{split}_labels`` uint8 ``N x 1``) with labels valid for ``flag``; returns the arrays."""
    import medmnist

    num_classes = len(medmnist.INFO[flag]["label"])
    rng = np.random.default_rng(seed)
    arrays: dict[str, np.ndarray] = {}
    for split, n in FAKE_SPLIT_SIZES.items():
        arrays[f"{split}_images"] = rng.integers(0, 256, (n, size, size, size), dtype=np.uint8)
        arrays[f"{split}_labels"] = rng.integers(0, num_classes, (n, 1), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)
    return arrays


@pytest.fixture
def fake_medmnist_dir(tmp_path: Path) -> Path:
    """``tmp_path/medmnist`` with small MedMNIST-format files (size 28) for the five MedMNIST3D sets
    that are not available offline (all but adrenal)."""
    folder = tmp_path / "medmnist"
    flags = ["organmnist3d", "nodulemnist3d", "fracturemnist3d", "vesselmnist3d", "synapsemnist3d"]
    for seed, flag in enumerate(flags):
        write_medmnist_npz(folder / f"{flag}.npz", flag, seed=seed)
    return folder


@pytest.fixture
def medmnist_writer() -> Callable[..., dict[str, np.ndarray]]:
    """The writer behind ``fake_medmnist_dir``, for tests that need a specific file."""
    return write_medmnist_npz
