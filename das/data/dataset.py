"""The one dataset type of the project: a split held in memory as a single uint8 tensor.

Every dataset (MedMNIST3D, the synthetic benchmark, ultrasound videos) becomes a
:class:`VolumeDataset` of ``N`` items with ``T`` slices or frames each. Keeping the split as one
``uint8`` tensor ``[N, T, C, H, W]`` (a few hundred MB at most even for MedMNIST3D at 64^3) lets the
fast path (:func:`das.data.iterate_batches`) form batches by indexing instead of collating items.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torch.utils.data import Dataset

TASKS = ("binary-class", "multi-class")


def to_unit_float(images: Tensor) -> Tensor:
    """``uint8`` in [0, 255] -> ``float32`` in [0, 1]; the one conversion used by every data path,
    so that batches from :func:`das.data.iterate_batches` equal ``ds[i]`` bit for bit."""
    return images.to(torch.float32).div_(255.0)


class VolumeDataset(Dataset):
    """``N`` volumes or videos of ``T`` slices/frames, stored as ``uint8`` ``[N, T, C, H, W]``.

    ``ds[i]`` is ``(x, y)``: ``x`` float32 ``[T, C, H, W]`` in [0, 1] and ``y`` an int64 scalar tensor.

    Attributes:
        images: uint8 tensor ``[N, T, C, H, W]``.
        labels: int64 tensor ``[N]`` with values in ``range(num_classes)``.
        name: dataset name (e.g. ``"adrenalmnist3d"``, ``"synthetic"``).
        task: ``"binary-class"`` or ``"multi-class"``.
        label_names: one name per class, index = label.
        split: ``"train"``, ``"val"``, ``"test"`` or ``None`` when the source has no split.
        informative: for synthetic data only, bool ``[N, T]``: which slices carry the evidence
            (ground truth for plots and for checking what a sampler picked); ``None`` for real data.
    """

    def __init__(
        self,
        images: Tensor,
        labels: Tensor,
        *,
        name: str,
        task: str,
        label_names: Sequence[str],
        split: str | None = None,
        informative: Tensor | None = None,
    ) -> None:
        if not isinstance(images, Tensor) or images.dtype != torch.uint8 or images.dim() != 5:
            shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
            dtype = getattr(images, "dtype", None)
            raise ValueError(f"images must be a uint8 tensor [N, T, C, H, W], got {shape} of dtype {dtype}")
        n = images.shape[0]
        if not isinstance(labels, Tensor) or labels.shape != (n,):
            shape = tuple(labels.shape) if isinstance(labels, Tensor) else type(labels).__name__
            raise ValueError(f"labels must be a tensor of shape [N]=({n},), got {shape}")
        if task not in TASKS:
            raise ValueError(f"task must be one of {', '.join(TASKS)}, got {task!r}")
        if len(label_names) < 2:
            raise ValueError(f"label_names must name at least 2 classes, got {list(label_names)!r}")
        if len(set(label_names)) != len(label_names):
            raise ValueError(f"label_names must name every class once, got duplicates in {list(label_names)!r}")
        if labels.is_floating_point():  # converting 0.7 to int64 would truncate it to class 0
            fractional = labels[~(torch.isfinite(labels) & (labels == labels.round()))]
            if fractional.numel():
                raise ValueError(
                    f"labels must be whole numbers (class indices), got {labels.dtype} values such as "
                    f"{fractional[0].item():g}"
                )
        labels = labels.to(torch.int64)
        if n and (int(labels.min()) < 0 or int(labels.max()) >= len(label_names)):
            raise ValueError(
                f"labels must lie in [0, {len(label_names) - 1}] (one per label name), "
                f"got range [{int(labels.min())}, {int(labels.max())}]"
            )
        bad_informative = informative is not None and (
            informative.dtype != torch.bool or informative.shape != images.shape[:2]
        )
        if bad_informative:
            raise ValueError(
                f"informative must be a bool tensor [N, T]={tuple(images.shape[:2])}, "
                f"got {tuple(informative.shape)} of dtype {informative.dtype}"
            )
        self.images = images
        self.labels = labels
        self.name = name
        self.task = task
        self.label_names = list(label_names)
        self.split = split
        self.informative = informative
        self._resident: dict[torch.device, tuple[Tensor, Tensor]] = {}

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        return to_unit_float(self.images[index]), self.labels[index]

    @property
    def num_classes(self) -> int:
        return len(self.label_names)

    @property
    def num_frames(self) -> int:
        return self.images.shape[1]

    @property
    def in_channels(self) -> int:
        return self.images.shape[2]

    @property
    def image_size(self) -> int:
        """Spatial size ``H`` (every dataset of the project has square slices, ``H == W``)."""
        return self.images.shape[3]

    def resident(self, device: torch.device | str) -> tuple[Tensor, Tensor]:
        """``(images, labels)`` on ``device``, copied there once and cached, so that every epoch of
        :func:`das.data.iterate_batches` on a GPU indexes memory already on the GPU."""
        device = torch.device(device)
        if device.type == "cuda" and device.index is None:  # "cuda" and "cuda:0" share one copy
            device = torch.device("cuda", torch.cuda.current_device())
        if device.type == self.images.device.type and device.index in (None, self.images.device.index):
            return self.images, self.labels
        if device not in self._resident:
            self._resident[device] = (self.images.to(device), self.labels.to(device))
        return self._resident[device]

    def subset(self, indices: Sequence[int] | Tensor) -> VolumeDataset:
        """A new dataset holding the items ``indices`` (e.g. a train/val split of BUSV videos)."""
        index = torch.as_tensor(indices, dtype=torch.int64)
        return VolumeDataset(
            self.images[index],
            self.labels[index],
            name=self.name,
            task=self.task,
            label_names=self.label_names,
            split=self.split,
            informative=None if self.informative is None else self.informative[index],
        )

    def __repr__(self) -> str:
        n, t, c, h, w = self.images.shape
        split = f", split={self.split!r}" if self.split else ""
        return (
            f"VolumeDataset(name={self.name!r}{split}, N={n}, T={t}, C={c}, H={h}, W={w}, "
            f"task={self.task!r}, classes={self.label_names})"
        )
