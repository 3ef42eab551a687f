"""Benchmark suite: what subsampling saves, measured side by side in one process.

For every frame size and batch size (the crossover map), the same batch goes through the
full-sequence model and through each subsampled model at each sampling ratio (warm-up, then repeated
timings, medians reported), so every time is also a ratio to the full model measured in the same
run. The models' calls are interleaved, one call of each per round, so that drift of the machine
falls on all of them alike. At batch 1 the rows also give latency percentiles (p50, p99 over
``latency_repeats`` calls).
FLOPs come from ``FlopCounterMode`` (:func:`das.flops.count_flops`). Also measured: the DAS
sampler's own share of the time and FLOPs of the full model, peak memory per method for inference
and for one training step (:func:`bench_memory`), training throughput and the data path's share of
an epoch; with ``cuda_graphs``, every model again compiled with CUDA graphs
(:meth:`das.model.SubsampledClassifier.compiled_for_inference`).

Inputs are random volumes ``[B, T, 1, size, size]`` (no method's cost depends on pixel values). By
default ``T = size``: cubes, as the MedMNIST3D volumes are; ``num_frames`` fixes T instead (video:
many frames of a large size, e.g. ``num_frames=32``).

``python -m das bench [--quick]`` writes ``results/bench/bench.json`` (every row) and ``bench.md``.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from das.config import TrainConfig, resolve_device
from das.data import VolumeDataset, iterate_batches, load_dataset, make_dataloader
from das.flops import count_flops
from das.model import SubsampledClassifier
from das.provenance import environment
from das.results import write_json_atomic
from das.samplers import METHODS, make_sampler
from das.samplers import fused as fused_path
from das.train import TrainStep, autocast

SUBSAMPLERS: tuple[str, ...] = tuple(name for name in METHODS if name != "full")  # measured against full
MEMORY_RATIO = 0.5  # the sampling ratio of the memory measurements


@dataclass(frozen=True)
class Target:
    """A bound on one measured value: ``measure`` of DAS at ``ratio``, frame ``size`` and ``batch_size``.

    ``measure``: ``"time_ratio_to_full"``, ``"sampler_time_share"`` (the DAS sampler alone, as a share
    of the full model's time) or ``"das_minus_uniform"`` (DAS's time ratio to full minus uniform's:
    what choosing frames adaptively costs over choosing them blindly).
    """

    name: str
    size: int
    batch_size: int
    ratio: float
    measure: str
    bound: float


# The performance targets, stated for CPU, 2 threads, float32. Checked by :func:`check_targets`.
TARGETS: tuple[Target, ...] = (
    Target("das minus uniform at 0.25, time vs full (28^3, batch 16)", 28, 16, 0.25, "das_minus_uniform", 0.02),
    Target("das minus uniform at 0.5, time vs full (28^3, batch 16)", 28, 16, 0.5, "das_minus_uniform", 0.02),
    Target("das sampler's own time vs full (28^3, batch 16)", 28, 16, 0.5, "sampler_time_share", 0.02),
    Target("das at 0.5, time vs full (112 px, batch 1)", 112, 1, 0.5, "time_ratio_to_full", 0.60),
)


@dataclass
class BenchConfig:
    """What to measure.

    ``sizes`` and ``batch_sizes``: the crossover map, every pair measured. ``num_frames``: T (None:
    T = size). ``batch_size``: the batch of the training, data-path and memory measurements.
    ``latency_repeats``: timed calls at batch 1 (for p50 and p99). ``num_threads``: torch CPU threads
    for the run (None: torch's). ``fused``: DAS's compiled evaluation (the sampler's option; None is
    its default, compiled where that works); ``fused_features``: DAS's features compiled in training
    too. ``memory``: measure peak memory. ``cuda_graphs``: also time every model compiled with CUDA
    graphs (CUDA only). ``compiled_training``: also time the trainer's step compiled. ``quick`` keeps 28^3 at batch 16 with fewer repeats (about a minute on 2 CPU
    cores).
    """

    sizes: tuple[int, ...] = (28, 64)
    batch_sizes: tuple[int, ...] = (16,)
    num_frames: int | None = None
    ratios: tuple[float, ...] = (0.25, 0.5)
    methods: tuple[str, ...] = SUBSAMPLERS
    batch_size: int = 16
    num_classes: int = 2
    warmup: int = 3
    repeats: int = 15
    latency_repeats: int = 100
    train_steps: int = 20
    # Batches timed in the data-path measurement (None: one whole epoch); per-epoch figures are
    # scaled up from them.
    data_batches: int | None = None
    epoch_dataset: str = "adrenalmnist3d"
    device: str = "auto"
    num_threads: int | None = None
    # Seeds the benchmark input and the models' initial weights.
    seed: int = 0
    data_dir: str | None = None
    fused: bool | None = None
    fused_features: bool = False
    memory: bool = True
    cuda_graphs: bool = False
    compiled_training: bool = False

    def __post_init__(self) -> None:
        for name in ("sizes", "batch_sizes"):
            values = tuple(getattr(self, name))
            if not values or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in values):
                raise ValueError(f"{name} must be one or more integers >= 1, got {values!r}")
            setattr(self, name, values)
        self.ratios = tuple(self.ratios)
        if not self.ratios or not all(0 < r <= 1 for r in self.ratios):
            raise ValueError(f"ratios must be one or more numbers in (0, 1], got {self.ratios!r}")
        self.methods = tuple(self.methods)
        unknown = [m for m in self.methods if m not in SUBSAMPLERS]
        if unknown:
            raise ValueError(f"unknown method(s) {', '.join(map(repr, unknown))}; valid: {', '.join(SUBSAMPLERS)}")
        if self.num_frames is not None and (isinstance(self.num_frames, bool) or self.num_frames < 1):
            raise ValueError(f"num_frames must be an integer >= 1 or None (T = size), got {self.num_frames!r}")

    @classmethod
    def quick(cls, **overrides: Any) -> BenchConfig:
        defaults = {
            "sizes": (28,),
            "batch_sizes": (16,),
            "warmup": 2,
            "repeats": 21,
            "latency_repeats": 30,
            "train_steps": 8,
            "data_batches": 10,
        }
        return cls(**{**defaults, **overrides})

    def frames(self, size: int) -> int:
        """T for frames of ``size`` x ``size``."""
        return self.num_frames or size


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def call_seconds(fn: Callable[[], object], device: torch.device, warmup: int, repeats: int) -> list[float]:
    """Wall time of each of ``repeats`` calls of ``fn()``, after ``warmup`` untimed calls."""
    return interleaved_call_seconds([fn], device, warmup, repeats)[0]


def median_seconds(fn: Callable[[], object], device: torch.device, warmup: int, repeats: int) -> float:
    """Median wall time of ``fn()`` over ``repeats`` calls after ``warmup`` calls."""
    return statistics.median(call_seconds(fn, device, warmup, repeats))


def _warmup(config: BenchConfig) -> int:
    # Enough calls for DAS's compiled evaluation to be built before timing starts.
    return max(config.warmup, fused_path.COMPILE_AFTER + 1)


def _model(
    method: str, num_frames: int, k: int, config: BenchConfig, device: torch.device, num_classes: int | None = None
) -> SubsampledClassifier:
    """``num_classes``: default ``config.num_classes`` (random inputs); a real dataset's own count."""
    options = {"fused": config.fused, "fused_features": config.fused_features} if method == "das" else {}
    sampler = make_sampler(method, num_frames, k, **options)
    sampler.check_finite = False  # the benchmark input is known finite; keep the sync out of the timing
    torch.manual_seed(config.seed)
    classes = config.num_classes if num_classes is None else num_classes
    return SubsampledClassifier(sampler, classes, in_channels=1).to(device).eval()


def _k(ratio: float, num_frames: int) -> int:
    return max(1, round(ratio * num_frames))


def _volumes(config: BenchConfig, batch: int, size: int, seed_offset: int = 0) -> Tensor:
    shape = (batch, config.frames(size), 1, size, size)
    return torch.rand(shape, generator=torch.Generator().manual_seed(config.seed + seed_offset))


def interleaved_call_seconds(
    fns: Sequence[Callable[[], object]], device: torch.device, warmup: int, repeats: int
) -> list[list[float]]:
    """Wall time of ``repeats`` calls of each of ``fns``, one call of each per round in turn, after
    ``warmup`` such rounds: a slow spell of the machine then falls on every function alike, so their
    ratios hold even when the absolute times drift."""
    for _ in range(warmup):
        for fn in fns:
            fn()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, fn_times in zip(fns, times):
            _sync(device)
            start = time.perf_counter()
            fn()
            _sync(device)
            fn_times.append(time.perf_counter() - start)
    return times


def _timing_row(seconds: list[float], batch: int, prefix: str = "") -> dict[str, float]:
    """Median ms per batch and per volume; at batch 1 also the latency p50 and p99."""
    ms = [1e3 * s for s in seconds]
    row = {f"{prefix}ms_per_batch": statistics.median(ms), f"{prefix}ms_per_volume": statistics.median(ms) / batch}
    if batch == 1:
        row[f"{prefix}latency_ms_p50"] = float(np.percentile(ms, 50))
        row[f"{prefix}latency_ms_p99"] = float(np.percentile(ms, 99))
    return row


def _forward(model: Callable[[Tensor], object], x: Tensor, device: torch.device) -> Callable[[], object]:
    def forward() -> object:
        with torch.no_grad(), autocast(device):
            return model(x)

    return forward


def _inference_timings(
    models: list[SubsampledClassifier], x: Tensor, config: BenchConfig, device: torch.device
) -> list[dict[str, float]]:
    """One timing row per model on the batch ``x``, the models' calls interleaved
    (:func:`interleaved_call_seconds`); at batch 1 ``latency_repeats`` calls each, else ``repeats``."""
    batch = x.shape[0]
    repeats = config.latency_repeats if batch == 1 else config.repeats
    forwards = [_forward(model, x, device) for model in models]
    seconds = interleaved_call_seconds(forwards, device, _warmup(config), repeats)
    rows = [_timing_row(s, batch) for s in seconds]
    if config.cuda_graphs:
        replays = [_forward(model.compiled_for_inference(mode="reduce-overhead"), x, device) for model in models]
        seconds = interleaved_call_seconds(replays, device, _warmup(config), repeats)
        for row, s in zip(rows, seconds):
            row |= _timing_row(s, batch, prefix="cuda_graphs_")
    return rows


def bench_inference(config: BenchConfig, device: torch.device) -> list[dict[str, Any]]:
    """One row per (size, batch size, method, ratio), each with its ratio to the full model measured
    on the same batch, in the same rounds of calls."""
    rows = []
    for size in config.sizes:
        num_frames = config.frames(size)
        models = {("full", 1.0): _model("full", num_frames, num_frames, config, device)}
        for ratio in config.ratios:
            for method in config.methods:
                models[(method, ratio)] = _model(method, num_frames, _k(ratio, num_frames), config, device)
        probe = _volumes(config, 1, size).to(device)
        flops = {key: count_flops(model, probe) for key, model in models.items()}
        for batch in config.batch_sizes:
            x = _volumes(config, batch, size).to(device)
            timings = _inference_timings(list(models.values()), x, config, device)
            full: dict[str, Any] = {}
            for ((method, ratio), model), timing in zip(models.items(), timings):
                row: dict[str, Any] = {
                    "method": method,
                    "ratio": ratio,
                    "size": size,
                    "num_frames": num_frames,
                    "batch_size": batch,
                    "k": model.sampler.k,
                    **timing,
                    "flops_per_volume": flops[(method, ratio)],
                }
                full = full or row  # the full model comes first
                row["time_ratio_to_full"] = row["ms_per_batch"] / full["ms_per_batch"]
                row["flops_ratio_to_full"] = row["flops_per_volume"] / full["flops_per_volume"]
                if config.cuda_graphs:
                    row["cuda_graphs_time_ratio_to_full"] = (
                        row["cuda_graphs_ms_per_batch"] / full["cuda_graphs_ms_per_batch"]
                    )
                if method == "das":
                    row |= _sampler_share(model, x, full, flops[(method, ratio)], config, device)
                rows.append(row)
    return rows


def _sampler_share(
    model: SubsampledClassifier,
    x: Tensor,
    full: dict[str, Any],
    model_flops: int,
    config: BenchConfig,
    device: torch.device,
) -> dict[str, float]:
    """The sampler alone, as a share of the full-sequence model's time and FLOPs per volume."""

    def sample() -> object:
        with torch.no_grad(), autocast(device):
            return model.sampler(x)

    ms = 1e3 * median_seconds(sample, device, _warmup(config), config.repeats) / x.shape[0]
    flops = count_flops(model.sampler, x[:1])
    return {
        "sampler_ms_per_volume": ms,
        "sampler_time_share": ms / full["ms_per_volume"],
        "sampler_flops_share": flops / full["flops_per_volume"],
    }


def _training_step(
    model: SubsampledClassifier, x: Tensor, y: Tensor, device: torch.device, compile: bool = False
) -> Callable[[], None]:
    """One optimisation step of the trainer (:class:`das.train.TrainStep`: forward pass, loss, backward
    pass, Adam) on the batch ``(x, y)``; ``compile`` runs it as ``TrainConfig(compile=True)`` does."""
    config = TrainConfig(dataset="synthetic", compile=compile, device=str(device), quiet=True)
    batch = VolumeDataset(
        (x * 255).round().to(torch.uint8).cpu(),
        y.cpu(),
        name="bench",
        task="multi-class",
        label_names=[str(c) for c in range(model.num_classes)],
    )
    step = TrainStep(config, model.train(), batch, device, torch.Generator(device=device).manual_seed(0))
    return lambda: step(x, y)


def _labels(config: BenchConfig, batch: int, seed_offset: int) -> Tensor:
    generator = torch.Generator().manual_seed(config.seed + seed_offset)
    return torch.randint(0, config.num_classes, (batch,), generator=generator)


def bench_training(config: BenchConfig, device: torch.device, size: int = 28) -> list[dict[str, Any]]:
    """Training throughput (frames through the backbone per second) of the trainer's step for full and
    for das at 0.5, eager and, with ``config.compiled_training``, compiled (``torch.compile``), the two
    timed alternately in one process."""
    rows = []
    x = _volumes(config, config.batch_size, size, seed_offset=1).to(device)
    y = _labels(config, config.batch_size, seed_offset=1).to(device)
    num_frames = x.shape[1]
    for method, ratio in (("full", 1.0), ("das", 0.5)):
        k = num_frames if method == "full" else _k(ratio, num_frames)
        for compiled in (False, True) if config.compiled_training else (False,):
            model = _model(method, num_frames, k, config, device)
            step = _training_step(model, x, y, device, compile=compiled)
            warmup = config.warmup + (3 if compiled else 0)  # the first compiled calls compile
            seconds = median_seconds(step, device, warmup, config.train_steps)
            rows.append(
                {
                    "method": method,
                    "ratio": ratio,
                    "size": size,
                    "k": k,
                    "compiled": compiled,
                    "step_ms": 1e3 * seconds,
                    "frames_per_second": config.batch_size * k / seconds,
                }
            )
    return rows


def _memory_specs(config: BenchConfig) -> list[dict[str, Any]]:
    specs = []
    for size in config.sizes:
        num_frames = config.frames(size)
        for method in ("full", *config.methods):
            ratio = 1.0 if method == "full" else MEMORY_RATIO
            for mode in ("inference", "training"):
                k = num_frames if method == "full" else _k(ratio, num_frames)
                specs.append({"method": method, "ratio": ratio, "size": size, "num_frames": num_frames, "k": k,
                              "batch_size": config.batch_size, "mode": mode})  # fmt: skip
    return specs


def _memory_step(spec: dict[str, Any], config: BenchConfig, device: torch.device) -> Callable[[], object]:
    """Build the spec's model and input on ``device``; return the call whose peak memory is measured."""
    model = _model(spec["method"], spec["num_frames"], spec["k"], config, device)
    x = _volumes(config, spec["batch_size"], spec["size"], seed_offset=2).to(device)
    if spec["mode"] == "training":
        return _training_step(model, x, _labels(config, spec["batch_size"], 2).to(device), device)

    def forward() -> object:
        with torch.no_grad(), autocast(device):
            return model(x)

    return forward


CUDA_MEMORY = "first call: torch.cuda.max_memory_allocated during it minus memory_allocated before it"
CPU_MEMORY = "first call in a fresh process: peak resident set (VmHWM) during it minus the resident set before it"


def bench_memory(config: BenchConfig, device: torch.device) -> list[dict[str, Any]]:
    """Peak memory of one inference forward and of one training step (forward, backward, Adam step,
    whose state it allocates), per method at ratio :data:`MEMORY_RATIO` and for the full model, at
    every size with ``config.batch_size`` volumes. Each row's ``peak_memory_mb`` is the growth over
    what the built model and its input already hold, and its ``measure`` says how it was taken:

    Both time the first call of a freshly built model (DAS's first evaluation calls run eager):

    * CUDA: the caching allocator's peak (``max_memory_allocated``, reset before the call), in this
      process: tensors only, not the CUDA context or library handles.
    * CPU: the first call in a fresh process: one Python process, started for the benchmark, forks
      a child per measurement that builds the model and input, resets the kernel's peak resident set
      (``/proc/self/clear_refs``) and reads ``VmHWM`` after the call. This counts every page the call
      touches, including one-time setup (thread pools, oneDNN primitives) and memory the allocator
      keeps for later. ``None`` where it could not be read (not Linux, or the child failed, e.g. out
      of memory).
    """
    specs = _memory_specs(config)
    if device.type == "cuda":
        rows = []
        for spec in specs:
            call = _memory_step(spec, config, device)
            _sync(device)
            torch.cuda.reset_peak_memory_stats(device)
            before = torch.cuda.memory_allocated(device)
            call()
            _sync(device)
            growth = (torch.cuda.max_memory_allocated(device) - before) / 2**20
            rows.append({**spec, "peak_memory_mb": growth, "measure": CUDA_MEMORY})
        return rows
    measured = _memory_in_fresh_process(specs, config)
    return [{**spec, "peak_memory_mb": peak, "measure": CPU_MEMORY} for spec, peak in zip(specs, measured, strict=True)]


def _memory_in_fresh_process(specs: list[dict[str, Any]], config: BenchConfig) -> list[float | None]:
    request = json.dumps({"config": asdict(config), "specs": specs, "threads": torch.get_num_threads()})
    result = subprocess.run(
        [sys.executable, "-c", "from das.bench import _memory_child; _memory_child()"],
        input=request,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        error = (result.stderr.strip().splitlines() or ["no message"])[-1]
        raise RuntimeError(f"the memory measurement process failed (status {result.returncode}): {error}")
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    peaks = {line["index"]: line["peak_memory_mb"] for line in lines}
    return [peaks.get(i) for i in range(len(specs))]


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def _memory_child() -> None:
    """The fresh process of :func:`bench_memory` on CPU: a JSON request on stdin, one JSON line per
    measurement on stdout. It runs no tensor code itself (its heap stays clean and its thread pools
    unstarted), and forks one child per measurement."""
    request = json.loads(sys.stdin.read())
    config = BenchConfig(**request["config"])
    for index, spec in enumerate(request["specs"]):
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the measuring child: reports on the pipe, never returns
            os.close(read)
            peak = None
            try:
                torch.set_num_threads(request["threads"])
                call = _memory_step(spec, config, torch.device("cpu"))
                with open("/proc/self/clear_refs", "w") as clear:
                    clear.write("5")  # reset the peak resident set to the current one
                before = _status_kib("VmRSS")
                call()
                peak = (_status_kib("VmHWM") - before) / 1024
            finally:
                os.write(write, json.dumps({"index": index, "peak_memory_mb": peak}).encode())
                os._exit(0)
        os.close(write)
        with os.fdopen(read) as pipe:
            message = pipe.read()
        os.waitpid(pid, 0)
        if message:
            print(message, flush=True)


def _epoch_dataset(config: BenchConfig) -> VolumeDataset:
    try:
        return load_dataset(config.epoch_dataset, "train", root=config.data_dir)
    except FileNotFoundError:
        # Without the real files the data path is timed on synthetic volumes of the same shape.
        return load_dataset("synthetic", "train", num_samples=1188, num_frames=28)


def bench_data(config: BenchConfig, device: torch.device) -> dict[str, Any]:
    """One training epoch of das at 0.5: seconds producing batches versus computing, for the
    tensor-resident path, plus the per-item DataLoader path's batch-producing time for comparison.

    With ``config.data_batches`` set, only that many batches are timed and the epoch figures are
    scaled up by the number of batches in an epoch."""
    dataset = _epoch_dataset(config)
    num_frames = dataset.num_frames
    model = _model("das", num_frames, round(0.5 * num_frames), config, device, dataset.num_classes).train()
    model.sampler.check_finite = False
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-4)
    epoch_batches = len(dataset) // config.batch_size
    timed = min(epoch_batches, config.data_batches or epoch_batches)
    scale = epoch_batches / timed
    producing = computing = 0.0
    batches = iterate_batches(dataset, config.batch_size, shuffle=True, seed=config.seed, device=device, drop_last=True)
    for _ in range(timed):
        start = time.perf_counter()
        x, y = next(batches)
        _sync(device)
        producing += time.perf_counter() - start
        start = time.perf_counter()
        optimiser.zero_grad(set_to_none=True)
        with autocast(device):
            loss = torch.nn.functional.cross_entropy(model(x).logits, y)
        loss.backward()
        optimiser.step()
        _sync(device)
        computing += time.perf_counter() - start
    start = time.perf_counter()
    for _, (x, _) in zip(
        range(timed), make_dataloader(dataset, config.batch_size, shuffle=True, seed=config.seed, drop_last=True)
    ):
        x.to(device)
    _sync(device)
    per_item = time.perf_counter() - start
    return {
        "dataset": dataset.name,
        "volumes": len(dataset),
        "batches_timed": timed,
        "batch_seconds_per_epoch": producing * scale,
        "compute_seconds_per_epoch": computing * scale,
        "data_share_of_epoch": producing / (producing + computing),
        "dataloader_batch_seconds_per_epoch": per_item * scale,
    }


def inference_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The report's inference rows, with ``batch_size`` and ``ms_per_batch`` filled in for files
    written before they were recorded (one batch size, the config's ``batch_size``)."""
    batch = report["config"].get("batch_size", 16)
    rows = []
    for row in report["inference"]:
        row = {"batch_size": batch, **row}
        if "ms_per_volume" in row:
            row.setdefault("ms_per_batch", row["ms_per_volume"] * row["batch_size"])
        rows.append(row)
    return rows


def check_targets(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Each of :data:`TARGETS` against the report's inference rows: the measured value (None when
    the run did not measure that size, batch size and ratio) and whether it is within the bound."""
    rows = {(r["method"], r["ratio"], r["size"], r["batch_size"]): r for r in inference_rows(report)}
    checks = []
    for target in TARGETS:
        das = rows.get(("das", target.ratio, target.size, target.batch_size), {})
        uniform = rows.get(("uniform", target.ratio, target.size, target.batch_size), {})
        if target.measure == "das_minus_uniform":
            value = das["time_ratio_to_full"] - uniform["time_ratio_to_full"] if das and uniform else None
        else:
            value = das.get(target.measure)
        checks.append(
            {
                "target": target.name,
                "size": target.size,
                "batch_size": target.batch_size,
                "ratio": target.ratio,
                "measure": target.measure,
                "bound": target.bound,
                "value": value,
                "met": None if value is None else value <= target.bound,
            }
        )
    return checks


@contextmanager
def _threads(num_threads: int | None) -> Iterator[None]:
    """torch's CPU threads set to ``num_threads`` for a block (None: left as they are), then restored."""
    previous = torch.get_num_threads()
    if num_threads is not None:
        torch.set_num_threads(num_threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def run_bench(config: BenchConfig, out_dir: str | Path = "results/bench") -> dict[str, Any]:
    """Run every measurement and write ``bench.json`` and ``bench.md`` under ``out_dir``.

    Raises ``ValueError`` (one line) for an unavailable device and for ``cuda_graphs`` off CUDA."""
    device = resolve_device(config.device)
    if config.cuda_graphs and device.type != "cuda":
        raise ValueError(f"cuda_graphs (--cuda-graphs) needs a CUDA device, got {device}")
    with _threads(config.num_threads):
        report: dict[str, Any] = {"config": asdict(config), "environment": environment(device)}
        report["inference"] = bench_inference(config, device)
        report["memory"] = bench_memory(config, device) if config.memory else []
        report["training"] = bench_training(config, device)
        report["data"] = bench_data(config, device)
        # After the runs: a compilation that failed on this device shows here.
        report["environment"]["das_evaluation"] = make_sampler("das", 2, 1, fused=config.fused).evaluation_path(device)
    # ru_maxrss is in KiB on Linux: the process's peak resident memory over the whole benchmark.
    report["environment"]["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out = Path(out_dir)
    write_json_atomic(out / "bench.json", report)
    markdown = to_markdown(report)
    tmp = out / "bench.md.tmp"
    tmp.write_text(markdown)
    tmp.replace(out / "bench.md")
    return report


def features_label(report: dict[str, Any]) -> str:
    """How the report's DAS evaluated: compiled by ``torch.compile`` or eager (older files: whether
    its fixed features were fused)."""
    path = report["environment"].get("das_evaluation")
    if path is not None:
        fused = " + fused features in training" if report["config"].get("fused_features") else ""
        return f"DAS evaluation {path}{fused}"
    fused = report["config"].get("fused_features", False)
    return f"DAS fixed features {'fused (torch.compile)' if fused else 'eager'}"


def _rows(report: dict[str, Any]) -> Iterator[str]:
    import pandas as pd

    columns = [
        "size",
        "batch_size",
        "method",
        "ratio",
        "k",
        "ms_per_batch",
        "ms_per_volume",
        "time_ratio_to_full",
        "flops_ratio_to_full",
        "sampler_time_share",
        "cuda_graphs_time_ratio_to_full",
    ]
    inference = pd.DataFrame(inference_rows(report))
    yield "Inference, median over repeated calls (time ratios to the full model on the same batch):"
    yield ""
    yield inference.reindex(columns=[c for c in columns if c in inference]).to_markdown(index=False, floatfmt=".4g")
    latency = inference[inference["batch_size"] == 1] if "latency_ms_p99" in inference else inference.iloc[:0]
    if len(latency):
        yield ""
        yield "Latency at batch 1 (ms):"
        yield ""
        table = latency[["size", "method", "ratio", "latency_ms_p50", "latency_ms_p99"]]
        yield table.to_markdown(index=False, floatfmt=".4g")
    if report.get("memory"):
        memory = pd.DataFrame(report["memory"])
        yield ""
        yield f"Peak memory growth (MB), batch {report['config']['batch_size']}: {memory['measure'].iloc[0]}:"
        yield ""
        table = memory.pivot_table(
            index=["size", "method", "ratio"], columns="mode", values="peak_memory_mb", sort=False
        )
        yield table.reset_index().to_markdown(index=False, floatfmt=".1f")
    yield ""
    yield "Training throughput:"
    yield ""
    yield pd.DataFrame(report["training"]).to_markdown(index=False, floatfmt=".4g")
    yield ""
    yield "Data path, one epoch:"
    yield ""
    yield pd.DataFrame([report["data"]]).to_markdown(index=False, floatfmt=".3g")
    yield ""
    yield "Targets (CPU, 2 threads, float32):"
    yield ""
    yield pd.DataFrame(check_targets(report))[["target", "value", "bound", "met"]].to_markdown(
        index=False, floatfmt=".3f"
    )


def to_markdown(report: dict[str, Any]) -> str:
    env = report["environment"]
    head = (
        f"Device: {env['device']}; torch {env['torch']}; {env['threads']} threads; peak RSS "
        f"{env['peak_rss_mb']:.0f} MB; {features_label(report)}"
    )
    return "\n".join([head, "", *_rows(report), ""])


def main_summary(report: dict[str, Any]) -> str:
    """A few lines for the terminal: the environment and the headline ratios."""
    env = report["environment"]
    out = [f"device: {env['device']} | torch {env['torch']} | threads {env['threads']} | {features_label(report)}"]
    for row in inference_rows(report):
        if row["method"] in ("full", "uniform", "das"):
            share = f", sampler time share {row['sampler_time_share']:.3f}" if "sampler_time_share" in row else ""
            latency = f", p99 {row['latency_ms_p99']:.2f} ms" if "latency_ms_p99" in row else ""
            out.append(
                f"{row['method']:>7} ratio {row['ratio']:.2f} at {row['size']} px, batch {row['batch_size']}: "
                f"{row['ms_per_volume']:.3f} ms/volume, time x{row['time_ratio_to_full']:.3f}, "
                f"FLOPs x{row['flops_ratio_to_full']:.3f}{share}{latency}"
            )
    for row in report["training"]:
        how = "compiled" if row.get("compiled") else "eager"
        out.append(
            f"training {row['method']} at {row['ratio']} ({how}): {row['frames_per_second']:.0f} frames/s"
            + (f", {row['step_ms']:.1f} ms per step" if "step_ms" in row else "")
        )
    data = report["data"]
    out.append(
        f"data path: {data['batch_seconds_per_epoch']:.3f} s producing batches vs {data['compute_seconds_per_epoch']:.1f} s "
        f"computing per epoch ({data['volumes']} volumes); per-item DataLoader {data['dataloader_batch_seconds_per_epoch']:.2f} s"
    )
    for check in check_targets(report):
        if check["value"] is not None:
            verdict = "met" if check["met"] else "missed"
            out.append(f"target {check['target']}: {check['value']:.3f} (bound {check['bound']}) {verdict}")
    return "\n".join(out)
