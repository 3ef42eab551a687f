# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Compute
#
# Subsampling is meant to save compute, but the paper never measures how much. This chapter does,
# for every method side by side: FLOPs and wall time per volume against the sampling ratio $k/T$,
# the DAS sampler's own overhead, latency and memory, and a map of where, by frame size and batch
# size, sending fewer frames through the backbone actually saves time on a CPU and on a GPU.
#
# **The physical limit.** A model that sends $k$ of $T$ frames through the backbone
# cannot cost less than the sampler plus $k/T$ of the full-sequence model:
#
# $$
# \frac{\text{cost}(k)}{\text{cost}(T)} \;\ge\; \frac{k}{T} + \frac{\text{cost}(\text{sampler})}{\text{cost}(T)} .
# $$
#
# The parameter-free samplers (uniform, random) should sit on $k/T$; DAS should sit on $k/T$ plus
# its sampler's share, measured below both in FLOPs and in time.
#
# **Where the numbers come from.** Everything below is read from one file,
# `results/book/<scale>/bench/bench.json`, written by the project's benchmark suite
# (`das.bench.run_bench`, the code behind `python -m das bench`): in one process, for every frame size
# and batch size, the same batch goes through the full-sequence model and through every subsampled
# model (warm-up, then repeated timings, the models' calls taken in turn, medians), so each time is
# also a ratio to the full model measured on the same batch and in the same spell of the machine.
# FLOPs are counted with `FlopCounterMode` on one volume. The notebook runs the suite unless that
# file already holds a run with exactly this configuration, on the same code (a hash of the `das`
# sources), torch version and thread count; then it reads it (set
# `reuse = False` to measure again). The inputs are random volumes of $T$ frames of size $\times$
# size pixels with $T$ = size (cubes, as the MedMNIST3D volumes are; random values, irrelevant to
# cost: no method's cost depends on pixel values); the data-path figures use the real AdrenalMNIST3D
# training split. DAS evaluates with its default, compiled path (features, base score and top-$k$ in
# one `torch.compile`'d function, `das.samplers.fused`), eager where compiling is unavailable.

# %% tags=["parameters", "hide-input"]
# book scale this run belongs to (ci, laptop, gpu; set by the book builder)
scale = "laptop"
seed = 0  # seeds the benchmark input and the models' initial weights
# "cpu", "cuda" or "auto"; the performance targets are stated for the CPU
device = "cpu"
# CPU threads (torch.set_num_threads); the targets are stated for 2
num_threads = 2
sizes = [
    28,
    64,
    112,
]  # frame sizes of the crossover map (cubes: as many frames as pixels per side)
batch_sizes = [1, 16]  # inference batch sizes of the crossover map
# sampling ratios k/T (the targets are stated for 0.25 and 0.5)
ratios = [0.25, 0.5, 0.75]
methods = [
    "uniform",
    "random",
    "dps",
    "adps",
    "das",
]  # besides the full-sequence model
repeats = 7  # timed forward passes per model (the median is reported)
warmup = 2  # untimed passes before timing
# timed forward passes at batch 1 (median and 99th percentile)
latency_repeats = 30
train_steps = 8  # timed training steps per model (throughput)
# batches timed in the data-path measurement (None: a whole epoch)
data_batches = 10
memory = True  # measure peak memory per method (in a fresh process on CPU)
# DAS's compiled evaluation: None (its default: wherever compiling works), True
# or False
fused = None
# the profile whose whole sweep is projected at the end of the chapter
project_profile = "paper"
project_steps = 8  # training steps timed per method for that projection
# reuse results/book/<scale>/bench/bench.json if it holds this configuration
reuse = True

# %% tags=["hide-cell"]
import json

import matplotlib.pyplot as plt
import pandas as pd
import torch

from das.bench import (
    MEMORY_RATIO,
    BenchConfig,
    check_targets,
    features_label,
    inference_rows,
    run_bench,
)
from das.chapters import ROOT, book_store, glue, setup_plots, show
from das.config import resolve_device
from das.projection import project_runs
from das.provenance import package_digest
from das.sweep import profile_configs

torch.set_num_threads(num_threads)
config = BenchConfig(
    sizes=tuple(sizes),
    batch_sizes=tuple(batch_sizes),
    ratios=tuple(ratios),
    methods=tuple(methods),
    warmup=warmup,
    repeats=repeats,
    latency_repeats=latency_repeats,
    train_steps=train_steps,
    data_batches=data_batches,
    device=device,
    num_threads=num_threads,
    seed=seed,
    fused=fused,
    memory=memory,
)

setup_plots()
out_dir = book_store("results/book", scale) / "bench"
bench_file = out_dir / "bench.json"


def is_current(report: dict) -> bool:
    """The stored run measured this configuration with this code, torch and thread count."""
    env = report["environment"]
    return (
        report["config"] == json.loads(json.dumps(vars(config)))
        and env.get("package_digest") == package_digest()
        and env["torch"] == torch.__version__
        and env["threads"] == num_threads
    )


stored = json.loads(bench_file.read_text()) if bench_file.is_file() else None
reused = bool(reuse and stored is not None and is_current(stored))
if not reused:
    run_bench(config, out_dir)
report = json.loads(
    bench_file.read_text()
)  # every figure below comes from this file
env = report["environment"]
environment_line = f"{env['device']} | torch {env['torch']} | {env['threads']} threads | {features_label(report)}"
print(
    f"{'read' if reused else 'measured and wrote'} {bench_file.relative_to(ROOT)}"
)
print(environment_line)

everything = pd.DataFrame(inference_rows(report))
everything["k_over_T"] = everything["k"] / everything["num_frames"]
# The ratio and overhead sections use one batch size: 16 volumes when measured, else the largest.
main_batch = 16 if 16 in batch_sizes else max(batch_sizes)
inference = everything[everything["batch_size"] == main_batch]
das_rows = inference[inference["method"] == "das"].set_index(["size", "ratio"])
glue("cmp_batch", main_batch)

# The stored GPU measurement, drawn beside this run's (see the crossover map and the GPU section).
gpu_dir = ROOT / "measurements" / "gpu"
gpu = json.loads((gpu_dir / "bench.json").read_text())
gpu_rows = pd.DataFrame(inference_rows(gpu))

# %% [markdown]
# ## FLOPs per volume
#
# Counted, not timed, so exact and the same on any machine: the table is a regression check of the
# book. The backbone on $k$ of $T$ frames costs exactly $k/T$ of its FLOPs; the linear head runs once
# per volume whatever $k$ is. `FlopCounterMode` counts matrix products and convolutions (the
# backbone's normalisation and activations are not counted); the DAS features, which are elementwise
# filters, are counted by a hand formula registered for their operator
# (`das.samplers.features.fixed_features_flops`, about 23 FLOPs per voxel), so the sampler's share is,
# if anything, overstated. FLOP counting always runs DAS's eager code, operator by operator, so the
# count is the same whether its evaluation is compiled or not.

# %% tags=["nbval-check-output", "hide-input"]
for size, rows in inference.groupby("size"):
    full_mflops = (
        rows.loc[rows["method"] == "full", "flops_per_volume"].item() / 1e6
    )
    table = rows[rows["method"] != "full"].pivot(
        index="method", columns="ratio", values="flops_ratio_to_full"
    )
    print(f"{size}^3: full-sequence model, {full_mflops:.3f} MFLOPs per volume")
    print("FLOPs of each method / full:")
    print(table.reindex(methods).round(4).to_string())
    if "das" in methods:
        share = das_rows.loc[size, "sampler_flops_share"]
        print(
            "DAS sampler alone / full:",
            ", ".join(f"{r}: {v:.4f}" for r, v in share.items()),
        )
    print()

# %% [markdown]
# ## Time and FLOPs against the sampling ratio
#
# Each point is a method's median time per volume (left) or FLOPs (right) as a fraction of the
# full-sequence model's, at the ratio $k/T$ it keeps, for batches of {glue:text}`cmp_batch` volumes.
# The grey line is $k/T$; the dashed line is the physical limit of DAS, its sampler's measured share
# (time, respectively FLOPs) plus $k/T$.

# %% tags=["hide-input"]
colours = dict(zip(methods, plt.rcParams["axes.prop_cycle"].by_key()["color"]))
fig, axes = plt.subplots(
    len(sizes), 2, figsize=(6.8, 3.4 * len(sizes)), squeeze=False
)
for (ax_time, ax_flops), size in zip(axes, sizes):
    rows = inference[
        (inference["size"] == size) & (inference["method"] != "full")
    ]
    das = rows[rows["method"] == "das"].sort_values("k_over_T")
    for ax, field, share in (
        (ax_time, "time_ratio_to_full", "sampler_time_share"),
        (ax_flops, "flops_ratio_to_full", "sampler_flops_share"),
    ):
        for method in methods:
            curve = rows[rows["method"] == method].sort_values("k_over_T")
            ax.plot(
                curve["k_over_T"],
                curve[field],
                "o-",
                color=colours[method],
                label=method,
            )
        ax.plot([0, 1], [0, 1], color="grey", linewidth=1, label="$k/T$")
        if len(das):
            ax.plot(
                das["k_over_T"],
                das["k_over_T"] + das[share],
                "k--",
                linewidth=1,
                label="DAS sampler + $k/T$",
            )
        ax.plot(1.0, 1.0, "k*", markersize=10, label="full sequence")
        ax.set(xlim=(0, 1.05), ylim=(0, None), xlabel="sampling ratio $k/T$")
        ax.grid(alpha=0.3)
    ax_time.set(
        ylabel="time per volume / full",
        title=f"{size}$^3$: time (median of {config.repeats})",
    )
    ax_flops.set(ylabel="FLOPs per volume / full", title=f"{size}$^3$: FLOPs")
axes[0, 1].legend(frameon=False, loc="upper left")
fig.suptitle(environment_line, y=1.0)
fig.tight_layout()
show()

# %% [markdown]
# The same measurements in absolute terms, milliseconds per volume (batches of
# {glue:text}`cmp_batch`, median of {glue:text}`cmp_repeats` passes):

# %% tags=["hide-input"]
print(environment_line)
times = inference.pivot_table(
    index="method", columns=["size", "ratio"], values="ms_per_volume"
)
print(times.reindex(["full", *methods]).round(3).to_string())

# %% tags=["remove-cell"]
glue("cmp_repeats", config.repeats)

# %% [markdown]
# ## The crossover map: where subsampling saves time
#
# Whether keeping half the frames halves the time depends on the machine, the frame size and the
# batch size: the backbone's arithmetic scales with the number of frames, but the fixed costs of a
# call (launching kernels, Python, the sampler's passes over every frame) do not. Each colour is one
# batch size; circles and solid lines are DAS, squares and dashed lines uniform subsampling, at the
# same ratio; the dotted line is $k/T$, what perfect scaling would give, and the black line the full
# model's time. Left: this machine's CPU, measured above. Right: the stored GPU measurement
# (`measurements/gpu/bench.json`), which holds batch {glue:text}`map_gpu_batches` at sizes
# {glue:text}`map_gpu_sizes` only: the GPU panels show what exists. That file was measured before
# the benchmark interleaved the models' calls: each model's calls ran as one block.

# %% tags=["hide-input"]
map_ratios = [r for r in (0.5, 0.25) if r in ratios]
all_batches = sorted({*batch_sizes, *gpu_rows["batch_size"]})
batch_colours = dict(
    zip(all_batches, plt.rcParams["axes.prop_cycle"].by_key()["color"])
)
all_sizes = sorted({*sizes, *gpu_rows["size"]})
fig, axes = plt.subplots(
    len(map_ratios),
    2,
    figsize=(6.8, 0.6 + 3.0 * len(map_ratios)),
    squeeze=False,
    sharex=True,
)
for row_axes, ratio in zip(axes, map_ratios):
    for ax, rows, where in (
        (row_axes[0], everything, "CPU, this run"),
        (row_axes[1], gpu_rows, "GPU, stored"),
    ):
        for batch, at_batch in rows[rows["ratio"] == ratio].groupby(
            "batch_size"
        ):
            for method, style in (("das", "o-"), ("uniform", "s--")):
                curve = at_batch[at_batch["method"] == method].sort_values(
                    "size"
                )
                ax.plot(
                    curve["size"],
                    curve["time_ratio_to_full"],
                    style,
                    color=batch_colours[batch],
                )
        ax.axhline(1.0, color="black", linewidth=1)
        ax.axhline(ratio, color="grey", linewidth=1, linestyle=":")
        ax.set(
            xscale="log",
            title=f"{where}, $k/T$ = {ratio}",
            ylabel="time / full",
            ylim=(0, None),
        )
        ax.set_xticks(all_sizes, labels=[str(s) for s in all_sizes])
        ax.minorticks_off()
        ax.grid(alpha=0.3)
for ax in axes[-1]:
    ax.set_xlabel("frame size (px)")
handles = [
    plt.Line2D([], [], color=colour, label=f"batch {batch}")
    for batch, colour in batch_colours.items()
]
handles += [plt.Line2D([], [], color="black", marker="o", label="DAS")]
handles += [
    plt.Line2D(
        [], [], color="black", marker="s", linestyle="--", label="uniform"
    )
]
fig.legend(
    handles=handles, frameon=False, loc="upper center", ncol=len(handles)
)
fig.tight_layout(rect=(0, 0, 1, 1 - 0.5 / fig.get_figheight()))
glue("compute_map", fig, display=False)
show()


# %% tags=["hide-input"]
# a method "saves time" where it takes at most this share of full's time
SAVES = 0.9


def saving_cells(
    rows: pd.DataFrame, ratio: float, method: str = "das"
) -> tuple[str, str, float, float]:
    """Where ``method`` at ``ratio`` takes at most ``SAVES`` of the full model's time and where it
    does not, as text ("28 px at batch 16, ..."), and its lowest and highest time ratios."""
    at = rows[
        (rows["method"] == method) & (rows["ratio"] == ratio)
    ].sort_values(["size", "batch_size"])
    cells = [
        (f"{row.size} px at batch {row.batch_size}", row.time_ratio_to_full)
        for row in at.itertuples()
    ]
    saves = (
        ", ".join(name for name, value in cells if value <= SAVES)
        or "no size measured"
    )
    does_not = (
        ", ".join(name for name, value in cells if value > SAVES)
        or "no size measured"
    )
    return (
        saves,
        does_not,
        at["time_ratio_to_full"].min(),
        at["time_ratio_to_full"].max(),
    )


def time_ratios(rows: pd.DataFrame) -> str:
    table = rows[rows["method"].isin(["uniform", "das"])].pivot_table(
        index=["method", "ratio"],
        columns=["size", "batch_size"],
        values="time_ratio_to_full",
    )
    return table.round(3).to_string()


map_ratio = map_ratios[0]
cpu_saves, cpu_not, cpu_best, cpu_worst = saving_cells(everything, map_ratio)
gpu_saves, gpu_not, gpu_best, gpu_worst = saving_cells(gpu_rows, map_ratio)
print(environment_line, "(time / full, by size and batch size)")
print(time_ratios(everything))
print(f"{gpu['environment']['device']}, stored:")
print(time_ratios(gpu_rows))

# %% tags=["remove-cell"]
glue("map_ratio", map_ratio)
glue("map_saves", SAVES)
glue("map_cpu_saves", cpu_saves)
glue("map_cpu_not", cpu_not)
glue("map_cpu_best", cpu_best)
glue("map_cpu_worst", cpu_worst)
glue("map_gpu_saves", gpu_saves)
glue("map_gpu_not", gpu_not)
glue("map_gpu_best", gpu_best)
glue("map_gpu_worst", gpu_worst)
glue(
    "map_gpu_batches",
    ", ".join(str(b) for b in sorted(gpu_rows["batch_size"].unique())),
)
glue(
    "map_gpu_sizes",
    ", ".join(str(s) for s in sorted(gpu_rows["size"].unique())),
)
glue("map_gpu_device", gpu["environment"]["device"])

# %% [markdown]
# At $k/T$ = {glue:text}`map_ratio`, DAS takes at most {glue:text}`map_saves` of the full model's
# time on this CPU at {glue:text}`map_cpu_saves`; not at {glue:text}`map_cpu_not` (its time ratio to
# the full model runs from {glue:text}`map_cpu_best:.2f` to {glue:text}`map_cpu_worst:.2f`). On the
# stored {glue:text}`map_gpu_device` measurement it takes at most {glue:text}`map_saves` at
# {glue:text}`map_gpu_saves`; not at
# {glue:text}`map_gpu_not` (from {glue:text}`map_gpu_best:.2f` to {glue:text}`map_gpu_worst:.2f` of
# the full model's time). On a CPU the backbone's arithmetic is the bottleneck, so time follows the
# number of frames once a call holds enough of them; one small volume at a time, the fixed costs of
# a call weigh more. On a GPU with small frames the backbone finishes faster than the host can
# launch its kernels: sending fewer frames then saves little or nothing, and the sampler's own kernels
# add to the time. Subsampling can only pay on a GPU where frames or batches are large enough for
# arithmetic to dominate.
#
# ## Latency at batch 1
#
# One volume at a time, as an interactive or streaming use would send them: the median and the 99th
# percentile over {glue:text}`cmp_latency_repeats` calls, in milliseconds (with so few calls the 99th
# percentile is close to the slowest one).

# %% tags=["hide-input"]
print(environment_line)
single = everything[
    (everything["batch_size"] == 1)
    & everything["method"].isin(["full", "uniform", "das"])
]
if len(single):
    latency = single.pivot_table(
        index=["method", "ratio"],
        columns="size",
        values=["latency_ms_p50", "latency_ms_p99"],
    )
    print(latency.round(2).to_string())
else:
    print("batch 1 was not measured in this run")

# %% tags=["remove-cell"]
glue("cmp_latency_repeats", config.latency_repeats)

# %% [markdown]
# ## Memory
#
# The peak memory of one inference forward pass and of one training step (forward, backward and an
# Adam step) for batches of {glue:text}`cmp_memory_batch` volumes, per method at ratio
# {glue:text}`cmp_memory_ratio`, in MB above what the built model and its input already hold. How it
# was measured: {glue:text}`cmp_memory_measure`. On a CPU this counts every page the call touches,
# one-time setup included, so at small frame sizes the methods differ little.

# %% tags=["hide-input"]
memory_rows = pd.DataFrame(report["memory"])
if len(memory_rows):
    print(environment_line)
    memory_table = memory_rows.pivot_table(
        index=["method", "ratio"],
        columns=["size", "mode"],
        values="peak_memory_mb",
        sort=False,
    )
    print(memory_table.round(1).to_string())
    largest = memory_rows[
        memory_rows["size"] == memory_rows["size"].max()
    ].set_index(["method", "mode"])
    peaks = largest["peak_memory_mb"]
    glue("cmp_memory_measure", memory_rows["measure"].iloc[0])
    glue("cmp_memory_size", memory_rows["size"].max())
    glue(
        "cmp_memory_das_training",
        peaks.get(("das", "training"), float("nan"))
        / peaks[("full", "training")],
    )
    glue(
        "cmp_memory_das_inference",
        peaks.get(("das", "inference"), float("nan"))
        / peaks[("full", "inference")],
    )
else:
    print("memory was not measured in this run")
    glue("cmp_memory_measure", "not measured in this run")
    glue("cmp_memory_size", float("nan"))
    glue("cmp_memory_das_training", float("nan"))
    glue("cmp_memory_das_inference", float("nan"))

# %% tags=["remove-cell"]
glue("cmp_memory_batch", config.batch_size)
glue("cmp_memory_ratio", MEMORY_RATIO)

# %% [markdown]
# At {glue:text}`cmp_memory_size` px, DAS at ratio {glue:text}`cmp_memory_ratio` needs
# {glue:text}`cmp_memory_das_training:.2f` times the full model's memory for a training step and
# {glue:text}`cmp_memory_das_inference:.2f` times for inference: the backbone keeps the activations of
# the frames it sees, while the sampler's features and scores cover every frame but are small.
#
# ## The DAS sampler's own overhead
#
# The sampler alone (features, scores, top-$k$, the gather of the picked frames), timed the same way,
# as a share of the full-sequence model per volume, for batches of {glue:text}`cmp_batch`. Its work
# does not depend on $k$ except for the gather, so the share is about the same at every ratio.

# %% tags=["hide-input"]
print(environment_line)
overhead = das_rows[
    ["sampler_ms_per_volume", "sampler_time_share", "sampler_flops_share"]
]
print(overhead.round(4).to_string())
# Quoted below: the smallest size, at ratio 0.5 when measured (the share hardly depends on the ratio).
smallest_size = min(sizes)
at_half = (
    das_rows.loc[(smallest_size, 0.5)]
    if 0.5 in ratios
    else das_rows.loc[smallest_size].iloc[0]
)

# %% tags=["remove-cell"]
glue("cmp_size", smallest_size)
glue("cmp_sampler_time_share", 100 * at_half["sampler_time_share"])
glue("cmp_sampler_flops_share", 100 * at_half["sampler_flops_share"])
glue("cmp_sampler_ms", at_half["sampler_ms_per_volume"])
glue("cmp_features", features_label(report))

# %% [markdown]
# At {glue:text}`cmp_size`$^3$ the DAS sampler takes {glue:text}`cmp_sampler_ms:.3f` ms per volume,
# {glue:text}`cmp_sampler_time_share:.1f` % of the full-sequence model's time and
# {glue:text}`cmp_sampler_flops_share:.2f` % of its counted FLOPs. Its work is a handful of
# memory-bound passes over every voxel (variance, frame differences, Sobel and Laplacian filters),
# the base score, the top-$k$ and the copy of the picked frames. Eager, that is about thirty small
# operations, each a pass over the volume or a kernel launch; compiled (the default; this run:
# {glue:text}`cmp_features`) they run as a few fused kernels, and only the gather of the picked
# frames stays outside.
#
# ## The performance targets
#
# The project sets targets on CPU (2 threads, float32): at 28$^3$ with batches of 16, on what DAS
# costs beyond uniform subsampling at the same ratio and on its sampler alone, both as shares of the
# full model's time; and one volume at a time at 112 px, on DAS at 0.5 against the full model.
# Checked against this run's file (a target at a size or batch size this run did not measure is
# "not measured"):

# %% tags=["hide-input"]
print(environment_line)
checks = pd.DataFrame(check_targets(report))
checks["result"] = checks["met"].map(
    {True: "met", False: "missed", None: "not measured"}
)
print(
    checks[["target", "value", "bound", "result"]]
    .round(3)
    .to_string(index=False)
)
for i, check in checks.iterrows():
    glue(
        f"cmp_target_{i}_value",
        float("nan") if check["value"] is None else check["value"],
    )
    glue(f"cmp_target_{i}_bound", check["bound"])
    glue(f"cmp_target_{i}_result", check["result"])
on_target_machine = env["threads"] == 2 and env["device"].startswith("cpu")

# %% tags=["remove-cell"]
glue("cmp_setting", "matches" if on_target_machine else "differs from")

# %% [markdown]
# - DAS minus uniform at 0.25, 28$^3$, batch 16: {glue:text}`cmp_target_0_value:.3f` of the full
#   model's time (target at most {glue:text}`cmp_target_0_bound:.2f`): {glue:text}`cmp_target_0_result`;
# - DAS minus uniform at 0.5, 28$^3$, batch 16: {glue:text}`cmp_target_1_value:.3f` (target at most
#   {glue:text}`cmp_target_1_bound:.2f`): {glue:text}`cmp_target_1_result`;
# - the DAS sampler alone, 28$^3$, batch 16: {glue:text}`cmp_target_2_value:.3f` of the full model's
#   time (target at most {glue:text}`cmp_target_2_bound:.2f`): {glue:text}`cmp_target_2_result`;
# - DAS at 0.5, 112 px, batch 1: {glue:text}`cmp_target_3_value:.3f` of the full model's time (target
#   at most {glue:text}`cmp_target_3_bound:.2f`): {glue:text}`cmp_target_3_result`.
#
# This run's setting {glue:text}`cmp_setting` the targets' (CPU, 2 threads). Wall times on a shared
# machine are noisy; the FLOP figures are exact. Small elementwise ops suffer most from a busy CPU
# (several threads waiting for each other), so the sampler's time share is the least stable figure.
# The sampler alone is timed in a loop of its own calls, its input warm in the caches; in a loop of
# model calls it follows the previous call's backbone, which has swept through them. DAS minus
# uniform is therefore what the sampler costs in use, and it can come out above the sampler's own
# share.
#
# ## Training throughput
#
# Frames through the backbone per second in training (forward, backward, Adam step; median over
# {glue:text}`cmp_train_steps` steps), for the full-sequence model and for DAS at ratio 0.5 on
# 28$^3$ volumes:

# %% tags=["hide-input"]
print(environment_line)
training = pd.DataFrame(report["training"])
training["volumes_per_second"] = training["frames_per_second"] / training["k"]
print(training.round(1).to_string(index=False))
full_fps = training.loc[
    training["method"] == "full", "frames_per_second"
].item()
das_fps = training.loc[training["method"] == "das", "frames_per_second"].item()
das_vps = training.loc[training["method"] == "das", "volumes_per_second"].item()
full_vps = training.loc[
    training["method"] == "full", "volumes_per_second"
].item()

# %% tags=["remove-cell"]
glue("cmp_train_steps", report["config"]["train_steps"])
glue("cmp_full_fps", full_fps)
glue("cmp_das_fps", das_fps)
glue("cmp_volume_speedup", das_vps / full_vps)

# %% [markdown]
# The full model trains at {glue:text}`cmp_full_fps:,.0f` frames/s and DAS at 0.5 at
# {glue:text}`cmp_das_fps:,.0f` frames/s; since DAS sends half the frames, that is
# {glue:text}`cmp_volume_speedup:.2f` times as many volumes per second. Per frame through the
# backbone, DAS also pays for work on all $T$ frames: the sampler's features, the straight-through
# selection ($P X$ as a dense product, so that gradients reach the sampler) and its backward pass.
#
# ## The data path
#
# One training epoch of DAS at 0.5 on AdrenalMNIST3D (the real training split), split into the time
# spent producing batches and the time spent computing. Batches come from the split kept as one
# `uint8` tensor, indexed per batch and converted to float on the device (`das.data.iterate_batches`);
# for comparison, the standard per-item `DataLoader` (`__getitem__` per volume, Python collation)
# producing the same batches.

# %% tags=["hide-input"]
print(environment_line)
data = report["data"]
print(pd.Series(data).to_string())

# %% tags=["remove-cell"]
glue("cmp_data_volumes", data["volumes"])
glue("cmp_data_batches", data["batches_timed"])
glue("cmp_batch_s", data["batch_seconds_per_epoch"])
glue("cmp_compute_s", data["compute_seconds_per_epoch"])
glue("cmp_data_share", 100 * data["data_share_of_epoch"])
glue("cmp_loader_s", data["dataloader_batch_seconds_per_epoch"])
glue(
    "cmp_loader_ratio",
    data["dataloader_batch_seconds_per_epoch"]
    / data["batch_seconds_per_epoch"],
)

# %% [markdown]
# Per epoch of {glue:text}`cmp_data_volumes` volumes (scaled from {glue:text}`cmp_data_batches`
# timed batches), producing batches from the resident tensor takes {glue:text}`cmp_batch_s:.3f` s
# against {glue:text}`cmp_compute_s:.1f` s of computing ({glue:text}`cmp_data_share:.2f` % of the
# epoch); the per-item `DataLoader` needs {glue:text}`cmp_loader_s:.2f` s for the same batches
# ({glue:text}`cmp_loader_ratio:.1f` times the resident path's time). With few timed batches these
# per-epoch figures are rough; either way, producing batches is a small part of an epoch.
#
# ## What a whole profile costs here
#
# How long would the {glue:text}`cmp_project_profile` profile's Table 1 sweep take on this machine?
# `das.projection.project_runs` (the code behind `python -m das project`) trains every method with
# the real trainer for {glue:text}`cmp_project_steps` warm steps on random volumes of the profile's
# shape and multiplies the time per step and per evaluation batch by each run's number of batches,
# from the official split sizes. Every run is counted to its last epoch; early stopping can only
# shorten it.

# %% tags=["hide-input"]
projection_file = out_dir / f"projection-{project_profile}.json"
runs = profile_configs(project_profile, device=device, num_threads=num_threads)


def projection_is_current(report: dict) -> bool:
    """The stored projection timed these runs, as many steps, with this code, torch and thread count."""
    env = report["environment"]
    return (
        report["profile"] == project_profile
        and report.get("device") == str(resolve_device(device))
        and report["steps"] == project_steps
        and len(report["runs"]) == len(runs)
        and env.get("package_digest") == package_digest()
        and env["torch"] == torch.__version__
        and env["threads"] == num_threads
    )


stored = (
    json.loads(projection_file.read_text())
    if projection_file.is_file()
    else None
)
if not (reuse and stored is not None and projection_is_current(stored)):
    project_runs(runs, project_steps, profile=project_profile, out_dir=out_dir)
projection = json.loads(
    projection_file.read_text()
)  # the figures below come from this file
projected = pd.DataFrame(projection["runs"]).assign(
    hours=lambda runs: runs["run_s"] / 3600
)
print(
    f"{projection['environment']['device']} | torch {projection['environment']['torch']} | "
    f"{projection['environment']['threads']} threads"
)
print(
    projected.groupby("method", sort=False)
    .agg(
        step_s=("step_s", "first"),
        train_frames_per_s=("train_frames_per_s", "first"),
        hours=("hours", "sum"),
    )
    .round(3)
    .to_string()
)
print(
    projected.groupby("dataset", sort=False)
    .agg(
        train_volumes=("train", "first"),
        epochs=("epochs", "first"),
        runs=("seed", "size"),
        hours=("hours", "sum"),
    )
    .round(2)
    .to_string()
)
per_method = projected.groupby("method", sort=False)["run_s"].sum()

# %% tags=["remove-cell"]
glue("cmp_project_profile", project_profile)
glue("cmp_project_steps", project_steps)
glue("cmp_project_runs", len(projection["runs"]))
glue("cmp_project_hours", projection["total_s"] / 3600)
glue("cmp_project_device", projection["environment"]["device"])
glue(
    "cmp_project_full_share",
    100 * per_method.get("full", float("nan")) / per_method.sum(),
)

# %% [markdown]
# The {glue:text}`cmp_project_runs` runs of the {glue:text}`cmp_project_profile` profile would take
# about {glue:text}`cmp_project_hours:.1f` hours of training and evaluation on this device
# ({glue:text}`cmp_project_device`), of which the full-sequence baseline takes
# {glue:text}`cmp_project_full_share:.0f` %. Loading data, compiling and writing checkpoints are
# left out.
# `python -m das project --profile paper --device cuda` projects the sweep on a GPU.
#
# ## On a GPU: a stored measurement
#
# The book is built on CPUs. The files in `measurements/gpu/` were written by the same commands on one
# GPU (the folder's README lists each command and the code version); this section reads them.

# %% tags=["hide-input"]
print(
    f"{gpu['environment']['device']} | torch {gpu['environment']['torch']} | {features_label(gpu)} | "
    f"read from {(gpu_dir / 'bench.json').relative_to(ROOT)}"
)
gpu_full = gpu_rows[gpu_rows["method"] == "full"].set_index("size")
print(
    "full model, ms per volume:", gpu_full["ms_per_volume"].round(3).to_dict()
)
print("time against the full model:")
print(
    gpu_rows[gpu_rows["method"] != "full"]
    .pivot_table(
        index="method",
        columns=["size", "ratio"],
        values="time_ratio_to_full",
        sort=False,
    )
    .round(3)
    .to_string()
)
gpu_das = gpu_rows[gpu_rows["method"] == "das"].set_index(["size", "ratio"])
gpu_training = pd.DataFrame(gpu["training"]).set_index("method")
gpu_volumes_per_s = gpu_training["frames_per_second"] / gpu_training["k"]
gpu_runs = pd.DataFrame(
    [
        {
            "method": run["method"],
            "epochs_run": run["epochs_run"],
            "best_epoch": run["best_epoch"],
            "s_per_epoch": run["timings"]["train_s"] / run["epochs_run"],
            "frames_per_s": run["timings"]["throughput_frames_per_s"],
            "wall_s": run["timings"]["wall_s"],
        }
        for run in (
            json.loads(path.read_text())
            for path in sorted((gpu_dir / "table1").rglob("seed*.json"))
        )
    ]
)
print(gpu_runs.round(2).to_string(index=False))
gpu_projection = json.loads((gpu_dir / "projection-paper.json").read_text())

# %% tags=["remove-cell"]
glue("gpu_device", gpu["environment"]["device"])
glue("gpu_full_ms_28", gpu_full.loc[28, "ms_per_volume"])
glue("gpu_full_ms_64", gpu_full.loc[64, "ms_per_volume"])
glue(
    "gpu_flops_64_over_28",
    gpu_full.loc[64, "flops_per_volume"] / gpu_full.loc[28, "flops_per_volume"],
)
glue("gpu_das_half", gpu_das.loc[(28, 0.5), "time_ratio_to_full"])
glue("gpu_das_quarter", gpu_das.loc[(28, 0.25), "time_ratio_to_full"])
glue("gpu_sampler_share", 100 * gpu_das.loc[(28, 0.5), "sampler_time_share"])
glue("gpu_full_fps", gpu_training.loc["full", "frames_per_second"])
glue("gpu_das_fps", gpu_training.loc["das", "frames_per_second"])
glue("gpu_volume_speedup", gpu_volumes_per_s["das"] / gpu_volumes_per_s["full"])
glue("gpu_paper_hours", gpu_projection["total_s"] / 3600)
glue("gpu_epochs_min", gpu_runs["epochs_run"].min())
glue("gpu_epochs_max", gpu_runs["epochs_run"].max())
glue("gpu_epoch_s_min", gpu_runs["s_per_epoch"].min())
glue("gpu_epoch_s_max", gpu_runs["s_per_epoch"].max())

# %% [markdown]
# On the {glue:text}`gpu_device` the picture is reversed. The full model takes
# {glue:text}`gpu_full_ms_28:.3f` ms per volume at 28$^3$ and {glue:text}`gpu_full_ms_64:.3f` ms at
# 64$^3$, for {glue:text}`gpu_flops_64_over_28:.1f` times the FLOPs: with batches of 16 volumes the GPU
# waits for the host to launch kernels, not for arithmetic. Sending fewer frames through the backbone
# then saves no time, and the sampler's own kernels add to it ({glue:text}`gpu_sampler_share:.1f` % of
# the full model's time): DAS at 0.5 takes {glue:text}`gpu_das_half:.2f` times the full model's time
# and at 0.25 {glue:text}`gpu_das_quarter:.2f` times. Training shows the same: the full model trains
# at {glue:text}`gpu_full_fps:,.0f` frames/s and DAS at 0.5 at {glue:text}`gpu_das_fps:,.0f`, so DAS
# gets through {glue:text}`gpu_volume_speedup:.2f` times as many volumes per second. Subsampling can
# only save GPU time where the backbone's arithmetic dominates (bigger frames, a bigger backbone or far
# larger batches); we have not measured such a setting.
#
# The paper profile on that GPU: {glue:text}`gpu_paper_hours:.1f` hours if every run went to its last
# epoch (`python -m das project`). The seed-0 AdrenalMNIST3D runs above stopped early, after
# {glue:text}`gpu_epochs_min` to {glue:text}`gpu_epochs_max` of 100 epochs, at
# {glue:text}`gpu_epoch_s_min:.1f` to {glue:text}`gpu_epoch_s_max:.1f` s per epoch.
#
# ## Rerunning
#
# `python -m das bench` runs the same suite from the command line and prints the headline figures:
# `--sizes 28 64 112 224 --batch-sizes 1 16 64` for a wider map, `--frames 32` for video-like inputs
# (a fixed number of frames, whatever their size), `--quick` for 28$^3$ at batch 16 only, and on a
# GPU `--cuda-graphs` to time every model again compiled with CUDA graphs. This chapter's parameters
# cell sets the sizes, batch sizes, ratios and repeats. `python -m das project --profile paper`
# prints the projection above.
