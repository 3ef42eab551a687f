"""Experiment profiles as data: which datasets, methods, seeds and training settings a sweep runs.

A profile is a plain table (:data:`PROFILES`); :func:`get_profile` turns an entry into a
:class:`Profile`, and :meth:`Profile.config` into the :class:`~das.config.TrainConfig` of one run.

- ``quick``: what ``make book`` trains itself. The synthetic benchmark and real AdrenalMNIST3D at
  28^3, every method at 50%, 3 seeds, a few epochs at lr 1e-3: a working pipeline on a laptop CPU,
  far from converged on real data.
- ``real``: our protocol for real MedMNIST3D data, chosen on the validation split (the protocol
  chapter of the book shows the comparison): every method at 50%, 5 seeds.
- ``paper``: the paper's protocol, literally (Adam at 1e-4, early stopping on the validation loss,
  up to 100 epochs), on the six MedMNIST3D sets; on real data it learns only the class prior (same
  chapter). Meant for a GPU; ``--download`` fetches the sets.

Every profile trains DAS with the score-function estimator (the ablations chapter compares it with
the paper's straight-through gradient; ``sampler_options={"estimator": "st"}`` restores it) and
freezes the learnable samplers for the first epoch (``sampler_warmup=1``, see :mod:`das.train`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from das.config import TrainConfig
from das.samplers import METHODS

MEDMNIST3D: tuple[str, ...] = (
    "organmnist3d",
    "nodulemnist3d",
    "adrenalmnist3d",
    "fracturemnist3d",
    "vesselmnist3d",
    "synapsemnist3d",
)

# name -> profile. "train": TrainConfig fields for every run; "per_dataset": fields for one dataset
# (applied after "train"); "sampler_options": sampler options for one method; "ablation_datasets":
# the datasets of the ablation sweep (das.experiments).
_DAS_OPTIONS = {"das": {"estimator": "score"}}
PROFILES: dict[str, dict[str, Any]] = {
    "quick": {
        "description": "synthetic benchmark + real AdrenalMNIST3D (28), every method at 0.5, 3 seeds, CPU-sized",
        "datasets": ("synthetic", "adrenalmnist3d"),
        "methods": METHODS,
        "seeds": (0, 1, 2),
        "ratio": 0.5,
        "train": {"patience": None, "size": 28, "sampler_warmup": 1},
        "per_dataset": {
            "synthetic": {"epochs": 10, "lr": 1e-3, "max_train_samples": 256, "max_eval_samples": 256},
            "adrenalmnist3d": {"epochs": 3, "lr": 1e-3},
        },
        "sampler_options": _DAS_OPTIONS,
        "ablation_datasets": ("synthetic",),
    },
    "real": {
        "description": "six MedMNIST3D sets (28), every method at 0.5, 5 seeds, our protocol for real data (CPU-sized)",
        "datasets": MEDMNIST3D,
        "methods": METHODS,
        "seeds": (0, 1, 2, 3, 4),
        "ratio": 0.5,
        "train": {
            "epochs": 20,
            "patience": None,
            "size": 28,
            "sampler_warmup": 1,
            "lr": 1e-3,
            "lr_schedule": "step",
            "select_metric": "val_auc",
            "augment": "flip",
            "class_weights": "balanced",
            "threshold": "validation",
        },
        "per_dataset": {},
        "sampler_options": _DAS_OPTIONS,
        "ablation_datasets": ("adrenalmnist3d",),
    },
    "paper": {
        "description": "six MedMNIST3D sets (28), every method at 0.5, 3 seeds, <= 100 epochs, patience 10 (GPU)",
        "datasets": MEDMNIST3D,
        "methods": METHODS,
        "seeds": (0, 1, 2),
        "ratio": 0.5,
        "train": {"epochs": 100, "patience": 10, "size": 28, "sampler_warmup": 1},
        "per_dataset": {},
        "sampler_options": _DAS_OPTIONS,
        "ablation_datasets": ("synthetic", "adrenalmnist3d"),
    },
}


@dataclass(frozen=True)
class Profile:
    """One row of :data:`PROFILES`, validated."""

    name: str
    description: str
    datasets: tuple[str, ...]
    methods: tuple[str, ...]
    seeds: tuple[int, ...]
    ratio: float
    train: dict[str, Any] = field(default_factory=dict)
    per_dataset: dict[str, dict[str, Any]] = field(default_factory=dict)
    sampler_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    ablation_datasets: tuple[str, ...] = ()

    def config(self, dataset: str, method: str, seed: int, **overrides: Any) -> TrainConfig:
        """The config of one run: profile settings, then the dataset's, then ``overrides`` (which win;
        ``None`` values in ``overrides`` are ignored, so optional command-line flags pass through).
        The method's sampler options from the profile are merged with ``overrides["sampler_options"]``
        (the override wins option by option)."""
        values: dict[str, Any] = {"dataset": dataset, "method": method, "seed": seed, "ratio": self.ratio}
        values.update(self.train)
        values.update(self.per_dataset.get(dataset, {}))
        overrides = {key: value for key, value in overrides.items() if value is not None}
        sampler_options = {**self.sampler_options.get(method, {}), **overrides.pop("sampler_options", {})}
        if sampler_options:
            values["sampler_options"] = sampler_options
        values.update(overrides)
        valid = {f.name for f in dataclasses.fields(TrainConfig)}
        unknown = sorted(set(values) - valid)
        if unknown:
            raise ValueError(
                f"unknown training setting(s) {', '.join(map(repr, unknown))}; valid: {', '.join(sorted(valid))}"
            )
        return TrainConfig(**values)


def get_profile(name: str) -> Profile:
    """The profile called ``name`` (``ValueError`` listing the valid names otherwise)."""
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; valid profiles: {', '.join(PROFILES)}")
    return Profile(name=name, **PROFILES[name])
