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
# # Ablations
#
# Which parts of DAS {cite}`shankaranarayana2025das` matter? This chapter trains variants of the DAS
# sampler that differ in one choice each, with the project's trainer, and compares them:
#
# - the number of attention heads $H$ and the base temperature $\tau_0$;
# - the sampling ratio $k/T$, for DAS and the static samplers uniform and DPS {cite}`huijben2020dps`,
#   with the full sequence as the upper reference;
# - our decisions where the paper is silent or inconsistent (chapter 4): sampling **without**
#   replacement (ours) versus with replacement (the paper's literal rule), the adaptive temperature on
#   or off, fixed Sobel/Laplacian features versus a small learned CNN per slice, the variance score
#   plus a learned correction as base score (ours) versus the paper's "temporal variance" base alone,
#   and the gradient estimator the sampler learns with: the profiles train DAS with the
#   score-function (REINFORCE) estimator, the paper uses the straight-through Gumbel-softmax gradient
#   (`das/samplers/das_sampler.py` explains why we switched).
#
# The experiments run on the **synthetic benchmark** (`das.data`; synthetic volumes whose label is
# drawn in one slice at a random depth). There the paper's claim is testable by construction: a
# static sampler keeping $k$ of $T$ slices has a known accuracy ceiling, and an input-adaptive sampler
# can pass it only by finding the informative slice. The `paper` profile adds real AdrenalMNIST3D.
#
# Every variant is one training run stored in the results store under
# `results/<profile>/ablations/<variant>/<dataset>/<method>/seed<N>.json`, where the folder name
# `<variant>` spells out the ratio and the options that differ from the defaults. A rerun reads the
# stored runs back instead of training again (and redoes a run whose stored settings differ).

# %% tags=["parameters"]
profile = "quick"  # parameter profile (smallest, quick, paper); picks the training settings and the store
seed = 0  # seeds the Gumbel draws that count duplicate picks (the runs' seeds are `seeds`)
device = "auto"  # where training runs ("auto": CUDA when present, else "cpu")
num_threads = 2  # torch CPU threads per run
datasets = ["synthetic"]  # datasets of the ablations (paper profile: also adrenalmnist3d)
seeds = [0]  # training seeds of every variant
epochs = 6  # training epochs per run; None: the profile's
max_samples = None  # cap on training volumes; None: the profile's (quick: 256 synthetic volumes)
max_eval_samples = None  # cap on validation and test volumes; None: the profile's
heads = [1, 2, 4, 8]  # values of H tried (DAS default 4)
tau0s = [0.5, 1.0, 2.0]  # values of tau0 tried (DAS default 1)
ratios = [0.25, 0.5, 0.75]  # sampling ratios of the ratio curve
ratio_methods = ["uniform", "dps", "das"]  # methods of the ratio curve (the full sequence is added)
results_dir = "results"  # results store (relative to the repository root)

# %%
import inspect
import json
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from IPython.display import Markdown, display

from das.book import ROOT, glue
from das.config import TrainConfig
from das.data import iterate_batches, static_accuracy_bound
from das.profiles import PROFILES, get_profile
from das.results import checkpoint_path, format_summary, result_path, summary
from das.samplers import DASSampler
from das.sweep import run_one
from das.train import build_model, load_splits

# The sweep profiles (das.profiles) are quick and paper; the book's `smallest` profile uses the quick
# settings shrunk by the knobs above. Runs are stored under the notebook's own profile name, so a
# smallest run never lands among the quick ones.
sweep_profile = get_profile(profile if profile in PROFILES else "quick")
root = Path(results_dir) if Path(results_dir).is_absolute() else ROOT / results_dir
DEFAULTS = {  # DAS's options as the profile runs it: a variant's name lists only what differs
    **{
        name: p.default
        for name, p in inspect.signature(DASSampler.__init__).parameters.items()
        if p.default is not inspect.Parameter.empty
    },
    **sweep_profile.sampler_options.get("das", {}),
}
COLORS = {"full": "tab:gray", "uniform": "tab:green", "dps": "tab:blue", "das": "tab:orange"}


def variant_name(ratio: float, options: dict) -> str:
    """Folder of a variant: ``ratio-0.5`` for the defaults, ``ratio-0.5_heads-1`` and so on."""
    changed = {k: v for k, v in sorted(options.items()) if DEFAULTS.get(k) != v}
    return "_".join([f"ratio-{ratio:g}", *(f"{k}-{v}" for k, v in changed.items())])


def store_profile(variant: str) -> str:
    """``<profile>/ablations/<variant>``: the "profile" level of das.results paths for a variant."""
    return f"{profile}/ablations/{variant}"


def config_for(dataset: str, method: str, ratio: float, options: dict, run_seed: int) -> TrainConfig:
    """The profile's settings for ``dataset``, then this chapter's knobs, then the variant."""
    return sweep_profile.config(
        dataset,
        method,
        run_seed,
        ratio=ratio,
        sampler_options=dict(options),
        epochs=epochs,
        max_train_samples=max_samples,
        max_eval_samples=max_eval_samples,
        device=device,
        num_threads=num_threads,
        quiet=True,
    )


def run(config: TrainConfig, variant: str, splits, keep: bool = False) -> dict:
    """Train ``config`` into the variant's folder, or read it back (``run_one`` redoes a stored run of
    other settings, or one whose checkpoint is needed (``keep``) but gone). The record gets
    ``trained_now``: whether this call wrote the JSON."""
    path = result_path(root, store_profile(variant), config.dataset, config.method, config.seed)
    before = path.stat().st_mtime_ns if path.exists() else None
    run_one(config, profile=store_profile(variant), results_dir=root, splits=splits, keep_checkpoint=keep)
    return {**json.loads(path.read_text()), "trained_now": path.stat().st_mtime_ns != before}


# %% [markdown]
# ## The variants
#
# Each row is one variant; the runs of all variants use the same data, epochs and learning rates (the
# profile's, with the overrides of the parameters cell), so they differ only in the sampler.

# %%
plan: dict[str, tuple[str, float, dict]] = {}  # variant folder + method -> (method, ratio, options)


def add(method: str, ratio: float, options: dict | None = None) -> str:
    options = options or {}
    variant = variant_name(ratio, options)
    plan.setdefault(f"{variant}/{method}", (method, ratio, options))
    return variant


AXES: dict[str, list[tuple[object, str]]] = {  # ablation -> [(value shown, variant folder)] for DAS
    "heads H": [(h, add("das", 0.5, {"heads": h})) for h in heads],
    "tau0": [(t, add("das", 0.5, {"tau0": float(t)})) for t in tau0s],
}
TOGGLES = {  # label -> options; our defaults first
    "ours (defaults)": {},
    "with replacement (paper-literal)": {"replacement": True},
    "fixed temperature": {"adaptive_temperature": False},
    "learned features (CNN)": {"features": "learned"},
    "variance base (paper-literal)": {"base": "variance"},
    "straight-through gradient (paper-literal)": {"estimator": "st"},
}
toggle_variants = {label: add("das", 0.5, options) for label, options in TOGGLES.items()}
curve = {m: [(r, add(m, r)) for r in ratios] for m in ratio_methods}
full_variant = add("full", 1.0)
display(
    pd.DataFrame(
        [
            {
                "variant folder": key.rsplit("/", 1)[0],
                "method": m,
                "ratio": r,
                "options": ", ".join(f"{k}={v}" for k, v in o.items() if DEFAULTS.get(k) != v) or "(defaults)",
            }
            for key, (m, r, o) in plan.items()
        ]
    )
)
glue("n_variants", len(plan))
glue("n_runs", len(plan) * len(seeds) * len(datasets))

# %% [markdown]
# ## Training
#
# {glue:text}`n_variants` variants × {glue:text}`n_runs_per_variant` run(s) each (datasets × seeds):
# {glue:text}`n_runs` runs, with these settings:

# %%
records: list[dict] = []
# The duplicate count below needs the trained weights of these two: their checkpoints are kept.
keep_variants = {toggle_variants["ours (defaults)"], toggle_variants["with replacement (paper-literal)"]}
informative_slices: dict[str, tuple[int, int, int]] = {}  # synthetic dataset -> (T, m, classes)
for dataset in datasets:
    splits = load_splits(config_for(dataset, "das", 0.5, {}, seeds[0]))
    if splits.test.informative is not None:
        informative_slices[dataset] = (
            splits.test.num_frames,
            int(splits.test.informative[0].sum()),
            splits.test.num_classes,
        )
    for key, (method, ratio, options) in plan.items():
        variant = key.rsplit("/", 1)[0]
        for run_seed in seeds:
            config = config_for(dataset, method, ratio, options, run_seed)
            record = run(config, variant, splits, keep=method == "das" and variant in keep_variants)
            records.append({**record, "variant": variant})
base = config_for(datasets[0], "das", 0.5, {}, seeds[0])
settings = pd.DataFrame(
    [
        {
            "datasets": ", ".join(datasets),
            "seeds": ", ".join(map(str, seeds)),
            "epochs": base.epochs,
            "patience": base.patience,
            "lr": base.lr,
            "sampler lr": base.resolved_sampler_lr,
            "train volumes": base.max_train_samples or "all",
            "val/test volumes": base.max_eval_samples or "all",
        }
    ]
).T.rename(columns={0: "value"})
display(settings)
seconds = pd.Series([r["timings"]["wall_s"] for r in records])
glue("n_runs_per_variant", len(seeds) * len(datasets))
glue("estimator", Markdown(f"`{DEFAULTS['estimator']}`"))
glue("train_minutes", float(seconds.sum() / 60))
glue("trained_now", sum(r["trained_now"] for r in records))
glue("devices", Markdown(", ".join(sorted({f"`{r['device']}`" for r in records}))))

# %% [markdown]
# The runs took {glue:text}`train_minutes:.1f` minutes of wall time in total on device(s)
# {glue:md}`devices` ({glue:text}`trained_now` trained by this execution of the chapter, the others read
# back from the store). Timings on a shared machine are contended and only indicative.
#
# ## All variants


# %%
def variant_summary(variant: str, method: str) -> pd.DataFrame:
    """das.results.summary of one variant folder, restricted to ``method`` (all datasets)."""
    table = summary(root, store_profile(variant))
    return table[table["method"] == method].assign(variant=variant)


rows = []
for key, (method, _ratio, _options) in plan.items():
    rows.append(variant_summary(key.rsplit("/", 1)[0], method))
results = pd.concat(rows, ignore_index=True)
shown = (
    format_summary(results)
    .assign(variant=results["variant"], k=results["k"])
    .set_index(["dataset", "variant", "method"])
)
display(shown)


def spread(stds: np.ndarray) -> np.ndarray | None:
    """Error bars from standard deviations; none at all with a single seed (std undefined)."""
    return None if np.isnan(stds).all() else np.nan_to_num(stds)


def metric(variant: str, method: str, dataset: str, name: str = "balanced_accuracy") -> tuple[float, float]:
    row = results[(results["variant"] == variant) & (results["method"] == method) & (results["dataset"] == dataset)]
    return float(row[f"{name}_mean"].iloc[0]), float(row[f"{name}_std"].iloc[0]) if f"{name}_std" in row else np.nan


# %% [markdown]
# ## Heads and base temperature
#
# The DAS runs of this chapter learn with the {glue:md}`estimator` estimator (the profile's choice) unless
# a variant says otherwise. With the score-function estimator the temperature plays **no part** in
# training: $\tau$ only shapes the soft relaxation of the straight-through gradient, which this
# estimator does not use. The $\tau_0$ runs below must then agree to the last digit, which checks the
# claim; the "fixed temperature" variant further down differs from our defaults only through its
# random initialisation (one MLP fewer shifts the random stream), so its gap to the defaults shows
# how large run-to-run noise is here.
#
# Chapter 4 shows that the $H$ heads collapse into one positive scale per row, which acts as that
# row's inverse temperature in training and is ignored at evaluation (a top-$k$ of the base scores).
# $H$ and $\tau_0$ therefore change only how the training distribution explores; if they matter, it is
# through what the base score learns. Error bars: one standard deviation over seeds (none with a single
# seed). With one seed and a few epochs, as in the `quick` profile, differences of a few points between
# variants are within the run-to-run noise of training; the `paper` profile runs three seeds.

# %%
fig, axes = plt.subplots(len(datasets), len(AXES), figsize=(10, 3.2 * len(datasets)), squeeze=False)
for row, dataset in enumerate(datasets):
    for col, (axis, points) in enumerate(AXES.items()):
        ax = axes[row, col]
        values = [metric(v, "das", dataset) for _, v in points]
        means, stds = np.array(values).T * 100
        ax.errorbar(range(len(points)), means, yerr=spread(stds), fmt="o-", capsize=4, color=COLORS["das"], label="das")
        ax.set_xticks(range(len(points)), [f"{value:g}" for value, _ in points])
        ax.set(xlabel=axis, ylabel="balanced accuracy (%)", title=f"{dataset}: DAS against {axis}", ylim=(0, 105))
        ax.grid(alpha=0.3)
fig.tight_layout()
plt.show()
for axis, points in AXES.items():
    tag = axis.split()[0]
    glue(
        f"{tag}_list",
        Markdown(
            "; ".join(
                f"{axis.split()[-1]} = {value:g}: {100 * metric(v, 'das', datasets[0])[0]:.1f}%" for value, v in points
            )
        ),
    )

# %% [markdown]
# Balanced accuracy of DAS on {glue:md}`first_dataset` against the number of heads:
# {glue:md}`heads_list`; against $\tau_0$: {glue:md}`tau0_list`.
#
# ## Sampling ratio
#
# Balanced accuracy against the share of slices kept, for DAS and the static samplers, with the full
# sequence (every slice) as a horizontal line. On the synthetic benchmark the dashed curve is the
# analytic ceiling of any static sampler at each ratio (`das.data.static_accuracy_bound`, from the
# number of slices, informative slices and classes of the benchmark): a static sampler can only pass it by luck of the test
# set, an input-adaptive one by finding the informative slice.

# %%
fig, axes = plt.subplots(1, len(datasets), figsize=(6.5 * len(datasets), 3.8), squeeze=False)
ceiling_rows = []
for col, dataset in enumerate(datasets):
    ax = axes[0, col]
    for method, points in curve.items():
        values = np.array([metric(v, method, dataset) for _, v in points]) * 100
        ax.errorbar(
            [r for r, _ in points],
            values[:, 0],
            yerr=spread(values[:, 1]),
            fmt="o-",
            capsize=4,
            color=COLORS.get(method),
            label=method,
        )
    full_mean, full_std = metric(full_variant, "full", dataset)
    ax.axhline(100 * full_mean, color=COLORS["full"], lw=1.5, label=f"full sequence ({100 * full_mean:.1f}%)")
    if dataset in informative_slices:
        T, m, classes = informative_slices[dataset]
        grid = np.linspace(min(ratios), max(ratios), 50)
        bounds = [100 * static_accuracy_bound(T, max(1, round(r * T)), m, classes) for r in grid]
        ax.plot(grid, bounds, "k--", lw=1, label="static ceiling (analytic)")
        ax.axhline(100 / classes, color="k", ls=":", lw=1, label="chance")
        ceiling_rows = [(r, static_accuracy_bound(T, max(1, round(r * T)), m, classes)) for r in ratios]
    ax.set(xlabel="sampling ratio k/T", ylabel="balanced accuracy (%)", title=dataset, ylim=(0, 105))
    ax.grid(alpha=0.3)
    ax.legend(frameon=False, fontsize=8)
fig.tight_layout()
plt.show()
glue("first_dataset", Markdown(datasets[0]))
glue(
    "ratio_list",
    Markdown(
        "; ".join(
            f"{r:g}: "
            + ", ".join(
                f"{m} {100 * metric(v, m, datasets[0])[0]:.1f}%" for m, pts in curve.items() for rr, v in pts if rr == r
            )
            for r in ratios
        )
    ),
)
glue("full_bacc", 100 * metric(full_variant, "full", datasets[0])[0])

# %% [markdown]
# Balanced accuracy on {glue:md}`first_dataset` per ratio: {glue:md}`ratio_list`; full sequence
# {glue:text}`full_bacc:.1f`%.

# %% tags=["nbval-check-output"]
for r, bound in ceiling_rows:  # the analytic ceilings drawn above (synthetic benchmark)
    print(f"ratio {r:g}: static ceiling {100 * bound:.1f}%")

# %% [markdown]
# ## Our decisions against the paper's literal reading
#
# Each bar changes one choice of our DAS defaults (ratio 0.5). The right panel shows, on the synthetic
# benchmark, the share of test volumes for which the kept slices include the informative one: the
# mechanism behind the accuracy.

# %%
fig, axes = plt.subplots(len(datasets), 2, figsize=(12, 3.4 * len(datasets)), squeeze=False)
labels = list(toggle_variants)
for row, dataset in enumerate(datasets):
    panels = [("balanced_accuracy", "balanced accuracy (%)")]
    if dataset == "synthetic":
        panels.append(("informative_hit_rate", "informative slice kept (%)"))
    for col, (name, label) in enumerate(panels):
        ax = axes[row, col]
        values = np.array([metric(v, "das", dataset, name) for v in toggle_variants.values()]) * 100
        ax.barh(
            range(len(labels)),
            values[:, 0],
            xerr=spread(values[:, 1]),
            capsize=4,
            color=["tab:orange"] + ["tab:gray"] * (len(labels) - 1),
        )
        for y, value in enumerate(values[:, 0]):
            ax.text(value, y, f" {value:.1f}", va="center", fontsize=8)
        ax.set_yticks(range(len(labels)), labels if col == 0 else [])
        ax.invert_yaxis()
        ax.set(xlabel=label, xlim=(0, 110), title=dataset)
        ax.grid(axis="x", alpha=0.3)
    if len(panels) == 1:
        axes[row, 1].set_axis_off()
fig.tight_layout()
plt.show()
glue(
    "toggle_list",
    Markdown(
        "; ".join(f"{label}: {100 * metric(v, 'das', datasets[0])[0]:.1f}%" for label, v in toggle_variants.items())
    ),
)

# %% [markdown]
# Balanced accuracy on {glue:md}`first_dataset`: {glue:md}`toggle_list`.
#
# ## Duplicate picks with replacement
#
# The paper's literal rule draws every row $j$ of the selection matrix independently. Its rows differ
# only by a positive scale of the same base scores (chapter 4), so they tend to pick the same slices:
# the classifier then sees fewer than $k$ distinct slices. Evaluation is unaffected (a top-$k$ of the
# base scores, $k$ distinct slices by construction); training is. Below, the share of the $k$ picks
# per volume that repeat an earlier pick of the same volume, over the training volumes in training
# mode (Gumbel draws seeded by `seed`), at initialisation and with the trained weights of the run.


# %% tags=["nbval-check-output"]
def duplicate_share(sampler, dataset_split, generator: torch.Generator) -> float:
    """Share of picks that repeat an earlier pick of the same volume (training-mode draws)."""
    sampler.train()
    repeats = picks = 0
    with torch.no_grad():
        for x, _ in iterate_batches(dataset_split, 64, shuffle=False):
            indices = sampler(x, generator).indices
            distinct = (indices.sort(dim=1).values.diff(dim=1) != 0).sum(dim=1) + 1
            repeats += int((indices.shape[1] - distinct).sum())
            picks += indices.numel()
    return repeats / picks


dup_rows = []
for dataset in datasets[:1]:
    splits = load_splits(config_for(dataset, "das", 0.5, {}, seeds[0]))
    for label in ("ours (defaults)", "with replacement (paper-literal)"):
        variant = toggle_variants[label]
        config = config_for(dataset, "das", 0.5, TOGGLES[label], seeds[0])
        with torch.random.fork_rng():
            torch.manual_seed(config.seed)  # the trainer's initialisation
            model = build_model(config, splits.train.num_frames, splits.train.num_classes, splits.train.in_channels)
        initial = duplicate_share(model.sampler, splits.train, torch.Generator().manual_seed(seed))
        state = torch.load(
            checkpoint_path(root, store_profile(variant), dataset, "das", config.seed),
            map_location="cpu",
            weights_only=False,
        )["best_state"]
        model.load_state_dict(state)
        trained = duplicate_share(model.sampler, splits.train, torch.Generator().manual_seed(seed))
        dup_rows.append(
            {
                "dataset": dataset,
                "variant": label,
                "at initialisation (%)": round(100 * initial, 1),
                "trained (%)": round(100 * trained, 1),
            }
        )
duplicates = pd.DataFrame(dup_rows).set_index(["dataset", "variant"])
print(duplicates[["at initialisation (%)"]].to_string())
literal = (datasets[0], "with replacement (paper-literal)")
glue("dup_init", duplicates.loc[literal, "at initialisation (%)"])

# %%
display(duplicates)
glue("dup_trained", duplicates.loc[literal, "trained (%)"])

# %% [markdown]
# With replacement, {glue:text}`dup_init:.1f`% of the training picks repeat an earlier pick at
# initialisation and {glue:text}`dup_trained:.1f`% with the trained weights; without replacement (ours)
# none do, by construction.
