"""The synthetic benchmark: volumes whose label lives in a few slices at a random depth.

Synthetic data, generated on the fly; it always runs offline and is deterministic by seed. See
:func:`make_synthetic_volumes` for the generative process.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from das.checks import check_int
from das.data.dataset import VolumeDataset

TARGET_MEAN = 0.5  # every slice is rescaled to this mean and standard deviation (in [0, 1] units)
TARGET_STD = 0.15
NUM_BLOBS = 4  # Gaussian blobs per slice in the smooth background


def static_miss_probability(num_frames: int, k: int, num_informative: int) -> float:
    """Probability that a fixed set of ``k`` of ``num_frames`` slices contains none of the
    ``num_informative`` informative slices, when these sit at distinct uniformly random positions:
    ``C(T - m, k) / C(T, k)``. (0.5 for T=16, k=8, m=1.)"""
    return math.comb(num_frames - num_informative, k) / math.comb(num_frames, k)


def static_accuracy_bound(num_frames: int, k: int, num_informative: int, num_classes: int) -> float:
    """Best accuracy of any classifier fed by a static sampler keeping ``k`` slices: it must guess
    (accuracy ``1 / num_classes``) whenever it misses every informative slice."""
    return 1.0 - static_miss_probability(num_frames, k, num_informative) * (1.0 - 1.0 / num_classes)


def _smooth_background(rng: np.random.Generator, n: int, t: int, size: int) -> np.ndarray:
    """``[n, t, size, size]`` smooth random fields, each a sum of ``NUM_BLOBS`` Gaussian blobs with
    random centre, width (size/8 to size/3) and signed amplitude; separable, so cheap."""
    grid = np.arange(size, dtype=np.float32)
    centre = rng.uniform(0, size, (n, t, NUM_BLOBS, 2)).astype(np.float32)
    width = rng.uniform(size / 8, size / 3, (n, t, NUM_BLOBS, 1)).astype(np.float32)
    amplitude = rng.uniform(-1, 1, (n, t, NUM_BLOBS)).astype(np.float32)
    gy = np.exp(-0.5 * ((grid - centre[..., 0:1]) / width) ** 2)  # [n, t, blobs, size]
    gx = np.exp(-0.5 * ((grid - centre[..., 1:2]) / width) ** 2)
    return np.einsum("ntb,ntby,ntbx->ntyx", amplitude, gy, gx, optimize=True)


def _standardise(x: np.ndarray) -> np.ndarray:
    """Zero mean, unit standard deviation over the last two axes (per slice)."""
    mean = x.mean(axis=(-2, -1), keepdims=True)
    std = x.std(axis=(-2, -1), keepdims=True)
    return (x - mean) / np.maximum(std, 1e-6)


def make_synthetic_volumes(
    num_samples: int,
    num_frames: int = 16,
    image_size: int = 28,
    num_classes: int = 4,
    num_informative: int = 1,
    noise: float = 0.1,
    seed: int = 0,
) -> VolumeDataset:
    """The synthetic benchmark (name ``"synthetic"``): the label is visible in only
    ``num_informative`` slices of each volume, at positions that differ per volume.

    Generative process, for each volume of ``T = num_frames`` slices of ``S x S`` pixels:

    1. Label ``y`` uniform in ``{0, ..., num_classes - 1}``.
    2. Every slice gets its own smooth random background: a sum of 4 Gaussian blobs (random centre,
       width S/8 to S/3, amplitude uniform in [-1, 1]), standardised to zero mean and unit variance.
    3. ``m = num_informative`` distinct slice positions are drawn uniformly at random (not a
       contiguous block: a block would always be hit by an every-other-slice sampler). Each of them
       additionally carries a sinusoidal grating of period max(3, S/7) px, orientation
       ``y * 180 / num_classes`` degrees and random phase, inside a soft-edged disk of random centre
       (within the middle 40% of the slice) and radius (0.2 S to 0.35 S), with amplitude 1.5.
    4. Every slice gets Gaussian pixel noise of standard deviation ``noise`` (relative to the
       unit-variance background).
    5. Every slice, informative or not, is rescaled to mean 0.5 and standard deviation 0.15, then
       clipped to [0, 1] and stored as uint8 like the real data.

    Step 5 means per-slice intensity statistics (mean, standard deviation) do not reveal which slices
    are informative, while edge energy (mean Sobel or Laplacian magnitude) does: the grating is the
    only high-frequency structure apart from the noise. Only the informative slices decide the label.

    Consequence: a static sampler keeping ``k`` of ``T`` slices misses every informative slice with
    probability ``p_miss = C(T - m, k) / C(T, k)`` (:func:`static_miss_probability`; 0.5 for
    T = 16, k = 8, m = 1), so its accuracy is at most ``1 - p_miss * (1 - 1 / num_classes)``
    (:func:`static_accuracy_bound`; 0.625 with 4 classes), whereas a sampler that looks at
    per-slice edge energy can find the informative slices and approach 100%.

    Returns:
        A :class:`VolumeDataset` with ``images`` uint8 ``[N, T, 1, S, S]``, ``labels`` and
        ``informative`` (bool ``[N, T]``, True at the informative slices).
    """
    check_int("num_samples", num_samples, 0)
    check_int("num_frames", num_frames, 1)
    check_int("image_size", image_size, 8)
    check_int("num_classes", num_classes, 2)
    check_int("num_informative", num_informative, 1)
    if num_informative > num_frames:
        raise ValueError(f"num_informative={num_informative} must be at most num_frames={num_frames}")
    if not isinstance(noise, (int, float)) or isinstance(noise, bool) or not 0 <= noise < math.inf:
        raise ValueError(f"noise must be a finite float >= 0, got {noise!r}")
    rng = np.random.default_rng(seed)
    n, t, s = num_samples, num_frames, image_size

    labels = rng.integers(0, num_classes, n)
    volumes = _standardise(_smooth_background(rng, n, t, s))

    # Distinct random positions per volume: the first m entries of a random permutation of 0..T-1.
    positions = np.argsort(rng.random((n, t)), axis=1)[:, :num_informative]
    informative = np.zeros((n, t), dtype=bool)
    np.put_along_axis(informative, positions, True, axis=1)

    # One grating per informative slice; all informative slices of a volume share its label.
    rows = np.repeat(np.arange(n), num_informative)
    cols = positions.reshape(-1)
    g = rows.size
    yy, xx = np.meshgrid(np.arange(s, dtype=np.float32), np.arange(s, dtype=np.float32), indexing="ij")
    theta = (labels[rows] * np.pi / num_classes).astype(np.float32)[:, None, None]
    phase = rng.uniform(0, 2 * np.pi, (g, 1, 1)).astype(np.float32)
    period = max(3.0, s / 7)
    grating = np.sin(2 * np.pi / period * (xx * np.cos(theta) + yy * np.sin(theta)) + phase)
    centre = rng.uniform(0.3 * s, 0.7 * s, (g, 2, 1, 1)).astype(np.float32)
    radius = rng.uniform(0.2 * s, 0.35 * s, (g, 1, 1)).astype(np.float32)
    distance = np.sqrt((yy - centre[:, 0]) ** 2 + (xx - centre[:, 1]) ** 2)
    disk = 0.5 - 0.5 * np.tanh(0.5 * (distance - radius))  # logistic soft edge about 2 px wide
    volumes[rows, cols] += 1.5 * grating * disk

    volumes += noise * rng.standard_normal(volumes.shape, dtype=np.float32)
    volumes = TARGET_MEAN + TARGET_STD * _standardise(volumes)
    images = np.clip(np.rint(volumes * 255), 0, 255).astype(np.uint8)

    return VolumeDataset(
        torch.from_numpy(images).unsqueeze(2),
        torch.from_numpy(labels.astype(np.int64)),
        name="synthetic",
        task="binary-class" if num_classes == 2 else "multi-class",
        label_names=[f"grating {c * 180 / num_classes:g} deg" for c in range(num_classes)],
        informative=torch.from_numpy(informative),
    )
