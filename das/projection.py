"""How long a whole profile (or any list of runs) would take on this machine, before running it.

For every distinct cost among the runs (method, ratio, volume shape, ...), :func:`measure_step`
trains the real model with the real trainer (:func:`das.train.train`) for two short epochs on
synthetic volumes of the runs' shape (values do not change the cost) and keeps the second, warm
epoch: seconds per training step and per evaluation batch. :func:`project_runs` multiplies them by each run's batch counts, taken from the dataset's
official split sizes (MedMNIST3D: ``medmnist.INFO``, so the files need not be present) or from the
generated splits. The figure is an upper bound: every run goes to its last epoch (early stopping can
only shorten it) and one-off costs (loading data, ``torch.compile``'s first call) are left out.

``python -m das project --profile paper`` writes ``results/bench/projection-paper.json``.
"""

from __future__ import annotations

import dataclasses
import math
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import medmnist
import torch

from das.bench import environment
from das.data import VolumeDataset
from das.data.medmnist3d import MEDMNIST3D_FLAGS
from das.data.synthetic import make_synthetic_volumes
from das.metrics import UndefinedAUCWarning
from das.results import write_json_atomic
from das.train import Splits, TrainConfig, load_splits, resolve_device, train


@dataclasses.dataclass(frozen=True)
class SplitShape:
    """What a run's cost depends on: split sizes (after the config's caps) and the volume shape."""

    train: int
    val: int
    test: int
    num_frames: int
    in_channels: int
    num_classes: int


def split_shape(config: TrainConfig) -> SplitShape:
    """The split sizes and volume shape of ``config``'s dataset, capped by ``max_*_samples``."""
    if config.dataset in MEDMNIST3D_FLAGS:
        info = medmnist.INFO[config.dataset]
        sizes = info["n_samples"]
        # MedMNIST3D volumes are cubes of one channel: T = H = W = size.
        shape = (sizes["train"], sizes["val"], sizes["test"], config.size, 1, len(info["label"]))
    else:
        splits = load_splits(dataclasses.replace(config, max_train_samples=None, max_eval_samples=None))
        shape = (len(splits.train), len(splits.val), len(splits.test), splits.train.num_frames,
                 splits.train.in_channels, splits.train.num_classes)
    train_n, val_n, test_n, *rest = shape
    return SplitShape(_capped(train_n, config.max_train_samples), _capped(val_n, config.max_eval_samples),
                      _capped(test_n, config.max_eval_samples), *rest)


def _capped(n: int, limit: int | None) -> int:
    return n if limit is None else min(n, limit)


def measure_step(config: TrainConfig, shape: SplitShape, steps: int = 8) -> dict[str, float]:
    """Seconds per training step and per evaluation batch of ``config`` at ``shape``: the second of
    two epochs of ``steps`` steps each, on synthetic volumes (the sampler learning from the start)."""
    if shape.in_channels != 1:
        raise ValueError(f"the projection measures single-channel volumes; {config.dataset!r} has "
                         f"{shape.in_channels} channels")
    batch = config.batch_size

    def volumes(n: int, seed: int) -> VolumeDataset:
        return make_synthetic_volumes(n, num_frames=shape.num_frames, image_size=config.size,
                                      num_classes=shape.num_classes, seed=seed)

    splits = Splits(volumes(steps * batch, 0), volumes(batch, 1), volumes(batch, 2))
    timed = dataclasses.replace(config, epochs=2, patience=None, sampler_warmup=0, max_train_samples=None,
                                max_eval_samples=None, quiet=True)
    with warnings.catch_warnings():  # a batch of synthetic volumes may lack a class: its AUC is not used
        warnings.simplefilter("ignore", UndefinedAUCWarning)
        result = train(timed, splits)
    step_s = result.history[-1]["train_s"] / steps
    return {
        "step_s": step_s,
        # the final evaluation: one val batch and one test batch
        "eval_batch_s": result.timings["eval_s"] / 2,
        "train_frames_per_s": batch * result.k / step_s,
    }


def run_seconds(config: TrainConfig, shape: SplitShape, step: dict[str, float]) -> float:
    """Upper bound of one run: every epoch's training steps and validation pass, then the final
    validation and test passes (as :func:`das.train.train` does)."""
    batch = config.batch_size
    train_batches = shape.train // batch if shape.train > batch else 1  # the trainer's drop_last
    val_batches, test_batches = math.ceil(shape.val / batch), math.ceil(shape.test / batch)
    per_epoch = train_batches * step["step_s"] + val_batches * step["eval_batch_s"]
    return config.epochs * per_epoch + (val_batches + test_batches) * step["eval_batch_s"]


# The settings a step's cost depends on (besides the volume shape); runs that share them are measured once.
# The head's size (576 x classes multiply-adds) is ignored.
COST_FIELDS: tuple[str, ...] = ("method", "ratio", "size", "batch_size", "backbone", "pool", "device", "compile",
                                "num_threads")


def project_runs(configs: Sequence[TrainConfig], steps: int = 8, *, profile: str = "custom",
                 out_dir: str | Path | None = "results/bench") -> dict[str, Any]:
    """Project every run of ``configs`` (e.g. :func:`das.sweep.table1_configs`), measuring each distinct
    cost once. Writes ``projection-<profile>.json`` under ``out_dir`` (unless None); returns the report."""
    if not configs:
        raise ValueError("no runs to project")
    start = time.perf_counter()
    measured: dict[tuple[Any, ...], dict[str, float]] = {}
    shapes: dict[tuple[Any, ...], SplitShape] = {}
    rows = []
    for config in configs:
        data_key = (config.dataset, config.size, config.max_train_samples, config.max_eval_samples,
                    repr(config.dataset_options), config.data_dir)
        if data_key not in shapes:
            shapes[data_key] = split_shape(config)
        shape = shapes[data_key]
        cost_key = (shape.num_frames, repr(config.sampler_options), *(getattr(config, f) for f in COST_FIELDS))
        if cost_key not in measured:
            measured[cost_key] = measure_step(config, shape, steps)
        step = measured[cost_key]
        rows.append({"dataset": config.dataset, "method": config.method, "seed": config.seed,
                     **dataclasses.asdict(shape), "epochs": config.epochs, **step,
                     "run_s": run_seconds(config, shape, step)})
    device = resolve_device(configs[0].device)
    report = {
        "profile": profile,
        # the threads the runs used (train() applies num_threads for the run only)
        "environment": {**environment(device), "threads": configs[0].num_threads or torch.get_num_threads()},
        "steps": steps,
        "runs": rows,
        "total_s": sum(row["run_s"] for row in rows),
        "measure_s": time.perf_counter() - start,
    }
    if out_dir is not None:
        write_json_atomic(Path(out_dir) / f"projection-{profile}.json", report)
    return report


def format_projection(report: dict[str, Any]) -> str:
    """The environment, one line per (dataset, method) summed over seeds, and the total."""
    import pandas as pd

    env = report["environment"]
    runs = pd.DataFrame(report["runs"])
    table = runs.groupby(["dataset", "method"], sort=False).agg(
        runs=("seed", "size"), train=("train", "first"), epochs=("epochs", "first"), step_s=("step_s", "first"),
        train_frames_per_s=("train_frames_per_s", "first"), run_s=("run_s", "first"), total_s=("run_s", "sum"),
    ).reset_index()
    total_h = report["total_s"] / 3600
    return "\n".join([
        f"device: {env['device']} | torch {env['torch']} | threads {env['threads']}",
        "",
        table.to_markdown(index=False, floatfmt=".4g"),
        "",
        f"{len(runs)} runs of profile {report['profile']!r}: at most {total_h:.2f} h ({report['total_s']:.0f} s) "
        "on this device, every run to its last epoch (early stopping can only shorten it)",
    ])
