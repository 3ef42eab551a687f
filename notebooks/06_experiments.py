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
# The paper's Table 1 {cite}`shankaranarayana2025das` compares, keeping 50% of the slices, the full
# sequence, random and uniform subsampling, DPS {cite}`huijben2020dps`, ADPS {cite}`vangorp2021adps`
# and DAS, each feeding the same MobileNetV3-Small classifier {cite}`howard2019mobilenetv3`. Ours, on
# real AdrenalMNIST3D {cite}`yang2023medmnist` under the protocol of the previous chapter, comes first;
# its runs are stored in the repository and read back here. Intervals are 95% percentile-bootstrap
# intervals over test volumes and seeds (`das.stats`).

# %% tags=["parameters", "hide-input"]
# book scale this run belongs to (ci, laptop, gpu; set by the book builder)
scale = "laptop"
# seeds the bootstrap draws and the Monte Carlo check of the static ceiling
seed = 0
# where this build's own runs train ("auto": CUDA when present, else "cpu")
device = "auto"
num_threads = 2  # torch CPU threads per run
# the stored real-data Table 1 runs (under measurements/)
stored_runs = "cpu/real"
num_draws = 2000  # bootstrap draws per interval
profile = "quick"  # the sweep profile this build trains itself (das.profiles)
# datasets of this build's sweep (None: the profile's); the real data are the stored runs
datasets = ["synthetic"]
methods = None  # methods of this build's sweep; None: the profile's (all six)
seeds = None  # training seeds of this build's sweep; None: the profile's
epochs = None  # training epochs per run; None: the profile's
max_train_samples = None  # cap on training volumes; None: the profile's
# cap on validation and test volumes; None: the profile's
max_eval_samples = None
# run store of the book (relative to the repository root)
results_dir = "results/book"

# %% tags=["hide-cell"]
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import Markdown, display

from das.chapters import (
    book_store,
    book_table,
    error_bars,
    glue,
    machine_label,
    measured_runs,
    protocol_differences,
    setup_plots,
    show,
    sweep,
)
from das.data import (
    load_dataset,
    static_accuracy_bound,
    static_miss_probability,
)
from das.published import DAS_PAPER, MEDMNIST_V2, best_full_volume_auc
from das.reports import table1
from das.results import format_summary, interval, mean_std, number, summarize
from das.samplers import METHODS
from das.sweep import profile_runs

setup_plots()
COLORS = dict(
    zip(
        METHODS,
        [
            "tab:gray",
            "tab:olive",
            "tab:green",
            "tab:blue",
            "tab:purple",
            "tab:orange",
        ],
    )
)


def pm(mean: float, std: float, scale: float = 1.0, digits: int = 3) -> str:
    return mean_std(mean * scale, std * scale, digits)


def table_rows(table: pd.DataFrame) -> pd.DataFrame:
    """One formatted row per method: mean ± std over seeds and the bootstrap interval."""
    return pd.DataFrame(
        {
            "method": table["method"],
            "seeds": table["n_seeds"],
            "AUC": [
                pm(m, s) for m, s in zip(table["auc_mean"], table["auc_std"])
            ],
            "AUC 95% interval": [
                interval(lo, hi)
                for lo, hi in zip(table["auc_low"], table["auc_high"])
            ],
            "bal. acc. (%)": [
                pm(m, s, 100, 1)
                for m, s in zip(
                    table["balanced_accuracy_mean"],
                    table["balanced_accuracy_std"],
                )
            ],
            "bal. acc. 95% interval": [
                interval(100 * lo, 100 * hi, 1)
                for lo, hi in zip(
                    table["balanced_accuracy_low"],
                    table["balanced_accuracy_high"],
                )
            ],
            "acc. (%)": [
                pm(m, s, 100, 1)
                for m, s in zip(table["accuracy_mean"], table["accuracy_std"])
            ],
        }
    ).set_index("method")


real = measured_runs(stored_runs)
# Table 1 (the ablations are stored beside it)
at_28 = [r for r in real if r["group"] == "real"]
at_64 = [r for r in real if r["group"] == "real/size-64"]
# the tables say "profile real": they show only runs of today's real profile, at 50% of the slices
differs = protocol_differences(
    at_28 + at_64, "real", ignore=frozenset({"size"})
)
assert not differs, f"stored runs not of the real profile: {differs}"
real_table, real_diffs = table1(at_28, num_draws=num_draws, seed=seed)
dataset = at_28[0]["dataset"]
glue("where", Markdown(f"`measurements/{stored_runs}`, {machine_label(at_28)}"))

# %% [markdown]
# ## Table 1 on real AdrenalMNIST3D
#
# Test split (298 volumes), every subsampler keeping 14 of 28 slices; mean ± standard deviation over
# seeds and the 95% interval. Profile `real`; runs from {glue:md}`where`.

# %% tags=["remove-input"]
display(book_table(table_rows(real_table)))
glue(
    "table1_real",
    book_table(
        table_rows(real_table)[
            ["seeds", "AUC", "AUC 95% interval", "bal. acc. (%)"]
        ]
    ),
    display=False,
)

# %% [markdown]
# Published, for the same dataset (typed from the papers, not run here): MedMNIST v2's benchmark
# models see every slice of the volume. The DAS paper reports no AdrenalMNIST3D numbers.

# %% tags=["remove-input"]
published_here = pd.DataFrame(
    [
        {
            "model (published)": model,
            "AUC": f"{auc:.3f}",
            "acc. (%)": "-" if acc is None else f"{100 * acc:.1f}",
        }
        for model, (auc, acc) in MEDMNIST_V2.get(dataset, {}).items()
    ]
).set_index("model (published)")
display(book_table(published_here))

# %% [markdown]
# ## DAS against each method, paired
#
# The difference DAS minus each other method, over the same seeds and, in every bootstrap draw, the
# same resampled test volumes: what the methods share (the test set, the seed's data order) cancels.
# An interval that excludes zero is a difference this experiment resolves.

# %% tags=["remove-input"]
display(
    book_table(
        pd.DataFrame(
            {
                "DAS minus": real_diffs["method"],
                "seeds": real_diffs["n_seeds"],
                "AUC": [number(d, signed=True) for d in real_diffs["auc_diff"]],
                "AUC 95% interval": [
                    interval(lo, hi, signed=True)
                    for lo, hi in zip(
                        real_diffs["auc_low"], real_diffs["auc_high"]
                    )
                ],
                "bal. acc. (points)": [
                    number(100 * d, 1, signed=True)
                    for d in real_diffs["balanced_accuracy_diff"]
                ],
                "bal. acc. 95% interval": [
                    interval(100 * lo, 100 * hi, 1, signed=True)
                    for lo, hi in zip(
                        real_diffs["balanced_accuracy_low"],
                        real_diffs["balanced_accuracy_high"],
                    )
                ],
            }
        ).set_index("DAS minus")
    )
)

# %% tags=["hide-input"]
fig, (ax_auc, ax_diff) = plt.subplots(
    1, 2, figsize=(6.8, 3.4), gridspec_kw={"width_ratios": [1.1, 1]}
)
y = np.arange(len(real_table))
ax_auc.errorbar(
    real_table["auc_mean"],
    y,
    xerr=error_bars(
        real_table["auc_mean"], real_table["auc_low"], real_table["auc_high"]
    ),
    fmt="none",
    ecolor="k",
    capsize=3,
)
ax_auc.scatter(
    real_table["auc_mean"],
    y,
    c=[COLORS[m] for m in real_table["method"]],
    zorder=3,
)
best = best_full_volume_auc(dataset)
if best is not None:
    ax_auc.axvline(
        best[1], color="k", ls=":", lw=1, label=f"{best[0]} (published)"
    )
    # below the panels, where it covers no point
    fig.legend(frameon=False, loc="lower left", bbox_to_anchor=(0.0, 0.0))
ax_auc.set_yticks(y, real_table["method"])
ax_auc.invert_yaxis()
ax_auc.set(
    xlabel="test AUC (95% interval)", title="AdrenalMNIST3D, 50% of slices"
)
ax_auc.grid(axis="x", alpha=0.3)
yd = np.arange(len(real_diffs))
ax_diff.errorbar(
    real_diffs["auc_diff"],
    yd,
    xerr=error_bars(
        real_diffs["auc_diff"], real_diffs["auc_low"], real_diffs["auc_high"]
    ),
    fmt="o",
    color="tab:orange",
    capsize=3,
)
ax_diff.axvline(0, color="k", lw=1)
ax_diff.set_yticks(yd, [f"DAS - {m}" for m in real_diffs["method"]])
ax_diff.invert_yaxis()
ax_diff.set(xlabel="AUC difference (95% interval)", title="Paired differences")
ax_diff.grid(axis="x", alpha=0.3)
fig.tight_layout(rect=(0, 0.07 if best is not None else 0, 1, 1))
show()

# %% tags=["remove-input"]
by_method = real_table.set_index("method")
lowest = min(r["metrics"]["balanced_accuracy"] for r in at_28)
full_auc = by_method.loc["full", "auc_mean"]
das_auc = by_method.loc["das", "auc_mean"]
below_bar = sorted(
    (r["method"], r["seed"], r["metrics"]["balanced_accuracy"])
    for r in at_28
    if r["metrics"]["balanced_accuracy"] < 0.6
)
glue("lowest_bacc", 100 * lowest)
glue(
    "bacc_verdict",
    Markdown(
        "every run of every method is at or above 60%, so under this protocol "
        "every method learns more than the class prior"
        if not below_bar
        else f"{len(below_bar)} of {len(at_28)} runs stay below the 60% we "
        "set as the bar for learning more than the class prior ("
        + ", ".join(f"{m} seed {s}: {100 * b:.1f}%" for m, s, b in below_bar)
        + ")"
    ),
)
glue("full_auc", full_auc)
closest = MEDMNIST_V2.get(dataset, {}).get("ResNet-18+2.5D")
glue(
    "full_vs_published",
    Markdown(
        f"{'above' if full_auc > closest[0] else 'below'} the {closest[0]:.3f} "
        "of MedMNIST v2's ResNet-18 (2.5D), the published model closest to "
        "ours (a 2D network on every slice)"
        if closest
        else "no published 2.5D model to compare with"
    ),
)
glue("das_auc", das_auc)
glue("das_auc_low", by_method.loc["das", "auc_low"])
glue("das_auc_high", by_method.loc["das", "auc_high"])
glue(
    "best_published", Markdown(f"{best[0]}, {best[1]:.3f}" if best else "none")
)
glue(
    "das_vs_goal",
    Markdown(
        ("reaches" if das_auc >= best[1] else "does not reach")
        + " the best published full-volume AUC"
        if best
        else "has no published full-volume AUC to compare with"
    ),
)
diffs = real_diffs.set_index("method")
resolved = [
    m
    for m in diffs.index
    if diffs.loc[m, "auc_low"] > 0 or diffs.loc[m, "auc_high"] < 0
]
glue(
    "resolved",
    Markdown(
        "; ".join(
            f"DAS {'above' if diffs.loc[m, 'auc_low'] > 0 else 'below'} {m}"
            for m in resolved
        )
        if resolved
        else "none: every interval of the AUC difference contains zero"
    ),
)

# %% [markdown]
# What the table says. The lowest balanced accuracy of any single run is {glue:text}`lowest_bacc:.1f`%:
# {glue:md}`bacc_verdict`. The full sequence reaches a mean test AUC of {glue:text}`full_auc:.3f`,
# {glue:md}`full_vs_published`. DAS, keeping half the slices,
# reaches {glue:text}`das_auc:.3f` (95% interval {glue:text}`das_auc_low:.3f` to
# {glue:text}`das_auc_high:.3f`) and {glue:md}`das_vs_goal` ({glue:md}`best_published`). Differences
# the paired intervals resolve: {glue:md}`resolved`.

# %% [markdown]
# ## At 64$^3$
#
# Full, uniform and DAS on the 64$^3$ volumes (64 slices of 64 × 64, the subsamplers keeping 32), same
# protocol.

# %% tags=["remove-input"]
if at_64:
    table_64, diffs_64 = table1(at_64, num_draws=num_draws, seed=seed)
    display(book_table(table_rows(table_64)))
    glue("where_64", Markdown(f"Runs from {machine_label(at_64)}."))
else:
    glue(
        "where_64",
        Markdown(
            "*No 64³ runs are stored yet; "
            "`python -m das sweep size64 --profile real` trains them.*"
        ),
    )

# %% [markdown]
# {glue:md}`where_64`
#
# ## The paper's numbers on the other datasets
#
# The DAS paper reports DAS and ADPS on OrganMNIST3D, NoduleMNIST3D and VesselMNIST3D, and DAS against
# the full sequence on an in-house ultrasound set; MedMNIST v2 reports its full-volume benchmark on
# all six 3D sets. The five sets other than AdrenalMNIST3D cannot be downloaded where this book is
# built; `python -m das sweep table1 --profile real --download` runs them where they can.

# %% [markdown]
# Published in the DAS paper (test split):

# %% tags=["remove-input"]
display(
    book_table(
        pd.DataFrame(
            [
                {
                    "dataset": d,
                    "method": m,
                    "AUC": f"{auc:.3f}",
                    "bal. acc. (%)": f"{100 * b:.1f}",
                }
                for (d, m), (auc, b) in DAS_PAPER.items()
            ]
        ).set_index(["dataset", "method"])
    )
)

# %% [markdown]
# Published in MedMNIST v2 (test split; each model sees the whole volume):

# %% tags=["remove-input"]
display(
    book_table(
        pd.DataFrame(
            [
                {
                    "dataset": d,
                    "model": model,
                    "AUC": f"{auc:.3f}",
                    "acc. (%)": "-" if acc is None else f"{100 * acc:.1f}",
                }
                for d, models in MEDMNIST_V2.items()
                for model, (auc, acc) in models.items()
            ]
        ).set_index(["dataset", "model"])
    )
)

# %% [markdown]
# ## What this build trains itself
#
# The stored runs above took hours on a CPU. When the book is built, it trains a smaller sweep itself:
# {glue:md}`own_sweep`. The synthetic benchmark is labelled synthetic: its label sits in one of 16
# slices, at a random depth per volume. This sweep checks that the whole pipeline runs end to end on
# the machine that builds the book.

# %% tags=["hide-input"]
overrides = dict(
    epochs=epochs,
    max_train_samples=max_train_samples,
    max_eval_samples=max_eval_samples,
    device=device,
    num_threads=num_threads,
    quiet=True,
)
outcomes = sweep(
    profile_runs(profile, datasets, methods, seeds, **overrides),
    book_store(results_dir, scale),
)
runs = [outcome.record for outcome in outcomes]
table = summarize(runs)
own_epochs = {r["dataset"]: r["config"]["epochs"] for r in runs}
glue(
    "own_sweep",
    Markdown(
        f"the `{profile}` profile on "
        + " and ".join(f"{d} ({e} epochs)" for d, e in own_epochs.items())
        + f", {len({r['seed'] for r in runs})} seed(s), "
        + f"{len({r['method'] for r in runs})} methods at 50%"
        + (
            "; its AdrenalMNIST3D runs, a few epochs in, are far from converged"
            if "adrenalmnist3d" in own_epochs
            else ""
        )
    ),
)
display(book_table(format_summary(table).set_index(["dataset", "method"])))
glue("n_runs", len(runs))
glue("n_trained", sum(outcome.trained for outcome in outcomes))
glue("wall_total", sum(r["timings"]["wall_s"] for r in runs) / 60)
glue("own_where", Markdown(machine_label(runs)))

# %% [markdown]
# {glue:text}`n_runs` runs ({glue:text}`n_trained` trained by this build, the others read back from
# the results store), {glue:text}`wall_total:.1f` minutes of training in all, on
# {glue:md}`own_where`. DAS learns with the score-function estimator in every profile (the ablations
# chapter compares it with the paper's straight-through gradient).
#
# ### What a static sampler can reach on the synthetic benchmark
#
# In every synthetic volume the label is drawn in $m$ slices at random positions (`das.data`); the
# other slices are noise. A static sampler (uniform, random at evaluation, DPS) keeps $k$ of $T$
# slices that do not depend on the volume, so it misses all informative slices with probability
# $p_{\text{miss}} = \binom{T-m}{k} / \binom{T}{k}$, and then can only guess among $C$ classes. Its
# accuracy is at most $1 - p_{\text{miss}}(1 - 1/C)$ (`das.data.static_accuracy_bound`). An
# input-adaptive sampler is not bound by this ceiling. The check draws informative positions at
# random and counts how often the uniform pattern (every other slice) misses them.

# %% tags=["nbval-check-output"]
syn = next((r for r in runs if r["dataset"] == "synthetic"), None)
ceiling = None
if syn is None:
    print("synthetic benchmark not in this sweep")
else:
    options = syn["config"]["dataset_options"]
    probe = load_dataset(
        "synthetic",
        "test",
        size=syn["config"]["size"],
        num_samples=8,
        **options,
    )
    T_syn, C_syn = probe.num_frames, probe.num_classes
    m_syn = int(probe.informative[0].sum())
    k_syn = syn["k"]
    ceiling = static_accuracy_bound(T_syn, k_syn, m_syn, C_syn)
    rng = np.random.default_rng(seed)
    draws = 200_000
    informative = np.argsort(rng.random((draws, T_syn)), axis=1)[
        :, :m_syn
    ]  # m distinct positions
    kept = np.zeros(T_syn, dtype=bool)
    kept[np.linspace(0, T_syn - 1, k_syn).round().astype(int)] = (
        True  # a fixed pattern of k slices
    )
    missed = ~kept[informative].any(axis=1)
    print(f"T = {T_syn}, k = {k_syn}, m = {m_syn}, C = {C_syn}")
    p_miss = static_miss_probability(T_syn, k_syn, m_syn)
    print(
        f"p_miss analytic {p_miss:.4f}, simulated {missed.mean():.4f} ({draws} draws)"
    )
    print(f"static ceiling on accuracy: {ceiling:.4f}")

# %% tags=["remove-input"]
syn_rows = table[table["dataset"] == "synthetic"].set_index("method")
static_best = syn_rows.loc[
    [m for m in ("random", "uniform", "dps") if m in syn_rows.index],
    "balanced_accuracy_mean",
]
if ceiling is None or "das" not in syn_rows.index or static_best.empty:
    verdict = "no comparison: the synthetic benchmark, DAS or every static sampler is missing from this sweep"
else:
    das_bacc = syn_rows.loc["das", "balanced_accuracy_mean"]
    verdict = (
        f"DAS reaches {100 * das_bacc:.1f}% against {100 * static_best.max():.1f}% for the best static sampler "
        f"({static_best.idxmax()}) and a static ceiling of {100 * ceiling:.1f}%"
    )
glue("syn_verdict", Markdown(verdict))

# %% [markdown]
# On the synthetic benchmark, balanced accuracy: {glue:md}`syn_verdict`.
#
# ### Which slices each method keeps
#
# Every run stores how often each slice position was selected on its test set: the share of test
# volumes that kept slice $t$ (mean over seeds). A static sampler is a comb of bars at 0 or 100%
# (uniform, DPS at evaluation) or flat (random); an input-adaptive one spreads its picks because it
# chooses per volume. The rows are this build's runs and, last, the stored real-data Table 1 runs.

# %% tags=["hide-input"]
# one row per dataset of this build, then the stored runs
rows = [(r["dataset"], r) for r in runs] + [("stored", r) for r in at_28]
per_run: dict[tuple[str, str], list[np.ndarray]] = {}
for name, run in rows:
    counts = np.asarray(run["selection_histogram"], dtype=float)
    per_run.setdefault((name, run["method"]), []).append(
        100 * counts / (counts.sum() / run["k"])
    )
histograms = {key: np.mean(shares, axis=0) for key, shares in per_run.items()}
data_names = list(dict.fromkeys(name for name, _ in rows))
present = [m for m in METHODS if any((d, m) in histograms for d in data_names)]
fig, axes = plt.subplots(
    len(data_names),
    len(present),
    figsize=(6.8, 1.9 * len(data_names) + 0.4),
    squeeze=False,
    sharey=True,
)
for row, name in enumerate(data_names):
    for col, method in enumerate(present):
        ax = axes[row, col]
        if (name, method) in histograms:
            share = histograms[(name, method)]
            ax.bar(
                np.arange(len(share)),
                share,
                width=1.0,
                color=COLORS.get(method, "tab:gray"),
            )
        ax.set_title(method if row == 0 else "")
        ax.set_ylim(0, 105)
        ax.set_xticks([])
    axes[row, 0].set_ylabel(
        f"{dataset} (stored)" if name == "stored" else name, fontsize=9
    )
fig.supxlabel(
    "slice position t (left to right); bar height: test volumes keeping it (%)"
)
fig.tight_layout()
show()
