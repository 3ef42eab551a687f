"""Training and evaluation of one run: a :class:`TrainConfig` in, a :class:`TrainResult` out.

Protocol (SPEC 1.2): Adam, lr 1e-4, batch 16, early stopping on the validation loss with patience, the
best epoch's weights restored before the test pass, a maximum number of epochs. Our decisions:

- Sampler parameters get their own Adam parameter group with ``sampler_lr``, by default 10x ``lr``
  (the factor the DPS authors used; SPEC 1.1): at 1e-4 the few hundred sampler weights learn too
  slowly for the selection to settle before early stopping.
- ``sampler_warmup``: for that many first epochs the sampler's parameters are frozen (it still draws
  its picks, from its initial distribution) while the backbone learns. Without it an untrained
  backbone can teach the sampler to avoid the informative frames (they raise the loss of a network
  that cannot read them yet), after which the backbone never sees them: on AdrenalMNIST3D one seed of
  three of DAS kept only slices outside the gland and stayed at the class prior; the warm-up,
  together with DAS's variance start of its base score, fixed that (details and numbers in
  :mod:`das.samplers.das_sampler`). Default 0 (end to end from the first step, as the paper); the
  profiles use 1. A warm-up as long as the run leaves the sampler untrained (with a warning).
- Seeds: ``seed`` sets the initialisation (global RNG, forked so the caller's RNG state is untouched),
  the sampler's randomness (a ``torch.Generator`` on the training device) and the data order
  (``iterate_batches(seed=seed + epoch)``). The same config on CPU gives identical numbers.
- ``compile=True`` wraps the model in ``torch.compile`` (default mode). Nothing in the training
  forward pass breaks the graph (tested with ``fullgraph=True``; only the random baseline's
  evaluation does, as it draws from its own generator), so it stays capturable by CUDA graphs.
  ``torch.compile`` cannot trace an explicit ``torch.Generator``: a compiled run draws the sampler's
  randomness from the device's global RNG instead (seeded with ``seed`` and checkpointed too), so its
  numbers differ from the eager run of the same config.
- The sampler's finite check (``Sampler.check_finite``) is off while training and evaluating: batches
  are uint8 data scaled to [0, 1], finite by construction, and the check would make the host wait for
  the device on every batch. The model handed back has it on again.
- A sampler trained with the score-function estimator returns ``Selection.log_prob``; the loss then
  gains the REINFORCE term of :func:`score_function_term` (zero otherwise), so the per-input losses
  are computed unreduced. The reported training loss is the plain mean cross-entropy.
- bf16 autocast on CUDA only; CPU trains in float32.
- A checkpoint written after every epoch (model, optimiser, history, best weights, RNG states) lets
  an interrupted run resume from its last finished epoch with the numbers of an uninterrupted run.
- BatchNorm running statistics start from the first training batch (see ``das.model.BN_MOMENTUM``).
- The last training batch is dropped when incomplete (``drop_last``) so BatchNorm never sees a batch
  of one volume; a split smaller than one batch is used whole.
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor, nn
from tqdm import tqdm

from das.augment import AUGMENTATIONS, make_augmentation
from das.checks import check_choice, check_int
from das.data import DATASETS, VolumeDataset, iterate_batches, load_dataset
from das.data.medmnist3d import MEDMNIST3D_FLAGS, check_size
from das.flops import count_flops
from das.metrics import classification_metrics, informative_hit_rate, selection_histogram
from das.model import BACKBONES, POOLS, SubsampledClassifier
from das.results import training_digest
from das.samplers import SAMPLERS, make_sampler

SAMPLER_LR_FACTOR = 10.0  # default sampler_lr = SAMPLER_LR_FACTOR * lr (DPS's choice, SPEC 1.1)

LR_SCHEDULES: tuple[str, ...] = ("constant", "step", "cosine")
SELECT_METRICS: tuple[str, ...] = ("val_loss", "val_auc", "val_balanced_accuracy")
CLASS_WEIGHTS: tuple[str, ...] = ("none", "balanced")

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
    ``compile`` wraps the model in ``torch.compile`` (its randomness: see the module docstring).

    The protocol knobs (defaults: the paper's literal protocol): ``lr_schedule`` multiplies every
    learning rate per epoch (:func:`lr_factor`); ``weight_decay`` is Adam's decoupled (AdamW) decay;
    ``augment`` names a :data:`das.augment.AUGMENTATIONS` recipe applied to training batches;
    ``class_weights="balanced"`` weights the training loss by inverse class frequency;
    ``select_metric`` is the validation metric that picks the best epoch and drives ``patience``.
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
                isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf
            ):
                raise ValueError(f"{name} must be a positive number, got {value!r}")
        if self.backbone not in BACKBONES:
            raise ValueError(f"unknown backbone {self.backbone!r}; valid backbones: {', '.join(BACKBONES)}")
        if self.pool not in POOLS:
            raise ValueError(f"unknown pool {self.pool!r}; valid pools: {', '.join(POOLS)}")
        resolve_device(self.device)

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


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; anything else must name an available device."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}") from None
    if resolved.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}")
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for, but CUDA is not available here; use 'cpu' or 'auto'")
    return resolved


class Splits(NamedTuple):
    train: VolumeDataset
    val: VolumeDataset
    test: VolumeDataset


def _cap(dataset: VolumeDataset, limit: int | None) -> VolumeDataset:
    """At most ``limit`` items: a random subset drawn with a fixed seed (the same for every method and
    run seed, so capped runs stay comparable), kept in the dataset's order."""
    if limit is None or len(dataset) <= limit:
        return dataset
    keep = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(0))[:limit].sort().values
    return dataset.subset(keep)


def load_splits(config: TrainConfig) -> Splits:
    """Train, val and test of ``config.dataset``, capped by ``max_train_samples``/``max_eval_samples``.

    Generated datasets are drawn with the data seed 0 (``dataset_options`` may override it): every
    run seed trains on the same data, as with the fixed MedMNIST splits.
    """
    options = dict(config.dataset_options)
    seed = options.pop("seed", 0)
    splits = [
        load_dataset(
            config.dataset,
            split,
            size=config.size,
            root=config.data_dir,
            download=config.download,
            seed=seed,
            **options,
        )
        for split in ("train", "val", "test")
    ]
    return Splits(
        _cap(splits[0], config.max_train_samples),
        _cap(splits[1], config.max_eval_samples),
        _cap(splits[2], config.max_eval_samples),
    )


def build_model(config: TrainConfig, num_frames: int, num_classes: int, in_channels: int) -> SubsampledClassifier:
    """The classifier of ``config`` (initialised from the global RNG; :func:`train` seeds it)."""
    options = dict(config.sampler_options)
    if config.method == "random":
        options.setdefault("seed", config.seed)  # its evaluation draws vary with the run seed too
    sampler = make_sampler(config.method, num_frames, config.num_selected(num_frames), **options)
    return SubsampledClassifier(sampler, num_classes, in_channels, backbone=config.backbone, pool=config.pool)


@dataclass
class Evaluation:
    """One pass over a split: mean cross-entropy, metrics, class probabilities, labels and the frame
    positions chosen for every input (``indices [N, k]``). On synthetic data (whose frames carrying the
    label are known) ``metrics`` also holds ``informative_hit_rate``: the fraction of inputs for which
    a selected frame carries the label (a static sampler's is fixed by chance)."""

    loss: float
    metrics: dict[str, float]
    probs: np.ndarray
    labels: np.ndarray
    indices: np.ndarray

    def histogram(self, num_frames: int) -> list[int]:
        return selection_histogram(self.indices, num_frames)


def _autocast(device: torch.device):
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")


@torch.no_grad()
def evaluate(
    model: nn.Module, dataset: VolumeDataset, *, batch_size: int = 16, device: torch.device | str = "cpu"
) -> Evaluation:
    """Evaluate ``model`` (switched to eval mode: deterministic selection) on all of ``dataset``."""
    device = torch.device(device)
    model.eval()
    losses, probs, labels, indices = [], [], [], []
    for x, y in iterate_batches(dataset, batch_size, shuffle=False, device=device):
        with _autocast(device):
            logits, selection = model(x)
        logits = logits.float()
        losses.append(nn.functional.cross_entropy(logits, y, reduction="sum"))
        probs.append(logits.softmax(dim=1))
        labels.append(y)
        indices.append(selection.indices)
    probs_np = torch.cat(probs).cpu().numpy()
    labels_np = torch.cat(labels).cpu().numpy()
    indices_np = torch.cat(indices).cpu().numpy()
    metrics = classification_metrics(labels_np, probs_np)
    if dataset.informative is not None:
        metrics["informative_hit_rate"] = informative_hit_rate(indices_np, dataset.informative.numpy())
    loss = float(torch.stack(losses).sum()) / len(dataset)
    return Evaluation(loss, metrics, probs_np, labels_np, indices_np)


@dataclass
class TrainResult:
    """What a run produced. :meth:`record` is the JSON-ready part; ``model`` holds the best weights.
    ``test_predictions`` holds the test labels ``[N]`` and class probabilities ``[N, C]``, so intervals
    can be bootstrapped over test volumes later."""

    config: TrainConfig
    num_frames: int
    k: int
    metrics: dict[str, float]
    val_metrics: dict[str, float]
    epochs_run: int
    best_epoch: int
    stopped_early: bool
    history: list[dict[str, float]]
    timings: dict[str, float]
    flops_per_volume: int
    selection_histogram: list[int]
    device: str
    threads: int
    test_predictions: dict[str, list] = field(repr=False)
    model: SubsampledClassifier = field(repr=False)

    def record(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "model"}
        out["config"] = self.config.to_dict()
        out["sampler_lr"] = self.config.resolved_sampler_lr
        return out


@contextmanager
def _run_context(config: TrainConfig, device: torch.device) -> Iterator[None]:
    """Fork the global RNG (seeded with ``config.seed``) and apply ``num_threads`` for the run only."""
    previous_threads = torch.get_num_threads()
    devices = (
        [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else []
    )
    try:
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(config.seed)
            if config.num_threads is not None:
                torch.set_num_threads(config.num_threads)
            yield
    finally:
        torch.set_num_threads(previous_threads)


def _rng_state(device: torch.device, generator: torch.Generator) -> dict[str, Tensor]:
    state = {"torch": torch.get_rng_state(), "generator": generator.get_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict[str, Tensor], device: torch.device, generator: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    generator.set_state(state["generator"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def _cpu_state(model: nn.Module) -> dict[str, Tensor]:
    return {name: value.detach().to("cpu", copy=True) for name, value in model.state_dict().items()}


def resume_differences(config: TrainConfig, stored: dict[str, Any], epochs_done: int) -> list[str]:
    """Why a checkpoint of the config dict ``stored``, holding ``epochs_done`` epochs, cannot continue
    as ``config``: the fields that differ, outside :data:`RESUMABLE_CHANGES`. ``epochs`` may change
    only under a constant learning rate (a schedule depends on it) and never below the epochs done
    (the run would be labelled shorter than it is)."""
    differ = config.differences(stored, RESUMABLE_CHANGES)
    if (
        "epochs" not in differ
        and stored.get("epochs") != config.epochs
        and (config.lr_schedule != "constant" or epochs_done > config.epochs)
    ):
        differ = sorted([*differ, "epochs"])
    return differ


class DamagedCheckpointWarning(UserWarning):
    """A checkpoint could not be read; it was set aside (renamed ``*.damaged``) and the run starts over."""


def read_checkpoint(path: Path) -> dict[str, Any] | None:
    """The checkpoint at ``path``, or ``None`` when there is none. A file that cannot be read as a
    checkpoint (truncated, garbled) is renamed to ``<name>.damaged`` with a
    :class:`DamagedCheckpointWarning` naming it, and ``None`` is returned: the run starts over."""
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
        if not isinstance(state, dict) or not {"config", "epoch", "model", "optimizer"} <= set(state):
            raise ValueError("not a training checkpoint")
    except Exception as error:  # noqa: BLE001 -- any unreadable file is set aside, not trusted
        aside = path.with_name(path.name + ".damaged")
        path.replace(aside)
        warnings.warn(
            f"checkpoint {path} is damaged ({type(error).__name__}: {str(error)[:200]}); moved to "
            f"{aside} and the run starts over",
            DamagedCheckpointWarning,
            stacklevel=2,
        )
        return None
    return state


def _checkpoint_differences(state: dict[str, Any], config: TrainConfig) -> list[str]:
    differ = resume_differences(config, state["config"], state["epoch"])
    if state.get("training_digest") != training_digest():
        differ.append("training code")
    return differ


def checkpoint_differences(path: Path, config: TrainConfig) -> list[str]:
    """Why the checkpoint at ``path`` cannot continue as ``config`` (see :func:`resume_differences`;
    also when the training code changed since it was written); empty when :func:`train` can resume
    from it or there is no readable checkpoint."""
    state = read_checkpoint(path)
    return [] if state is None else _checkpoint_differences(state, config)


def _load_checkpoint(path: Path, config: TrainConfig) -> dict[str, Any] | None:
    state = read_checkpoint(path)
    if state is None:
        return None
    differ = _checkpoint_differences(state, config)
    if differ:
        raise ValueError(
            f"checkpoint {path} belongs to a different config ({', '.join(differ)} differ); "
            "delete it or rerun with force to start over"
        )
    return state


def _save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write ``state`` to ``path`` atomically (a temporary file of its own in the same folder, then a
    rename), so a crash mid-write leaves the previous checkpoint intact."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            torch.save({**state, "training_digest": training_digest()}, file)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _flops_per_volume(model: SubsampledClassifier, volume: Tensor) -> int:
    """Inference FLOPs for one volume (sampler + backbone on its k frames + head), eval mode."""
    model.eval()
    return count_flops(model, volume.unsqueeze(0))


def score_function_term(losses: Tensor, log_prob: Tensor | None) -> Tensor | float:
    """The REINFORCE surrogate of a sampler trained with the score-function estimator, else 0.

    ``mean_i (loss_i - b_i) * log_prob_i`` with the losses detached: its gradient is an unbiased
    estimate of the gradient of the expected loss with respect to the sampler's parameters, whatever
    the backbone does with the frames. ``b_i`` is the leave-one-out mean of the other losses of the
    batch: a baseline independent of input i's own draw, so it lowers the variance without a bias.
    Its value is zero on average; only its gradient matters.
    """
    if log_prob is None:
        return 0.0
    losses = losses.detach()
    count = losses.shape[0]
    baseline = (losses.sum() - losses) / (count - 1) if count > 1 else torch.zeros_like(losses)
    return ((losses - baseline) * log_prob).mean()


def lr_factor(schedule: str, epoch: int, epochs: int) -> float:
    """The multiplier of every base learning rate during epoch ``epoch`` (0-based) of ``epochs``.

    ``"constant"``: 1. ``"step"``: MedMNIST's 3D recipe, x0.1 from 50% of the epochs and x0.01 from
    75%. ``"cosine"``: ``(1 + cos(pi * epoch / epochs)) / 2``.
    """
    check_choice("lr_schedule", schedule, LR_SCHEDULES)
    if schedule == "step":
        return 0.1 ** ((epoch >= 0.5 * epochs) + (epoch >= 0.75 * epochs))
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * epoch / epochs))
    return 1.0


def class_weight_tensor(config: TrainConfig, labels: Tensor, num_classes: int) -> Tensor | None:
    """Cross-entropy class weights: ``None`` (``class_weights="none"``), or for ``"balanced"``
    ``N / (C * n_c)`` from the training labels (a class absent from them gets weight 0)."""
    if config.class_weights == "none":
        return None
    counts = torch.bincount(labels.cpu(), minlength=num_classes).to(torch.float32)
    return torch.where(counts > 0, counts.sum() / (num_classes * counts.clamp_min(1)), torch.zeros(()))


def selection_score(metric: str, loss: float, metrics: dict[str, float]) -> float:
    """The validation score the best epoch maximises: minus the loss, or the metric itself (a NaN
    metric, e.g. an undefined AUC, never counts as an improvement)."""
    value = -loss if metric == "val_loss" else metrics[metric.removeprefix("val_")]
    return value if value is not None and math.isfinite(value) else -math.inf


def train_batches(num_volumes: int, batch_size: int) -> int:
    """Training batches per epoch: the last incomplete batch is dropped (``drop_last``), unless the
    split is smaller than one batch and is used whole."""
    return num_volumes // batch_size if num_volumes > batch_size else 1


def _progress_disabled(config: TrainConfig) -> bool:
    return config.quiet or not sys.stderr.isatty()


def train(
    config: TrainConfig,
    splits: Splits | None = None,
    *,
    checkpoint: str | Path | None = None,
    on_epoch: Callable[[dict[str, float]], None] | None = None,
) -> TrainResult:
    """Train ``config`` and test its best epoch. ``splits`` defaults to :func:`load_splits`.

    With ``checkpoint`` (a file path), the state after every epoch is saved there and, when the file
    already exists for the same config (``epochs`` may differ), training resumes after its last
    epoch. The file is left in place; the caller removes it once the result is stored. ``on_epoch``
    is called with each finished epoch's history entry (progress reports).
    """
    start = time.perf_counter()
    device = resolve_device(config.device)
    checkpoint = Path(checkpoint) if checkpoint is not None else None
    saved = _load_checkpoint(checkpoint, config) if checkpoint is not None else None
    data_start = time.perf_counter()
    splits = splits if splits is not None else load_splits(config)
    data_s = time.perf_counter() - data_start
    train_set = splits.train
    num_frames = train_set.num_frames
    with _run_context(config, device):
        model = build_model(config, num_frames, train_set.num_classes, train_set.in_channels).to(device)
        model.sampler.check_finite = False  # uint8 data: finite by construction (see the module docstring)
        generator = torch.Generator(device=device).manual_seed(config.seed)
        step_generator = None if config.compile else generator  # None: the global RNG, which compiles
        sampler_params = list(model.sampler.parameters())
        sampler_ids = {id(p) for p in sampler_params}
        groups = [{"params": [p for p in model.parameters() if id(p) not in sampler_ids], "lr": config.lr}]
        if sampler_params:
            groups.append({"params": sampler_params, "lr": config.resolved_sampler_lr})
        base_lrs = [group["lr"] for group in groups]
        optimizer = torch.optim.Adam(
            groups, weight_decay=config.weight_decay, decoupled_weight_decay=config.weight_decay > 0
        )
        forward = torch.compile(model) if config.compile else model
        augment = make_augmentation(config.augment)
        weight = class_weight_tensor(config, train_set.labels, train_set.num_classes)
        weight = weight.to(device) if weight is not None else None

        history: list[dict[str, float]] = []
        best_state, best_epoch, best_score, bad_epochs = _cpu_state(model), 0, -math.inf, 0
        train_s, frames_seen, elapsed_before, epoch = 0.0, 0, 0.0, 0
        if saved is None:
            first_x, _ = next(
                iterate_batches(train_set, config.batch_size, shuffle=True, seed=config.seed, device=device)
            )
            with _autocast(device):
                model.init_batchnorm(first_x, generator)
        else:
            model.load_state_dict(saved["model"])
            optimizer.load_state_dict(saved["optimizer"])
            _set_rng_state(saved["rng"], device, generator)
            history, best_state, best_epoch = saved["history"], saved["best_state"], saved["best_epoch"]
            best_score = saved["best_score"] if "best_score" in saved else -saved["best_loss"]
            bad_epochs, epoch = saved["bad_epochs"], saved["epoch"]
            train_s, frames_seen, elapsed_before = saved["train_s"], saved["frames_seen"], saved["elapsed_s"]

        def stop() -> bool:
            return config.patience is not None and bad_epochs >= config.patience

        if sampler_params and config.sampler_warmup >= config.epochs:
            warnings.warn(
                f"sampler_warmup={config.sampler_warmup} >= epochs={config.epochs}: the sampler "
                "stays frozen for the whole run",
                stacklevel=2,
            )
        quiet = _progress_disabled(config)
        drop_last = len(train_set) > config.batch_size  # see train_batches
        epochs_bar = tqdm(
            total=config.epochs,
            initial=min(epoch, config.epochs),
            desc=f"{config.dataset}/{config.method}",
            unit="epoch",
            disable=quiet,
        )
        while epoch < config.epochs and not stop():
            model.train()
            for parameter in sampler_params:  # frozen during the warm-up; Adam skips them (no grad)
                parameter.requires_grad_(epoch >= config.sampler_warmup)
            for group, base_lr in zip(optimizer.param_groups, base_lrs):
                group["lr"] = base_lr * lr_factor(config.lr_schedule, epoch, config.epochs)
            epoch_start, loss_sum, seen = time.perf_counter(), torch.zeros((), device=device), 0
            batches = iterate_batches(
                train_set, config.batch_size, shuffle=True, seed=config.seed + epoch, device=device, drop_last=drop_last
            )
            for x, y in tqdm(
                batches,
                total=train_batches(len(train_set), config.batch_size),
                desc=f"epoch {epoch + 1}",
                unit="batch",
                leave=False,
                disable=quiet,
            ):
                if augment is not None:
                    x = augment(x)
                with _autocast(device):
                    logits, selection = forward(x, step_generator)
                losses = nn.functional.cross_entropy(logits.float(), y, reduction="none")
                loss = losses.mean()  # reported: the plain mean cross-entropy
                if weight is not None:
                    losses = losses * weight[y]  # optimised: the class-weighted one
                optimizer.zero_grad(set_to_none=True)
                (losses.mean() + score_function_term(losses, selection.log_prob)).backward()
                optimizer.step()
                loss_sum += loss.detach() * y.shape[0]
                seen += y.shape[0]
                frames_seen += y.shape[0] * selection.indices.shape[1]
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            epoch_train_s = time.perf_counter() - epoch_start
            train_s += epoch_train_s
            val = evaluate(forward, splits.val, batch_size=config.batch_size, device=device)
            epoch += 1
            score = selection_score(config.select_metric, val.loss, val.metrics)
            if best_epoch == 0 or score > best_score:
                best_state, best_epoch, best_score, bad_epochs = _cpu_state(model), epoch, score, 0
            else:
                bad_epochs += 1
            history.append(
                {
                    "epoch": epoch,
                    "lr": optimizer.param_groups[0]["lr"],
                    "train_loss": float(loss_sum) / max(seen, 1),
                    "val_loss": val.loss,
                    **{f"val_{name}": value for name, value in val.metrics.items()},
                    "train_s": epoch_train_s,
                }
            )
            if checkpoint is not None:
                _save_checkpoint(
                    checkpoint,
                    {
                        "config": config.to_dict(),
                        "epoch": epoch,
                        "model": model.state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "rng": _rng_state(device, generator),
                        "history": history,
                        "best_state": best_state,
                        "best_epoch": best_epoch,
                        "best_score": best_score,
                        "bad_epochs": bad_epochs,
                        "train_s": train_s,
                        "frames_seen": frames_seen,
                        "elapsed_s": elapsed_before + time.perf_counter() - start,
                    },
                )
            epochs_bar.update(1)
            epochs_bar.set_postfix(val_loss=f"{val.loss:.3f}", best=best_epoch)
            if on_epoch is not None:
                on_epoch(history[-1])
        epochs_bar.close()
        for parameter in sampler_params:
            parameter.requires_grad_(True)

        model.load_state_dict(best_state)
        eval_start = time.perf_counter()
        val = evaluate(forward, splits.val, batch_size=config.batch_size, device=device)
        test = evaluate(forward, splits.test, batch_size=config.batch_size, device=device)
        eval_s = time.perf_counter() - eval_start
        flops = _flops_per_volume(model, splits.test[0][0].to(device))
        threads = torch.get_num_threads()
        model.sampler.check_finite = True  # the model handed back may see inputs from anywhere
    timings = {
        "wall_s": elapsed_before + time.perf_counter() - start,
        "data_s": data_s,
        "train_s": train_s,
        "eval_s": eval_s,
        "throughput_frames_per_s": frames_seen / train_s if train_s > 0 else float("nan"),
    }
    return TrainResult(
        config=config,
        num_frames=num_frames,
        k=model.sampler.k,
        metrics=test.metrics,
        val_metrics=val.metrics,
        epochs_run=epoch,
        best_epoch=best_epoch,
        stopped_early=stop(),
        history=history,
        timings=timings,
        flops_per_volume=flops,
        selection_histogram=test.histogram(num_frames),
        device=str(device),
        threads=threads,
        test_predictions={"labels": test.labels.tolist(), "probs": test.probs.tolist()},
        model=model,
    )
