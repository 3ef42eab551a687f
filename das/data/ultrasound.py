"""Ultrasound video: the BUSV folder layout, a synthetic ultrasound-like video generator, and the real
30-frame ultrasound cine that pydicom ships as a test file (for demonstrations).

Frames play the role of slices: every video becomes ``[T, C=1, H, W]``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from das.checks import check_int
from das.data.dataset import VolumeDataset

BUSV_CLASSES = ("benign", "malignant")
CHUNK = 64  # synthetic videos generated at once

# Synthetic lesion kinds, in label order: (name, echogenicity relative to tissue, irregular margin).
LESION_KINDS: tuple[tuple[str, float, bool], ...] = (
    ("round hypoechoic", 0.3, False),
    ("irregular hypoechoic", 0.3, True),
    ("round hyperechoic", 3.0, False),
    ("irregular hyperechoic", 3.0, True),
)


def resample_indices(length: int, num_frames: int) -> np.ndarray:
    """``num_frames`` evenly spaced frame indices into a video of ``length`` frames (the first and the
    last included); indices repeat when the video is shorter than ``num_frames``."""
    return np.rint(np.linspace(0, length - 1, num_frames)).astype(np.int64)


def _natural_key(path: Path) -> list[int | str]:
    """Sort key so that ``frame2.png`` comes before ``frame10.png``."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.name)]


def load_busv(
    root: str | os.PathLike,
    num_frames: int = 16,
    image_size: int = 64,
    classes: Sequence[str] | None = None,
) -> VolumeDataset:
    """Breast ultrasound videos in the BUSV layout (Lin et al., MICCAI 2022; not redistributable):
    ``root/rawframes/<class>/<video_id>/*.png``.

    Each video's frames are sorted by the numbers in their names, resampled to ``num_frames`` evenly
    spaced frames (repeating frames of shorter videos), converted to grayscale and resized to
    ``image_size x image_size`` (bilinear); 16-bit grey PNGs are scaled to 8 bits (value / 257), not
    clipped. Labels follow the order of ``classes`` (default: the class folders found, sorted:
    ``benign``, ``malignant`` for BUSV). Hidden entries (names starting with ``.``, such as
    ``.ipynb_checkpoints``) are never classes, videos or frames. BUSV has no official split here:
    split with :meth:`VolumeDataset.subset`.

    Raises:
        FileNotFoundError: ``root/rawframes`` or a class folder is missing.
        ValueError: a class folder holds no video, or a video folder no PNG (``.png`` in any case);
            a frame cannot be read; two classes share a name, also up to case (in ``classes``, or
            folders ``Benign`` and ``benign``: one folder on a case-insensitive file system); a class
            name in ``classes`` is not a visible folder name.
    """
    check_int("num_frames", num_frames, 1)
    check_int("image_size", image_size, 1)
    frames_root = Path(root).expanduser() / "rawframes"
    if not frames_root.is_dir():
        raise FileNotFoundError(
            f"BUSV folder not found: {frames_root} does not exist; expected the layout "
            f"root/rawframes/<class>/<video_id>/*.png with classes {', '.join(BUSV_CLASSES)}"
        )
    if classes is None:
        classes = [p.name for p in _visible_dirs(frames_root)]
        if len(classes) < 2:
            raise ValueError(f"{frames_root} must hold at least 2 class folders, found {classes}")
    classes = _check_classes(classes, frames_root)
    videos: list[Tensor] = []
    labels: list[int] = []
    for label, name in enumerate(classes):
        class_dir = frames_root / name
        if not class_dir.is_dir():
            found = [p.name for p in _visible_dirs(frames_root)]
            raise FileNotFoundError(f"class folder {class_dir} not found; class folders there: {found}")
        video_dirs = sorted(_visible_dirs(class_dir), key=_natural_key)
        if not video_dirs:
            raise ValueError(f"class folder {class_dir} holds no video folder (expected <video_id>/*.png)")
        for video_dir in video_dirs:
            videos.append(_read_video(video_dir, num_frames, image_size))
            labels.append(label)
    return VolumeDataset(
        torch.stack(videos),
        torch.tensor(labels),
        name="busv",
        task="binary-class" if len(classes) == 2 else "multi-class",
        label_names=list(classes),
    )


def _visible_dirs(folder: Path) -> list[Path]:
    """The sub-folders of ``folder`` whose names do not start with ``.``, sorted by name."""
    return sorted((p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")), key=lambda p: p.name)


def _check_classes(classes: object, frames_root: Path) -> list[str]:
    """``classes`` as a list of distinct, visible, plain folder names (``ValueError`` otherwise)."""
    if isinstance(classes, str) or not isinstance(classes, Sequence):
        raise ValueError(f"classes must be a sequence of class folder names, got {classes!r}")
    for name in classes:
        if not isinstance(name, str) or not name or name.startswith(".") or "/" in name or os.sep in name:
            raise ValueError(
                f"class names must be folder names in {frames_root} that do not start with '.', got {name!r}"
            )
    seen: dict[str, str] = {}
    for name in classes:
        if name.casefold() in seen:
            raise ValueError(
                f"duplicate class names {seen[name.casefold()]!r} and {name!r} in {list(classes)} "
                "(compared ignoring case); every class must be named once"
            )
        seen[name.casefold()] = name
    return list(classes)


def _read_video(video_dir: Path, num_frames: int, image_size: int) -> Tensor:
    """uint8 ``[num_frames, 1, image_size, image_size]`` from the PNG frames in ``video_dir``."""
    paths = sorted(
        (p for p in video_dir.iterdir() if p.suffix.lower() == ".png" and not p.name.startswith(".") and p.is_file()),
        key=_natural_key,
    )
    if not paths:
        raise ValueError(f"video folder {video_dir} holds no .png frame")
    frames = []
    for index in resample_indices(len(paths), num_frames):
        try:
            with Image.open(paths[index]) as image:
                gray = _to_gray(image).resize((image_size, image_size), Image.Resampling.BILINEAR)
        except (OSError, ValueError) as error:  # truncated or not a PNG; PIL's errors derive from these
            raise ValueError(f"cannot read frame {paths[index]} ({type(error).__name__}: {error})") from error
        frames.append(torch.from_numpy(np.asarray(gray, dtype=np.uint8).copy()))
    return torch.stack(frames).unsqueeze(1)


def _to_gray(image: Image.Image) -> Image.Image:
    """An 8-bit grey (mode ``L``) copy of a frame. 16-bit grey (modes ``I;16...``, or ``I`` as some
    Pillow versions read 16-bit PNGs) is scaled by 255 / 65535 = 1 / 257 and rounded: Pillow's
    ``convert("L")`` would clip every value above 255 to white."""
    if image.mode.startswith("I"):
        values = np.clip(np.asarray(image, dtype=np.float64), 0, 65535)
        return Image.fromarray(np.rint(values / 257).astype(np.uint8))
    return image.convert("L")


def _speckle(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Rayleigh-distributed speckle with unit mean: the magnitude of a complex Gaussian field that is
    slightly smoothed along both axes, so grains span a few pixels, more laterally than axially, as in
    real B-mode images (a smoothed complex Gaussian stays complex Gaussian, so its magnitude stays
    Rayleigh)."""
    field = rng.standard_normal((2, *shape), dtype=np.float32)
    field = field + np.roll(field, 1, axis=-1) + np.roll(field, -1, axis=-1)  # lateral grain
    field = field + 0.5 * np.roll(field, 1, axis=-2)  # shorter axial grain
    magnitude = np.hypot(field[0], field[1])
    return magnitude / magnitude.mean(axis=(-2, -1), keepdims=True)


def make_synthetic_ultrasound(
    num_samples: int,
    num_frames: int = 16,
    image_size: int = 64,
    num_classes: int = 3,
    visible_frames: int = 4,
    seed: int = 0,
    sector: bool = True,
) -> VolumeDataset:
    """Synthetic ultrasound-like videos (name ``"synthetic_ultrasound"``): a probe sweep across tissue
    that passes over a lesion during ``visible_frames`` consecutive frames.

    Generative process, for each video of ``T = num_frames`` frames of ``S x S`` pixels:

    1. Label ``y`` uniform in ``{0, ..., num_classes - 1}``; the lesion kind is ``LESION_KINDS[y]``:
       round hypoechoic, irregular hypoechoic, round hyperechoic, irregular hyperechoic.
    2. Tissue echogenicity: horizontal layers with a random wavy boundary, a few smooth random
       inhomogeneities, and depth attenuation. Everything drifts sideways at a random speed per frame
       (the sweep).
    3. The lesion (random centre and size, an ellipse; "irregular" kinds have a lobulated margin)
       appears in ``visible_frames`` consecutive frames starting at a random frame, growing then
       shrinking as the probe passes over it; its echogenicity multiplies the tissue's.
    4. Each frame = echogenicity x fresh Rayleigh speckle (multiplicative), log-compressed to [0, 1];
       with ``sector`` the image is masked to a fan-shaped field of view (apex at the top centre).

    Returns a :class:`VolumeDataset` (uint8 ``[N, T, 1, S, S]``) whose ``informative`` marks the
    frames showing the lesion.
    """
    check_int("num_samples", num_samples, 0)
    check_int("num_frames", num_frames, 1)
    check_int("image_size", image_size, 16)
    check_int("visible_frames", visible_frames, 1)
    if check_int("num_classes", num_classes, 2) > len(LESION_KINDS):
        raise ValueError(f"num_classes must be at most {len(LESION_KINDS)} (lesion kinds), got {num_classes}")
    if visible_frames > num_frames:
        raise ValueError(f"visible_frames={visible_frames} must be at most num_frames={num_frames}")
    rng = np.random.default_rng(seed)
    n, t, s = num_samples, num_frames, image_size
    labels = rng.integers(0, num_classes, n)
    start = rng.integers(0, t - visible_frames + 1, n)
    informative = (np.arange(t) >= start[:, None]) & (np.arange(t) < (start + visible_frames)[:, None])
    # Generate in chunks of videos: float32 [chunk, T, S, S] arrays stay small at any N.
    chunks = [_ultrasound_chunk(rng, labels[i : i + CHUNK], informative[i : i + CHUNK], s) for i in range(0, n, CHUNK)]
    images = np.concatenate(chunks) if chunks else np.zeros((0, t, s, s), dtype=np.uint8)
    if sector:
        images *= _sector_mask(s)
    return VolumeDataset(
        torch.from_numpy(images).unsqueeze(2),
        torch.from_numpy(labels.astype(np.int64)),
        name="synthetic_ultrasound",
        task="binary-class" if num_classes == 2 else "multi-class",
        label_names=[f"{LESION_KINDS[c][0]} (synthetic)" for c in range(num_classes)],
        informative=torch.from_numpy(informative),
    )


def _ultrasound_chunk(rng: np.random.Generator, labels: np.ndarray, visible: np.ndarray, s: int) -> np.ndarray:
    """uint8 ``[n, T, s, s]`` videos for ``labels`` with the lesion shown where ``visible`` [n, T]."""
    n, t = visible.shape

    def uniform(low: float, high: float) -> np.ndarray:  # one float32 value per video, broadcastable
        return rng.uniform(low, high, (n, 1, 1, 1)).astype(np.float32)

    y = np.arange(s, dtype=np.float32)[:, None] / s  # depth in [0, 1), rows
    x = np.arange(s, dtype=np.float32)[None, :] / s  # lateral position, columns
    xt = x + uniform(-0.02, 0.02) * np.arange(t, dtype=np.float32)[:, None, None]  # [n, T, 1, s] drifting

    # Tissue: three layers under two wavy boundaries, smooth inhomogeneities, depth attenuation.
    tissue = np.broadcast_to(uniform(0.5, 0.8), (n, t, s, s))
    for depth in (0.15, 0.45):
        wave = 0.04 * np.sin(2 * np.pi * (uniform(0.5, 2) * xt + uniform(0, 1)))  # [n, T, 1, s]
        boundary = depth + uniform(-0.05, 0.05) + wave
        tissue = np.where(y > boundary, uniform(0.4, 1.2), tissue)
    for _ in range(3):  # separable Gaussian bumps that drift with the tissue
        cy, cx, width, gain = uniform(0, 1), uniform(0, 1), uniform(0.08, 0.2), uniform(-0.3, 0.3)
        bump = np.exp(-((y - cy) ** 2) / (2 * width**2)) * np.exp(-((xt - cx) ** 2) / (2 * width**2))
        tissue = tissue * (1 + gain * bump)
    tissue = tissue * np.exp(-0.8 * y)  # depth attenuation

    # Lesion: an ellipse in the middle depths; over its visible frames its scale follows a half sine
    # (the probe enters, crosses the centre, leaves); irregular kinds get a lobulated margin.
    cy, cx, ry = uniform(0.4, 0.7), uniform(0.3, 0.7), uniform(0.08, 0.14)
    rx = ry * uniform(1.0, 1.6)
    dy, dx = (y - cy) / ry, (xt - cx) / rx  # [n, 1, s, 1], [n, T, 1, s]: drifts with the tissue
    irregular = np.array([LESION_KINDS[c][2] for c in labels], dtype=np.float32)[:, None, None, None]
    num_lobes = rng.integers(5, 9, (n, 1, 1, 1)).astype(np.float32)
    lobes = 1 + 0.3 * irregular * np.sin(num_lobes * np.arctan2(dy, dx) + uniform(0, 2 * np.pi))
    radius = np.sqrt(dy**2 + dx**2) / lobes  # [n, T, s, s], 1 on the full-size margin
    first, count = visible.argmax(axis=1), visible.sum(axis=1)
    progress = (np.arange(t)[None, :] - first[:, None] + 0.5) / count[:, None]  # in (0, 1) when visible
    scale = np.where(visible, np.sqrt(np.sin(np.pi * np.clip(progress, 0, 1))), 0).astype(np.float32)
    scale = scale[:, :, None, None]
    inside = np.where(scale > 0, 0.5 - 0.5 * np.tanh((radius - scale) / 0.16), 0)  # logistic soft edge
    contrast = np.array([LESION_KINDS[c][1] for c in labels], dtype=np.float32)[:, None, None, None]
    echo = tissue * (1 + (contrast - 1) * inside)

    # Multiplicative speckle, then log compression to a 40 dB display range (0 dB = 3x the frame's
    # mean envelope, about the 99th percentile of Rayleigh speckle).
    envelope = echo * _speckle(rng, (n, t, s, s))
    reference = 3 * envelope.mean(axis=(-2, -1), keepdims=True)
    db = 20 * np.log10(np.maximum(envelope / reference, 1e-6))
    return np.clip(np.rint((db + 40) * (255 / 40)), 0, 255).astype(np.uint8)


def _sector_mask(size: int, half_angle_deg: float = 35.0) -> np.ndarray:
    """uint8 ``[size, size]`` 0/1 mask of a fan-shaped (sector) field of view, apex at the top centre."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    apex_y, apex_x = -0.1 * size, (size - 1) / 2
    angle = np.degrees(np.arctan2(x - apex_x, y - apex_y))
    depth = np.hypot(x - apex_x, y - apex_y)
    return ((np.abs(angle) <= half_angle_deg) & (depth <= 1.1 * size)).astype(np.uint8)


def load_pydicom_cine(image_size: int | None = None) -> Tensor:
    """The real 30-frame ultrasound cine (240 x 320, YBR colour, JPEG baseline) that pydicom ships as
    its test file ``examples_ybr_color.dcm``, as float32 ``[30, 1, H, W]`` in [0, 1].

    Decoded with pydicom's raw pixel handler, converted from YBR_FULL_422 to RGB with
    ``pydicom.pixels.convert_color_space``, then to grayscale with the ITU-R BT.601 luma weights.
    ``image_size`` resizes every frame to ``image_size x image_size`` (bilinear, antialiased);
    ``None`` keeps 240 x 320. Real data, for demonstrations only (one video, no label).
    """
    from pydicom import dcmread
    from pydicom.data import get_testdata_file
    from pydicom.pixels import convert_color_space, pixel_array

    if image_size is not None:
        check_int("image_size", image_size, 1)
    dataset = dcmread(get_testdata_file("examples_ybr_color.dcm"))
    raw = pixel_array(dataset, raw=True)  # [frames, H, W, 3] in the stored colour space
    rgb = convert_color_space(raw, dataset.PhotometricInterpretation, "RGB").astype(np.float32)
    gray = torch.from_numpy(rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32) / 255.0)
    video = gray.unsqueeze(1).clamp_(0.0, 1.0)  # [frames, 1, H, W]
    if image_size is not None:
        video = F.interpolate(video, size=(image_size, image_size), mode="bilinear", antialias=True)
        video = video.clamp_(0.0, 1.0)
    return video
