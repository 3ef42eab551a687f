"""Ultrasound video: the BUSV layout, the synthetic ultrasound generator, the pydicom cine."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from das.data import load_busv, load_dataset, load_pydicom_cine, make_synthetic_ultrasound
from das.data.ultrasound import _speckle, resample_indices


def write_video(folder: Path, num_frames: int, offset: int = 0) -> None:
    """RGB PNG frames ``frame_1.png`` ... whose gray value encodes the frame number (times 10)."""
    folder.mkdir(parents=True)
    for i in range(num_frames):
        value = offset + 10 * i
        Image.new("RGB", (30, 20), (value, value, value)).save(folder / f"frame_{i + 1}.png")


@pytest.fixture
def busv_root(tmp_path: Path) -> Path:
    """A tiny BUSV layout: rawframes/{benign, malignant}/<video_id>/*.png, videos of 5 to 20 frames."""
    frames = tmp_path / "busv" / "rawframes"
    write_video(frames / "benign" / "video_a", 20)
    write_video(frames / "benign" / "video_b", 5, offset=1)
    write_video(frames / "malignant" / "video_c", 12, offset=2)
    return tmp_path / "busv"


def test_resample_indices() -> None:
    assert resample_indices(20, 4).tolist() == [0, 6, 13, 19]
    assert resample_indices(3, 5).tolist() == [0, 0, 1, 2, 2]  # short videos repeat frames
    assert resample_indices(1, 3).tolist() == [0, 0, 0]


def test_busv_layout(busv_root: Path) -> None:
    ds = load_busv(busv_root, num_frames=8, image_size=16)
    assert ds.images.shape == (3, 8, 1, 16, 16) and ds.images.dtype == torch.uint8
    assert ds.labels.tolist() == [0, 0, 1] and ds.label_names == ["benign", "malignant"]
    assert ds.name == "busv" and ds.task == "binary-class"
    # Frame values show natural order (frame_2 before frame_10) and even resampling.
    for video, (length, offset) in enumerate([(20, 0), (5, 1), (12, 2)]):
        expected = offset + 10 * resample_indices(length, 8)
        assert ds.images[video, :, 0, 8, 8].tolist() == expected.tolist()
    assert (ds.images[0] == ds.images[0, :, :, :1, :1]).all()  # uniform frames stay uniform when resized


def test_busv_class_order_follows_classes(busv_root: Path) -> None:
    ds = load_busv(busv_root, num_frames=4, image_size=8, classes=["malignant", "benign"])
    assert ds.labels.tolist() == [0, 1, 1] and ds.label_names == ["malignant", "benign"]


def test_busv_errors(busv_root: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"rawframes.*does not exist.*<video_id>/\*\.png"):
        load_busv(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match=r"class folder .*cancer.* not found.*'benign', 'malignant'"):
        load_busv(busv_root, classes=["benign", "cancer"])
    (busv_root / "rawframes" / "normal").mkdir()
    with pytest.raises(ValueError, match=r"class folder .*normal holds no video"):
        load_busv(busv_root)
    (busv_root / "rawframes" / "normal" / "video_d").mkdir()
    with pytest.raises(ValueError, match=r"video_d holds no \.png"):
        load_busv(busv_root)
    with pytest.raises(ValueError, match="num_frames must be an int >= 1, got 0"):
        load_busv(busv_root, num_frames=0)


def test_busv_skips_hidden_folders_and_files(busv_root: Path) -> None:
    """Hidden entries (``.cache``, ``.ipynb_checkpoints``, ``._frame_1.png``) are never classes,
    videos or frames."""
    expected = load_busv(busv_root, num_frames=8, image_size=16)
    frames = busv_root / "rawframes"
    write_video(frames / ".cache" / "video_x", 3, offset=5)  # a hidden class folder
    write_video(frames / "benign" / ".ipynb_checkpoints", 4, offset=7)  # a hidden video folder
    Image.new("L", (30, 20), 255).save(frames / "benign" / "video_a" / "._frame_1.png")  # a hidden frame
    Image.new("L", (30, 20), 255).save(frames / "benign" / "video_b" / ".frame_0.png")
    ds = load_busv(busv_root, num_frames=8, image_size=16)
    assert ds.label_names == ["benign", "malignant"] and ds.labels.tolist() == [0, 0, 1]
    assert torch.equal(ds.images, expected.images)


def test_busv_reads_upper_case_png_names(busv_root: Path) -> None:
    folder = busv_root / "rawframes" / "malignant" / "video_d"
    folder.mkdir()
    for i in range(3):
        Image.new("L", (30, 20), 40 * i).save(folder / f"FRAME_{i}.PNG")
    ds = load_busv(busv_root, num_frames=3, image_size=8)
    assert ds.labels.tolist() == [0, 0, 1, 1] and ds.images[3, :, 0, 4, 4].tolist() == [0, 40, 80]


def test_busv_refuses_duplicate_and_hidden_class_names(busv_root: Path) -> None:
    with pytest.raises(ValueError, match=r"duplicate class names 'benign' and 'benign'"):
        load_busv(busv_root, classes=["benign", "malignant", "benign"])
    with pytest.raises(ValueError, match=r"duplicate class names 'benign' and 'Benign'.*ignoring case"):
        load_busv(busv_root, classes=["benign", "Benign"])
    with pytest.raises(ValueError, match=r"not start with '\.', got '\.cache'"):
        load_busv(busv_root, classes=[".cache", "benign"])
    with pytest.raises(ValueError, match=r"classes must be a sequence of class folder names, got 'benign'"):
        load_busv(busv_root, classes="benign")
    # Folders that differ only by case are one class on a case-insensitive file system: refused.
    write_video(busv_root / "rawframes" / "Benign" / "video_d", 3)
    with pytest.raises(ValueError, match=r"duplicate class names 'Benign' and 'benign'"):
        load_busv(busv_root)


def test_busv_16_bit_frames_are_scaled_not_clipped(tmp_path: Path) -> None:
    """A 16-bit grey PNG (values up to 65535) reads as value / 257, rounded: proportional, not all 255."""
    values = [0, 257, 1000, 20000, 40000, 65535]
    for label in ("benign", "malignant"):
        folder = tmp_path / "rawframes" / label / "video"
        folder.mkdir(parents=True)
        for i, value in enumerate(values):
            Image.fromarray(np.full((8, 8), value, dtype=np.uint16)).save(folder / f"{i}.png")
    with Image.open(folder / "5.png") as image:
        assert image.mode.startswith("I")  # the frames really are 16-bit
    ds = load_busv(tmp_path, num_frames=len(values), image_size=8)
    expected = np.rint(np.array(values) / 257).astype(np.uint8)  # 0, 1, 4, 78, 156, 255
    assert ds.images[0, :, 0, 4, 4].tolist() == expected.tolist()
    assert (ds.images[0] == ds.images[0, :, :, :1, :1]).all()


def test_busv_unreadable_frame_names_the_file(busv_root: Path) -> None:
    bad = busv_root / "rawframes" / "malignant" / "video_c" / "frame_1.png"
    bad.write_bytes(b"<html>not a png</html>")
    with pytest.raises(ValueError, match=r"cannot read frame .*video_c/frame_1\.png"):
        load_busv(busv_root, num_frames=4, image_size=8)


@pytest.fixture(scope="module")
def us():
    return make_synthetic_ultrasound(48, num_frames=12, image_size=48, visible_frames=4, seed=5, sector=False)


def test_synthetic_ultrasound_shapes_and_names(us) -> None:
    assert us.images.shape == (48, 12, 1, 48, 48) and us.images.dtype == torch.uint8
    assert us.name == "synthetic_ultrasound" and us.task == "multi-class"
    assert all("synthetic" in name for name in us.label_names) and len(us.label_names) == 3
    assert set(us.labels.tolist()) == {0, 1, 2}
    # The lesion shows in exactly `visible_frames` consecutive frames.
    visible = us.informative.int()
    assert (visible.sum(1) == 4).all() and (visible.diff(dim=1).abs().sum(1) <= 2).all()


def test_synthetic_ultrasound_deterministic() -> None:
    a, b, c = (make_synthetic_ultrasound(3, num_frames=6, image_size=32, seed=s) for s in (1, 1, 2))
    assert torch.equal(a.images, b.images) and torch.equal(a.informative, b.informative)
    assert not torch.equal(a.images, c.images)


def test_lesion_changes_the_frames_it_is_visible_in(us) -> None:
    """Hypoechoic lesions darken, hyperechoic ones brighten, a region of the frames that show them
    (no sector mask here, whose black corners would be the darkest patches):
    compare the darkest / brightest 8x8 patch mean of lesion frames with the other frames."""
    patches = F.avg_pool2d(us.images[:, :, 0].float(), 8, stride=2)  # [N, T, h, w]
    darkest, brightest = patches.amin((2, 3)), patches.amax((2, 3))
    shown, labels = us.informative, us.labels[:, None].expand_as(us.informative)
    hypo, hyper = labels < 2, labels == 2
    assert darkest[shown & hypo].mean() < darkest[~shown & hypo].mean() - 10
    assert brightest[shown & hyper].mean() > brightest[~shown & hyper].mean() + 10


def test_sector_mask_and_speckle() -> None:
    fan = make_synthetic_ultrasound(2, num_frames=2, image_size=32, visible_frames=1, seed=0)
    full = make_synthetic_ultrasound(2, num_frames=2, image_size=32, visible_frames=1, seed=0, sector=False)
    corners = fan.images[..., -1, 0], fan.images[..., -1, -1]
    assert all((c == 0).all() for c in corners) and (full.images[..., -1, 0] > 0).any()
    # Speckle is Rayleigh: unit mean, std/mean = sqrt(4/pi - 1) ~= 0.523
    speckle = _speckle(np.random.default_rng(0), (4, 64, 64))
    assert speckle.mean() == pytest.approx(1.0, abs=1e-3)
    assert speckle.std() / speckle.mean() == pytest.approx(np.sqrt(4 / np.pi - 1), abs=0.02)


def test_synthetic_ultrasound_bad_arguments() -> None:
    with pytest.raises(ValueError, match=r"num_classes must be at most 4 \(lesion kinds\), got 5"):
        make_synthetic_ultrasound(2, num_classes=5)
    with pytest.raises(ValueError, match="visible_frames=9 must be at most num_frames=8"):
        make_synthetic_ultrasound(2, num_frames=8, visible_frames=9)


def test_load_dataset_synthetic_ultrasound() -> None:
    ds = load_dataset("synthetic_ultrasound", "val", size=32, num_samples=5, num_frames=6, seed=3)
    assert ds.images.shape == (5, 6, 1, 32, 32) and ds.split == "val"
    other = load_dataset("synthetic_ultrasound", "test", size=32, num_samples=5, num_frames=6, seed=3)
    assert not torch.equal(ds.images, other.images)


def test_pydicom_cine_is_a_real_30_frame_video() -> None:
    video = load_pydicom_cine()
    assert video.shape == (30, 1, 240, 320) and video.dtype == torch.float32
    assert float(video.min()) >= 0.0 and float(video.max()) <= 1.0 and float(video.max()) > 0.5
    change = (video[1:] - video[:-1]).abs().mean((1, 2, 3))  # the frames move over time
    assert (change > 1e-4).float().mean() > 0.5 and float(change.max()) > 1e-3
    small = load_pydicom_cine(image_size=64)
    assert small.shape == (30, 1, 64, 64) and float(small.min()) >= 0.0 and float(small.max()) <= 1.0
