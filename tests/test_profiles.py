"""Experiment profiles (das.profiles): every run of every profile is a valid config, and each
profile keeps the settings it documents."""

from __future__ import annotations

import pytest

from das.data import DATASETS
from das.profiles import MEDMNIST3D, PROFILES, get_profile
from das.samplers import METHODS
from das.sweep import profile_configs


def test_profiles_are_complete_and_valid() -> None:
    quick, paper = get_profile("quick"), get_profile("paper")
    assert set(quick.datasets) == {"synthetic", "adrenalmnist3d"} and quick.methods == METHODS
    assert paper.datasets == MEDMNIST3D and paper.methods == METHODS and len(paper.seeds) == 3
    assert quick.ratio == paper.ratio == 0.5
    assert all(name in DATASETS for name in MEDMNIST3D)
    for name in PROFILES:  # every run of every profile is a valid TrainConfig
        configs = profile_configs(name)
        assert len(configs) == len(get_profile(name).datasets) * len(METHODS) * len(get_profile(name).seeds)
    organ = profile_configs("paper", datasets=["organmnist3d"], methods=["das"], seeds=[0])[0]
    assert (organ.epochs, organ.patience, organ.lr, organ.batch_size) == (100, 10, 1e-4, 16)
    with pytest.raises(ValueError, match="unknown profile 'huge'"):
        get_profile("huge")
    with pytest.raises(ValueError, match="unknown training setting"):
        profile_configs("quick", epochz=3)


def test_profiles_train_das_with_the_score_estimator_unless_overridden() -> None:
    for name in ("quick", "paper"):
        profile = get_profile(name)
        dataset = profile.datasets[0]
        assert profile.config(dataset, "das", 0).sampler_options == {"estimator": "score"}
        assert profile.config(dataset, "dps", 0).sampler_options == {}
        paper_literal = profile.config(dataset, "das", 0, sampler_options={"estimator": "st", "heads": 2})
        assert paper_literal.sampler_options == {"estimator": "st", "heads": 2}


def test_the_real_profile_is_the_protocol_for_real_data() -> None:
    real = get_profile("real")
    config = real.config("adrenalmnist3d", "das", 0)
    assert real.datasets == MEDMNIST3D and real.methods == METHODS and len(real.seeds) == 5
    assert (config.lr_schedule, config.select_metric, config.patience) == ("step", "val_auc", None)
    assert (config.augment, config.weight_decay, config.class_weights) == ("flip", 0.0, "balanced")
    assert config.threshold == "validation"
    assert config.sampler_options == {"estimator": "score"} and config.sampler_warmup == 1
    assert real.ablation_datasets == ("adrenalmnist3d",)


def test_the_paper_profile_stays_literal() -> None:
    config = get_profile("paper").config("organmnist3d", "uniform", 0)
    assert (config.lr, config.lr_schedule, config.select_metric, config.patience) == (1e-4, "constant", "val_loss", 10)
    assert (config.augment, config.weight_decay, config.class_weights) == ("none", 0.0, "none")


def test_overrides_win_and_none_passes_through() -> None:
    quick = get_profile("quick")
    assert quick.config("synthetic", "das", 0, epochs=2).epochs == 2
    assert quick.config("synthetic", "das", 0, epochs=None).epochs == 10
    with pytest.raises(ValueError, match="unknown training setting"):
        quick.config("synthetic", "das", 0, epochz=2)
