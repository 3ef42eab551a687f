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
# # Why subsample
#
# A 3D scan or a video is a stack of $T$ slices or frames, $X \in \mathbb{R}^{T \times C \times H
# \times W}$. A 2D network that embeds every slice pays $T$ times its per-slice cost, although
# neighbouring slices mostly repeat each other and many carry little of the object of interest. This
# chapter measures both halves of that argument on **real data**, the AdrenalMNIST3D volumes of
# MedMNIST v2 {cite}`yang2023medmnist` (CC BY 4.0), and on the backbone the DAS paper uses,
# MobileNetV3-Small {cite}`howard2019mobilenetv3`:
#
# 1. how redundant the slices are (correlation between neighbours; how few slices hold most of the
#    foreground);
# 2. how the backbone's cost grows with the number of slices it sees: FLOPs counted by PyTorch's
#    `FlopCounterMode` and wall time per volume, for $k$ of the $T$ slices.

# %% tags=["parameters", "hide-input"]
# book scale this run belongs to (ci, laptop, gpu; set by the book builder)
scale = "laptop"
seed = 0  # picks the volumes shown in the montage
device = "cpu"  # where the backbone is timed
# training volumes used for the redundancy statistics; 1188 is the whole split
num_volumes = 1188
repeats = 20  # timed repetitions per k (the median is reported)
# volumes per timed forward pass (the paper's training batch size)
batch_volumes = 16
# CPU threads for the timing (1: comparable across machines, robust to load)
num_threads = 1

# %% tags=["hide-cell"]
import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from IPython.display import display

from das.backbone import FrameEncoder
from das.chapters import book_table, glue, setup_plots, show
from das.data import load_medmnist3d
from das.flops import count_flops

setup_plots()

torch.manual_seed(seed)
torch.set_num_threads(num_threads)
device = torch.device(device)

# %% [markdown]
# ## The data: AdrenalMNIST3D
#
# The official MedMNIST v2 file, read from the folder in `DAS_DATA_DIR` (see the introduction). Each
# volume is a $28^3$ crop around an adrenal gland, stored as 28 axial slices of $28 \times 28$; the
# label is binary (normal adrenal gland or adrenal hyperplasia).

# %% tags=["nbval-check-output"]
train = load_medmnist3d("adrenalmnist3d", "train")
# [N, T, H, W] in [0, 1]
volumes = train.images[:num_volumes, :, 0].float() / 255
N, T, H, W = volumes.shape
print(
    f"{train.name} {train.split}: {len(train)} volumes of T={train.num_frames} slices, "
    f"{train.image_size}x{train.image_size} pixels, {train.in_channels} channel"
)
print("classes:", dict(enumerate(train.label_names)))
print(
    "volumes per class:",
    torch.bincount(train.labels, minlength=train.num_classes).tolist(),
)
print(f"using the first {N} volumes for the statistics below")

# %% tags=["remove-cell"]
glue("n_train", len(train), display=False)
glue("n_used", N, display=False)
glue("T", T, display=False)

# %% [markdown]
# Every slice of three volumes, one row per volume (slice position along the scan from left to right):

# %% tags=["hide-input"]
rng = np.random.default_rng(seed)
shown = rng.choice(N, size=3, replace=False)
# One image: the slices side by side (a 2-pixel gap between them), one row per volume.
gap = 2
montage = np.ones((len(shown) * (H + gap), T * (W + gap)))
for row, index in enumerate(shown):
    for t in range(T):
        y0, x0 = row * (H + gap), t * (W + gap)
        montage[y0 : y0 + H, x0 : x0 + W] = volumes[index, t].numpy()
fig, ax = plt.subplots(figsize=(6.8, 1.9))
ax.imshow(montage, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
ax.set_xticks(
    [t * (W + gap) + W / 2 for t in range(0, T, 4)],
    [str(t) for t in range(0, T, 4)],
)
ax.set_yticks(
    [row * (H + gap) + H / 2 for row in range(len(shown))],
    [f"#{i}" for i in shown],
)
ax.set_xlabel("slice position $t$")
ax.set_title(
    "AdrenalMNIST3D (real, train split): the 28 slices of three volumes"
)
show()

# %% [markdown]
# ## Redundancy: neighbouring slices repeat each other
#
# For a volume $X$ with slices $X_1, \dots, X_T$ (flattened to vectors), the correlation between
# slices $d$ apart, averaged over positions and volumes, is
#
# $$
# \rho(d) = \operatorname{mean}_{t}\; \operatorname{corr}(X_t, X_{t+d}), \qquad d = 1, \dots, T - 1,
# $$
#
# taken over the pairs in which both slices are non-constant (an empty slice has no correlation). If
# $\rho(1)$ is close to 1, keeping every other slice loses little.

# %%
flat = volumes.reshape(N, T, H * W)
centered = flat - flat.mean(-1, keepdim=True)
norms = centered.norm(dim=-1)  # [N, T]; zero for a constant slice
rho, pairs = [], []
for d in range(1, T):
    a, b = centered[:, :-d], centered[:, d:]
    valid = (norms[:, :-d] > 0) & (norms[:, d:] > 0)
    corr = (a * b).sum(-1) / (norms[:, :-d] * norms[:, d:]).clamp_min(1e-12)
    rho.append(corr[valid].mean().item())
    pairs.append(int(valid.sum()))
rho = np.array(rho)

# %% tags=["nbval-check-output"]
print("distance d:   ", list(range(1, 6)))
print("correlation:  ", np.round(rho[:5], 2))

# %% tags=["remove-cell"]
glue("rho1", float(rho[0]), display=False)
glue("rho2", float(rho[1]), display=False)
glue(
    "d_half",
    int(np.argmax(rho < 0.5)) + 1 if (rho < 0.5).any() else T,
    display=False,
)

# %% tags=["hide-input"]
fig, ax = plt.subplots(figsize=(6, 3.2))
ax.plot(range(1, T), rho, "o-", markersize=3)
ax.axhline(0, color="gray", linewidth=0.8)
ax.set(
    xlabel="distance between slices $d$",
    ylabel="mean correlation $\\rho(d)$",
    title=f"Slice-to-slice correlation, {N} real volumes",
)
ax.grid(alpha=0.3)
show()

# %% [markdown]
# Adjacent slices correlate at $\rho(1)$ = {glue:text}`rho1:.2f` and slices two apart at $\rho(2)$ =
# {glue:text}`rho2:.2f`; the correlation first falls below 0.5 at a distance of
# {glue:text}`d_half` slices.
#
# ## Where the object is: few slices hold most of the foreground
#
# The volumes are mostly background. Let $m_t$ be the foreground mass of slice $t$ (the sum of its
# intensities). Sorting the slices of a volume by mass, the number of slices needed to hold a fraction
# $q$ of the volume's total is
#
# $$
# n_q = \min\Big\{ n : \sum_{i=1}^{n} m_{(i)} \ge q \sum_{t=1}^{T} m_t \Big\}, \qquad
# m_{(1)} \ge m_{(2)} \ge \dots
# $$

# %%
mass = volumes.sum(dim=(-1, -2))  # [N, T]
share = mass.sort(dim=1, descending=True).values.cumsum(1) / mass.sum(
    1, keepdim=True
).clamp_min(1e-12)
n90 = (share < 0.9).sum(1) + 1  # slices needed for 90% of the mass, per volume
n99 = (share < 0.99).sum(1) + 1
# fraction of slices with no foreground at all
empty = (mass == 0).float().mean(1)

# %% tags=["nbval-check-output"]
print(
    f"slices for 90% of the foreground: median {n90.median().item()}, range {n90.min().item()}-{n90.max().item()} of {T}"
)
print(
    f"slices for 99% of the foreground: median {n99.median().item()}, range {n99.min().item()}-{n99.max().item()} of {T}"
)
print(f"empty slices per volume: mean {empty.mean().item():.1%}")

# %% tags=["remove-cell"]
glue("n90_median", int(n90.median()), display=False)
glue("n99_median", int(n99.median()), display=False)
glue("empty_share", empty.mean().item(), display=False)

# %% tags=["hide-input"]
fig, (ax_hist, ax_pos) = plt.subplots(1, 2, figsize=(6.8, 2.6))
bins = np.arange(0.5, T + 1.5)
ax_hist.hist(n90.numpy(), bins=bins, alpha=0.7, label="90% of the mass")
ax_hist.hist(n99.numpy(), bins=bins, alpha=0.7, label="99% of the mass")
ax_hist.set(
    xlabel="number of slices needed",
    ylabel="volumes",
    title="Slices holding the foreground",
)
ax_hist.legend(frameon=False)
ax_pos.plot(
    range(T),
    (mass / mass.sum(1, keepdim=True).clamp_min(1e-12)).mean(0).numpy(),
    "o-",
    markersize=3,
)
ax_pos.set(
    xlabel="slice position $t$",
    ylabel="mean share of the mass",
    title="Where along the volume",
)
for ax in (ax_hist, ax_pos):
    ax.grid(alpha=0.3)
fig.tight_layout()
show()

# %% [markdown]
# In the median volume {glue:text}`n90_median` of the {glue:text}`T` slices hold 90% of the foreground
# and {glue:text}`n99_median` hold 99%; on average {glue:text}`empty_share:.0%` of the slices are
# empty. Which slices matter also moves from volume to volume (the right panel averages over volumes),
# which is the case for a sampler that looks at each input instead of a fixed pattern.
#
# ## Cost: the backbone on $k$ of $T$ slices
#
# The classifier embeds each kept slice with MobileNetV3-Small (`das.backbone.FrameEncoder`, one input
# channel, no pretrained weights). Its cost is linear in the number of slices:
#
# $$
# \mathrm{FLOPs}(k) = k \cdot \mathrm{FLOPs}(1), \qquad
# \frac{\mathrm{FLOPs}(k)}{\mathrm{FLOPs}(T)} = \frac{k}{T}.
# $$
#
# The check counts FLOPs with `das.flops.count_flops` (PyTorch's `FlopCounterMode`: convolutions and
# matrix products, 2 FLOPs per multiply-add) for several $k$, and times the encoder on a batch of
# `batch_volumes` real volumes with $k$ slices each (one call of `batch_volumes`$\cdot k$ slices, as in
# training), reported per volume: the median of `repeats` runs on `num_threads` CPU threads.

# %%
encoder = FrameEncoder(in_channels=1).to(device).eval()
ks = [1, 4, 7, 14, 21, T]
# [T, 1, H, W]: one real volume, for the FLOP count
sample = volumes[0].unsqueeze(1).to(device)
# [B, T, 1, H, W] for the timing
batch = volumes[:batch_volumes].unsqueeze(2).to(device)


def median_seconds(frames: torch.Tensor) -> float:
    """Median wall time of one forward pass over ``frames`` (after one warm-up pass), in seconds."""
    with torch.inference_mode():
        encoder(frames)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            encoder(frames)
            if device.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
    return float(np.median(times))


cost = pd.DataFrame(
    [
        {
            "k": k,
            "flops": count_flops(encoder, sample[:k]),
            "seconds": median_seconds(batch[:, :k].flatten(0, 1))
            / len(batch),  # per volume
        }
        for k in ks
    ]
)
cost["flops_vs_T"] = cost.flops / cost.flops.iloc[-1]
cost["time_vs_T"] = cost.seconds / cost.seconds.iloc[-1]

# %% tags=["nbval-check-output"]
per_slice = int(cost.flops.iloc[0])
print(
    f"FLOPs per 28x28 slice: {per_slice / 1e6:.2f} M ({per_slice / 2e6:.2f} M multiply-adds)"
)
print(
    "FLOPs exactly linear in k:", bool((cost.flops == cost.k * per_slice).all())
)
print(
    cost[["k", "flops"]]
    .assign(flops_vs_T=cost.flops_vs_T.round(3))
    .to_string(index=False)
)

# %% tags=["remove-cell"]
glue("mflops_slice", per_slice / 1e6, display=False)
glue("mmacs_slice", per_slice / 2e6, display=False)

# %% tags=["hide-input"]
half = cost[cost.k == T // 2].iloc[0]
glue("batch_volumes", len(batch), display=False)
glue("time_T_ms", float(cost.seconds.iloc[-1]) * 1e3, display=False)
glue("time_half_ratio", float(half.time_vs_T), display=False)
glue(
    "timing_device",
    f"{device.type}, {num_threads} thread(s)"
    if device.type == "cpu"
    else device.type,
    display=False,
)
fig, ax = plt.subplots(figsize=(6, 3.6))
ax.plot(cost.k, cost.flops_vs_T, "o-", label="FLOPs (counted)")
ax.plot(cost.k, cost.time_vs_T, "s--", label="wall time (measured)")
ax.plot([0, T], [0, 1], color="gray", linestyle=":", label="$k/T$")
ax.set(
    xlabel="slices seen by the backbone $k$",
    ylabel="cost relative to all $T$ slices",
    title="MobileNetV3-Small on k of T = 28 slices",
)
ax.legend(frameon=False)
ax.grid(alpha=0.3)
show()
table = cost.assign(ms_per_volume=(cost.seconds * 1e3).round(2)).set_index("k")
display(
    book_table(
        table[["flops", "ms_per_volume", "flops_vs_T", "time_vs_T"]].round(3)
    )
)

# %% [markdown]
# One $28 \times 28$ slice costs {glue:text}`mflops_slice:.2f` MFLOPs ({glue:text}`mmacs_slice:.2f` M
# multiply-adds), and the count is exactly proportional to $k$. The
# wall time for all {glue:text}`T` slices is {glue:text}`time_T_ms:.1f` ms per volume
# ({glue:text}`timing_device`, batches of {glue:text}`batch_volumes` volumes); at $k = T/2$ it is
# {glue:text}`time_half_ratio:.2f` of that. Where wall time falls more slowly than the FLOPs, the
# causes are work FlopCounterMode does not count (activations, normalisation, memory traffic) and fixed
# per-call overheads, which do not shrink with $k$. The timings come from whatever machine built this
# page, possibly shared with other jobs: read them as indicative, the FLOP counts as exact.
#
# The argument for a learned sampler follows: most of the slices can be dropped with little loss of
# information, which ones depends on the volume, and the backbone's bill falls in proportion. The next
# chapter builds the differentiable tool that makes "which ones" learnable.
