"""Datasets of the project, all as :class:`VolumeDataset` (uint8 ``[N, T, C, H, W]`` in memory;
items ``(x float32 [T, C, H, W] in [0, 1], y int64)``), and the batching paths.

>>> train = load_dataset("synthetic", "train", size=16, num_samples=32)  # or "adrenalmnist3d", ...
>>> x, y = next(iterate_batches(train, 16, shuffle=True, seed=0))
>>> tuple(x.shape), x.dtype, tuple(y.shape)
((16, 16, 1, 16, 16), torch.float32, (16,))

Real: the six MedMNIST3D sets (:func:`load_medmnist3d`), BUSV videos (:func:`load_busv`, needs the
dataset), the pydicom ultrasound cine (:func:`load_pydicom_cine`). Synthetic, generated offline:
the benchmark (:func:`make_synthetic_volumes`) and ultrasound-like videos
(:func:`make_synthetic_ultrasound`).
"""

from __future__ import annotations

from das.data.dataset import VolumeDataset
from das.data.loaders import iterate_batches, make_dataloader
from das.data.medmnist3d import CorruptDatasetError, DatasetNotFoundError, load_medmnist3d
from das.data.registry import DATASETS, load_dataset
from das.data.synthetic import make_synthetic_volumes, static_accuracy_bound, static_miss_probability
from das.data.ultrasound import load_busv, load_pydicom_cine, make_synthetic_ultrasound

__all__ = [
    "DATASETS",
    "CorruptDatasetError",
    "DatasetNotFoundError",
    "VolumeDataset",
    "iterate_batches",
    "load_busv",
    "load_dataset",
    "load_medmnist3d",
    "load_pydicom_cine",
    "make_dataloader",
    "make_synthetic_ultrasound",
    "make_synthetic_volumes",
    "static_accuracy_bound",
    "static_miss_probability",
]
