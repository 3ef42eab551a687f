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
# the DAS sampler's own overhead, and the physical limit those curves can approach.
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
# (`das.bench.run_bench`, the code behind `python -m das bench`): in one process, the same batch of
# 16 volumes goes through the full-sequence model and through every subsampled model (warm-up, then
# repeated timings, medians), so each time is also a ratio to the full model measured in the same
# run. FLOPs are counted with `FlopCounterMode` on one volume. The notebook runs the suite unless
# that file already holds a run with exactly this configuration, on the same code (a hash of the
# `das` sources), torch version and thread count; then it reads it (set `reuse = False` to measure
# again). The inputs are random tensors (synthetic, and irrelevant to cost: no method's cost depends
# on pixel values); the data-path figures use the real AdrenalMNIST3D training split.

# %% tags=["parameters"]
scale = "laptop"  # book scale this run belongs to (ci, laptop, gpu; set by the book builder)
seed = 0  # seeds the benchmark input and the models' initial weights
device = "cpu"  # "cpu", "cuda" or "auto"; the performance targets are stated for the CPU
threads = 2  # CPU threads (torch.set_num_threads); the targets are stated for 2
sizes = [28]  # volume sizes, cubes of T slices of T x T; add 64 for 64^3 (about 10x the time)
ratios = [0.125, 0.25, 0.5, 0.75]  # sampling ratios k/T
methods = ["uniform", "random", "dps", "adps", "das"]  # besides the full-sequence model
repeats = 7  # timed forward passes per model (the median is reported)
warmup = 2  # untimed passes before timing
train_steps = 8  # timed training steps per model (throughput)
data_batches = 10  # batches timed in the data-path measurement (None: a whole epoch)
fused_features = False  # DAS with torch.compile'd fixed features (compiles first; needs a C++ compiler on CPU)
project_profile = "paper"  # the profile whose whole sweep is projected at the end of the chapter
project_steps = 8  # training steps timed per method for that projection
reuse = True  # read results/book/<scale>/bench/bench.json when it holds this very configuration

# %% tags=["hide-cell"]
import json

import matplotlib.pyplot as plt
import pandas as pd
import torch

from das.bench import BenchConfig, check_targets, features_label, run_bench
from das.chapters import ROOT, glue, setup_plots, show
from das.provenance import package_digest

torch.set_num_threads(threads)
config = BenchConfig(
    sizes=tuple(sizes),
    ratios=tuple(ratios),
    methods=tuple(methods),
    warmup=warmup,
    repeats=repeats,
    train_steps=train_steps,
    data_batches=data_batches,
    device=device,
    seed=seed,
    fused_features=fused_features,
)

setup_plots()
out_dir = ROOT / "results" / "book" / scale / "bench"
bench_file = out_dir / "bench.json"


def is_current(report: dict) -> bool:
    """The stored run measured this configuration with this code, torch and thread count."""
    env = report["environment"]
    return (
        report["config"] == json.loads(json.dumps(vars(config)))
        and env.get("package_digest") == package_digest()
        and env["torch"] == torch.__version__
        and env["threads"] == torch.get_num_threads()
    )


stored = json.loads(bench_file.read_text()) if bench_file.is_file() else None
reused = bool(reuse and stored is not None and is_current(stored))
if not reused:
    run_bench(config, out_dir)
report = json.loads(bench_file.read_text())  # every figure below comes from this file
env = report["environment"]
environment_line = f"{env['device']} | torch {env['torch']} | {env['threads']} threads | {features_label(report)}"
print(f"{'read' if reused else 'measured and wrote'} {bench_file.relative_to(ROOT)}")
print(environment_line)

inference = pd.DataFrame(report["inference"])
inference["k_over_T"] = inference["k"] / inference["size"]
das_rows = inference[inference["method"] == "das"].set_index(["size", "ratio"])

# %% [markdown]
# ## FLOPs per volume
#
# Counted, not timed, so exact and the same on any machine: the table is a regression check of the
# book. The backbone on $k$ of $T$ frames costs exactly $k/T$ of its FLOPs; the linear head runs once
# per volume whatever $k$ is. `FlopCounterMode` counts matrix products and convolutions (the
# backbone's normalisation and activations are not counted); the DAS features, which are elementwise
# filters, are counted by a hand formula registered for their operator
# (`das.samplers.features.fixed_features_flops`, about 23 FLOPs per voxel), so the sampler's share is,
# if anything, overstated.

# %% tags=["nbval-check-output"]
for size, rows in inference.groupby("size"):
    full_mflops = rows.loc[rows["method"] == "full", "flops_per_volume"].item() / 1e6
    table = rows[rows["method"] != "full"].pivot(index="method", columns="ratio", values="flops_ratio_to_full")
    print(f"{size}^3: full-sequence model {full_mflops:.3f} MFLOPs per volume; FLOPs of each method / full:")
    print(table.reindex(methods).round(4).to_string())
    share = das_rows.loc[size, "sampler_flops_share"]
    print("DAS sampler alone / full:", ", ".join(f"{r}: {v:.4f}" for r, v in share.items()))
    print()

# %% [markdown]
# ## Time and FLOPs against the sampling ratio
#
# Each point is a method's median time per volume (left) or FLOPs (right) as a fraction of the
# full-sequence model's, at the ratio $k/T$ it keeps. The grey line is $k/T$; the dashed line is the
# physical limit of DAS, its sampler's measured share (time, respectively FLOPs) plus $k/T$.

# %% tags=["hide-input"]
colours = dict(zip(methods, plt.rcParams["axes.prop_cycle"].by_key()["color"]))
fig, axes = plt.subplots(len(sizes), 2, figsize=(6.8, 3.4 * len(sizes)), squeeze=False)
for (ax_time, ax_flops), size in zip(axes, sizes):
    rows = inference[(inference["size"] == size) & (inference["method"] != "full")]
    das = rows[rows["method"] == "das"].sort_values("k_over_T")
    for ax, field, share in (
        (ax_time, "time_ratio_to_full", "sampler_time_share"),
        (ax_flops, "flops_ratio_to_full", "sampler_flops_share"),
    ):
        for method in methods:
            curve = rows[rows["method"] == method].sort_values("k_over_T")
            ax.plot(curve["k_over_T"], curve[field], "o-", color=colours[method], label=method)
        ax.plot([0, 1], [0, 1], color="grey", linewidth=1, label="$k/T$")
        ax.plot(das["k_over_T"], das["k_over_T"] + das[share], "k--", linewidth=1, label="limit: DAS sampler + $k/T$")
        ax.plot(1.0, 1.0, "k*", markersize=10, label="full sequence")
        ax.set(xlim=(0, 1.05), ylim=(0, None), xlabel="sampling ratio $k/T$")
        ax.grid(alpha=0.3)
    ax_time.set(ylabel="time per volume / full", title=f"{size}^3: wall time (median of {config.repeats})")
    ax_flops.set(ylabel="FLOPs per volume / full", title=f"{size}^3: FLOPs")
axes[0, 1].legend(frameon=False, fontsize=8, loc="upper left")
fig.suptitle(environment_line, y=1.0, fontsize=9)
fig.tight_layout()
show()

# %% [markdown]
# The same measurements in absolute terms, milliseconds per volume (batch of
# {glue:text}`cmp_batch`, median of {glue:text}`cmp_repeats` passes):

# %%
print(environment_line)
times = inference.pivot_table(index="method", columns=["size", "ratio"], values="ms_per_volume")
print(times.reindex(["full", *methods]).round(3).to_string())
glue("cmp_batch", config.batch_size)
glue("cmp_repeats", config.repeats)

# %% [markdown]
# ## The DAS sampler's own overhead
#
# The sampler alone (features, scores, top-$k$, the gather of the picked frames), timed the same way,
# as a share of the full-sequence model per volume. Its work does not depend on $k$ except for the
# gather, so the share is about the same at every ratio.

# %%
print(environment_line)
overhead = das_rows[["sampler_ms_per_volume", "sampler_time_share", "sampler_flops_share"]]
print(overhead.round(4).to_string())
# Quoted below: the smallest size, at ratio 0.5 when measured (the share hardly depends on the ratio).
smallest_size = min(sizes)
at_half = das_rows.loc[(smallest_size, 0.5)] if 0.5 in ratios else das_rows.loc[smallest_size].iloc[0]
glue("cmp_size", smallest_size)
glue("cmp_sampler_time_share", 100 * at_half["sampler_time_share"])
glue("cmp_sampler_flops_share", 100 * at_half["sampler_flops_share"])
glue("cmp_sampler_ms", at_half["sampler_ms_per_volume"])

# %% [markdown]
# At {glue:text}`cmp_size`$^3$ the DAS sampler takes {glue:text}`cmp_sampler_ms:.3f` ms per volume,
# {glue:text}`cmp_sampler_time_share:.1f` % of the full-sequence model's time and
# {glue:text}`cmp_sampler_flops_share:.2f` % of its counted FLOPs. The time share is larger than the
# FLOP share: its work is a handful of memory-bound passes over every voxel (variance, frame
# differences, Sobel and Laplacian filters) and the copy of the picked frames, ops that run far below
# the arithmetic rate of the backbone's convolutions. The edge filters run as shifted slices rather
# than as a convolution, which is faster on CPU (see `das/samplers/features.py`).
#
# ## The performance targets
#
# The project's performance issue sets targets on CPU (2 threads, float32, 28$^3$, batch 16). Checked
# against this run's file:

# %%
print(environment_line)
checks = pd.DataFrame(check_targets(report))
checks["result"] = checks["met"].map({True: "met", False: "missed", None: "not measured"})
print(checks[["target", "value", "bound", "result"]].round(3).to_string(index=False))
for i, check in checks.iterrows():
    glue(f"cmp_target_{i}_value", float("nan") if check["value"] is None else check["value"])
    glue(f"cmp_target_{i}_bound", check["bound"])
    glue(f"cmp_target_{i}_result", check["result"])
glue("cmp_features", features_label(report))
on_target_machine = env["threads"] == 2 and env["device"].startswith("cpu")
glue("cmp_setting", "matches" if on_target_machine else "differs from")

# %% [markdown]
# - das at 0.5, time: {glue:text}`cmp_target_0_value:.3f` of full (target at most
#   {glue:text}`cmp_target_0_bound:.2f`): {glue:text}`cmp_target_0_result`;
# - das at 0.5, FLOPs: {glue:text}`cmp_target_1_value:.3f` of full (target at most
#   {glue:text}`cmp_target_1_bound:.2f`): {glue:text}`cmp_target_1_result`;
# - das at 0.25, time: {glue:text}`cmp_target_2_value:.3f` of full (target at most
#   {glue:text}`cmp_target_2_bound:.2f`): {glue:text}`cmp_target_2_result`;
# - the DAS sampler's own time: {glue:text}`cmp_target_3_value:.3f` of full (target at most
#   {glue:text}`cmp_target_3_bound:.2f`): {glue:text}`cmp_target_3_result`.
#
# This run's setting {glue:text}`cmp_setting` the targets' (CPU, 2 threads). Wall times on a shared
# machine are noisy; the FLOP figures are exact. Small elementwise ops suffer most from a busy CPU
# (several threads waiting for each other), so the sampler's time share is the least stable figure.
#
# Where the time goes when a target is missed: in eager mode the fixed features are about fifteen
# elementwise passes over every voxel (two moments, the frame difference, the Sobel and Laplacian
# filters as shifted slices, the magnitude and the sums), each paying a full read and write of the
# volume; and the backbone itself does not scale down linearly at small batches (at ratio 0.25 it
# gets 16 x 7 frames per call, where per-layer overheads weigh more). The first cost goes away when
# the passes are fused: `DASSampler(fused_features=True)` compiles the same feature code with
# `torch.compile` into a kernel or two (same values up to float32 rounding; compiled on first use,
# which takes seconds and, on CPU, a C++ compiler). This run: {glue:text}`cmp_features` (the
# `fused_features` parameter above; `python -m das bench --fused-features` on the command line).
#
# ## Training throughput
#
# Frames through the backbone per second in training (forward, backward, Adam step; median over
# {glue:text}`cmp_train_steps` steps), for the full-sequence model and for DAS at ratio 0.5 on
# 28$^3$ volumes:

# %%
print(environment_line)
training = pd.DataFrame(report["training"])
training["volumes_per_second"] = training["frames_per_second"] / training["k"]
print(training.round(1).to_string(index=False))
full_fps = training.loc[training["method"] == "full", "frames_per_second"].item()
das_fps = training.loc[training["method"] == "das", "frames_per_second"].item()
das_vps = training.loc[training["method"] == "das", "volumes_per_second"].item()
full_vps = training.loc[training["method"] == "full", "volumes_per_second"].item()
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

# %%
print(environment_line)
data = report["data"]
print(pd.Series(data).to_string())
glue("cmp_data_volumes", data["volumes"])
glue("cmp_data_batches", data["batches_timed"])
glue("cmp_batch_s", data["batch_seconds_per_epoch"])
glue("cmp_compute_s", data["compute_seconds_per_epoch"])
glue("cmp_data_share", 100 * data["data_share_of_epoch"])
glue("cmp_loader_s", data["dataloader_batch_seconds_per_epoch"])
glue("cmp_loader_ratio", data["dataloader_batch_seconds_per_epoch"] / data["batch_seconds_per_epoch"])

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

# %%
from das.config import resolve_device
from das.projection import project_runs
from das.sweep import table1_configs

projection_file = out_dir / f"projection-{project_profile}.json"
runs = table1_configs(project_profile, device=device, num_threads=threads)


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
        and env["threads"] == threads
    )


stored = json.loads(projection_file.read_text()) if projection_file.is_file() else None
if not (reuse and stored is not None and projection_is_current(stored)):
    project_runs(runs, project_steps, profile=project_profile, out_dir=out_dir)
projection = json.loads(projection_file.read_text())  # the figures below come from this file
projected = pd.DataFrame(projection["runs"]).assign(hours=lambda runs: runs["run_s"] / 3600)
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
glue("cmp_project_profile", project_profile)
glue("cmp_project_steps", project_steps)
glue("cmp_project_runs", len(projection["runs"]))
glue("cmp_project_hours", projection["total_s"] / 3600)
glue("cmp_project_device", projection["environment"]["device"])
glue("cmp_project_full_share", 100 * per_method.get("full", float("nan")) / per_method.sum())

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

# %%
gpu_dir = ROOT / "measurements" / "gpu"
gpu = json.loads((gpu_dir / "bench.json").read_text())
print(
    f"{gpu['environment']['device']} | torch {gpu['environment']['torch']} | {features_label(gpu)} | "
    f"read from {(gpu_dir / 'bench.json').relative_to(ROOT)}"
)
gpu_rows = pd.DataFrame(gpu["inference"])
gpu_full = gpu_rows[gpu_rows["method"] == "full"].set_index("size")
print("full model, ms per volume:", gpu_full["ms_per_volume"].round(3).to_dict())
print("time against the full model:")
print(
    gpu_rows[gpu_rows["method"] != "full"]
    .pivot_table(index="method", columns=["size", "ratio"], values="time_ratio_to_full", sort=False)
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
        for run in (json.loads(path.read_text()) for path in sorted((gpu_dir / "table1").rglob("seed*.json")))
    ]
)
print(gpu_runs.round(2).to_string(index=False))
gpu_projection = json.loads((gpu_dir / "projection-paper.json").read_text())
glue("gpu_device", gpu["environment"]["device"])
glue("gpu_full_ms_28", gpu_full.loc[28, "ms_per_volume"])
glue("gpu_full_ms_64", gpu_full.loc[64, "ms_per_volume"])
glue("gpu_flops_64_over_28", gpu_full.loc[64, "flops_per_volume"] / gpu_full.loc[28, "flops_per_volume"])
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
# `python -m das bench` runs the same suite from the command line (`--quick` for 28$^3$ only) and
# prints the headline figures; this chapter's parameters cell sets the sizes, ratios and repeats
# (the `paper` profile adds 64$^3$ volumes). `python -m das project --profile paper` prints the
# projection above.
