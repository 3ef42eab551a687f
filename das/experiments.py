"""The project's named sweeps, as lists of runs: what the book's chapters and ``python -m das sweep``
train. Each function returns :class:`~das.sweep.Run` objects; :func:`das.sweep.run_sweep` trains or
reads them back. :data:`SWEEPS` is the registry the command line lists.

- ``table1``: a profile's Table 1 (:func:`das.sweep.profile_runs`).
- ``size64``: the ``real`` profile's full, uniform and DAS at 64^3.
- ``ablations``: DAS variants that differ from the profile's DAS in one option each, and the ratio
  curve of uniform, DPS and DAS (:func:`ablation_runs`).
- ``protocol``: the candidate protocols for real data, compared on the validation split
  (:data:`PROTOCOL_CANDIDATES`); ``literal``: the paper's literal protocol on the same data.

A variant whose config equals a run of the profile's Table 1 is that run (same store folder), so it
is trained once.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

from das.profiles import get_profile
from das.samplers import DASSampler
from das.sweep import Run, profile_runs

# Candidate protocols for real data: TrainConfig fields on top of PROTOCOL_BASE. Compared on the
# training and validation splits of AdrenalMNIST3D (the experiments chapter shows the comparison).
PROTOCOL_BASE: dict[str, Any] = {
    "dataset": "adrenalmnist3d",
    "size": 28,
    "ratio": 0.5,
    "epochs": 20,
    "patience": None,
    "batch_size": 16,
    "lr": 1e-3,
    "sampler_warmup": 1,
}
PROTOCOL_CANDIDATES: dict[str, dict[str, Any]] = {
    "constant-loss": {"lr_schedule": "constant", "select_metric": "val_loss"},
    "step-auc": {"lr_schedule": "step", "select_metric": "val_auc"},
    "step-auc-affine": {"lr_schedule": "step", "select_metric": "val_auc", "augment": "affine"},
    "step-auc-affine-wd": {
        "lr_schedule": "step",
        "select_metric": "val_auc",
        "augment": "affine",
        "weight_decay": 0.05,
    },
    "step-auc-affine-wd-balanced": {
        "lr_schedule": "step",
        "select_metric": "val_auc",
        "augment": "affine",
        "weight_decay": 0.05,
        "class_weights": "balanced",
    },
    # Second round: the affine candidates kept the training loss high (underfitting), so the flip alone.
    "step-auc-flip-wd-balanced": {
        "lr_schedule": "step",
        "select_metric": "val_auc",
        "augment": "flip",
        "weight_decay": 0.05,
        "class_weights": "balanced",
    },
    "step-auc-flip-balanced": {
        "lr_schedule": "step",
        "select_metric": "val_auc",
        "augment": "flip",
        "class_weights": "balanced",
    },
}
PROTOCOL_METHODS: tuple[str, ...] = ("full", "uniform", "das")
PROTOCOL_SEEDS: tuple[int, ...] = (0, 1)


def simplest_first(candidates: dict[str, dict[str, Any]] | None = None) -> list[str]:
    """Candidate names, simplest first: fewer settings that differ from ``TrainConfig``'s defaults,
    then the milder augmentation (each recipe of :data:`das.augment.AUGMENTATIONS` contains the one
    before it), then the order given. The tie-break of :func:`das.reports.choose_protocol`."""
    from das.augment import AUGMENTATIONS
    from das.config import TrainConfig

    candidates = PROTOCOL_CANDIDATES if candidates is None else candidates
    defaults = TrainConfig.default_dict()
    strength = {name: rank for rank, name in enumerate(AUGMENTATIONS)}

    def complexity(name: str) -> tuple[int, int]:
        options = candidates[name]
        changed = sum(defaults[key] != value for key, value in options.items())
        return changed, strength[options.get("augment", defaults["augment"])]

    return sorted(candidates, key=complexity)  # sorted() is stable: ties keep the order given


def protocol_runs(
    methods: Sequence[str] = PROTOCOL_METHODS,
    seeds: Sequence[int] = PROTOCOL_SEEDS,
    candidates: Sequence[str] | None = None,
    **overrides: Any,
) -> list[Run]:
    """Every candidate protocol for full, uniform and DAS, stored under ``protocol/<candidate>``."""
    from das.config import TrainConfig

    das_options = get_profile("real").sampler_options
    runs = []
    for name in candidates if candidates is not None else PROTOCOL_CANDIDATES:
        for method in methods:
            for seed in seeds:
                values = {
                    **PROTOCOL_BASE,
                    **PROTOCOL_CANDIDATES[name],
                    "method": method,
                    "seed": seed,
                    "sampler_options": dict(das_options.get(method, {})),
                    **overrides,
                }
                runs.append(Run(f"protocol/{name}", TrainConfig(**values)))
    return runs


def literal_runs(methods: Sequence[str] = PROTOCOL_METHODS, seeds: Sequence[int] = (0,), **overrides: Any) -> list[Run]:
    """The paper's literal protocol (the ``paper`` profile) on AdrenalMNIST3D, stored under ``literal``."""
    return [
        Run("literal", run.config) for run in profile_runs("paper", ["adrenalmnist3d"], methods, seeds, **overrides)
    ]


def size64_runs(
    profile: str = "real",
    methods: Sequence[str] = ("full", "uniform", "das"),
    seeds: Sequence[int] = (0, 1, 2),
    **overrides: Any,
) -> list[Run]:
    """Full, uniform and DAS on AdrenalMNIST3D at 64^3 under ``profile``, stored under ``<profile>/size-64``."""
    runs = profile_runs(profile, ["adrenalmnist3d"], methods, seeds, **{**overrides, "size": 64})
    return [Run(f"{profile}/size-64", run.config) for run in runs]


def das_defaults(profile: str) -> dict[str, Any]:
    """DAS's options as ``profile`` trains it: the sampler's defaults, then the profile's options."""
    defaults = {
        name: p.default
        for name, p in inspect.signature(DASSampler.__init__).parameters.items()
        if p.default is not inspect.Parameter.empty
    }
    return {**defaults, **get_profile(profile).sampler_options.get("das", {})}


def variant_name(ratio: float, options: dict[str, Any], defaults: dict[str, Any]) -> str:
    """The folder of a variant: ``ratio-0.5`` for the defaults, ``ratio-0.5_heads-1`` and so on."""
    changed = {key: value for key, value in sorted(options.items()) if defaults.get(key) != value}
    return "_".join([f"ratio-{ratio:g}", *(f"{key}-{value}" for key, value in changed.items())])


# Ablation axes: label -> DAS options at ratio 0.5 (ours first). Values of H and tau0 are added per
# call; the labels name what each variant changes.
TOGGLES: dict[str, dict[str, Any]] = {
    "ours (defaults)": {},
    "with replacement (paper-literal)": {"replacement": True},
    "fixed temperature": {"adaptive_temperature": False},
    "learned features (CNN)": {"features": "learned"},
    "variance base (paper-literal)": {"base": "variance"},
    "straight-through (paper-literal)": {"estimator": "st"},
}


def ablation_plan(
    profile: str,
    heads: Sequence[int] = (1, 4, 8),
    tau0s: Sequence[float] = (0.5, 1.0, 2.0),
    ratios: Sequence[float] = (0.125, 0.25, 0.5, 0.75),
    ratio_methods: Sequence[str] = ("uniform", "dps", "das"),
    toggles: Sequence[str] | None = None,
) -> list[tuple[str, str, float, dict[str, Any]]]:
    """``(variant, method, ratio, DAS options)`` of every ablation variant, without repeats: the heads
    and tau0 axes, the toggles (labels of :data:`TOGGLES`), the ratio curve and the full sequence."""
    defaults = das_defaults(profile)
    plan: dict[tuple[str, str], tuple[str, str, float, dict[str, Any]]] = {}

    def add(method: str, ratio: float, options: dict[str, Any]) -> None:
        options = {key: value for key, value in options.items() if defaults.get(key) != value}
        variant = variant_name(ratio, options, defaults)
        plan.setdefault((variant, method), (variant, method, ratio, options))

    for value in heads:
        add("das", 0.5, {"heads": value})
    for value in tau0s:
        add("das", 0.5, {"tau0": float(value)})
    for label in toggles if toggles is not None else TOGGLES:
        add("das", 0.5, TOGGLES[label])
    for method in ratio_methods:
        for ratio in ratios:
            add(method, ratio, {})
    add("full", get_profile(profile).ratio, {})  # the full sequence ignores the ratio: its Table 1 run
    return list(plan.values())


def ablation_runs(
    profile: str = "real",
    datasets: Sequence[str] | None = None,
    seeds: Sequence[int] = (0, 1, 2),
    plan: Sequence[tuple[str, str, float, dict[str, Any]]] | None = None,
    **overrides: Any,
) -> list[Run]:
    """The runs of :func:`ablation_plan` (or ``plan``) under ``profile`` for each dataset and seed,
    stored under ``<profile>/ablations/<variant>``, except those equal to a Table 1 run of the
    profile, which are that run."""
    spec = get_profile(profile)
    plan = ablation_plan(profile) if plan is None else plan
    runs = []
    for dataset in datasets if datasets is not None else spec.ablation_datasets:
        for variant, method, ratio, options in plan:
            for seed in seeds:
                config = spec.config(
                    dataset, method, seed, **{**overrides, "ratio": ratio, "sampler_options": dict(options)}
                )
                table1 = spec.config(dataset, method, seed, **overrides)
                same = dataset in spec.datasets and method in spec.methods and not config.differences(table1.to_dict())
                runs.append(Run(profile if same else f"{profile}/ablations/{variant}", config))
    return runs


# name -> (what it runs, function(profile) -> runs)
SWEEPS: dict[str, tuple[str, Callable[..., list[Run]]]] = {
    "table1": (
        "a profile's Table 1: every dataset, method and seed",
        lambda profile, **kw: profile_runs(profile, **kw),
    ),
    "size64": (
        "full, uniform and DAS at 64^3 (AdrenalMNIST3D, 3 seeds)",
        lambda profile, **kw: size64_runs(profile, **kw),
    ),
    "ablations": (
        "DAS variants and the ratio curve (first dataset of the profile, 3 seeds)",
        lambda profile, **kw: ablation_runs(profile, **kw),
    ),
    "protocol": (
        "candidate protocols for real data (AdrenalMNIST3D, full/uniform/DAS, 2 seeds)",
        lambda profile, **kw: protocol_runs(**kw),
    ),
    "literal": (
        "the paper's literal protocol on AdrenalMNIST3D (full/uniform/DAS, seed 0)",
        lambda profile, **kw: literal_runs(**kw),
    ),
}
