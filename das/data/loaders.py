"""Batches from a :class:`VolumeDataset`, with seeded shuffling, in one place.

Two paths:

- :func:`iterate_batches`, the fast path used for training and evaluation: the split stays one
  ``uint8`` tensor resident on the device, a batch is one ``index_select`` of it, converted to float
  on the device. No per-item ``__getitem__``, no Python collation, a quarter of the bytes of float32
  to move, and on a GPU no host-to-device copy after the first epoch.
- :func:`make_dataloader`, a standard seeded :class:`torch.utils.data.DataLoader` for code that
  wants one (workers, samplers, other datasets).

Both give the same values as ``dataset[i]``.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor
from torch.utils.data import DataLoader

from das.checks import check_int
from das.data.dataset import VolumeDataset, to_unit_float


def epoch_order(num_items: int, *, shuffle: bool, seed: int = 0) -> Tensor:
    """The order of one epoch: ``0..num_items-1``, or a permutation drawn from a
    ``torch.Generator`` seeded with ``seed`` (CPU, so the order is the same on every device)."""
    if not shuffle:
        return torch.arange(num_items)
    return torch.randperm(num_items, generator=torch.Generator().manual_seed(seed))


def iterate_batches(
    dataset: VolumeDataset,
    batch_size: int,
    *,
    shuffle: bool,
    seed: int = 0,
    device: torch.device | str = "cpu",
    drop_last: bool = False,
) -> Iterator[tuple[Tensor, Tensor]]:
    """One epoch of ``(x float32 [B, T, C, H, W] in [0, 1], y int64 [B])`` on ``device``.

    The dataset's uint8 tensor is copied to ``device`` once (cached on the dataset) and every batch
    is indexed from it there. Shuffling is seeded: the same ``seed`` gives the same order; pass a
    different seed per epoch (e.g. ``seed + epoch``). ``drop_last`` drops a final incomplete batch.
    """
    if not isinstance(dataset, VolumeDataset):
        raise ValueError(
            f"dataset must be a das.data.VolumeDataset (its uint8 tensor is indexed directly), "
            f"got {type(dataset).__name__}; use make_dataloader for other datasets"
        )
    check_int("batch_size", batch_size, 1)
    images, labels = dataset.resident(device)
    order = epoch_order(len(dataset), shuffle=shuffle, seed=seed).to(images.device)
    stop = len(order) - len(order) % batch_size if drop_last else len(order)
    for start in range(0, stop, batch_size):
        index = order[start : start + batch_size]
        yield to_unit_float(images.index_select(0, index)), labels.index_select(0, index)


def make_dataloader(
    dataset: torch.utils.data.Dataset,
    batch_size: int,
    *,
    shuffle: bool,
    seed: int = 0,
    num_workers: int = 0,
    drop_last: bool = False,
) -> DataLoader:
    """A standard :class:`~torch.utils.data.DataLoader` whose shuffling is seeded with ``seed``.

    The general, slower path (per-item ``__getitem__`` and default collation); each new iteration
    over the loader continues the generator, so successive epochs get different orders that are the
    same from run to run.
    """
    check_int("batch_size", batch_size, 1)
    check_int("num_workers", num_workers, 0)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        num_workers=num_workers,
        drop_last=drop_last,
        generator=torch.Generator().manual_seed(seed),
    )
