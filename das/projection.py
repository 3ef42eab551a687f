"""How long a whole profile (or any list of runs) would take on this machine, before running it.

For every distinct cost among the runs (method, ratio, volume shape, ...), :func:`measure_step`
trains the real model with the real trainer (:func:`das.train.train`) for two short epochs on
random volumes of the runs' shape (values do not change the cost): seconds per training step, from
the second, warm epoch, and seconds per evaluation batch, from the final validation and test passes.
:func:`project_runs` multiplies them by each run's number of batches (:func:`run_batches`, the
trainer's own rule), with split sizes from ``medmnist.INFO`` for MedMNIST3D (so the files need not be
present) and from the generated splits otherwise.

Packed runs (``executor="ray"``): several runs share the machine (``workers`` at a time, each with
``cpus_per_run`` CPU threads and ``gpus_per_run`` of a GPU). Each cost is then measured with that
many copies training at once, so the step times include their contention, and the sweep's wall
time is the sum of the runs' times divided by the number running at once.

It is an estimate of the time spent training and evaluating, with every run counted to its last
epoch (early stopping can only shorten it). Left out: loading or generating the data, compiling,
writing checkpoints. ``python -m das project --profile paper`` writes
``results/bench/projection-paper.json``; the compute chapter compares a projection with the runs.
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

from das.config import TrainConfig, resolve_device
from das.data import VolumeDataset
from das.data.medmnist3d import MEDMNIST3D_FLAGS, official_split_sizes
from das.metrics import UndefinedAUCWarning
from das.provenance import environment
from das.results import write_json_atomic
from das.train import Splits, load_splits, train, train_batches

# Batches of each evaluation pass while measuring: a pass's fixed costs (metrics, the copy to the
# host) are spread over as many batches, as in a real validation pass of a few batches.
EVAL_BATCHES = 4


@dataclasses.dataclass(frozen=True)
class SplitShape:
    """What a run's cost depends on: split sizes (after the config's caps) and the volume shape."""

    train: int
    val: int
    test: int
    num_frames: int
    in_channels: int
    height: int
    width: int
    num_classes: int


def split_shape(config: TrainConfig) -> SplitShape:
    """The split sizes and volume shape of ``config``'s dataset, capped by ``max_*_samples``.

    MedMNIST3D: the official sizes (no file needed; ``ValueError`` for a size the dataset lacks).
    Generated datasets: the splits the trainer would load."""
    if config.dataset in MEDMNIST3D_FLAGS:
        sizes = official_split_sizes(config.dataset, config.size)
        caps = {"train": config.max_train_samples, "val": config.max_eval_samples, "test": config.max_eval_samples}
        # the trainer keeps min(size, cap) volumes of each split
        train_n, val_n, test_n = (min(sizes[s], caps[s]) if caps[s] is not None else sizes[s] for s in sizes)
        # MedMNIST3D volumes are cubes of one channel: T = H = W = size.
        side = config.size
        return SplitShape(train_n, val_n, test_n, side, 1, side, side, len(medmnist.INFO[config.dataset]["label"]))
    splits = load_splits(config)
    frames, channels, height, width = splits.train.images.shape[1:]
    return SplitShape(
        len(splits.train), len(splits.val), len(splits.test), frames, channels, height, width, splits.train.num_classes
    )


def _random_volumes(n: int, shape: SplitShape, seed: int) -> VolumeDataset:
    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(
        0,
        256,
        (n, shape.num_frames, shape.in_channels, shape.height, shape.width),
        dtype=torch.uint8,
        generator=generator,
    )
    labels = torch.arange(n) % shape.num_classes  # every class present
    return VolumeDataset(
        images,
        labels,
        name="random",
        task="binary-class" if shape.num_classes == 2 else "multi-class",
        label_names=[str(c) for c in range(shape.num_classes)],
    )


def measure_step(config: TrainConfig, shape: SplitShape, steps: int = 8) -> dict[str, float]:
    """Seconds per training step (the second of two epochs of ``steps`` steps, the sampler learning
    from the start) and per evaluation batch (the final validation and test passes, of
    :data:`EVAL_BATCHES` batches each) of ``config`` at ``shape``."""
    batch = config.batch_size
    eval_volumes = EVAL_BATCHES * batch
    splits = Splits(
        _random_volumes(steps * batch, shape, 0),
        _random_volumes(eval_volumes, shape, 1),
        _random_volumes(eval_volumes, shape, 2),
    )
    timed = dataclasses.replace(
        config, epochs=2, patience=None, sampler_warmup=0, max_train_samples=None, max_eval_samples=None, quiet=True
    )
    with warnings.catch_warnings():  # random labels: whatever the metrics say is not used
        warnings.simplefilter("ignore", UndefinedAUCWarning)
        result = train(timed, splits)
    step_s = result.history[-1]["train_s"] / steps
    return {
        "step_s": step_s,
        "eval_batch_s": result.timings["eval_s"] / (2 * EVAL_BATCHES),
        "train_frames_per_s": batch * result.k / step_s,
    }


def _ray_measure(config: dict[str, Any], shape: dict[str, int], steps: int, threads: int) -> dict[str, float]:
    """What a Ray worker runs: :func:`measure_step` with ``threads`` CPU threads."""
    torch.set_num_threads(threads)
    return measure_step(TrainConfig.from_dict(config), SplitShape(**shape), steps)


def measure_packed(
    config: TrainConfig, shape: SplitShape, steps: int, workers: int, cpus_per_run: int, gpus_per_run: float
) -> dict[str, float]:
    """:func:`measure_step` with ``workers`` copies training at once on Ray (each with its share of the
    machine); the mean of their step and evaluation times, which include their contention."""
    import ray

    task = ray.remote(_ray_measure).options(num_cpus=cpus_per_run, num_gpus=gpus_per_run)
    payload = (
        dataclasses.replace(config, num_threads=config.num_threads or cpus_per_run).to_dict(),
        dataclasses.asdict(shape),
        steps,
        cpus_per_run,
    )
    results = ray.get([task.remote(*payload) for _ in range(workers)])
    return {key: sum(r[key] for r in results) / len(results) for key in results[0]}


def run_batches(config: TrainConfig, shape: SplitShape) -> tuple[int, int]:
    """Training and evaluation batches of one run that goes to its last epoch, as :func:`das.train.train`
    does them: every epoch's training batches and validation pass, then the final validation and
    test passes."""
    val_batches, test_batches = math.ceil(shape.val / config.batch_size), math.ceil(shape.test / config.batch_size)
    training = config.epochs * train_batches(shape.train, config.batch_size)
    return training, config.epochs * val_batches + val_batches + test_batches


def run_seconds(config: TrainConfig, shape: SplitShape, step: dict[str, float]) -> float:
    """Estimated compute time of one run: :func:`run_batches` times the measured ``step``."""
    training, evaluation = run_batches(config, shape)
    return training * step["step_s"] + evaluation * step["eval_batch_s"]


# The settings a step's cost depends on (besides the volume shape); runs that share them are measured
# once. The head's size (576 x classes multiply-adds) is ignored.
COST_FIELDS: tuple[str, ...] = (
    "method",
    "ratio",
    "size",
    "batch_size",
    "backbone",
    "pool",
    "device",
    "compile",
    "num_threads",
)


def project_runs(
    configs: Sequence[TrainConfig],
    steps: int = 8,
    *,
    profile: str = "custom",
    out_dir: str | Path | None = "results/bench",
    executor: str = "local",
    address: str | None = None,
    workers: int | None = None,
    cpus_per_run: int = 1,
    gpus_per_run: float = 0.0,
) -> dict[str, Any]:
    """Project every run of ``configs`` (e.g. :func:`das.sweep.profile_configs`), measuring each distinct
    cost once; with ``executor="ray"``, as ``workers`` packed runs (see the module docstring). Writes
    ``projection-<profile>.json`` under ``out_dir`` (unless None); returns the report, whose
    ``wall_s`` is the sweep's projected wall time."""
    if not configs:
        raise ValueError("no runs to project")
    if executor not in ("local", "ray"):
        raise ValueError(f"unknown executor {executor!r}; valid: local, ray")
    start = time.perf_counter()
    packed = executor == "ray"
    if packed:
        import ray

        started_here = not ray.is_initialized()
        if started_here:
            ray.init(address=address, include_dashboard=False, log_to_driver=False)
        resources = ray.cluster_resources()
        fits = [resources.get("CPU", 1) // cpus_per_run]
        if gpus_per_run > 0:
            fits.append(resources.get("GPU", 0) // gpus_per_run)
        concurrency = max(1, int(min(fits))) if workers is None else workers
    else:
        concurrency = 1
    measured: dict[tuple[Any, ...], dict[str, float]] = {}
    shapes: dict[tuple[Any, ...], SplitShape] = {}
    rows = []
    for config in configs:
        data_key = (
            config.dataset,
            config.size,
            config.max_train_samples,
            config.max_eval_samples,
            repr(config.dataset_options),
            config.data_dir,
        )
        if data_key not in shapes:
            shapes[data_key] = split_shape(config)
        shape = shapes[data_key]
        cost_key = (
            shape.num_frames,
            shape.in_channels,
            shape.height,
            shape.width,
            repr(config.sampler_options),
            *(getattr(config, f) for f in COST_FIELDS),
        )
        if cost_key not in measured:
            measured[cost_key] = (
                measure_packed(config, shape, steps, concurrency, cpus_per_run, gpus_per_run)
                if packed
                else measure_step(config, shape, steps)
            )
        step = measured[cost_key]
        rows.append(
            {
                "dataset": config.dataset,
                "method": config.method,
                "ratio": config.ratio,
                "seed": config.seed,
                **dataclasses.asdict(shape),
                "epochs": config.epochs,
                **step,
                "run_s": run_seconds(config, shape, step),
            }
        )
    if packed and started_here:
        ray.shutdown()
    device = resolve_device(configs[0].device)
    total = sum(row["run_s"] for row in rows)
    report = {
        "profile": profile,
        "device": str(device),
        # the threads the runs used (train() applies num_threads for the run only)
        "environment": {**environment(device), "threads": configs[0].num_threads or torch.get_num_threads()},
        "steps": steps,
        "measurements": len(measured),
        "runs": rows,
        "total_s": total,
        "executor": executor,
        "concurrent_runs": concurrency,
        "cpus_per_run": cpus_per_run if packed else None,
        "gpus_per_run": gpus_per_run if packed else None,
        "wall_s": total / concurrency,
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
    table = (
        runs.groupby(["dataset", "method"], sort=False)
        .agg(
            runs=("seed", "size"),
            train=("train", "first"),
            epochs=("epochs", "first"),
            step_s=("step_s", "first"),
            train_frames_per_s=("train_frames_per_s", "first"),
            run_s=("run_s", "first"),
            total_s=("run_s", "sum"),
        )
        .reset_index()
    )
    total_h = report["total_s"] / 3600
    packing = report.get("concurrent_runs", 1)
    wall = (
        f"; {packing} runs at a time: about {report['wall_s'] / 3600:.2f} h ({report['wall_s']:.0f} s) of wall time"
        if packing > 1
        else ""
    )
    return "\n".join(
        [
            f"device: {env['device']} | torch {env['torch']} | threads {env['threads']}",
            "",
            table.to_markdown(index=False, floatfmt=".4g"),
            "",
            f"{len(runs)} runs of profile {report['profile']!r}: about {total_h:.2f} h ({report['total_s']:.0f} s) of "
            "training and evaluation on this device, every run to its last epoch (early stopping shortens it)" + wall,
        ]
    )
