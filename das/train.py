"""Training and evaluation of one run: a :class:`~das.config.TrainConfig` in, a :class:`TrainResult` out.

The loop (:func:`train`): every epoch trains on the training split, scores the validation split, and
keeps the weights of the best epoch by ``select_metric`` (early stopping after ``patience`` epochs
without a better one); the test split is read once, with those weights. Our decisions, each shown in
the book's chapters:

- Sampler parameters get their own Adam group, at ``sampler_lr`` (10x ``lr`` by default, the DPS
  authors' factor), and stay frozen for the first ``sampler_warmup`` epochs, so that an untrained
  backbone cannot teach the sampler to avoid the frames it cannot read yet (ablations chapter).
- Seeds: ``seed`` sets the initialisation (global RNG, forked so the caller's state is untouched),
  the sampler's randomness (a generator on the training device) and the data order. The same config
  on one machine gives identical numbers; ``compile=True`` draws the sampler's randomness from the
  device's global RNG instead (``torch.compile`` cannot trace a generator), so its numbers differ.
- The score-function estimator adds the REINFORCE term of :func:`score_function_term`; the reported
  training loss is always the plain mean cross-entropy.
- bf16 autocast on CUDA, float32 on CPU (:func:`autocast`); batches are uint8 data scaled to [0, 1],
  so the sampler's finite check (a host-device sync) is off while training.
- BatchNorm statistics start from the first batch (:data:`das.model.BN_MOMENTUM`); the last
  incomplete batch is dropped so BatchNorm never sees a batch of one.
- A checkpoint after every epoch (:mod:`das.checkpoint`) lets an interrupted run resume with the
  numbers of an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import math
import sys
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

from das.augment import make_augmentation
from das.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from das.checks import check_choice
from das.config import LR_SCHEDULES, TrainConfig, resolve_device
from das.data import VolumeDataset, iterate_batches, load_dataset
from das.flops import count_flops
from das.metrics import balanced_threshold, classification_metrics, informative_hit_rate, selection_histogram
from das.model import SubsampledClassifier
from das.samplers import make_sampler


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


def check_splits(splits: Splits) -> None:
    """``ValueError`` before any training when the splits cannot make a run: an empty split, or
    validation/test volumes of another shape or class set than the training volumes."""
    for name in ("train", "val", "test"):
        if len(getattr(splits, name)) == 0:
            raise ValueError(f"the {name} split is empty: a run needs volumes in train, val and test")
    shape = tuple(splits.train.images.shape[1:])
    for name in ("val", "test"):
        other = getattr(splits, name)
        if tuple(other.images.shape[1:]) != shape:
            raise ValueError(
                f"{name} volumes are [T, C, H, W] = {tuple(other.images.shape[1:])} but training volumes "
                f"are {shape}: every split must have the same frames and size"
            )
        if other.num_classes != splits.train.num_classes:
            raise ValueError(f"{name} has {other.num_classes} classes, training has {splits.train.num_classes}")


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


def autocast(device: torch.device):
    """bf16 autocast on CUDA, nothing on CPU (which trains in float32): the one mixed-precision policy."""
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")


@torch.no_grad()
def evaluate(
    model: nn.Module,
    dataset: VolumeDataset,
    *,
    batch_size: int = 16,
    device: torch.device | str = "cpu",
    static_shapes: bool = False,
) -> Evaluation:
    """Evaluate ``model`` (switched to eval mode: deterministic selection) on all of ``dataset``.

    ``static_shapes`` pads the last batch to ``batch_size`` (with copies of its first volume, whose
    outputs are dropped), so a captured graph (CUDA graphs) sees one shape; the numbers are the same.
    """
    device = torch.device(device)
    model.eval()
    losses, probs, labels, indices = [], [], [], []
    for x, y in iterate_batches(dataset, batch_size, shuffle=False, device=device):
        size = y.shape[0]
        if static_shapes and size < batch_size:
            x = torch.cat([x, x[:1].expand(batch_size - size, *x.shape[1:])])
        with autocast(device):
            logits, selection = model(x)
        logits = logits[:size].float()
        losses.append(nn.functional.cross_entropy(logits, y, reduction="sum"))
        probs.append(logits.softmax(dim=1))
        labels.append(y)
        indices.append(selection.indices[:size])
    probs_np = torch.cat(probs).cpu().numpy()  # the one copy to the host
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
    split_sizes: dict[str, int]
    test_predictions: dict[str, list] = field(repr=False)
    decision_threshold: float | None
    model: SubsampledClassifier = field(repr=False)

    def record(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "model"}
        out["config"] = self.config.to_dict()
        out["sampler_lr"] = self.config.resolved_sampler_lr
        return out


class TrainingDiverged(ValueError):
    """The training loss became NaN or infinite; the message names the epoch and what to change."""


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


def _cpu_state(model: nn.Module) -> dict[str, Tensor]:
    return {name: value.detach().to("cpu", copy=True) for name, value in model.state_dict().items()}


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


@dataclass
class _Progress:
    """What a run carries from epoch to epoch, and what its checkpoint holds besides the model and
    the optimiser."""

    epoch: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    best_state: dict[str, Tensor] = field(default_factory=dict)
    best_epoch: int = 0
    best_score: float = -math.inf
    bad_epochs: int = 0
    train_s: float = 0.0
    frames_seen: int = 0
    elapsed_s: float = 0.0

    def stopped(self, patience: int | None) -> bool:
        return patience is not None and self.bad_epochs >= patience

    def update(self, model: nn.Module, score: float) -> None:
        """A finished epoch with validation ``score``: keep its weights if it is the best so far."""
        self.epoch += 1
        if self.best_epoch == 0 or score > self.best_score:
            self.best_state, self.best_epoch, self.best_score, self.bad_epochs = _cpu_state(model), self.epoch, score, 0
        else:
            self.bad_epochs += 1

    def log(self, lr: float, train_loss: float, val: Evaluation, epoch_s: float, frames: int) -> None:
        """Add the finished epoch's entry to the history and its cost to the totals."""
        self.train_s, self.frames_seen = self.train_s + epoch_s, self.frames_seen + frames
        self.history.append(
            {
                "epoch": self.epoch,
                "lr": lr,
                "train_loss": train_loss,
                "val_loss": val.loss,
                **{f"val_{name}": value for name, value in val.metrics.items()},
                "train_s": epoch_s,
            }
        )

    @classmethod
    def from_checkpoint(cls, saved: dict[str, Any]) -> _Progress:
        fields = {f.name for f in dataclasses.fields(cls)} - {"best_score", "elapsed_s"}
        best = saved["best_score"] if "best_score" in saved else -saved["best_loss"]  # older checkpoints
        return cls(**{name: saved[name] for name in fields}, best_score=best, elapsed_s=saved["elapsed_s"])


class TrainStep:
    """One optimisation step on a batch, and one epoch of them: augmentation, forward pass, the
    (class-weighted) loss with the estimator's extra term, backward pass, optimiser step.

    With ``compile``, the forward pass and the loss run as one ``torch.compile``d function (its
    backward pass through the compiled graph); with ``compile_mode="reduce-overhead"`` on a GPU both
    are captured as CUDA graphs. The loss is accumulated on the device and read once per epoch.
    """

    def __init__(
        self,
        config: TrainConfig,
        model: SubsampledClassifier,
        train_set: VolumeDataset,
        device: torch.device,
        generator: torch.Generator,
    ) -> None:
        self.config, self.model, self.train_set, self.device = config, model, train_set, device
        self.sampler_params = list(model.sampler.parameters())
        sampler_ids = {id(p) for p in self.sampler_params}
        groups = [{"params": [p for p in model.parameters() if id(p) not in sampler_ids], "lr": config.lr}]
        if self.sampler_params:
            groups.append({"params": self.sampler_params, "lr": config.resolved_sampler_lr})
        self.base_lrs = [group["lr"] for group in groups]
        self.optimizer = torch.optim.Adam(
            groups, weight_decay=config.weight_decay, decoupled_weight_decay=config.weight_decay > 0
        )
        if config.compile:
            self.forward = torch.compile(model, mode=config.compile_mode)
            self.objective = torch.compile(self._objective, mode=config.compile_mode)
        else:
            self.forward, self.objective = model, self._objective
        self.rng = generator  # checkpointed whether or not the step draws from it
        self.generator = None if config.compile else generator  # None: the global RNG, which compiles
        self.augment = make_augmentation(config.augment)
        weight = class_weight_tensor(config, train_set.labels, train_set.num_classes)
        self.weight = weight.to(device) if weight is not None else None

    def _objective(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor, int]:
        """The value to minimise, the batch's summed cross-entropy (reported) and the frames it used."""
        with autocast(self.device):
            logits, selection = self.model(x, self.generator)
        losses = nn.functional.cross_entropy(logits.float(), y, reduction="none")
        reported = losses.detach().mean() * y.shape[0]  # the plain cross-entropy, summed over the batch
        if self.weight is not None:
            losses = losses * self.weight[y]  # optimised: the class-weighted one
        objective = losses.mean() + score_function_term(losses, selection.log_prob)
        return objective, reported, selection.indices.shape[1]

    def __call__(self, x: Tensor, y: Tensor) -> tuple[Tensor, int]:
        """One step; the batch's summed cross-entropy (on the device, no sync) and frames seen."""
        if self.augment is not None:
            x = self.augment(x)
        objective, reported, k = self.objective(x, y)
        self.optimizer.zero_grad(set_to_none=True)
        objective.backward()
        self.optimizer.step()
        return reported, y.shape[0] * k

    def epoch(self, epoch: int, quiet: bool) -> tuple[float, float, int]:
        """Epoch ``epoch`` (0-based) over the shuffled training split: ``(mean training loss, seconds,
        frames through the backbone)``."""
        config = self.config
        self.model.train()
        for parameter in self.sampler_params:  # frozen during the warm-up; Adam skips them (no grad)
            parameter.requires_grad_(epoch >= config.sampler_warmup)
        for group, base_lr in zip(self.optimizer.param_groups, self.base_lrs):
            group["lr"] = base_lr * lr_factor(config.lr_schedule, epoch, config.epochs)
        start, loss_sum, seen, frames = time.perf_counter(), torch.zeros((), device=self.device), 0, 0
        drop_last = len(self.train_set) > config.batch_size  # see train_batches
        batches = iterate_batches(
            self.train_set,
            config.batch_size,
            shuffle=True,
            seed=config.seed + epoch,
            device=self.device,
            drop_last=drop_last,
        )
        total = train_batches(len(self.train_set), config.batch_size)
        for x, y in tqdm(batches, total=total, desc=f"epoch {epoch + 1}", unit="batch", leave=False, disable=quiet):
            batch_loss, batch_frames = self(x, y)
            loss_sum += batch_loss
            seen += y.shape[0]
            frames += batch_frames
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        mean_loss = float(loss_sum) / max(seen, 1)  # the one host read of the epoch
        if not math.isfinite(mean_loss):
            raise TrainingDiverged(
                f"training loss became {mean_loss} in epoch {epoch + 1} of {config.method} "
                f"(lr {config.lr:g}, sampler lr {config.resolved_sampler_lr:g}); lower the learning rate"
            )
        return mean_loss, time.perf_counter() - start, frames


def train(
    config: TrainConfig,
    splits: Splits | None = None,
    *,
    checkpoint: str | Path | None = None,
    on_epoch: Callable[[dict[str, float]], None] | None = None,
) -> TrainResult:
    """Train ``config`` and test its best epoch. ``splits`` defaults to :func:`load_splits`.

    With ``checkpoint`` (a file path), the state after every epoch is saved there and, when the file
    already exists for the same config, training resumes after its last epoch (see
    :func:`das.checkpoint.resume_differences`). The file is left in place; the caller removes it once
    the result is stored. ``on_epoch`` is called with each finished epoch's history entry.
    """
    start = time.perf_counter()
    device = resolve_device(config.device)
    checkpoint = Path(checkpoint) if checkpoint is not None else None
    saved = load_checkpoint(checkpoint, config) if checkpoint is not None else None
    data_start = time.perf_counter()
    splits = splits if splits is not None else load_splits(config)
    data_s = time.perf_counter() - data_start
    check_splits(splits)
    with _run_context(config, device):
        model, step, progress = _start(config, splits, device, saved)
        quiet = config.quiet or not sys.stderr.isatty()
        initial, desc = min(progress.epoch, config.epochs), f"{config.dataset}/{config.method}"
        bar = tqdm(total=config.epochs, initial=initial, desc=desc, unit="epoch", disable=quiet)
        while progress.epoch < config.epochs and not progress.stopped(config.patience):
            train_loss, epoch_s, frames = step.epoch(progress.epoch, quiet)
            val = evaluate(
                step.forward, splits.val, batch_size=config.batch_size, device=device, static_shapes=config.compile
            )
            progress.update(model, selection_score(config.select_metric, val.loss, val.metrics))
            progress.log(step.optimizer.param_groups[0]["lr"], train_loss, val, epoch_s, frames)
            if checkpoint is not None:
                _save(checkpoint, config, step, progress, elapsed_s=time.perf_counter() - start)
            bar.update(1)
            bar.set_postfix(val_loss=f"{val.loss:.3f}", best=progress.best_epoch)
            if on_epoch is not None:
                on_epoch(progress.history[-1])
        bar.close()
        for parameter in step.sampler_params:
            parameter.requires_grad_(True)
        return _finish(config, model, step, splits, progress, device, start, data_s)


def _start(
    config: TrainConfig, splits: Splits, device: torch.device, saved: dict[str, Any] | None
) -> tuple[SubsampledClassifier, TrainStep, _Progress]:
    """The model, its training step and its progress: fresh (batch-norm statistics initialised on the
    first shuffled batch) or restored from the checkpoint ``saved``."""
    model = build_model(config, splits.train.num_frames, splits.train.num_classes, splits.train.in_channels)
    model = model.to(device)
    model.sampler.check_finite = False  # uint8 data: finite by construction
    generator = torch.Generator(device=device).manual_seed(config.seed)
    step = TrainStep(config, model, splits.train, device, generator)
    progress = _Progress(best_state=_cpu_state(model))
    if saved is None:
        first_x, _ = next(
            iterate_batches(splits.train, config.batch_size, shuffle=True, seed=config.seed, device=device)
        )
        with autocast(device):
            model.init_batchnorm(first_x, generator)
    else:
        model.load_state_dict(saved["model"])
        step.optimizer.load_state_dict(saved["optimizer"])
        set_rng_state(saved["rng"], device, generator)
        progress = _Progress.from_checkpoint(saved)
    if step.sampler_params and config.sampler_warmup >= config.epochs:
        warnings.warn(
            f"sampler_warmup={config.sampler_warmup} >= epochs={config.epochs}: the sampler "
            "stays frozen for the whole run",
            stacklevel=3,
        )
    return model, step, progress


def _save(checkpoint: Path, config: TrainConfig, step: TrainStep, progress: _Progress, elapsed_s: float) -> None:
    """Everything :func:`_start` needs to resume after the last finished epoch."""
    state = dataclasses.asdict(progress) | {"elapsed_s": progress.elapsed_s + elapsed_s}
    save_checkpoint(
        checkpoint,
        {
            **state,
            "config": config.to_dict(),
            "model": step.model.state_dict(),
            "optimizer": step.optimizer.state_dict(),
            "rng": rng_state(step.device, step.rng),
            "device_type": step.device.type,
            "threads": torch.get_num_threads(),
        },
    )


def _finish(
    config: TrainConfig,
    model: SubsampledClassifier,
    step: TrainStep,
    splits: Splits,
    progress: _Progress,
    device: torch.device,
    start: float,
    data_s: float,
) -> TrainResult:
    """The test pass with the best epoch's weights, and the result."""
    model.load_state_dict(progress.best_state)
    eval_start = time.perf_counter()
    val = evaluate(step.forward, splits.val, batch_size=config.batch_size, device=device, static_shapes=config.compile)
    test = evaluate(
        step.forward, splits.test, batch_size=config.batch_size, device=device, static_shapes=config.compile
    )
    eval_s = time.perf_counter() - eval_start
    threshold = None
    if config.threshold == "validation" and val.probs.shape[1] == 2:  # multi-class: arg-max
        threshold = balanced_threshold(val.labels, val.probs)
        val.metrics.update(classification_metrics(val.labels, val.probs, threshold))
        test.metrics.update(classification_metrics(test.labels, test.probs, threshold))
    flops = _flops_per_volume(model, splits.test[0][0].to(device))
    model.sampler.check_finite = True  # the model handed back may see inputs from anywhere
    train_s = progress.train_s
    timings = {
        "wall_s": progress.elapsed_s + time.perf_counter() - start,
        "data_s": data_s,
        "train_s": train_s,
        "eval_s": eval_s,
        "throughput_frames_per_s": progress.frames_seen / train_s if train_s > 0 else float("nan"),
    }
    return TrainResult(
        config=config,
        num_frames=splits.train.num_frames,
        k=model.sampler.k,
        metrics=test.metrics,
        val_metrics=val.metrics,
        epochs_run=progress.epoch,
        best_epoch=progress.best_epoch,
        stopped_early=progress.stopped(config.patience) and progress.epoch < config.epochs,
        history=progress.history,
        timings=timings,
        flops_per_volume=flops,
        selection_histogram=test.histogram(splits.train.num_frames),
        device=str(device),
        threads=torch.get_num_threads(),
        split_sizes={name: len(getattr(splits, name)) for name in ("train", "val", "test")},
        test_predictions={"labels": test.labels.tolist(), "probs": test.probs.tolist()},
        decision_threshold=threshold,
        model=model,
    )
