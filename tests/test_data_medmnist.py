"""MedMNIST3D loading: real AdrenalMNIST3D, fake files for the other five sets, every bad input."""

from __future__ import annotations

import zipfile
from pathlib import Path

import medmnist
import numpy as np
import pytest
import torch

import das.data.fetch
import das.data.medmnist3d
from das.data import (
    DATASETS,
    CorruptDatasetError,
    DatasetNotFoundError,
    VolumeDataset,
    load_dataset,
    load_medmnist3d,
)

OTHER_FLAGS = ["organmnist3d", "nodulemnist3d", "fracturemnist3d", "vesselmnist3d", "synapsemnist3d"]


@pytest.mark.parametrize("size", [28, 64])
def test_real_adrenal_splits(medmnist_dir: Path, size: int) -> None:
    info = medmnist.INFO["adrenalmnist3d"]
    for split, n in {"train": 1188, "val": 98, "test": 298}.items():
        ds = load_medmnist3d("adrenalmnist3d", split, size=size, root=medmnist_dir)
        assert ds.images.shape == (n, size, 1, size, size)
        assert ds.images.dtype == torch.uint8 and ds.labels.dtype == torch.int64
        assert len(ds) == n == info["n_samples"][split]
        assert int(ds.images.max()) == 255 and int(ds.images.min()) == 0
        assert set(ds.labels.tolist()) == {0, 1}
        assert ds.label_names == ["normal", "hyperplasia"] == [info["label"]["0"], info["label"]["1"]]
        assert ds.task == "binary-class" and ds.num_classes == 2 and ds.split == split
        assert (ds.num_frames, ds.in_channels, ds.image_size) == (size, 1, size)
        x, y = ds[n - 1]
        assert x.dtype == torch.float32 and x.shape == (size, 1, size, size)
        assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0 and y.dtype == torch.int64 and y.dim() == 0


def test_real_adrenal_items_match_medmnist_class(medmnist_dir: Path) -> None:
    """Same values, same slice axis as medmnist's own dataset class (float64 [1, D, H, W] in [0, 1])."""
    ours = load_medmnist3d("adrenal", "val", root=medmnist_dir)
    theirs = medmnist.AdrenalMNIST3D(split="val", root=str(medmnist_dir))
    for i in (0, 50, 97):
        image, target = theirs[i]
        x, y = ours[i]
        assert torch.equal(x[:, 0], torch.from_numpy(image[0]).float())
        assert int(y) == int(target[0])


def test_short_and_long_names_are_the_same_dataset(medmnist_dir: Path) -> None:
    a = load_medmnist3d("adrenal", "test", root=medmnist_dir)
    b = load_medmnist3d("AdrenalMNIST3D", "test", root=medmnist_dir)
    c = load_dataset("adrenalmnist3d", "test", root=medmnist_dir)
    assert a.name == b.name == c.name == "adrenalmnist3d"
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, c.labels)


@pytest.mark.parametrize("flag", OTHER_FLAGS)
def test_other_sets_from_medmnist_format_files(fake_medmnist_dir: Path, flag: str) -> None:
    info = medmnist.INFO[flag]
    with np.load(fake_medmnist_dir / f"{flag}.npz") as npz:
        images, labels = npz["val_images"], npz["val_labels"]
    ds = load_dataset(flag, "val", root=fake_medmnist_dir)
    assert isinstance(ds, VolumeDataset) and ds.name == flag
    assert torch.equal(ds.images[:, :, 0], torch.from_numpy(images))
    assert torch.equal(ds.labels, torch.from_numpy(labels[:, 0].astype(np.int64)))
    assert ds.task == info["task"]
    assert ds.label_names == [info["label"][str(i)] for i in range(len(info["label"]))]


def test_size_64_file_naming(tmp_path: Path, medmnist_writer) -> None:
    arrays = medmnist_writer(tmp_path / "organmnist3d_64.npz", "organmnist3d", size=64)
    ds = load_medmnist3d("organ", "test", size=64, root=tmp_path)
    assert ds.images.shape == (4, 64, 1, 64, 64)
    assert torch.equal(ds.images[:, :, 0], torch.from_numpy(arrays["test_images"]))
    with pytest.raises(DatasetNotFoundError, match=r"organmnist3d\.npz"):
        load_medmnist3d("organ", "test", size=28, root=tmp_path)


def test_root_falls_back_to_env_then_medmnist_default(tmp_path: Path, monkeypatch, medmnist_writer) -> None:
    env_dir, default_dir = tmp_path / "env", tmp_path / "default"
    medmnist_writer(env_dir / "nodulemnist3d.npz", "nodulemnist3d", seed=1)
    medmnist_writer(default_dir / "nodulemnist3d.npz", "nodulemnist3d", seed=2)
    monkeypatch.setattr(medmnist.info, "DEFAULT_ROOT", str(default_dir))
    monkeypatch.setattr(das.data.medmnist3d, "SIBLING_DATA_DIR", tmp_path / "no-sibling-checkout")
    monkeypatch.setenv("DAS_DATA_DIR", str(env_dir))
    from_env = load_medmnist3d("nodule", "train")
    monkeypatch.delenv("DAS_DATA_DIR")
    from_default = load_medmnist3d("nodule", "train")
    with np.load(env_dir / "nodulemnist3d.npz") as npz:
        assert torch.equal(from_env.images[:, :, 0], torch.from_numpy(npz["train_images"]))
    with np.load(default_dir / "nodulemnist3d.npz") as npz:
        assert torch.equal(from_default.images[:, :, 0], torch.from_numpy(npz["train_images"]))


def test_missing_file_says_where_and_how(tmp_path: Path) -> None:
    info = medmnist.INFO["vesselmnist3d"]
    with pytest.raises(FileNotFoundError) as caught:
        load_medmnist3d("vessel", "train", size=64, root=tmp_path)
    assert isinstance(caught.value, DatasetNotFoundError)
    message = str(caught.value)
    for part in ("vesselmnist3d_64.npz", str(tmp_path), "download=True", info["url_64"], info["MD5_64"]):
        assert part in message


def test_download_goes_through_fetch(tmp_path: Path, monkeypatch, medmnist_writer) -> None:
    """download=True uses das.data.fetch's verified download with medmnist's URL and MD5; the network
    download is replaced by a writer of a fixture file (tests/test_data_fetch.py serves real bytes)."""
    calls: list[tuple[str, str, Path]] = []

    def fake_download(url: str, md5: str, path: Path) -> None:
        calls.append((url, md5, path))
        medmnist_writer(path, "fracturemnist3d", size=64)

    monkeypatch.setattr(das.data.fetch, "download", fake_download)
    root = tmp_path / "new" / "folder"  # created on demand
    ds = load_medmnist3d("fracture", "test", size=64, root=root, download=True)
    info = medmnist.INFO["fracturemnist3d"]
    assert calls == [(info["url_64"], info["MD5_64"], root / "fracturemnist3d_64.npz")]
    assert ds.images.shape == (4, 64, 1, 64, 64) and ds.label_names[0] == "buckle rib fracture"
    load_medmnist3d("fracture", "val", size=64, root=root, download=True)
    assert len(calls) == 1  # the file is there now: no second download


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"name": "lungmnist3d"}, r"'lungmnist3d'.*adrenalmnist3d.*short: .*adrenal"),
        ({"name": "pathmnist"}, r"unknown MedMNIST3D name 'pathmnist'"),  # a 2D flag
        ({"split": "validation"}, r"'validation'.*train, val, test"),
        ({"size": 128}, r"size 128.*28, 64"),
        ({"size": True}, r"size True"),
    ],
)
def test_unknown_name_split_size(tmp_path: Path, kwargs: dict, pattern: str) -> None:
    args = {"name": "organ", "split": "train", "size": 28} | kwargs
    with pytest.raises(ValueError, match=pattern):
        load_medmnist3d(**args, root=tmp_path)


def test_load_dataset_rejects_unknown_names_and_options(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="valid names: " + ", ".join(DATASETS)):
        load_dataset("imagenet", "train")
    with pytest.raises(ValueError, match=r"takes no options.*'num_samples'"):
        load_dataset("organmnist3d", "train", root=tmp_path, num_samples=3)
    with pytest.raises(ValueError, match=r"unknown split 'dev'"):
        load_dataset("organmnist3d", "dev", root=tmp_path)
    assert DATASETS[:6] == tuple(f for f in medmnist.INFO if f.endswith("mnist3d"))


def _corrupt(folder: Path, how: str, writer) -> Path:
    path = folder / "synapsemnist3d.npz"
    writer(path, "synapsemnist3d")
    if how == "truncated":
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif how == "missing key":
        with np.load(path) as npz:
            kept = {k: npz[k] for k in npz.files if k != "test_labels"}
        np.savez(path, **kept)
    elif how == "not a zip":
        path.write_bytes(b"<html>404 Not Found</html>")
    elif how == "bad member":
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("test_images.npy", b"not an array")
            archive.writestr("test_labels.npy", b"not an array")
    elif how == "wrong dtype":
        with np.load(path) as npz:
            arrays = {k: npz[k] for k in npz.files}
        arrays["test_images"] = arrays["test_images"].astype(np.float32)
        np.savez(path, **arrays)
    return path


@pytest.mark.parametrize("how", ["truncated", "missing key", "not a zip", "bad member", "wrong dtype"])
def test_corrupt_file_gives_clear_error(tmp_path: Path, medmnist_writer, how: str) -> None:
    path = _corrupt(tmp_path, how, medmnist_writer)
    with pytest.raises(CorruptDatasetError) as caught:
        load_medmnist3d("synapse", "test", root=tmp_path)
    message = str(caught.value)
    assert str(path) in message and "delete" in message and "download" in message
    if how == "missing key":
        assert "test_labels" in message


def _rewrite(path: Path, **arrays: np.ndarray) -> None:
    """Replace some arrays of the npz at ``path``, keeping the others."""
    with np.load(path) as npz:
        kept = {k: npz[k] for k in npz.files}
    np.savez(path, **(kept | arrays))


@pytest.mark.parametrize("actual", [56, 64])
def test_volumes_of_another_size_are_refused(tmp_path: Path, medmnist_writer, actual: int) -> None:
    """A file holding 56^3 or 64^3 volumes under the size-28 name: named, with both shapes."""
    path = tmp_path / "organmnist3d.npz"
    medmnist_writer(path, "organmnist3d", size=actual)
    with pytest.raises(CorruptDatasetError) as caught:
        load_medmnist3d("organ", "test", size=28, root=tmp_path)
    message = str(caught.value)
    assert str(path) in message and "[N, 28, 28, 28]" in message and f"[4, {actual}, {actual}, {actual}]" in message


def test_non_cubic_volumes_are_refused(tmp_path: Path, medmnist_writer) -> None:
    path = tmp_path / "organmnist3d.npz"
    medmnist_writer(path, "organmnist3d")
    _rewrite(path, val_images=np.zeros((3, 28, 56, 56), dtype=np.uint8))
    with pytest.raises(CorruptDatasetError, match=r"val_images of shape \[N, 28, 28, 28\].*got \[3, 28, 56, 56\]"):
        load_medmnist3d("organ", "val", root=tmp_path)


@pytest.mark.parametrize(
    ("labels", "pattern"),
    [
        (np.array([[0.0], [0.7], [1.0]]), r"val_labels must hold whole class labels, got float64 values such as 0\.7"),
        (np.array([[0.0], [np.nan], [1.0]]), r"whole class labels.*nan"),
        (
            np.array([[0], [11], [1]], dtype=np.uint8),
            r"val_labels must lie in \[0, 10\] \(11 classes\), got range \[0, 11\]",
        ),
        (np.array([[0], [-1], [1]], dtype=np.int8), r"must lie in \[0, 10\].*got range \[-1, 1\]"),
        (np.array([[b"a"], [b"b"], [b"c"]]), r"must hold integer class labels, got dtype \|S1"),
    ],
)
def test_bad_labels_are_refused(tmp_path: Path, medmnist_writer, labels: np.ndarray, pattern: str) -> None:
    path = tmp_path / "organmnist3d.npz"
    medmnist_writer(path, "organmnist3d")
    _rewrite(path, val_labels=labels)
    with pytest.raises(CorruptDatasetError, match=pattern) as caught:
        load_medmnist3d("organ", "val", root=tmp_path)
    assert str(path) in str(caught.value)


def test_whole_float_labels_are_read(tmp_path: Path, medmnist_writer) -> None:
    path = tmp_path / "organmnist3d.npz"
    medmnist_writer(path, "organmnist3d")
    _rewrite(path, val_labels=np.array([[0.0], [10.0], [3.0]]))
    assert load_medmnist3d("organ", "val", root=tmp_path).labels.tolist() == [0, 10, 3]
