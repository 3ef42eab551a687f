"""The synthetic benchmark: determinism, where the evidence is, and what reveals it."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from das.data import load_dataset, make_synthetic_volumes, static_accuracy_bound, static_miss_probability


def edge_energy(ds) -> np.ndarray:
    """Mean gradient magnitude per slice, ``[N, T]`` (the cheap feature a sampler can use)."""
    x = ds.images[:, :, 0].numpy().astype(np.float64) / 255
    gy, gx = np.gradient(x, axis=(2, 3))
    return np.hypot(gx, gy).mean(axis=(2, 3))


@pytest.fixture(scope="module")
def bench():
    return make_synthetic_volumes(400, seed=7)


def test_shapes_types_and_metadata(bench) -> None:
    assert bench.images.shape == (400, 16, 1, 28, 28) and bench.images.dtype == torch.uint8
    assert bench.labels.dtype == torch.int64 and set(bench.labels.tolist()) == {0, 1, 2, 3}
    assert bench.informative.shape == (400, 16) and bench.informative.dtype == torch.bool
    assert (bench.informative.sum(1) == 1).all()
    assert bench.name == "synthetic" and bench.task == "multi-class"
    assert bench.label_names == ["grating 0 deg", "grating 45 deg", "grating 90 deg", "grating 135 deg"]
    binary = make_synthetic_volumes(4, num_frames=8, image_size=32, num_classes=2, num_informative=3)
    assert binary.images.shape == (4, 8, 1, 32, 32) and binary.task == "binary-class"
    assert (binary.informative.sum(1) == 3).all()


def test_deterministic_by_seed() -> None:
    a, b, c = (make_synthetic_volumes(20, seed=s) for s in (3, 3, 4))
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert torch.equal(a.informative, b.informative)
    assert not torch.equal(a.images, c.images)


def test_informative_slice_has_the_highest_edge_energy(bench) -> None:
    energy = edge_energy(bench)
    hit = energy.argmax(1) == bench.informative.numpy().argmax(1)
    assert hit.mean() > 0.9


def test_intensity_statistics_do_not_reveal_informative_slices(bench) -> None:
    x = bench.images[:, :, 0].numpy().astype(np.float64) / 255
    informative = bench.informative.numpy()
    for stat in (x.mean(axis=(2, 3)), x.std(axis=(2, 3))):
        gap = abs(stat[informative].mean() - stat[~informative].mean())
        assert gap < 0.003  # out of 0.5 (mean) and 0.15 (std): equal up to clipping and rounding
        # ... and slice by slice: the informative slice is where the statistic peaks no more often
        # than chance (1/16)
        for extreme in (stat.argmax(1), stat.argmin(1)):
            assert (extreme == informative.argmax(1)).mean() < 0.15
    energy = edge_energy(bench)  # whereas edge energy separates them by a wide margin
    assert energy[informative].mean() - energy[~informative].mean() > 3 * energy[~informative].std()


def test_label_is_the_orientation_of_the_informative_slice(bench) -> None:
    """Dominant gradient orientation (structure tensor) of the informative slice gives the label."""
    x = bench.images[:, :, 0].numpy().astype(np.float64)
    slices = x[np.arange(len(x)), bench.informative.numpy().argmax(1)]
    gy, gx = np.gradient(slices, axis=(1, 2))
    jxx, jyy, jxy = (gx * gx).sum((1, 2)), (gy * gy).sum((1, 2)), (gx * gy).sum((1, 2))
    angle = 0.5 * np.arctan2(2 * jxy, jxx - jyy) % np.pi  # gradient direction = grating normal
    predicted = np.rint(angle / (np.pi / 4)).astype(int) % 4
    assert (predicted == bench.labels.numpy()).mean() > 0.9


def test_positions_are_uniform_and_not_contiguous() -> None:
    ds = make_synthetic_volumes(2000, num_informative=2, seed=1, image_size=8)
    informative = ds.informative.numpy()
    counts = informative.sum(0)  # expected 2000 * 2 / 16 = 250 per position
    assert counts.min() > 180 and counts.max() < 320
    positions = np.sort(np.argwhere(informative)[:, 1].reshape(-1, 2), axis=1)
    adjacent = (np.diff(positions, axis=1) == 1).mean()
    assert 0.05 < adjacent < 0.2  # 15 / 120 = 0.125 of random pairs are adjacent


def test_static_sampler_miss_rate() -> None:
    assert static_miss_probability(16, 8, 1) == 0.5
    assert static_accuracy_bound(16, 8, 1, 4) == pytest.approx(0.625)
    # Against enumeration: a fixed k-subset misses a random m-subset of T positions.
    t, k, m = 7, 3, 2
    kept = set(range(k))
    misses = [not kept & set(s) for s in itertools.combinations(range(t), m)]
    assert static_miss_probability(t, k, m) == pytest.approx(np.mean(misses))
    # And on the data: every other slice misses the informative one in about half of the volumes.
    ds = make_synthetic_volumes(2000, seed=2, image_size=8)
    missed = ~ds.informative[:, ::2].any(1)
    p = static_miss_probability(16, 8, 1)
    assert abs(missed.float().mean().item() - p) < 4 * math.sqrt(p * (1 - p) / 2000)


def test_load_dataset_uses_split_specific_seeds() -> None:
    train = load_dataset("synthetic", "train", seed=0)
    val = load_dataset("synthetic", "val", seed=0)
    test = load_dataset("synthetic", "test", seed=0, num_samples=10, num_frames=8, size=32)
    assert (len(train), len(val), len(test)) == (1024, 256, 10)
    assert (train.split, val.split, test.split) == ("train", "val", "test")
    assert test.images.shape == (10, 8, 1, 32, 32)
    assert not torch.equal(train.images[:256], val.images)
    assert torch.equal(load_dataset("synthetic", "val", seed=0).images, val.images)
    assert not torch.equal(load_dataset("synthetic", "val", seed=1).images, val.images)


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"num_samples": -1}, "num_samples must be an int >= 0, got -1"),
        ({"num_frames": 2.5}, "num_frames must be an int"),
        ({"num_classes": 1}, "num_classes must be an int >= 2"),
        ({"num_informative": 17}, "num_informative=17 must be at most num_frames=16"),
        ({"image_size": 4}, "image_size must be an int >= 8"),
        ({"noise": -0.1}, "noise must be a finite float >= 0"),
        ({"noise": float("nan")}, "noise must be a finite float >= 0"),
    ],
)
def test_bad_arguments(kwargs: dict, pattern: str) -> None:
    with pytest.raises(ValueError, match=pattern):
        make_synthetic_volumes(**({"num_samples": 2} | kwargs))


def test_load_dataset_rejects_unknown_options() -> None:
    with pytest.raises(ValueError, match=r"'depth'.*valid options: num_samples, num_frames"):
        load_dataset("synthetic", "train", depth=3)
    with pytest.raises(ValueError, match=r"image size is the argument size="):
        load_dataset("synthetic", "train", image_size=32)


@pytest.mark.parametrize("name", ["synthetic", "synthetic_ultrasound"])
@pytest.mark.parametrize(
    ("num_samples", "pattern"),
    [(0, "got 0"), (-3, "got -3"), (2.5, "got 2.5"), ("8", "got '8'"), (True, "got True")],
)
def test_load_dataset_needs_at_least_one_sample(name: str, num_samples: object, pattern: str) -> None:
    with pytest.raises(ValueError, match=rf"^num_samples must be an int >= 1, {pattern}$"):
        load_dataset(name, "train", num_samples=num_samples)


@pytest.mark.parametrize("seed", [-1, 1.5, "0"])
def test_load_dataset_refuses_bad_seeds(seed: object) -> None:
    with pytest.raises(ValueError, match=rf"^seed must be an int >= 0 .*got {seed!r}$".replace(".5", r"\.5")):
        load_dataset("synthetic", "train", num_samples=2, seed=seed)
    assert len(load_dataset("synthetic", "train", num_samples=2, seed=np.int64(3))) == 2  # numpy ints are ints


def test_load_dataset_lists_the_valid_options() -> None:
    with pytest.raises(ValueError, match=r"'frames'.*valid options: num_samples, num_frames, num_classes, "):
        load_dataset("synthetic_ultrasound", "train", frames=3)
    with pytest.raises(
        ValueError, match=r"takes no options, got 'noise' \(valid options: none; size, root and download"
    ):
        load_dataset("adrenalmnist3d", "train", noise=0.1)
