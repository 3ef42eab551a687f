"""VolumeDataset and the two batching paths: seeded order, coverage, values equal to ``ds[i]``."""

from __future__ import annotations

import pytest
import torch

from das.data import VolumeDataset, iterate_batches, make_dataloader


def indexed_dataset(n: int = 37) -> VolumeDataset:
    """Item ``i`` is filled with the value ``i`` (so a batch tells which items it holds) and random
    pixels elsewhere in slice 1 (so value checks are not trivial)."""
    images = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1, 1).repeat(1, 3, 1, 5, 5)
    noise = torch.Generator().manual_seed(0)
    images[:, 1] = torch.randint(0, 256, (n, 1, 5, 5), generator=noise, dtype=torch.uint8)
    labels = torch.arange(n) % 3
    return VolumeDataset(images, labels, name="indexed", task="multi-class", label_names=["a", "b", "c"])


def item_ids(x: torch.Tensor) -> list[int]:
    return torch.round(x[:, 0, 0, 0, 0] * 255).long().tolist()


def epoch_ids(ds: VolumeDataset, **kwargs) -> list[int]:
    return [i for x, _ in iterate_batches(ds, 8, **kwargs) for i in item_ids(x)]


def test_volume_dataset_item_and_properties() -> None:
    ds = indexed_dataset()
    x, y = ds[5]
    assert x.dtype == torch.float32 and x.shape == (3, 1, 5, 5) and y.dtype == torch.int64 and y.dim() == 0
    assert torch.equal(x, ds.images[5].float() / 255) and int(y) == 2
    assert (len(ds), ds.num_frames, ds.in_channels, ds.image_size, ds.num_classes) == (37, 3, 1, 5, 3)
    assert "N=37, T=3" in repr(ds)


def test_volume_dataset_rejects_bad_tensors() -> None:
    images = torch.zeros(4, 2, 1, 3, 3, dtype=torch.uint8)
    with pytest.raises(ValueError, match="images must be a uint8 tensor"):
        VolumeDataset(images.float(), torch.zeros(4), name="a", task="binary-class", label_names=["n", "p"])
    with pytest.raises(ValueError, match=r"labels must be a tensor of shape \[N\]=\(4,\)"):
        VolumeDataset(images, torch.zeros(3), name="a", task="binary-class", label_names=["n", "p"])
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 1\]"):
        VolumeDataset(images, torch.tensor([0, 1, 2, 0]), name="a", task="binary-class", label_names="ny")
    with pytest.raises(ValueError, match="task must be one of binary-class, multi-class"):
        VolumeDataset(images, torch.zeros(4), name="a", task="regression", label_names=["n", "p"])
    with pytest.raises(ValueError, match=r"informative must be a bool tensor \[N, T\]"):
        VolumeDataset(
            images,
            torch.zeros(4),
            name="a",
            task="binary-class",
            label_names=["n", "p"],
            informative=torch.zeros(4, 3, dtype=torch.bool),
        )


def test_subset() -> None:
    ds = indexed_dataset()
    ds.informative = torch.rand(37, 3) > 0.5
    sub = ds.subset([4, 0, 9])
    assert item_ids(sub.images.float() / 255) == [4, 0, 9]
    assert torch.equal(sub.labels, ds.labels[[4, 0, 9]])
    assert torch.equal(sub.informative, ds.informative[[4, 0, 9]])
    assert sub.label_names == ds.label_names and sub.name == ds.name


def test_same_seed_same_order_different_seed_different_order() -> None:
    ds = indexed_dataset()
    assert epoch_ids(ds, shuffle=True, seed=3) == epoch_ids(ds, shuffle=True, seed=3)
    assert epoch_ids(ds, shuffle=True, seed=3) != epoch_ids(ds, shuffle=True, seed=4)
    assert epoch_ids(ds, shuffle=False) == list(range(37))


@pytest.mark.parametrize("shuffle", [True, False])
def test_every_item_once_per_epoch_and_values_equal_items(shuffle: bool) -> None:
    ds = indexed_dataset()
    seen = []
    for x, y in iterate_batches(ds, 8, shuffle=shuffle, seed=1):
        assert x.dtype == torch.float32 and y.dtype == torch.int64 and x.shape[1:] == (3, 1, 5, 5)
        for row, i in enumerate(item_ids(x)):
            item_x, item_y = ds[i]
            assert torch.equal(x[row], item_x) and torch.equal(y[row], item_y)
            seen.append(i)
    assert sorted(seen) == list(range(37))


def test_drop_last() -> None:
    ds = indexed_dataset()
    sizes = [len(y) for _, y in iterate_batches(ds, 8, shuffle=True, drop_last=True)]
    assert sizes == [8, 8, 8, 8]
    assert [len(y) for _, y in iterate_batches(ds, 8, shuffle=True)] == [8, 8, 8, 8, 5]
    assert list(iterate_batches(ds.subset([0, 1]), 8, shuffle=True, drop_last=True)) == []


def test_iterate_batches_errors() -> None:
    ds = indexed_dataset()
    with pytest.raises(ValueError, match="batch_size must be an int >= 1, got 0"):
        next(iterate_batches(ds, 0, shuffle=True))
    with pytest.raises(ValueError, match="dataset must be a das.data.VolumeDataset.*got TensorDataset"):
        next(iterate_batches(torch.utils.data.TensorDataset(torch.zeros(2)), 2, shuffle=False))


def test_make_dataloader_is_seeded_and_matches_items() -> None:
    ds = indexed_dataset()

    def first_epoch(seed: int) -> list[int]:
        return [i for x, _ in make_dataloader(ds, 8, shuffle=True, seed=seed) for i in item_ids(x)]

    assert first_epoch(5) == first_epoch(5) and first_epoch(5) != first_epoch(6)
    assert sorted(first_epoch(5)) == list(range(37))
    loader = make_dataloader(ds, 8, shuffle=False, drop_last=True)
    batches = list(loader)
    assert len(batches) == 4
    x, y = batches[1]
    assert torch.equal(x[0], ds[8][0]) and torch.equal(y, ds.labels[8:16])
    with pytest.raises(ValueError, match="num_workers must be an int >= 0, got -1"):
        make_dataloader(ds, 8, shuffle=False, num_workers=-1)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_iterate_batches_keeps_data_resident_on_the_gpu() -> None:
    ds = indexed_dataset()
    x, y = next(iterate_batches(ds, 8, shuffle=True, device="cuda"))
    assert x.is_cuda and y.is_cuda and x.dtype == torch.float32
    resident = ds.resident("cuda")[0]
    assert resident.is_cuda and resident.dtype == torch.uint8
    assert ds.resident("cuda")[0].data_ptr() == resident.data_ptr()  # copied once, then reused
    assert epoch_ids(ds, shuffle=True, seed=2, device="cuda") == epoch_ids(ds, shuffle=True, seed=2)
