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
# Which parts of DAS {cite}`shankaranarayana2025das` matter? Each variant below changes one choice of
# our DAS and keeps everything else, including the training protocol:
#
# - the sampling ratio $k/T$, for DAS and the static samplers uniform and DPS {cite}`huijben2020dps`,
#   with the full sequence as the reference;
# - the number of attention heads $H$ and the base temperature $\tau_0$;
# - our decisions where the paper is silent or inconsistent (chapter 4): sampling **without**
#   replacement (ours) or with it (the paper's literal rule); the adaptive temperature on or off;
#   fixed Sobel/Laplacian features or a small learned CNN per slice; the variance score plus a learned
#   correction as base score (ours) or the variance alone (the paper's "temporal variance"); and the
#   gradient estimator, the score-function (REINFORCE) estimator our profiles use or the paper's
#   straight-through Gumbel-softmax gradient.
#
# On **real AdrenalMNIST3D**, the variants ran under {glue:md}`real_protocol` with three seeds; their
# runs are stored in the repository and read back here, with 95% bootstrap intervals. On the **synthetic
# benchmark** (labelled synthetic: the label sits in one slice at a random depth, so a static
# sampler has a known ceiling), this build trains the variants itself.

# %% tags=["parameters", "hide-input"]
# book scale this run belongs to (ci, laptop, gpu; set by the book builder)
scale = "laptop"
# seeds the bootstrap and the Gumbel draws that count duplicate picks
seed = 0
# where this build's runs train ("auto": CUDA when present, else "cpu")
device = "auto"
num_threads = 2  # torch CPU threads per run
# stored real-data ablation runs (under measurements/); the chapter says which protocol they ran
stored_runs = "cpu/real-affine"
num_draws = 2000  # bootstrap draws per interval
profile = "quick"  # the sweep profile of this build's own ablations
datasets = ["synthetic"]  # datasets of this build's ablations
seeds = [0]  # training seeds of this build's variants
epochs = 6  # training epochs per run; None: the profile's
# cap on training volumes; None: the profile's (quick: 256 synthetic volumes)
max_train_samples = None
# cap on validation and test volumes; None: the profile's
max_eval_samples = None
heads = [1, 4, 8]  # values of H in this build's ablations (DAS default 4)
tau0s = [
    0.5,
    1.0,
    2.0,
]  # values of tau0 in this build's ablations (DAS default 1)
ratios = [0.25, 0.5, 0.75]  # sampling ratios of this build's ratio curve
ratio_methods = [
    "uniform",
    "dps",
    "das",
]  # methods of this build's ratio curve (full sequence added)
# run store of the book (relative to the repository root)
results_dir = "results/book"

# %% tags=["hide-cell"]
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
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
    trained_model,
)
from das.data import iterate_batches, static_accuracy_bound
from das.experiments import (
    TOGGLES,
    ablation_plan,
    ablation_runs,
    das_defaults,
    variant_name,
)
from das.results import interval, number
from das.stats import bootstrap_table
from das.train import build_model, load_splits

setup_plots()
COLORS = {
    "full": "tab:gray",
    "uniform": "tab:green",
    "dps": "tab:blue",
    "das": "tab:orange",
}


def variant_records(
    records: list[dict], runs: list, defaults: dict
) -> dict[tuple[str, str], list[dict]]:
    """``{(variant, method): records}`` of the planned ``runs``, matched by store folder, method and seed."""
    by_key = {(r["group"], r["method"], r["seed"]): r for r in records}
    out: dict[tuple[str, str], list[dict]] = {}
    for run in runs:
        variant = variant_name(
            run.config.ratio, run.config.sampler_options, defaults
        )
        record = by_key.get((run.group, run.config.method, run.config.seed))
        if record is not None:
            out.setdefault((variant, run.config.method), []).append(record)
    return out


def auc_rows(
    groups: dict[str, list[dict]], reference: str | None = None
) -> pd.DataFrame:
    """Per label: mean test AUC, its 95% interval and, against ``reference``, the paired difference."""
    relabelled = [
        {**r, "method": label}
        for label, records in groups.items()
        for r in records
    ]
    table, diffs = bootstrap_table(
        relabelled, reference=reference or "", num_draws=num_draws, seed=seed
    )
    table = table.set_index("method").loc[list(groups)]
    if reference:
        diffs = diffs.set_index("method")
        table["diff"] = [
            0.0 if label == reference else -diffs.loc[label, "auc_diff"]
            for label in table.index
        ]
        table["diff_low"] = [
            0.0 if label == reference else -diffs.loc[label, "auc_high"]
            for label in table.index
        ]
        table["diff_high"] = [
            0.0 if label == reference else -diffs.loc[label, "auc_low"]
            for label in table.index
        ]
    return table


real = measured_runs(stored_runs)
real_seeds = sorted(
    {r["seed"] for r in real if r["group"].startswith("real/ablations/")}
)
defaults = das_defaults("real")
real_variants = variant_records(
    real, ablation_runs("real", seeds=real_seeds), defaults
)
glue("where", Markdown(f"`measurements/{stored_runs}`, {machine_label(real)}"))
# The protocol the stored runs trained under, against today's `real` profile.
differs = protocol_differences(real, "real")
glue(
    "real_protocol",
    Markdown(
        "the `real` profile"
        if not differs
        else "an earlier protocol, which differs from today's `real` profile in "
        + ", ".join(
            f"`{k}={'/'.join(map(str, v))}`" for k, v in differs.items()
        )
        + " (the first round's choice of the protocol chapter)"
    ),
)
glue("real_seeds", len(real_seeds))
NOT_STORED = Markdown(
    "*Not stored yet: `python -m das sweep ablations --profile real` "
    "trains these runs under today's `real` profile.*"
)

# %% [markdown]
# ## Real data: the sampling ratio
#
# Test AUC against the share of slices kept, for uniform, DPS and DAS, with the full sequence as a
# horizontal band (its mean and 95% interval). {glue:text}`real_seeds` seeds per point; runs from
# {glue:md}`where`.

# %% tags=["hide-input"]
ratios_real = sorted(
    {
        r
        for (v, m), recs in real_variants.items()
        if m != "full"
        for r in [recs[0]["config"]["ratio"]]
    }
)
curve_rows = []
if ratios_real:
    fig, ax = plt.subplots(figsize=(6.8, 3.6))
    for method in ("uniform", "dps", "das"):
        groups = {
            ratio: real_variants[(variant_name(ratio, {}, defaults), method)]
            for ratio in ratios_real
            if (variant_name(ratio, {}, defaults), method) in real_variants
        }
        if not groups:
            continue
        table = auc_rows(
            {f"{method} {ratio:g}": recs for ratio, recs in groups.items()}
        )
        xs = list(groups)
        ax.errorbar(
            xs,
            table["auc_mean"],
            yerr=error_bars(
                table["auc_mean"], table["auc_low"], table["auc_high"]
            ),
            fmt="o-",
            capsize=3,
            color=COLORS[method],
            label=method,
        )
        curve_rows += [
            {
                "method": method,
                "ratio": x,
                "AUC": f"{m:.3f}",
                "95% interval": interval(lo, hi),
            }
            for x, m, lo, hi in zip(
                xs, table["auc_mean"], table["auc_low"], table["auc_high"]
            )
        ]
    full_key = next((key for key in real_variants if key[1] == "full"), None)
    if full_key is not None:
        full = auc_rows({"full": real_variants[full_key]}).iloc[0]
        ax.axhspan(
            full["auc_low"],
            full["auc_high"],
            color=COLORS["full"],
            alpha=0.2,
            lw=0,
        )
        ax.axhline(
            full["auc_mean"],
            color=COLORS["full"],
            lw=1.5,
            label=f"full sequence ({full['auc_mean']:.3f})",
        )
    ax.set(
        xlabel="share of slices kept, k/T",
        ylabel="test AUC",
        title="AdrenalMNIST3D: AUC against the sampling ratio",
    )
    ax.grid(alpha=0.3)
    ax.legend(frameon=False)
    show()
else:
    display(NOT_STORED)

# %% tags=["remove-input"]
if curve_rows:
    display(
        book_table(
            pd.DataFrame(curve_rows).pivot(
                index="ratio", columns="method", values="AUC"
            )
        )
    )
    curve = pd.DataFrame(curve_rows).set_index(["method", "ratio"])
    glue(
        "curve_das",
        Markdown(
            "; ".join(
                f"{r:g}: {curve.loc[('das', r), 'AUC']}"
                for r in ratios_real
                if ("das", r) in curve.index
            )
        ),
    )
else:
    glue("curve_das", Markdown("not stored yet"))

# %% [markdown]
# DAS's test AUC per ratio: {glue:md}`curve_das`.
#
# ## Real data: our decisions, one at a time
#
# Each row changes one option of our DAS at 50% of the slices. The right column is the paired
# difference to our defaults over the same seeds and bootstrap draws: an interval that excludes zero
# is an effect these runs resolve.

# %% tags=["hide-input"]
labels = {"ours (defaults)": variant_name(0.5, {}, defaults)}
labels |= {
    f"H = {h}": variant_name(0.5, {"heads": h}, defaults) for h in (1, 8)
}
labels |= {
    f"tau0 = {t:g}": variant_name(0.5, {"tau0": t}, defaults)
    for t in (0.5, 2.0)
}
labels |= {
    label: variant_name(0.5, options, defaults)
    for label, options in TOGGLES.items()
    if options
}
groups = {
    label: real_variants[(v, "das")]
    for label, v in labels.items()
    if (v, "das") in real_variants
}
have_decisions = "ours (defaults)" in groups and len(groups) > 1
if have_decisions:
    decisions = auc_rows(groups, reference="ours (defaults)")
    fig, ax = plt.subplots(figsize=(6.8, 0.42 * len(decisions) + 1.0))
    y = np.arange(len(decisions))
    ax.errorbar(
        decisions["diff"],
        y,
        xerr=error_bars(
            decisions["diff"], decisions["diff_low"], decisions["diff_high"]
        ),
        fmt="o",
        color="tab:orange",
        capsize=3,
    )
    ax.axvline(0, color="k", lw=1)
    ax.set_yticks(y, decisions.index)
    ax.invert_yaxis()
    ax.set(
        xlabel="test AUC minus ours (paired, 95% interval)",
        title="DAS variants on AdrenalMNIST3D, 50% of slices",
    )
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    show()
else:
    display(NOT_STORED)

# %% tags=["remove-input"]
if have_decisions:
    display(
        book_table(
            pd.DataFrame(
                {
                    "variant": decisions.index,
                    "AUC": [f"{m:.3f}" for m in decisions["auc_mean"]],
                    "95% interval": [
                        interval(lo, hi)
                        for lo, hi in zip(
                            decisions["auc_low"], decisions["auc_high"]
                        )
                    ],
                    "minus ours": [
                        number(d, signed=True) for d in decisions["diff"]
                    ],
                    "its 95% interval": [
                        interval(lo, hi, signed=True)
                        for lo, hi in zip(
                            decisions["diff_low"], decisions["diff_high"]
                        )
                    ],
                }
            ).set_index("variant")
        )
    )
    resolved = [
        v
        for v in decisions.index
        if decisions.loc[v, "diff_low"] > 0 or decisions.loc[v, "diff_high"] < 0
    ]
    glue(
        "resolved",
        Markdown(
            "; ".join(
                f"{v} ({number(decisions.loc[v, 'diff'], signed=True)})"
                for v in resolved
            )
            if resolved
            else "none of them"
        ),
    )
    tau_same = [
        label
        for label in decisions.index
        if label.startswith("tau0")
        and [r["metrics"]["auc"] for r in groups[label]]
        == [r["metrics"]["auc"] for r in groups["ours (defaults)"]]
    ]
    glue(
        "tau_same",
        Markdown(" and ".join(tau_same) if tau_same else "no tau0 variant"),
    )
else:
    glue("resolved", Markdown("not stored yet"))
    glue("tau_same", Markdown("(not stored yet)"))

# %% [markdown]
# Variants whose difference to our defaults the paired intervals resolve: {glue:md}`resolved`.
#
# With the score-function estimator the temperature plays no part in training: $\tau$ only shapes
# the soft relaxation of the straight-through gradient, which this estimator does not use. The $\tau_0$
# variants must then repeat our defaults to the last digit; here {glue:md}`tau_same` do, which checks
# the claim. The fixed-temperature variant differs from our defaults only through its random
# initialisation (one MLP fewer shifts the random stream), so its difference shows run-to-run noise.
#
# ## The synthetic benchmark, trained by this build
#
# The same variants on the synthetic benchmark, at this build's scale (a few epochs, fewer seeds:
# differences of a few points are within the run-to-run noise). The static samplers' analytic ceiling
# is the dashed curve: a static sampler passes it only by luck of the test set, an input-adaptive one by
# finding the informative slice.

# %% tags=["hide-input"]
plan = ablation_plan(
    profile,
    heads=heads,
    tau0s=tau0s,
    ratios=ratios,
    ratio_methods=ratio_methods,
)
overrides = dict(
    epochs=epochs,
    max_train_samples=max_train_samples,
    max_eval_samples=max_eval_samples,
    device=device,
    num_threads=num_threads,
    quiet=True,
)
store = book_store(results_dir, scale)
runs = ablation_runs(profile, datasets, seeds, plan=plan, **overrides)
keep_variants = {
    variant_name(0.5, {}, das_defaults(profile)),
    variant_name(0.5, {"replacement": True}, das_defaults(profile)),
}
kept = [
    r
    for r in runs
    if r.config.method == "das"
    and variant_name(
        r.config.ratio, r.config.sampler_options, das_defaults(profile)
    )
    in keep_variants
    and r.config.seed == seeds[0]
]
outcomes = sweep([r for r in runs if r not in kept], store) + sweep(
    kept, store, keep_checkpoint=True
)
records = [o.record for o in outcomes]
syn_defaults = das_defaults(profile)
own = variant_records(records, runs, syn_defaults)
glue("own_where", Markdown(machine_label(records)))
glue("own_runs", len(records))


def own_bacc(variant: str, method: str) -> tuple[float, float]:
    values = [
        r["metrics"]["balanced_accuracy"]
        for r in own.get((variant, method), [])
    ]
    return (
        float(np.mean(values)),
        float(np.std(values, ddof=1)) if len(values) > 1 else float("nan"),
    )


dataset = datasets[0]
probe = next(r for r in records if r["dataset"] == dataset)
fig, (ax_curve, ax_bars) = plt.subplots(
    1, 2, figsize=(6.8, 3.6), gridspec_kw={"width_ratios": [1, 1.2]}
)
for method in ratio_methods:
    points = [
        (r, own_bacc(variant_name(r, {}, syn_defaults), method)) for r in ratios
    ]
    ax_curve.errorbar(
        [r for r, _ in points],
        [100 * m for _, (m, _) in points],
        yerr=[100 * np.nan_to_num(s) for _, (_, s) in points],
        fmt="o-",
        capsize=3,
        color=COLORS[method],
        label=method,
    )
full_records = [r for (v, m), recs in own.items() if m == "full" for r in recs]
if full_records:
    ax_curve.axhline(
        100
        * np.mean([r["metrics"]["balanced_accuracy"] for r in full_records]),
        color=COLORS["full"],
        label="full",
    )
if dataset == "synthetic":
    options = probe["config"]["dataset_options"]
    T = probe["num_frames"]
    m_inf = options.get("num_informative", 1)
    classes = len(probe["test_predictions"]["probs"][0])
    grid = np.linspace(min(ratios), max(ratios), 50)
    ax_curve.plot(
        grid,
        [
            100 * static_accuracy_bound(T, max(1, round(r * T)), m_inf, classes)
            for r in grid
        ],
        "k--",
        lw=1,
        label="static ceiling",
    )
ax_curve.set(
    xlabel="k/T",
    ylabel="balanced accuracy (%)",
    title=f"{dataset}: ratio curve",
    ylim=(0, 105),
)
ax_curve.grid(alpha=0.3)
ax_curve.legend(frameon=False)
bar_labels = [
    "ours (defaults)",
    *(label for label, options in TOGGLES.items() if options),
]
values = [
    own_bacc(variant_name(0.5, TOGGLES[label], syn_defaults), "das")
    for label in bar_labels
]
ax_bars.barh(
    range(len(bar_labels)),
    [100 * m for m, _ in values],
    xerr=[100 * np.nan_to_num(s) for _, s in values],
    color=["tab:orange"] + ["tab:gray"] * (len(bar_labels) - 1),
    capsize=3,
)
ax_bars.set_yticks(
    range(len(bar_labels)),
    [label.replace(" (paper-literal)", "*") for label in bar_labels],
)
ax_bars.invert_yaxis()
ax_bars.set(
    xlabel="balanced accuracy (%)",
    title="DAS variants (* paper-literal)",
    xlim=(0, 105),
)
ax_bars.grid(axis="x", alpha=0.3)
fig.tight_layout()
show()
glue(
    "syn_list",
    Markdown(
        "; ".join(
            f"{label}: {100 * m:.1f}%"
            for label, (m, _) in zip(bar_labels, values)
        )
    ),
)

# %% [markdown]
# {glue:text}`own_runs` runs on {glue:md}`own_where`. Balanced accuracy of the DAS variants on the
# synthetic benchmark: {glue:md}`syn_list`.
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
def duplicate_share(
    sampler, dataset_split, generator: torch.Generator
) -> float:
    """Share of picks that repeat an earlier pick of the same volume (training-mode draws)."""
    sampler.train()
    repeats = picks = 0
    with torch.no_grad():
        for x, _ in iterate_batches(dataset_split, 64, shuffle=False):
            indices = sampler(x, generator).indices
            distinct = (indices.sort(dim=1).values.diff(dim=1) != 0).sum(
                dim=1
            ) + 1
            repeats += int((indices.shape[1] - distinct).sum())
            picks += indices.numel()
    return repeats / picks


dup_rows = []
by_run = {
    (o.run.group, o.run.config.method, o.run.config.seed): o for o in outcomes
}
for label in ("ours (defaults)", "with replacement (paper-literal)"):
    [run] = [
        r
        for r in kept
        if variant_name(r.config.ratio, r.config.sampler_options, syn_defaults)
        == variant_name(0.5, TOGGLES[label], syn_defaults)
    ]
    outcome = by_run[(run.group, run.config.method, run.config.seed)]
    splits = load_splits(run.config)
    with torch.random.fork_rng():
        torch.manual_seed(run.config.seed)  # the trainer's initialisation
        initial = build_model(
            run.config,
            splits.train.num_frames,
            splits.train.num_classes,
            splits.train.in_channels,
        )
    before = duplicate_share(
        initial.sampler, splits.train, torch.Generator().manual_seed(seed)
    )
    after = duplicate_share(
        trained_model(outcome, store).sampler,
        splits.train,
        torch.Generator().manual_seed(seed),
    )
    dup_rows.append(
        {
            "variant": label,
            "at initialisation (%)": round(100 * before, 1),
            "trained (%)": round(100 * after, 1),
        }
    )
duplicates = pd.DataFrame(dup_rows).set_index("variant")
print(duplicates[["at initialisation (%)"]].to_string())

# %% tags=["remove-cell"]
glue(
    "dup_init",
    duplicates.loc["with replacement (paper-literal)", "at initialisation (%)"],
)
glue(
    "dup_trained",
    duplicates.loc["with replacement (paper-literal)", "trained (%)"],
)

# %% [markdown]
# With replacement, {glue:text}`dup_init:.1f`% of the training picks repeat an earlier pick at
# initialisation and {glue:text}`dup_trained:.1f`% with the trained weights; without replacement (ours)
# none do, by construction.
