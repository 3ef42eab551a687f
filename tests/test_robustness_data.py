"""VolumeDataset refuses labels and label names that would silently mean something else."""

from __future__ import annotations

import pytest
import torch

from das.data import VolumeDataset

IMAGES = torch.zeros(3, 2, 1, 4, 4, dtype=torch.uint8)


@pytest.mark.parametrize(("labels", "shown"), [([0.0, 0.7, 1.0], "0.7"), ([0.0, float("nan"), 1.0], "nan")])
def test_fractional_labels_are_refused_not_truncated(labels: list[float], shown: str) -> None:
    with pytest.raises(
        ValueError, match=rf"^labels must be whole numbers \(class indices\), got torch.float32 .*{shown}"
    ):
        VolumeDataset(IMAGES, torch.tensor(labels), name="a", task="binary-class", label_names=["n", "p"])


def test_whole_float_labels_are_class_indices() -> None:
    ds = VolumeDataset(IMAGES, torch.tensor([0.0, 1.0, 1.0]), name="a", task="binary-class", label_names=["n", "p"])
    assert ds.labels.tolist() == [0, 1, 1] and ds.labels.dtype == torch.int64


def test_duplicate_label_names_are_refused() -> None:
    with pytest.raises(
        ValueError, match=r"^label_names must name every class once, got duplicates in \['n', 'p', 'n'\]$"
    ):
        VolumeDataset(IMAGES, torch.tensor([0, 1, 2]), name="a", task="multi-class", label_names=["n", "p", "n"])
