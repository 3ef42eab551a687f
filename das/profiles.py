"""Experiment profiles as data: which datasets, methods, seeds and training settings a Table 1 sweep
runs. A profile is a plain table (:data:`PROFILES`); :func:`get_profile` turns an entry into a
:class:`Profile` and :meth:`Profile.config` into the :class:`~das.config.TrainConfig` of one run.

- ``quick`` (``make book``, CI): the synthetic benchmark and real AdrenalMNIST3D at 28^3, every method
  at ratio 0.5, 3 seeds, sized for about 10 minutes on 2 CPU cores at the target training throughput
  (2,000 frames/s). Synthetic: 256 training and 256 val/test volumes of T = 16 slices (4 classes, one
  informative slice each), 10 epochs at lr 1e-3: at the paper's 1e-4 nothing learns within a CPU
  budget (measured: 10 epochs at 1e-4 leave the training loss at 1.15 of 1.39). AdrenalMNIST3D: the
  whole official splits (train 1188, val 98, test 298) for 3 epochs at lr 1e-3, far from converged.
  At the paper's lr 1e-4, 2 epochs left every method at chance (balanced accuracy 50.0-50.5% over 3
  seeds: the model predicts the majority class), which says nothing about the methods; at 1e-3 the
  full model reached 66.7% (seed 0, 4 epochs, best validation loss at epoch 2).
- ``paper``: the six MedMNIST3D sets at 28^3, every method, ratio 0.5, 3 seeds, up to 100 epochs with
  early stopping (patience 10): the protocol of SPEC 1.2, meant for a GPU. ``download`` is off; the
  command line's ``--download`` turns it on.

Both profiles freeze the learnable samplers for the first epoch (``sampler_warmup=1``, see
:mod:`das.train`), so that the backbone has learned something before the samplers learn from its loss.
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
# (applied after "train"); "sampler_options": sampler options for one method.
#
# DAS trains with the score-function estimator in both profiles (DASSampler's docstring says why and
# what we measured): with the paper's straight-through estimator DAS unlearns the informative slice of
# the synthetic benchmark and ends below the static samplers. The paper-literal estimator stays one
# option away: sampler_options={"estimator": "st"} (command line: --sampler-option estimator=st).
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
            "augment": "affine",
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
