"""Benchmark suite: what subsampling saves, measured side by side in one process (issue: performance).

For every method and sampling ratio, at each volume size, the same batch goes through the full-sequence
model and through each subsampled model (warm-up, then repeated timings, medians reported), so every
time is also a ratio to the full model measured in the same run. FLOPs come from ``FlopCounterMode``
(:func:`das.samplers.cost.count_flops`). Also measured: the DAS sampler's own share of the time and
FLOPs of the full model, training throughput, peak memory and the data path's share of an epoch.

``python -m das bench [--quick]`` writes ``results/bench/bench.json`` and ``bench.md``.
"""

from __future__ import annotations

import platform
import resource
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from das.config import resolve_device
from das.data import VolumeDataset, iterate_batches, load_dataset, make_dataloader
from das.flops import count_flops
from das.model import SubsampledClassifier
from das.provenance import package_digest
from das.results import write_json_atomic
from das.samplers import METHODS, make_sampler

SUBSAMPLERS: tuple[str, ...] = tuple(name for name in METHODS if name != "full")  # measured against full
# The performance issue's targets on CPU (2 threads, float32, 28^3, batch 16): (name, method, ratio,
# field of the inference row, upper bound). Checked by :func:`check_targets`.
TARGETS: tuple[tuple[str, str, float, str, float], ...] = (
    ("das at 0.5: time vs full", "das", 0.5, "time_ratio_to_full", 0.60),
    ("das at 0.5: FLOPs vs full", "das", 0.5, "flops_ratio_to_full", 0.52),
    ("das at 0.25: time vs full", "das", 0.25, "time_ratio_to_full", 0.35),
    ("das sampler's own time vs full", "das", 0.5, "sampler_time_share", 0.03),
)


@dataclass
class BenchConfig:
    """What to measure. ``quick`` keeps 28^3 only with fewer repeats (about a minute on 2 CPU cores)."""

    sizes: tuple[int, ...] = (28, 64)
    ratios: tuple[float, ...] = (0.25, 0.5)
    methods: tuple[str, ...] = SUBSAMPLERS
    batch_size: int = 16
    num_classes: int = 2
    warmup: int = 3
    repeats: int = 15
    train_steps: int = 20
    # Batches timed in the data-path measurement (None: one whole epoch); per-epoch figures are
    # scaled up from them.
    data_batches: int | None = None
    epoch_dataset: str = "adrenalmnist3d"
    device: str = "auto"
    # Seeds the benchmark input and the models' initial weights.
    seed: int = 0
    data_dir: str | None = None
    # DAS with its fixed features compiled into fused kernels (DASSampler(fused_features=True)).
    fused_features: bool = False

    @classmethod
    def quick(cls, **overrides: Any) -> BenchConfig:
        return cls(**{"sizes": (28,), "warmup": 2, "repeats": 7, "train_steps": 8, "data_batches": 10, **overrides})


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_seconds(fn: Callable[[], object], device: torch.device, warmup: int, repeats: int) -> float:
    """Median wall time of ``fn()`` over ``repeats`` calls after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _autocast(device: torch.device) -> torch.autocast:
    # bf16 on CUDA as in training; CPU runs float32 (the targets are stated for float32).
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")


def _model(
    method: str, num_frames: int, k: int, config: BenchConfig, device: torch.device, num_classes: int | None = None
) -> SubsampledClassifier:
    """``num_classes``: default ``config.num_classes`` (random inputs); a real dataset's own count."""
    options = {"fused_features": True} if method == "das" and config.fused_features else {}
    sampler = make_sampler(method, num_frames, k, **options)
    sampler.check_finite = False  # the benchmark input is known finite; keep the sync out of the timing
    torch.manual_seed(config.seed)
    classes = config.num_classes if num_classes is None else num_classes
    return SubsampledClassifier(sampler, classes, in_channels=1).to(device).eval()


def _inference_row(
    model: SubsampledClassifier, x: Tensor, config: BenchConfig, device: torch.device
) -> dict[str, float]:
    def forward() -> object:
        with torch.no_grad(), _autocast(device):
            return model(x)

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    seconds = median_seconds(forward, device, config.warmup, config.repeats)
    row = {
        "k": model.sampler.k,
        "ms_per_volume": 1e3 * seconds / x.shape[0],
        "flops_per_volume": count_flops(model, x[:1]),
    }
    if device.type == "cuda":
        row["peak_memory_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    return row


def bench_inference(config: BenchConfig, device: torch.device) -> list[dict[str, Any]]:
    """One row per (method, ratio, size), each with its ratio to the full model at that size."""
    rows = []
    for size in config.sizes:
        num_frames = size  # MedMNIST3D volumes are cubes: T = H = W
        x = torch.rand(
            config.batch_size, num_frames, 1, size, size, generator=torch.Generator().manual_seed(config.seed)
        ).to(device)
        full = _inference_row(_model("full", num_frames, num_frames, config, device), x, config, device)
        rows.append(
            {
                "method": "full",
                "ratio": 1.0,
                "size": size,
                **full,
                "time_ratio_to_full": 1.0,
                "flops_ratio_to_full": 1.0,
            }
        )
        for ratio in config.ratios:
            k = max(1, round(ratio * num_frames))
            for method in config.methods:
                model = _model(method, num_frames, k, config, device)
                row = _inference_row(model, x, config, device)
                row |= {
                    "time_ratio_to_full": row["ms_per_volume"] / full["ms_per_volume"],
                    "flops_ratio_to_full": row["flops_per_volume"] / full["flops_per_volume"],
                }
                if method == "das":
                    row |= _sampler_share(model, x, full, config, device)
                rows.append({"method": method, "ratio": ratio, "size": size, **row})
    return rows


def _sampler_share(
    model: SubsampledClassifier, x: Tensor, full: dict[str, float], config: BenchConfig, device: torch.device
) -> dict[str, float]:
    """The sampler alone, as a share of the full-sequence model's time and FLOPs per volume."""

    def sample() -> object:
        with torch.no_grad(), _autocast(device):
            return model.sampler(x)

    ms = 1e3 * median_seconds(sample, device, config.warmup, config.repeats) / x.shape[0]
    flops = count_flops(model.sampler, x[:1])
    return {
        "sampler_ms_per_volume": ms,
        "sampler_time_share": ms / full["ms_per_volume"],
        "sampler_flops_share": flops / full["flops_per_volume"],
    }


def bench_training(config: BenchConfig, device: torch.device, size: int = 28) -> list[dict[str, Any]]:
    """Training throughput (frames through the backbone per second) for full and for das at 0.5."""
    rows = []
    x = torch.rand(config.batch_size, size, 1, size, size, generator=torch.Generator().manual_seed(config.seed + 1)).to(
        device
    )
    y = torch.randint(
        0, config.num_classes, (config.batch_size,), generator=torch.Generator().manual_seed(config.seed + 1)
    ).to(device)
    for method, ratio in (("full", 1.0), ("das", 0.5)):
        k = size if method == "full" else round(ratio * size)
        model = _model(method, size, k, config, device).train()
        optimiser = torch.optim.Adam(model.parameters(), lr=1e-4)

        def step(model: torch.nn.Module = model, optimiser: torch.optim.Optimizer = optimiser) -> None:
            optimiser.zero_grad(set_to_none=True)
            with _autocast(device):
                loss = torch.nn.functional.cross_entropy(model(x).logits, y)
            loss.backward()
            optimiser.step()

        seconds = median_seconds(step, device, config.warmup, config.train_steps)
        rows.append(
            {
                "method": method,
                "ratio": ratio,
                "size": size,
                "k": k,
                "frames_per_second": config.batch_size * k / seconds,
            }
        )
    return rows


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
        with _autocast(device):
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


def environment(device: torch.device) -> dict[str, Any]:
    """Where the figures were measured; ``package_digest`` (a hash of the ``das`` sources) says which
    code, so that a reader of the JSON can tell whether it is still current."""
    return {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({platform.machine()})",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "package_digest": package_digest(),
    }


def check_targets(report: dict[str, Any], size: int = 28) -> list[dict[str, Any]]:
    """Each of :data:`TARGETS` against the report's inference rows at ``size``: the measured value
    (None when the run did not measure that method and ratio) and whether it is within the bound."""
    rows = {(r["method"], r["ratio"]): r for r in report["inference"] if r["size"] == size}
    checks = []
    for name, method, ratio, field, bound in TARGETS:
        value = rows.get((method, ratio), {}).get(field)
        checks.append(
            {
                "target": name,
                "field": field,
                "bound": bound,
                "value": value,
                "met": None if value is None else value <= bound,
            }
        )
    return checks


def run_bench(config: BenchConfig, out_dir: str | Path = "results/bench") -> dict[str, Any]:
    """Run every measurement and write ``bench.json`` and ``bench.md`` under ``out_dir``."""
    device = resolve_device(config.device)
    report: dict[str, Any] = {"config": asdict(config), "environment": environment(device)}
    report["inference"] = bench_inference(config, device)
    report["training"] = bench_training(config, device)
    report["data"] = bench_data(config, device)
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
    """How the report's DAS computed its fixed features: eager, or fused by ``torch.compile``."""
    fused = report["config"].get("fused_features", False)
    return f"DAS fixed features {'fused (torch.compile)' if fused else 'eager'}"


def to_markdown(report: dict[str, Any]) -> str:
    import pandas as pd

    env = report["environment"]
    lines = [
        f"Device: {env['device']}; torch {env['torch']}; {env['threads']} threads; peak RSS {env['peak_rss_mb']:.0f} MB; "
        f"{features_label(report)}",
        "",
        "Inference per volume (batch of the config), median:",
        "",
    ]
    columns = [
        "method",
        "ratio",
        "size",
        "k",
        "ms_per_volume",
        "time_ratio_to_full",
        "flops_per_volume",
        "flops_ratio_to_full",
        "sampler_time_share",
        "sampler_flops_share",
    ]
    table = pd.DataFrame(report["inference"]).reindex(columns=columns)
    lines += [table.to_markdown(index=False, floatfmt=".4g"), "", "Training throughput:", ""]
    lines += [
        pd.DataFrame(report["training"]).to_markdown(index=False, floatfmt=".0f"),
        "",
        "Data path, one epoch:",
        "",
    ]
    lines += [pd.DataFrame([report["data"]]).to_markdown(index=False, floatfmt=".3g"), ""]
    return "\n".join(lines)


def main_summary(report: dict[str, Any]) -> str:
    """A few lines for the terminal: the environment and the headline ratios."""
    env = report["environment"]
    out = [f"device: {env['device']} | torch {env['torch']} | threads {env['threads']} | {features_label(report)}"]
    for row in report["inference"]:
        if row["method"] in ("full", "das"):
            share = f", sampler time share {row['sampler_time_share']:.3f}" if "sampler_time_share" in row else ""
            out.append(
                f"{row['method']:>7} ratio {row['ratio']:.2f} at {row['size']}^3: {row['ms_per_volume']:.3f} ms/volume, "
                f"time x{row['time_ratio_to_full']:.3f}, FLOPs x{row['flops_ratio_to_full']:.3f}{share}"
            )
    for row in report["training"]:
        out.append(f"training {row['method']} at {row['ratio']}: {row['frames_per_second']:.0f} frames/s")
    data = report["data"]
    out.append(
        f"data path: {data['batch_seconds_per_epoch']:.3f} s producing batches vs {data['compute_seconds_per_epoch']:.1f} s "
        f"computing per epoch ({data['volumes']} volumes); per-item DataLoader {data['dataloader_batch_seconds_per_epoch']:.2f} s"
    )
    return "\n".join(out)
