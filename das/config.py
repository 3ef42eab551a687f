"""The settings of one training run: :class:`TrainConfig`, validated on creation, stored whole in the
run's record, and compared field by field to decide whether a stored run or a checkpoint belongs to
it. Defaults are the paper's literal protocol (the ``paper`` profile); the experiments chapter says
why the ``real`` profile changes some of them.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import torch

from das.augment import AUGMENTATIONS
from das.checks import check_choice, check_int
from das.data import DATASETS
from das.data.medmnist3d import MEDMNIST3D_FLAGS, check_size
from das.model import BACKBONES, POOLS
from das.samplers import SAMPLERS

SAMPLER_LR_FACTOR = 10.0  # default sampler_lr = SAMPLER_LR_FACTOR * lr (the factor the DPS authors used)
MAX_LR = 10.0  # a larger learning rate only diverges

LR_SCHEDULES: tuple[str, ...] = ("constant", "step", "cosine")
SELECT_METRICS: tuple[str, ...] = ("val_loss", "val_auc", "val_balanced_accuracy")
CLASS_WEIGHTS: tuple[str, ...] = ("none", "balanced")
THRESHOLDS: tuple[str, ...] = ("argmax", "validation")
# torch.compile modes; "reduce-overhead" captures CUDA graphs on a GPU (on a CPU it compiles as "default").
COMPILE_MODES: tuple[str, ...] = ("default", "reduce-overhead", "max-autotune")

# Config fields that change where or how verbosely a run runs, not its numbers.
RUN_LOCAL_FIELDS = frozenset({"device", "quiet", "num_threads", "data_dir", "download"})
# ... and those that may differ between an interrupted run and its resumption: also how long it runs
# (epochs), which leaves the numbers of the epochs already done as they were.
RESUMABLE_CHANGES = RUN_LOCAL_FIELDS | {"epochs"}


@dataclass
class TrainConfig:
    """Everything that defines one run. Stored whole in the run's JSON.

    ``max_train_samples`` / ``max_eval_samples`` cap the train and the val/test splits (a fixed,
    seed-independent random subset) so notebooks and CI can run a tiny version; ``None`` uses the
    whole split. ``patience=None`` turns early stopping off. ``device="auto"`` picks CUDA when
    present. ``num_threads`` sets torch's CPU threads for the run only (restored afterwards).
    ``compile`` runs the training step (forward pass and loss; the backward pass through the compiled
    graph) and the evaluation under ``torch.compile`` with ``compile_mode``; ``"reduce-overhead"``
    captures CUDA graphs on a GPU. Its randomness differs from an eager run: see :mod:`das.train`.

    The protocol knobs (defaults: the paper's literal protocol): ``lr_schedule`` multiplies every
    learning rate per epoch (:func:`das.train.lr_factor`); ``weight_decay`` is Adam's decoupled (AdamW) decay;
    ``augment`` names a :data:`das.augment.AUGMENTATIONS` recipe applied to training batches;
    ``class_weights="balanced"`` weights the training loss by inverse class frequency;
    ``select_metric`` is the validation metric that picks the best epoch and drives ``patience``;
    ``threshold="validation"`` (two classes) predicts class 1 above the probability that maximises the
    validation balanced accuracy at the best epoch (:func:`das.metrics.balanced_threshold`).
    """

    dataset: str = "synthetic"
    method: str = "das"
    ratio: float = 0.5
    seed: int = 0
    size: int = 28
    epochs: int = 100
    patience: int | None = 10
    batch_size: int = 16
    lr: float = 1e-4
    sampler_lr: float | None = None
    sampler_warmup: int = 0
    lr_schedule: str = "constant"
    weight_decay: float = 0.0
    augment: str = "none"
    class_weights: str = "none"
    select_metric: str = "val_loss"
    threshold: str = "argmax"
    backbone: str = "mobilenet_v3_small"
    pool: str = "mean"
    sampler_options: dict[str, Any] = field(default_factory=dict)
    dataset_options: dict[str, Any] = field(default_factory=dict)
    max_train_samples: int | None = None
    max_eval_samples: int | None = None
    data_dir: str | None = None
    download: bool = False
    device: str = "auto"
    compile: bool = False
    compile_mode: str = "default"
    num_threads: int | None = None
    quiet: bool = False

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first invalid field, its value and what is valid."""
        if self.dataset not in DATASETS:
            raise ValueError(f"unknown dataset {self.dataset!r}; valid datasets: {', '.join(DATASETS)}")
        if self.method not in SAMPLERS:
            raise ValueError(f"unknown method {self.method!r}; valid methods: {', '.join(SAMPLERS)}")
        if isinstance(self.ratio, bool) or not isinstance(self.ratio, (int, float)) or not 0 < self.ratio <= 1:
            raise ValueError(f"ratio must be a number in (0, 1], got {self.ratio!r}")
        for name in ("size", "epochs", "batch_size"):
            check_int(name, getattr(self, name), 1)
        if self.dataset in MEDMNIST3D_FLAGS:
            check_size(self.dataset, self.size)
        check_int("seed", self.seed, 0)
        check_int("sampler_warmup", self.sampler_warmup, 0)
        check_choice("lr_schedule", self.lr_schedule, LR_SCHEDULES)
        check_choice("augment", self.augment, tuple(AUGMENTATIONS))
        check_choice("class_weights", self.class_weights, CLASS_WEIGHTS)
        check_choice("select_metric", self.select_metric, SELECT_METRICS)
        check_choice("threshold", self.threshold, THRESHOLDS)
        check_choice("compile_mode", self.compile_mode, COMPILE_MODES)
        if (
            isinstance(self.weight_decay, bool)
            or not isinstance(self.weight_decay, (int, float))
            or not 0 <= self.weight_decay < math.inf
        ):
            raise ValueError(f"weight_decay must be a number >= 0, got {self.weight_decay!r}")
        for name in ("patience", "max_train_samples", "max_eval_samples", "num_threads"):
            if getattr(self, name) is not None:
                check_int(name, getattr(self, name), 1)
        for name in ("lr", "sampler_lr"):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= MAX_LR
            ):
                raise ValueError(f"{name} must be a number in (0, {MAX_LR:g}], got {value!r}")
        if self.backbone not in BACKBONES:
            raise ValueError(f"unknown backbone {self.backbone!r}; valid backbones: {', '.join(BACKBONES)}")
        if self.pool not in POOLS:
            raise ValueError(f"unknown pool {self.pool!r}; valid pools: {', '.join(POOLS)}")
        check_device_name(self.device)  # available or not: see resolve_device, called by whoever runs it

    @property
    def resolved_sampler_lr(self) -> float:
        return self.sampler_lr if self.sampler_lr is not None else SAMPLER_LR_FACTOR * self.lr

    def num_selected(self, num_frames: int) -> int:
        """k: ``max(1, round(ratio * T))`` (Python's round, half to even); ``T`` for ``full``."""
        return num_frames if self.method == "full" else max(1, round(self.ratio * num_frames))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def differences(self, stored: dict[str, Any], ignore: frozenset[str] = RUN_LOCAL_FIELDS) -> list[str]:
        """Fields (outside ``ignore``) where a stored config dict differs from this config. A field
        the stored dict lacks (written before the field existed) counts as its default value."""
        defaults = TrainConfig.default_dict()
        current = self.to_dict()
        return sorted(key for key in current if key not in ignore and stored.get(key, defaults[key]) != current[key])

    @staticmethod
    def default_dict() -> dict[str, Any]:
        """Every field's default value."""
        return {
            f.name: f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
            for f in dataclasses.fields(TrainConfig)
        }

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        unknown = sorted(set(values) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ValueError(f"unknown TrainConfig field(s) {', '.join(map(repr, unknown))}")
        return cls(**values)


def check_device_name(device: str | torch.device) -> str | torch.device:
    """``device`` if it names a device this project runs on (``"auto"``, ``"cpu"``, ``"cuda"``,
    ``"cuda:N"``), whether or not this machine has it: a stored run made on a GPU is read on a CPU."""
    if device == "auto":
        return device
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}") from None
    if parsed.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}")
    return device


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; anything else must name an available device."""
    check_device_name(device)
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for, but CUDA is not available here; use 'cpu' or 'auto'")
    return resolved
