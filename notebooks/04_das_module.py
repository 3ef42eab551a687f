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
# # The DAS module
#
# This chapter opens the DAS sampler {cite}`shankaranarayana2025das` (`das.samplers.DASSampler`) and
# follows one batch of **real AdrenalMNIST3D volumes** {cite}`yang2023medmnist` through it, tensor by
# tensor: the cheap per-slice features $F$, the base scores $a_{\mathrm{base}}$, the scales of each
# attention head, the adaptive temperature $\tau$ and the selection matrix $P$. It then puts DAS next
# to DPS {cite}`huijben2020dps` on two inputs: DPS keeps the same slices for every volume, DAS chooses
# per volume. Where the paper leaves a hole, the chapter states our decision and, where it can,
# demonstrates it with a computation on the same tensors.
#
# So that the scores are those of a trained sampler rather than of a random initialisation, DAS and
# DPS are first trained briefly on AdrenalMNIST3D with the project's trainer (`das.train`); the
# parameters cell sets how briefly. A last section shows the same module on one volume of the
# **synthetic** benchmark, where the slice that decides the label is known.

# %% tags=["parameters", "hide-input"]
# book scale this run belongs to (ci, laptop, gpu; set by the book builder)
scale = "laptop"
# training seed; also picks the volumes shown and seeds the Gumbel draws
seed = 0
device = "auto"  # where training runs ("auto": CUDA when present, else "cpu")
num_threads = 2  # torch CPU threads
epochs = 2  # training epochs on AdrenalMNIST3D (DAS and DPS each)
# training volumes used (a fixed subset; 1188 is the whole train split)
max_train_samples = 128
# validation and test volumes used for the reported metrics (None: all)
max_eval_samples = 98
# training epochs of DAS on the synthetic benchmark (last section)
synthetic_epochs = 2
# synthetic training volumes (and validation/test volumes in the metrics)
synthetic_samples = 128
num_draws = 500  # Gumbel draws for the with/without-replacement comparison
# run store of the book (relative to the repository root); runs go to
# <scale>/das_module
results_dir = "results/book"

# %% tags=["hide-cell"]
import textwrap

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from IPython.display import Markdown, display
from matplotlib.colors import to_rgb
from matplotlib.ticker import MaxNLocator

from das.chapters import (
    book_store,
    book_table,
    glue,
    setup_plots,
    show,
    sweep,
    trained_model,
)
from das.config import TrainConfig
from das.data import load_dataset, static_miss_probability
from das.samplers import DASSampler
from das.samplers.features import (
    FIXED_FEATURES,
    fixed_features,
    standardise_over_frames,
)
from das.sweep import Run

setup_plots()

torch.set_num_threads(num_threads)
store = book_store(results_dir, scale)
COLORS = {"das": "tab:orange", "dps": "tab:blue"}


def trained(config: TrainConfig):
    """Train ``config`` into this chapter's store (or read back a stored run of the same config) and
    return ``(model with the best epoch's weights, run record)``; the run keeps its checkpoint, which
    holds the weights this chapter inspects."""
    [outcome] = sweep([Run("das_module", config)], store, keep_checkpoint=True)
    return trained_model(outcome, store), outcome.record


def strip(
    volume: torch.Tensor, picked, color: str = "tab:orange", gap: int = 2
) -> np.ndarray:
    """One RGB image of the T slices of ``volume [T, 1, H, W]`` side by side: picked slices framed in
    ``color``, the others dimmed."""
    frames, _, height, width = volume.shape
    canvas = np.ones((height + 2 * gap, frames * (width + gap) + gap, 3))
    rgb = np.array(to_rgb(color))
    for t in range(frames):
        left = gap + t * (width + gap)
        tile = np.repeat(volume[t, 0].numpy()[..., None], 3, axis=-1)
        if t in picked:
            canvas[:, left - gap : left + width + gap] = rgb
        else:
            tile = 0.45 * tile + 0.55
        canvas[gap : gap + height, left : left + width] = tile
    return canvas


# %% [markdown]
# ## Two real volumes
#
# AdrenalMNIST3D test volumes are $28^3$: $T = 28$ axial slices of $28 \times 28$ pixels, one channel,
# labelled normal adrenal gland or hyperplasia. DAS keeps half of them, $k = 14$. Two volumes, one of
# each class, make the batch $x \in \mathbb{R}^{B \times T \times C \times H \times W}$ used throughout.

# %% tags=["nbval-check-output"]
train_set = load_dataset("adrenalmnist3d", "train")
test_set = load_dataset("adrenalmnist3d", "test")
T, C = test_set.num_frames, test_set.in_channels
rng = np.random.default_rng(seed)
chosen = [
    int(rng.choice(np.flatnonzero(test_set.labels.numpy() == c)))
    for c in range(test_set.num_classes)
]
x = torch.stack([test_set[i][0] for i in chosen])  # [B, T, C, H, W] in [0, 1]
names = [
    f"test #{i} ({test_set.label_names[int(test_set.labels[i])]})"
    for i in chosen
]
k = round(0.5 * T)
print("volumes:", names)
print("x:", tuple(x.shape), "= [B, T, C, H, W];", f"k = {k} of T = {T}")

# %% tags=["remove-cell"]
glue("T", T, display=False)
glue("k", k, display=False)

# %% [markdown]
# ## Step 1: cheap features per slice
#
# For every slice DAS computes $d = 5$ numbers with fixed kernels and no parameters
# (`das/samplers/features.py`): the variance of the slice (the paper's "temporal activity"), the mean
# absolute difference to the previous slice (our addition), the mean Sobel gradient magnitude and the
# mean absolute Laplacian (the paper's "anatomical boundaries"), and the mean intensity. The sampler
# sees them **standardised over $T$ within each volume**, $\tilde F = (F - \operatorname{mean}_T F) /
# \operatorname{std}_T F$: which slices stand out in *this* volume, not absolute levels.

# %% tags=["nbval-check-output"]
raw = fixed_features(x)  # [B, T, d], unstandardised
F_std = standardise_over_frames(raw)  # [B, T, d], what MLP_base reads
print(
    "F:", tuple(raw.shape), "= [B, T, d]; features:", ", ".join(FIXED_FEATURES)
)
print("volume 0, slices 10-13 (raw):")
print(
    pd.DataFrame(
        raw[0, 10:14].numpy(), index=range(10, 14), columns=FIXED_FEATURES
    )
    .round(4)
    .to_string()
)

# %% tags=["hide-input"]
fig = plt.figure(figsize=(6.8, 4.8))
grid = fig.add_gridspec(
    len(FIXED_FEATURES), 2, width_ratios=[1.1, 1], wspace=0.15, hspace=0.15
)
montage = (
    x[0, :, 0].reshape(4, 7, 28, 28).permute(0, 2, 1, 3).reshape(4 * 28, 7 * 28)
)
ax = fig.add_subplot(grid[:, 0])
ax.imshow(montage.numpy(), cmap="gray", vmin=0, vmax=1)
for t in range(T):
    ax.text((t % 7) * 28 + 1, (t // 7) * 28 + 9, str(t), color="yellow")
ax.set_axis_off()
ax.set_title(f"{names[0]}: slices 0-27")
for row, feature in enumerate(FIXED_FEATURES):
    ax = fig.add_subplot(grid[row, 1])
    ax.plot(
        range(T), raw[0, :, row].numpy(), "o-", markersize=3, color="tab:gray"
    )
    ax.set_ylabel(
        feature.replace("_", " ").replace("temporal difference", "difference"),
        rotation=0,
        ha="right",
        va="center",
    )
    ax.set_yticks([])
    ax.set_xlim(-0.5, T - 0.5)
    if row < len(FIXED_FEATURES) - 1:
        ax.set_xticklabels([])
ax.set_xlabel("slice index t")
show()

# %% [markdown]
# The first and last slices cut the volume outside the gland: low variance, few edges. The
# features rise where the organ crosses the slice. Nothing here is learned: the cost is a few
# multiply-adds per pixel (chapter 7 measures it).
#
# **A hole we had to fill: what the heads and the temperature read.** The paper feeds "$F$ pooled over
# $T$" to the head MLPs and the temperature MLP. Pooled standardised features are useless for that:
# over $T$ every standardised feature has mean 0 and standard deviation 1 (up to the small constant
# that guards against division by zero), in every volume, so two of the three summaries (mean, max,
# std) are constants. We pool the **raw** features instead; the check below computes both summaries
# for the two volumes.


# %% tags=["nbval-check-output"]
def rounded(values: torch.Tensor) -> np.ndarray:
    return (
        np.round(values.numpy(), 3) + 0.0
    )  # + 0.0 turns -0.0 into 0.0 (the sign of a rounding error)


for label, features in (("standardised", F_std), ("raw", raw)):
    mean, std = features.mean(dim=1), features.std(dim=1, unbiased=False)
    print(
        f"{label:>12}: mean over T, volume 0 {rounded(mean[0])}, volume 1 {rounded(mean[1])}"
    )
    print(
        f"{'':>12}  std over T,  volume 0 {rounded(std[0])}, volume 1 {rounded(std[1])}"
    )

# %% [markdown]
# Before any training, a DAS sampler built from a fixed seed already picks slices that depend on the
# volume: its base score starts as the slices' standardised variance (plus a small random
# correction). The cell below records what a seeded, untrained `DASSampler` picks on the two volumes
# at evaluation (sorted top-$k$) and in one training draw from a seeded generator (rows in temporal
# order). The book's regression tests compare these picks with stored ones, so a change to the
# sampler that changes what it picks fails them.

# %% tags=["nbval-check-output"]
with (
    torch.random.fork_rng()
):  # seed the initialisation without touching the notebook's global RNG
    torch.manual_seed(seed)
    untrained = DASSampler(T, k)
with torch.no_grad():
    for mode, selection in (
        ("evaluation", untrained.eval()(x)),
        (
            "training draw",
            untrained.train()(x, torch.Generator().manual_seed(seed)),
        ),
    ):
        for b, name in enumerate(names):
            print(f"{mode:>13}, {name}: {selection.indices[b].tolist()}")

# %% [markdown]
# ## Training DAS and DPS briefly
#
# The trainer is the one every experiment of the book uses, here with its defaults (the paper's
# straight-through estimator, no sampler warm-up): MobileNetV3-Small {cite}`howard2019mobilenetv3`
# on the $k$ picked slices, mean-pooled, a linear head; Adam, learning rate $10^{-4}$ for the backbone
# and $10^{-3}$ for the sampler. Here it runs for a few epochs on a subset of the training split, just
# enough to move the sampler away from its initialisation; the Table 1 chapter has the real
# experiment. The runs are records of the results store (`results/book/<scale>/das_module/`), apart
# from the Table 1 runs, and a rerun with the same parameters reads them back.

# %%
models, records = {}, {}
for method in ("das", "dps"):
    config = TrainConfig(
        dataset="adrenalmnist3d",
        method=method,
        ratio=0.5,
        seed=seed,
        epochs=epochs,
        patience=None,
        max_train_samples=max_train_samples,
        max_eval_samples=max_eval_samples,
        device=device,
        num_threads=num_threads,
        quiet=True,
    )
    models[method], records[method] = trained(config)
runs = pd.DataFrame.from_dict(
    {
        method: {
            "train volumes": record["split_sizes"]["train"],
            "epochs": record["epochs_run"],
            "test volumes": record["split_sizes"]["test"],
            "balanced acc. (%)": 100 * record["metrics"]["balanced_accuracy"],
            "AUC": record["metrics"]["auc"],
            "train time (s)": record["timings"]["train_s"],
        }
        for method, record in records.items()
    },
    orient="index",
)
display(book_table(runs.rename_axis("method").round(3)))
for method, record in records.items():
    glue(
        f"{method}_bacc",
        100 * record["metrics"]["balanced_accuracy"],
        display=False,
    )
    auc = record["metrics"][
        "auc"
    ]  # None (JSON null) when undefined, e.g. one class in a tiny test set
    glue(f"{method}_auc", float("nan") if auc is None else auc, display=False)
sampler = models["das"].sampler
dps = models["dps"].sampler

# %% tags=["remove-cell"]
glue("train_epochs", epochs, display=False)
glue("train_volumes", records["das"]["split_sizes"]["train"], display=False)

# %% [markdown]
# After {glue:text}`train_epochs` epoch(s) on {glue:text}`train_volumes` volumes DAS reaches a balanced
# accuracy of {glue:text}`das_bacc:.1f`% (AUC {glue:text}`das_auc:.3f`) and DPS
# {glue:text}`dps_bacc:.1f`% (AUC {glue:text}`dps_auc:.3f`): with this little training, numbers near
# 50% mean the classifier has not yet learned the task; they are not a comparison of the methods.
# What follows inspects the trained DAS sampler.
#
# ## Step 2: base scores
#
# $a_{\mathrm{base}} \in \mathbb{R}^{B \times T}$ gives every slice one score. The paper says only
# "e.g. derived from temporal variance"; our default starts there and learns a correction,
# $a_{\mathrm{base}} = z(\mathrm{var}) + \mathrm{MLP}_{\mathrm{base}}(\tilde F)$ per slice
# ($d \to 32 \to 1$), where $z(\mathrm{var})$ is the slice variance standardised over $T$ and the MLP's
# output layer starts near zero. Training can then weigh edges against variance for the task at hand,
# from the paper's score rather than from a random one (the ablations chapter compares the two starts
# on real data). The
# paper-literal option `base="variance"` keeps $z(\mathrm{var})$ alone; the ultrasound chapter uses
# it. `DASSampler.scores(x)` returns the quantities DAS samples from.

# %%
with torch.no_grad():
    scores = sampler.scores(x)
print("a_base:", tuple(scores.base.shape), "= [B, T]")
print("scale: ", tuple(scores.scale.shape), "= [B, k]  (heads averaged)")
print("tau:   ", tuple(scores.tau.shape), "= [B]")
print("A = scale x a_base:", tuple(scores.rows.shape), "= [B, k, T]")

# %% tags=["hide-input"]
fig, ax = plt.subplots(figsize=(6.8, 2.5))
for b, name in enumerate(names):
    ax.plot(range(T), scores.base[b].numpy(), "o-", markersize=4, label=name)
ax.set(
    xlabel="slice index t",
    ylabel="$a_{base}$",
    title="Base scores of the trained DAS sampler",
)
ax.set_xlim(-0.5, T - 0.5)
ax.legend(frameon=False)
ax.grid(alpha=0.3)
show()

# %% [markdown]
# ## Step 3: the heads and their scales
#
# Each of the $H$ heads maps the pooled summary (mean, max and std over $T$ of the raw features, $3d =
# 15$ numbers) through its own MLP to $k$ positive scales, $s_h = \mathrm{Softplus}(\mathrm{MLP}_h) \in
# \mathbb{R}^{B \times k}$, and row $j$ of head $h$'s attention is $A_h[:, j, :] = a_{\mathrm{base}}\,
# s_h[:, j]$. The module computes the heads' average directly; below, each head is recomputed from the
# module's weights and the average checked against `scores.scale`.
#
# **A hole in the paper: the heads collapse.** $A = \frac1H \sum_h a_{\mathrm{base}}\, s_h =
# a_{\mathrm{base}} \cdot \bar s$ with $\bar s = \frac1H \sum_h s_h > 0$. The $H$ heads amount to
# one positive scale per row, and a positive scale never changes the order of the slices within a
# row: all $k$ rows of $A$ rank the slices identically.

# %%
with torch.no_grad():
    pooled = torch.cat(
        [raw.mean(1), raw.amax(1), raw.std(1, unbiased=False)], dim=-1
    )  # [B, 3d]
    hidden = torch.relu(sampler.head_hidden(pooled)).view(
        len(x), sampler.heads, -1
    )
    head_scales = torch.nn.functional.softplus(
        torch.einsum("bhc,hck->bhk", hidden, sampler.head_weight)
        + sampler.head_bias
    )  # [B, H, k]
print("per-head scales:", tuple(head_scales.shape), "= [B, H, k]")
print(
    "mean over heads equals scores.scale:",
    torch.allclose(head_scales.mean(1), scores.scale, atol=1e-6),
)
print("every scale positive:", bool((head_scales > 0).all()))
rows_argmax = scores.rows.argmax(
    dim=-1
)  # [B, k]: the unmasked argmax of every row
print("argmax of each row of A, volume 0:", rows_argmax[0].tolist())
print(
    "all rows share one argmax:",
    bool((rows_argmax == rows_argmax[:, :1]).all()),
)

# %% tags=["hide-input"]
fig, axes = plt.subplots(1, len(x), figsize=(6.8, 2.1), sharey=True)
vmax = head_scales.max().item()
for b, ax in enumerate(axes):
    image = ax.imshow(
        head_scales[b].numpy(), aspect="auto", cmap="magma", vmin=0, vmax=vmax
    )
    ax.set(xlabel="row j", title=names[b])
    ax.set_yticks(
        range(sampler.heads), [f"head {h + 1}" for h in range(sampler.heads)]
    )
fig.colorbar(image, ax=axes, label="$s_h[j]$")
show()

# %% [markdown]
# The scales still matter in training: row $j$ draws from
# $\mathrm{softmax}(\bar s_j\, a_{\mathrm{base}} + G)$, so $\bar s_j$ acts as that row's inverse
# temperature, how sharply it follows the base scores.
#
# ## Step 4: the adaptive temperature
#
# $\tau = \tau_0 (0.5 + \sigma(\mathrm{MLP}_{\mathrm{temp}}(\text{pooled})))$, one per volume, within
# $[0.5\tau_0, 1.5\tau_0]$ ($\tau_0 = 1$). It shapes only the soft relaxation that carries the
# gradient (chapter 3): the hard picks of a given noise draw do not depend on it.

# %%
for name, tau in zip(names, scores.tau):
    print(f"{name}: tau = {tau.item():.3f}")

# %% tags=["remove-cell"]
glue("tau_0", scores.tau[0].item(), display=False)
glue("tau_1", scores.tau[1].item(), display=False)

# %% [markdown]
# ## Step 5: the selection matrix P
#
# Training draws $P \in \{0, 1\}^{B \times k \times T}$ row by row: row $j$ takes the argmax of
# $\bar s_j a_{\mathrm{base}} + G_j$ over the slices not yet taken (fresh Gumbel noise $G_j$ per row),
# with the straight-through softmax gradient behind it. Evaluation drops the noise. Rows are sorted by
# slice index, so the selected slices $P X$ come out in anatomical order.

# %%
generator = torch.Generator().manual_seed(seed)
with torch.no_grad():
    sampler.train()
    drawn = sampler(x, generator)
    sampler.eval()
    evaluated = sampler(x)
print("P (training draw):", tuple(drawn.weights.shape), "= [B, k, T]")
print("P X (the frames):  ", tuple(drawn.frames.shape), "= [B, k, C, H, W]")
print(
    "P (evaluation):   ",
    tuple(evaluated.weights.shape),
    "; indices:",
    tuple(evaluated.indices.shape),
    "= [B, k]",
)
print(
    "rows one-hot:",
    bool(
        ((drawn.weights == 0) | (drawn.weights == 1)).all()
        and (drawn.weights.sum(-1) == 1).all()
    ),
)
print(
    "k distinct slices per volume:",
    all(len(set(row.tolist())) == k for row in drawn.indices),
)

# %% tags=["hide-input"]
fig, axes = plt.subplots(2, len(x), figsize=(6.8, 3.9), sharex=True)
for b in range(len(x)):
    for row, (mode, selection) in enumerate(
        (("training draw", drawn), ("evaluation", evaluated))
    ):
        ax = axes[row, b]
        ax.imshow(
            selection.weights[b].numpy(),
            cmap="Greys",
            vmin=0,
            vmax=1,
            aspect="auto",
        )
        ax.set(title=f"{names[b]}: {mode}", ylabel="row j")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xticks(range(0, T, 3))
for ax in axes[-1]:
    ax.set_xlabel("slice index t")
fig.suptitle(
    "Selection matrix P (black = 1): which slice each of the k rows takes",
    y=1.0,
)
fig.tight_layout()
show()

# %% [markdown]
# **Our decision: evaluation is the top-$k$ of $a_{\mathrm{base}}$.** Without noise, the row-wise argmax
# with the masking above returns, row after row, the largest, second largest, ... base score: the
# scales are positive, so they change no order. The module therefore skips the heads at evaluation and
# takes `topk(a_base, k)`. The check compares three routes on the two volumes: the module in evaluation
# mode, `topk` of the base scores, and the paper's rows $A$ with a masked argmax row by row. Slices with
# identical content (blank slices at the edge of a crop) get identical scores; between such ties the
# routes may keep different but interchangeable slices, so the check compares the scores kept.

# %%
# Route 1: the paper's rows A, masked argmax row by row (the training rule without noise).
rows = scores.rows.clone()
masked_picks = []
for j in range(k):
    pick = rows[:, j].argmax(dim=-1)
    masked_picks.append(pick)
    rows[torch.arange(len(x)), :, pick] = float(
        "-inf"
    )  # taken: masked in every later row
masked_picks = torch.stack(masked_picks, dim=1).sort(dim=1).values
topk_base = scores.base.topk(k, dim=-1).indices.sort(dim=1).values  # route 2


def picked_scores(picks: torch.Tensor) -> torch.Tensor:
    """The base scores of the picked slices, sorted, per volume."""
    return scores.base.gather(1, picks).sort(dim=1).values


print("evaluation picks, volume 0: ", evaluated.indices[0].tolist())
print("top-k of a_base:            ", topk_base[0].tolist())
print("masked row-wise argmax of A:", masked_picks[0].tolist())
print(
    "same scores kept by all three routes:",
    torch.equal(picked_scores(evaluated.indices), picked_scores(topk_base))
    and torch.equal(
        picked_scores(evaluated.indices), picked_scores(masked_picks)
    ),
)
ties = [len(row) - len(set(row)) for row in scores.base.tolist()]
print("slices whose score equals another slice's, per volume:", ties)

# %% [markdown]
# **Our decision: sampling without replacement.** Because every row of $A$ ranks the slices alike, the
# paper's literal rule, an independent Gumbel-argmax per row, keeps drawing the same few slices. The
# same trained weights loaded into a `DASSampler(replacement=True)` (the paper-literal option, kept for
# the ablation chapter) show it: over {glue:text}`num_draws` training draws, how many of the $k$ picks
# are distinct slices.

# %%
literal = DASSampler(T, k, replacement=True)
literal.load_state_dict(sampler.state_dict())
literal.train()
sampler.train()
batch = x.repeat_interleave(num_draws, dim=0)  # num_draws copies of each volume
with torch.no_grad():
    draws = {
        "with replacement (paper-literal)": literal(
            batch, torch.Generator().manual_seed(seed + 1)
        ),
        "without replacement (ours)": sampler(
            batch, torch.Generator().manual_seed(seed + 1)
        ),
    }
sampler.eval()
distinct = {
    name: np.array([len(set(row)) for row in sel.indices.tolist()]).reshape(
        len(x), num_draws
    )
    for name, sel in draws.items()
}
for name, counts in distinct.items():
    print(
        f"{name}: distinct slices per draw, mean over draws: "
        + ", ".join(
            f"{n} {c.mean():.1f} of {k}"
            for n, c in zip(("volume 0", "volume 1"), counts)
        )
    )

# %% tags=["remove-cell"]
glue("num_draws", num_draws, display=False)
glue(
    "distinct_literal",
    float(distinct["with replacement (paper-literal)"].mean()),
    display=False,
)

# %% tags=["hide-input"]
fig, axes = plt.subplots(1, 2, figsize=(6.8, 2.3), sharey=True)
for ax, (name, sel) in zip(axes, draws.items()):
    ax.imshow(
        sel.weights[0].detach().numpy(),
        cmap="Greys",
        vmin=0,
        vmax=1,
        aspect="auto",
    )
    ax.set(title=name, xlabel="slice index t")
fig.suptitle(f"One draw for {names[0]}")
axes[0].set_ylabel("row j")
axes[0].yaxis.set_major_locator(MaxNLocator(integer=True))
fig.tight_layout()
show()

# %% [markdown]
# With replacement a draw keeps on average only {glue:text}`distinct_literal:.1f` distinct slices of the
# $k$ = {glue:text}`k` it pays for (repeated rows show as repeated columns on the left); without it,
# always $k$.
#
# ## DAS against DPS: input-adaptive versus static
#
# DPS learns one logit per slice position, shared by all volumes, and at evaluation keeps the top-$k$
# positions: the same slices for every input. DAS scores the slices of each volume from that volume's
# features. The two volumes, side by side (framed: kept; faded: dropped):

# %% tags=["hide-input"]
with torch.no_grad():
    picks = {"dps": dps(x).indices, "das": evaluated.indices}
fig, axes = plt.subplots(4, 1, figsize=(6.8, 2.3))
for ax, (b, method) in zip(
    axes, [(0, "dps"), (0, "das"), (1, "dps"), (1, "das")]
):
    ax.imshow(strip(x[b], set(picks[method][b].tolist()), COLORS[method]))
    ax.set_axis_off()
    ax.set_title(f"{method.upper()} on {names[b]}", fontsize=9, loc="left")
fig.tight_layout()
show()
for method, chosen_slices in picks.items():
    same = torch.equal(chosen_slices[0], chosen_slices[1])
    print(f"{method.upper()}: volume 0 {chosen_slices[0].tolist()}")
    print(f"{'':>5}volume 1 {chosen_slices[1].tolist()}  (same slices: {same})")

# %% [markdown]
# Over the whole test split the difference is systematic: count the distinct slice subsets each
# sampler chooses, and how often each slice position is kept.

# %% tags=["hide-input"]
test_x = torch.stack([test_set[i][0] for i in range(len(test_set))])
with torch.no_grad():
    test_picks = {"dps": dps(test_x).indices, "das": sampler(test_x).indices}
patterns = {
    m: len({tuple(row) for row in p.tolist()}) for m, p in test_picks.items()
}
# [N, T]: slices with no foreground at all
blank = test_x.amax(dim=(2, 3, 4)) == 0
blank_kept = {
    m: 100 * blank.gather(1, p).float().mean().item()
    for m, p in test_picks.items()
}
print(
    f"blank slices: {100 * blank.float().mean().item():.1f}% of all test slices; among the slices kept, "
    + ", ".join(f"{m.upper()} {v:.1f}%" for m, v in blank_kept.items())
)
fig, ax = plt.subplots(figsize=(6.8, 2.5))
for offset, (method, p) in zip((-0.2, 0.2), test_picks.items()):
    frequency = torch.bincount(p.flatten(), minlength=T).numpy() / len(test_set)
    ax.bar(
        np.arange(T) + offset,
        frequency,
        width=0.4,
        color=COLORS[method],
        label=f"{method.upper()}: {patterns[method]} distinct subsets",
    )
ax.set(
    xlabel="slice index t",
    ylabel="fraction of test volumes",
    title=f"Slices kept on the {len(test_set)} test volumes",
)
ax.set_xlim(-0.7, T - 0.3)
ax.legend(frameon=False, loc="upper right")
show()
glue("n_test", len(test_set), display=False)
glue("das_patterns", patterns["das"], display=False)
glue("dps_patterns", patterns["dps"], display=False)
glue("blank_all", 100 * blank.float().mean().item(), display=False)
glue("blank_das", blank_kept["das"], display=False)
glue("blank_dps", blank_kept["dps"], display=False)

# %% [markdown]
# On the {glue:text}`n_test` test volumes DPS chooses {glue:text}`dps_patterns` subset of slices (by
# construction) and DAS {glue:text}`das_patterns` different ones. Adapting is not yet choosing well:
# AdrenalMNIST3D volumes are binary masks of the gland, and {glue:text}`blank_all:.1f`% of the test
# slices are blank; of the slices DAS keeps after this short training, {glue:text}`blank_das:.1f`% are
# blank (DPS: {glue:text}`blank_dps:.1f`%). Blank slices are interchangeable (equal features, equal
# scores), which is also why ties appeared above. Whether adapting per input pays off in accuracy
# after real training is the question of the experiments chapter; here, it is the mechanism.
#
# ## Where DAS looks on the synthetic benchmark
#
# Real volumes do not say which slices matter. The **synthetic** benchmark (`das.data.make_synthetic_volumes`;
# generated, not real data) does: the label of each volume, the orientation of a grating, is drawn in
# one of its $T = 16$ slices, at a random position, and every slice is rescaled to the same mean and
# standard deviation so that intensity statistics cannot give it away. A static sampler keeping 8 of
# 16 slices misses that slice in half of the volumes.
#
# First, can the cheap features see it at all? For every standardised feature: its mean value at the
# informative slice (in standard deviations of the volume), and how often the single slice where that
# feature is largest is the informative one. No training is involved.

# %% tags=["nbval-check-output"]
syn_test = load_dataset("synthetic", "test")
syn_x = torch.stack([syn_test[i][0] for i in range(len(syn_test))])
informative = syn_test.informative  # [N, T] bool, ground truth of the generator
syn_F = standardise_over_frames(fixed_features(syn_x))
top1 = syn_F.argmax(dim=1)  # [N, d]: the slice where each feature peaks
capacity = pd.DataFrame(
    {
        "mean z at the informative slice": syn_F[informative].mean(0).numpy(),
        "peak = informative slice (%)": 100
        * informative.gather(1, top1).float().mean(0).numpy(),
    },
    index=FIXED_FEATURES,
)
print(
    f"synthetic test split: {len(syn_test)} volumes, T = {syn_test.num_frames}"
)
print(capacity.round(1).to_string())

# %% tags=["remove-cell"]
glue(
    "syn_lap_hit",
    float(capacity.loc["laplacian", "peak = informative slice (%)"]),
    display=False,
)
glue(
    "syn_var_hit",
    float(capacity.loc["variance", "peak = informative slice (%)"]),
    display=False,
)

# %% [markdown]
# The grating is an edge pattern: the Laplacian alone peaks at the informative slice in
# {glue:text}`syn_lap_hit:.0f`% of the volumes, variance in {glue:text}`syn_var_hit:.0f`%. A base score
# that follows the edge features would find it every time; the paper-literal variance base cannot. Now
# DAS with the learned base, trained on the benchmark with the same trainer for `synthetic_epochs`
# epochs:

# %%
syn_config = TrainConfig(
    dataset="synthetic",
    method="das",
    ratio=0.5,
    seed=seed,
    epochs=synthetic_epochs,
    patience=None,
    max_train_samples=synthetic_samples,
    max_eval_samples=synthetic_samples,
    device=device,
    num_threads=num_threads,
    quiet=True,
)
syn_model, syn_record = trained(syn_config)
syn_sampler = syn_model.sampler
with torch.no_grad():
    syn_scores = syn_sampler.scores(syn_x)
    syn_picks = syn_sampler(syn_x).indices
hits = 100 * informative.gather(1, syn_picks).any(dim=1).float().mean().item()
static_hits = 100 * (
    1 - static_miss_probability(syn_test.num_frames, syn_sampler.k, 1)
)
syn_bacc = 100 * syn_record["metrics"]["balanced_accuracy"]
verdict = "about as often as"  # within 5 points of a static sampler
verdict = (
    "more often than"
    if hits > static_hits + 5
    else "less often than"
    if hits < static_hits - 5
    else verdict
)
print(
    f"informative slice among DAS's {syn_sampler.k} picks: {hits:.1f}% of the {len(syn_test)} test volumes "
    f"(any static choice: {static_hits:.0f}%); test balanced accuracy {syn_bacc:.1f}%"
)

# %% tags=["remove-cell"]
glue("syn_hits", hits, display=False)
glue("syn_static", static_hits, display=False)
glue("syn_verdict", Markdown(verdict), display=False)
glue("syn_epochs", syn_record["epochs_run"], display=False)
glue("syn_train_n", synthetic_samples, display=False)
glue("syn_bacc", syn_bacc, display=False)

# %% tags=["hide-input"]
v = int(rng.integers(len(syn_test)))
where = int(informative[v].nonzero()[0, 0])
fig, (ax_img, ax_score) = plt.subplots(
    2, 1, figsize=(6.8, 2.9), height_ratios=[1.2, 1]
)
ax_img.imshow(strip(syn_x[v], set(syn_picks[v].tolist())))
ax_img.set_axis_off()
ax_img.set_title(
    textwrap.fill(
        f"SYNTHETIC benchmark volume #{v} (label {syn_test.label_names[int(syn_test.labels[v])]}): "
        f"informative slice {where} (red arrow); DAS keeps the framed slices",
        80,
    ),
    fontsize=9,
    loc="left",
)
tile = syn_x.shape[-1] + 2
ax_img.annotate(
    "",
    xy=(2 + where * tile + tile / 2, tile + 2),
    xytext=(2 + where * tile + tile / 2, tile + 14),
    arrowprops={"color": "red", "width": 2, "headwidth": 7},
    annotation_clip=False,
)
ax_score.bar(
    range(syn_test.num_frames),
    syn_scores.base[v].numpy(),
    color=[
        "tab:red" if t == where else "tab:gray"
        for t in range(syn_test.num_frames)
    ],
)
ax_score.set(xlabel="slice index t", ylabel="$a_{base}$ (red: informative)")
ax_score.set_xlim(-0.5, syn_test.num_frames - 0.5)
fig.tight_layout()
show()

# %% [markdown]
# After {glue:text}`syn_epochs` epoch(s) on {glue:text}`syn_train_n` volumes, DAS keeps the informative
# slice in {glue:text}`syn_hits:.1f`% of the synthetic test volumes, {glue:md}`syn_verdict` a static
# sampler ({glue:text}`syn_static:.0f`%); the classifier reaches a balanced accuracy of
# {glue:text}`syn_bacc:.1f`% (4 classes: chance is 25%). The features carry the information; whether
# training teaches the base score to use it depends on how long and how well the classifier behind it
# has learned, which the experiments and ablation chapters measure.
#
# ## Summary of our decisions
#
# | the paper | our reading | shown above by |
# |---|---|---|
# | $k$ rows $A_j = a_{\mathrm{base}}\, s_j$, Gumbel-softmax per row | rows share one ranking, so we sample **without replacement** (row $j$ masks earlier picks); `replacement=True` keeps the literal form | one argmax for all rows; distinct slices per draw |
# | $H$ heads averaged | equal to one positive scale per row, computed in that product form | per-head scales vs `scores.scale` |
# | evaluation rule not stated | no noise, **top-$k$ of $a_{\mathrm{base}}$** (equal to the masked row-wise argmax) | the three routes agree |
# | $a_{\mathrm{base}}$ "e.g. derived from temporal variance" | variance score plus a **learned** correction by default; `base="variance"` as an option | base scores of the trained sampler |
# | heads and temperature read "$F$ pooled over $T$" | pool the **raw** features: standardised ones pool to constants | mean and std over $T$ |
# | $\tau = \tau_0(0.5 + \sigma(\cdot))$ | as published, one $\tau$ per input; it shapes only the gradient | per-volume $\tau$ |
