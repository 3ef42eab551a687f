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
# # Experiments (Table 1)
#
# The paper's Table 1 {cite}`shankaranarayana2025das` compares, at a sampling ratio of 50%, the full
# sequence, random and uniform subsampling, DPS {cite}`huijben2020dps`, ADPS {cite}`vangorp2021adps`
# and DAS, each feeding the same MobileNetV3-Small classifier {cite}`howard2019mobilenetv3`. This
# chapter runs that sweep with the project's trainer (`das.sweep.run_table1`) and summarises the
# **results store**: one JSON file per run under `results/<profile>/<dataset>/<method>/seed<N>.json`.
# The sweep resumes: finished runs are read back, not retrained, so rerunning the chapter is cheap.
#
# The numbers below are ours, from the profile named in the next section. The paper's own numbers and
# MedMNIST's benchmark are shown next to them as **published values** typed from the papers, labelled
# as such; nothing of ours is typed by hand.

# %% tags=["parameters"]
profile = "quick"  # parameter profile (smallest, quick, paper); smallest runs a shrunken quick sweep
seed = 0  # seeds the Monte Carlo check of the static sampler's ceiling (the runs' seeds are `seeds`)
device = "auto"  # where training runs ("auto": CUDA when present, else "cpu")
num_threads = 2  # torch CPU threads per run
datasets = None  # datasets of the sweep; None: the profile's (quick: synthetic, adrenalmnist3d)
methods = None  # methods of the sweep; None: the profile's (all six)
seeds = None  # training seeds; None: the profile's (3)
epochs = None  # training epochs per run; None: the profile's (per dataset)
max_train_samples = None  # cap on training volumes; None: the profile's
max_eval_samples = None  # cap on validation and test volumes; None: the profile's
results_dir = "results"  # results store (relative to the repository root)

# %%
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import Markdown, display

from das.book import ROOT, glue
from das.data import load_dataset, static_accuracy_bound, static_miss_probability
from das.profiles import PROFILES
from das.results import METHOD_ORDER, format_summary, load_runs, result_path, write_summary
from das.sweep import run_table1, table1_configs

# The sweep knows the profiles quick and paper (das.profiles). The book's `smallest` profile runs the
# quick sweep shrunk by the knobs above, stored apart (results/smallest/quick/...) so that it never
# mixes with, or is mistaken for, quick-profile results.
sweep_profile = profile if profile in PROFILES else "quick"
root = Path(results_dir) if Path(results_dir).is_absolute() else ROOT / results_dir
store = root if profile == sweep_profile else root / profile
FORMATS = {"balanced acc. (%)": "{:.1f}", "AUC": "{:.3f}", "accuracy (%)": "{:.1f}"}  # for published values too


def formatted(frame: pd.DataFrame) -> pd.DataFrame:
    """The FORMATS columns as text, "-" where a source reports no value (plain text cells keep the
    book theme's table layout, which a pandas Styler loses)."""
    return frame.assign(**{c: ["-" if pd.isna(v) else f.format(v) for v in frame[c]] for c, f in FORMATS.items()})


COLORS = dict(zip(METHOD_ORDER, ["tab:gray", "tab:olive", "tab:green", "tab:blue", "tab:purple", "tab:orange"]))

# %% [markdown]
# ## The sweep
#
# One call runs (or resumes) every (dataset, method, seed) of the profile, with the overrides of the
# parameters cell. The first table lists the runs asked for, the settings they ran with, and whether
# each was trained now or read back from the store.

# %%
overrides = dict(
    epochs=epochs,
    max_train_samples=max_train_samples,
    max_eval_samples=max_eval_samples,
    device=device,
    num_threads=num_threads,
    quiet=True,
)
wanted = table1_configs(sweep_profile, datasets, methods, seeds, **overrides)


# The sweep reads back a stored run of the same settings and redoes one of other settings; a JSON
# that is new or rewritten afterwards was trained by this execution.
def stamp(path: Path) -> int | None:
    return path.stat().st_mtime_ns if path.exists() else None


before = [stamp(result_path(store, sweep_profile, c.dataset, c.method, c.seed)) for c in wanted]
paths = run_table1(sweep_profile, datasets, methods, seeds, results_dir=store, **overrides)
table, csv_path, md_path = write_summary(store, sweep_profile)
runs = load_runs(store, sweep_profile)

by_path = {Path(run["path"]).resolve(): run for run in runs}
listing = []
for i, (config, path) in enumerate(zip(wanted, paths)):
    run = by_path[Path(path).resolve()]
    listing.append(
        {
            "dataset": config.dataset,
            "method": config.method,
            "seed": config.seed,
            "epochs": run["epochs_run"],
            "train volumes": run["config"]["max_train_samples"] or "all",
            "test volumes": run["config"]["max_eval_samples"] or "all",
            "lr": run["config"]["lr"],
            "sampler options": ", ".join(f"{k}={v}" for k, v in run["config"]["sampler_options"].items()),
            "device": run["device"],
            "wall time (s)": round(run["timings"]["wall_s"], 1),
            "this run": "read back" if before[i] == stamp(Path(path)) else "trained now",
        }
    )
listing = pd.DataFrame(listing)
display(listing)

# %%
epochs_by_dataset = listing.groupby("dataset", sort=False)["epochs"].agg(lambda e: "/".join(map(str, sorted(set(e)))))
glue(
    "profile",
    Markdown(f"`{profile}`" + ("" if profile == sweep_profile else f" (the `{sweep_profile}` sweep, shrunk)")),
)
glue("epochs_text", Markdown(", ".join(f"{e} on {d}" for d, e in epochs_by_dataset.items())))
glue("n_seeds", int(listing.groupby(["dataset", "method"])["seed"].nunique().max()))
glue("n_runs", len(listing))
glue("n_trained", int((listing["this run"] == "trained now").sum()))
glue(
    "store",
    Markdown(
        f"`{(store / sweep_profile).relative_to(ROOT) if (store / sweep_profile).is_relative_to(ROOT) else store / sweep_profile}`"
    ),
)
glue("wall_total", float(listing["wall time (s)"].sum()))

# %% [markdown]
# Profile {glue:md}`profile`: {glue:text}`n_runs` runs, {glue:text}`n_seeds` seed(s) per method and
# dataset, epochs {glue:md}`epochs_text`; {glue:text}`n_trained` of them were trained by this execution
# of the chapter, the others read back from {glue:md}`store`. Their training took
# {glue:text}`wall_total:.0f` s of wall time in total (on whatever machine trained them; see the
# *device* column). DAS learns with the score-function estimator in both sweep profiles (column
# *sampler options*; `das/profiles.py` and `das/samplers/das_sampler.py` say why), not with the
# paper's straight-through gradient; chapter 6 compares the two. The `quick` profile is sized for a laptop CPU: a few epochs, so its real-data
# numbers are far from converged and say little about the methods; the `paper` profile runs the
# protocol of the paper (up to 100 epochs, early stopping, the six MedMNIST3D sets) and is meant for a
# GPU.
#
# ## Table 1, as run here
#
# Mean ± standard deviation over seeds (a single seed shows no ±). Balanced accuracy and AUC are the
# paper's metrics (AUC: the positive class for binary tasks, one-vs-rest macro average otherwise);
# plain accuracy is there for MedMNIST's benchmark, which reports accuracy. On the synthetic benchmark
# the last column is the share of test volumes for which the sampler kept the slice that carries the
# label.

# %%
display(format_summary(table).set_index(["dataset", "method"]))

# %% [markdown]
# ## What a static sampler can reach on the synthetic benchmark
#
# In every synthetic volume the label is drawn in $m$ slices at random positions (`das.data`); the
# other slices are noise. A static sampler (uniform, random at evaluation, DPS) keeps $k$ of $T$
# slices that do not depend on the volume, so it misses all informative slices with probability
# $p_{\text{miss}} = \binom{T-m}{k} / \binom{T}{k}$, and then can only guess among $C$ classes. Its
# accuracy is at most $1 - p_{\text{miss}}(1 - 1/C)$ (`das.data.static_accuracy_bound`). An
# input-adaptive sampler is not bound by this ceiling. The check below draws informative positions at
# random and counts how often the uniform pattern (every other slice) misses them.

# %% tags=["nbval-check-output"]
syn_config = next((c for c in wanted if c.dataset == "synthetic"), None)
if syn_config is None:
    ceiling = None
    print("synthetic benchmark not in this sweep")
else:
    probe = load_dataset("synthetic", "test", size=syn_config.size, num_samples=8, **syn_config.dataset_options)
    T_syn, C_syn = probe.num_frames, probe.num_classes
    m_syn = int(probe.informative[0].sum())
    k_syn = max(1, round(syn_config.ratio * T_syn))  # the subsamplers' k (the full sequence keeps T)
    ceiling = static_accuracy_bound(T_syn, k_syn, m_syn, C_syn)
    rng = np.random.default_rng(seed)
    draws = 200_000
    informative = np.argsort(rng.random((draws, T_syn)), axis=1)[:, :m_syn]  # m distinct positions
    kept = np.zeros(T_syn, dtype=bool)
    kept[np.linspace(0, T_syn - 1, k_syn).round().astype(int)] = True  # a fixed pattern of k slices
    missed = ~kept[informative].any(axis=1)
    print(f"T = {T_syn}, k = {k_syn}, m = {m_syn}, C = {C_syn}")
    print(
        f"p_miss analytic {static_miss_probability(T_syn, k_syn, m_syn):.4f}, simulated {missed.mean():.4f} ({draws} draws)"
    )
    print(f"static ceiling on accuracy: {ceiling:.4f}")
    glue("ceiling", 100 * ceiling)
    glue("p_miss", 100 * static_miss_probability(T_syn, k_syn, m_syn))

# %% [markdown]
# ## Bar plots
#
# Balanced accuracy and AUC per method, error bars one standard deviation over seeds (none for a
# single seed). On the synthetic benchmark the dashed line is the static sampler's analytic ceiling
# (computed for accuracy; with balanced classes balanced accuracy has the same ceiling up to the
# sampling noise of the test set). On real data the dotted lines are MedMNIST's ResNet-18+3D
# benchmark {cite}`yang2023medmnist` (AUC) where it exists: a full-volume 3D network, not a
# subsampling method, drawn for scale.

# %%
# Published values (inputs, not results of this book): SPEC 1.3. DAS paper: AUC and balanced accuracy
# as recovered from the paper's Table 1; MedMNIST v2 (Yang et al., Sci. Data 2023): test AUC and
# accuracy at 28^3.
PAPER = [  # dataset, method, balanced accuracy, AUC
    ("organmnist3d", "das", 0.581, 0.931),
    ("organmnist3d", "adps", 0.573, 0.928),
    ("nodulemnist3d", "das", 0.758, 0.799),
    ("nodulemnist3d", "adps", 0.758, 0.782),
    ("vesselmnist3d", "das", 0.829, 0.752),
    ("vesselmnist3d", "adps", 0.807, 0.739),
    ("gastric antrum (in-house)", "das", 0.341, 0.639),
    ("gastric antrum (in-house)", "full", 0.301, 0.611),
]
MEDMNIST = {  # dataset: {model: (AUC, accuracy)}
    "organmnist3d": {"ResNet-18+3D": (0.996, 0.907), "ResNet-18+2.5D": (0.977, 0.788)},
    "nodulemnist3d": {"ResNet-18+3D": (0.863, 0.844), "ResNet-18+2.5D": (0.838, 0.835)},
    "fracturemnist3d": {"ResNet-18+3D": (0.712, 0.508), "ResNet-18+2.5D": (0.587, 0.451)},
    "adrenalmnist3d": {"ResNet-18+3D": (0.827, 0.721), "ResNet-18+2.5D": (0.718, 0.772)},
    "vesselmnist3d": {"ResNet-18+3D": (0.874, 0.877), "ResNet-18+2.5D": (0.748, 0.846)},
    "synapsemnist3d": {"ResNet-18+3D": (0.820, 0.745), "ResNet-18+2.5D": (0.634, 0.696)},
}
published = pd.DataFrame(
    [
        {
            "dataset": d,
            "method / model": m,
            "source": "DAS paper (published)",
            "balanced acc. (%)": 100 * b,
            "AUC": a,
            "accuracy (%)": np.nan,
        }
        for d, m, b, a in PAPER
    ]
    + [
        {
            "dataset": d,
            "method / model": model,
            "source": "MedMNIST v2 (published)",
            "balanced acc. (%)": np.nan,
            "AUC": a,
            "accuracy (%)": 100 * acc,
        }
        for d, models in MEDMNIST.items()
        for model, (a, acc) in models.items()
    ]
)

data_names = list(dict.fromkeys(table["dataset"]))
fig, axes = plt.subplots(len(data_names), 2, figsize=(11, 3.2 * len(data_names)), squeeze=False)
for row, name in enumerate(data_names):
    rows = table[table["dataset"] == name]
    x = np.arange(len(rows))
    for col, (metric, label, scale) in enumerate(
        (("balanced_accuracy", "balanced accuracy (%)", 100), ("auc", "AUC", 1))
    ):
        ax = axes[row, col]
        means, stds = rows[f"{metric}_mean"].to_numpy(float) * scale, rows[f"{metric}_std"].to_numpy(float) * scale
        ax.bar(
            x,
            means,
            yerr=None if np.isnan(stds).all() else np.nan_to_num(stds),
            capsize=4,
            color=[COLORS.get(m, "tab:gray") for m in rows["method"]],
        )
        for xi, mean in zip(x, means):
            if np.isfinite(mean):
                ax.text(
                    xi, mean, f"{mean:.1f}" if scale == 100 else f"{mean:.3f}", ha="center", va="bottom", fontsize=8
                )
        if name == "synthetic" and ceiling is not None and metric == "balanced_accuracy":
            ax.axhline(100 * ceiling, color="k", ls="--", lw=1, label=f"static ceiling {100 * ceiling:.1f}%")
            ax.axhline(100 / C_syn, color="k", ls=":", lw=1, label=f"chance {100 / C_syn:.0f}%")
            ax.legend(frameon=False, fontsize=8, loc="lower right")
        if metric == "auc" and name in MEDMNIST:
            ax.axhline(
                MEDMNIST[name]["ResNet-18+3D"][0], color="k", ls=":", lw=1, label="MedMNIST ResNet-18+3D (published)"
            )
            ax.legend(frameon=False, fontsize=8, loc="lower right")
        ax.set_xticks(x, rows["method"])
        ax.set_ylim(0, 105 if scale == 100 else 1.05)
        ax.set_title(f"{name}: {label}", fontsize=10)
        ax.grid(axis="y", alpha=0.3)
fig.suptitle(f"Table 1 as run here (profile {profile}); error bars: ±1 std over seeds", y=1.0)
fig.tight_layout()
plt.show()

# %% [markdown]
# ## Side by side with the published numbers
#
# Our rows (source *run here*) next to the published rows for the same datasets. The paper reports
# balanced accuracy and AUC; MedMNIST reports AUC and accuracy of full-volume ResNet-18 models (3D
# convolutions, or 2D convolutions per slice, "2.5D"). The synthetic benchmark is this book's own and
# has no published numbers. Where the sweep did not include a dataset the paper reports, the published
# rows are still listed in the full reference table below it, so the gap is visible.

# %%
ours = table.assign(
    **{
        "method / model": table["method"],
        "source": f"run here ({profile})",
        "balanced acc. (%)": 100 * table["balanced_accuracy_mean"],
        "AUC": table["auc_mean"],
        "accuracy (%)": 100 * table["accuracy_mean"],
    }
)[["dataset", "method / model", "source", "balanced acc. (%)", "AUC", "accuracy (%)"]]
side = pd.concat([ours, published[published["dataset"].isin(data_names)]], ignore_index=True)
display(formatted(side).set_index(["dataset", "method / model"]))

# %% [markdown]
# The published reference values in full (SPEC 1.3; DAS paper {cite}`shankaranarayana2025das`, MedMNIST v2
# {cite}`yang2023medmnist`). They are inputs typed from the papers, not results of this book.

# %% tags=["nbval-check-output"]
print(formatted(published).set_index(["dataset", "method / model"]).to_string())

# %% [markdown]
# ## Synthetic benchmark: the numbers the text quotes
#
# Balanced accuracy of DAS {glue:md}`syn_das`, of the static samplers uniform {glue:md}`syn_uniform`
# and DPS {glue:md}`syn_dps`, of the full sequence {glue:md}`syn_full` (mean over seeds; chance is
# 25% with four classes). The static ceiling is {glue:md}`syn_ceiling`. Verdict for this run:
# {glue:md}`syn_verdict`.


# %%
def quoted(dataset: str, method: str) -> str:
    """``"62.3% (3 seeds)"`` for a stored row, ``"(not run)"`` when the sweep skipped it."""
    row = table[(table["dataset"] == dataset) & (table["method"] == method)]
    if row.empty:
        return "(not run)"
    return f"{100 * row['balanced_accuracy_mean'].iloc[0]:.1f}% ({int(row['n_seeds'].iloc[0])} seed(s))"


def best_static(dataset: str) -> tuple[str, float] | None:
    rows = table[(table["dataset"] == dataset) & table["method"].isin(["random", "uniform", "dps"])]
    if rows.empty:
        return None
    best = rows.loc[rows["balanced_accuracy_mean"].idxmax()]
    return str(best["method"]), float(best["balanced_accuracy_mean"])


for method in ("das", "uniform", "dps", "full"):
    glue(f"syn_{method}", Markdown(quoted("synthetic", method)))
glue("syn_ceiling", Markdown("n/a" if ceiling is None else f"{100 * ceiling:.1f}%"))
das_row = table[(table["dataset"] == "synthetic") & (table["method"] == "das")]
static = best_static("synthetic")
if das_row.empty or static is None:
    verdict = "no comparison: DAS or every static sampler is missing from this sweep"
else:
    das_bacc = float(das_row["balanced_accuracy_mean"].iloc[0])
    relation = "above" if das_bacc > static[1] else "not above"
    verdict = (
        f"DAS ({100 * das_bacc:.1f}%) is **{relation}** the best static sampler ({static[0]}, "
        f"{100 * static[1]:.1f}%)"
        + ("" if ceiling is None else f", and {'above' if das_bacc > ceiling else 'not above'} the static ceiling")
    )
glue("syn_verdict", Markdown(verdict))

# %% [markdown]
# ## Which slices each method keeps
#
# Every run stores, for its test set, how often each slice position was selected. Below, per dataset
# and method, the share of test volumes that kept slice $t$ (averaged over seeds; the $k$ picks per volume
# make the bars add up to $100k$%). A static sampler is a comb of bars at 0 or 100% (uniform, DPS at
# evaluation), or flat (random); an input-adaptive sampler spreads its picks over positions because it
# chooses per volume. On the synthetic benchmark the informative slice is equally likely at every
# position, so a sampler that follows it spreads its picks over all positions.

# %%
per_run: dict[tuple[str, str], list[np.ndarray]] = {}
for run in runs:
    counts = np.asarray(run["selection_histogram"], dtype=float)
    volumes = counts.sum() / run["k"]  # every test volume contributes k picks
    per_run.setdefault((run["dataset"], run["method"]), []).append(100 * counts / volumes)
histograms = {key: np.mean(shares, axis=0) for key, shares in per_run.items()}  # mean over seeds
present = [m for m in METHOD_ORDER if any((d, m) in histograms for d in data_names)]
fig, axes = plt.subplots(
    len(data_names), len(present), figsize=(2.3 * len(present), 2.3 * len(data_names)), squeeze=False, sharey=True
)
for row, name in enumerate(data_names):
    for col, method in enumerate(present):
        ax = axes[row, col]
        if (name, method) in histograms:
            share = histograms[(name, method)]
            ax.bar(np.arange(len(share)), share, width=1.0, color=COLORS.get(method, "tab:gray"))
        ax.set_title(f"{name}\n{method}", fontsize=9)
        ax.set_ylim(0, 105)
        ax.tick_params(labelsize=7)
        if row == len(data_names) - 1:
            ax.set_xlabel("slice t", fontsize=8)
    axes[row, 0].set_ylabel("test volumes keeping t (%)", fontsize=8)
fig.tight_layout()
plt.show()

# %% [markdown]
# The summary is also written next to the runs as `summary.csv` (numbers) and `summary.md`
# (mean ± std), the same files `python -m das summary --profile <profile>` writes.
