"""The protocol knobs of the trainer: learning-rate schedule, model selection, weight decay, batched
augmentation, class weights, and when a checkpoint may resume under another ``epochs``."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

import das.train
from das.augment import AUGMENTATIONS, make_augmentation
from das.config import TrainConfig
from das.train import class_weight_tensor, load_splits, lr_factor, selection_score, train


def tiny(**overrides: object) -> TrainConfig:
    """Synthetic benchmark, 24 train / 16 val / 16 test volumes of 8 slices at 16x16."""
    values = dict(
        dataset="synthetic",
        method="das",
        size=16,
        epochs=1,
        batch_size=8,
        max_train_samples=24,
        max_eval_samples=16,
        dataset_options={"num_frames": 8, "num_samples": 32},
        device="cpu",
        quiet=True,
        num_threads=1,
    )
    values.update(overrides)
    return TrainConfig(**values)


@pytest.fixture(scope="module")
def splits() -> das.train.Splits:
    return load_splits(tiny())


def test_step_schedule_is_medmnists_recipe() -> None:
    factors = [lr_factor("step", epoch, 20) for epoch in range(20)]
    assert factors[:10] == [1.0] * 10
    assert factors[10:15] == pytest.approx([0.1] * 5)
    assert factors[15:] == pytest.approx([0.01] * 5)
    assert [lr_factor("constant", epoch, 20) for epoch in range(20)] == [1.0] * 20
    cosine = [lr_factor("cosine", epoch, 4) for epoch in range(4)]
    assert cosine == pytest.approx([1.0, (1 + math.cos(math.pi / 4)) / 2, 0.5, (1 + math.cos(3 * math.pi / 4)) / 2])
    with pytest.raises(ValueError, match="lr_schedule must be one of"):
        lr_factor("linear", 0, 4)


def test_trainer_applies_the_schedule_to_every_group(splits: das.train.Splits) -> None:
    result = train(tiny(epochs=4, lr=1e-3, lr_schedule="step"), splits)
    assert [h["lr"] for h in result.history] == pytest.approx([1e-3, 1e-3, 1e-4, 1e-5])
    constant = train(tiny(epochs=2, lr=1e-3), splits)
    assert [h["lr"] for h in constant.history] == [1e-3, 1e-3]


def test_selection_by_validation_auc_restores_that_epoch(
    splits: das.train.Splits, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Validation AUCs 0.6, 0.9, 0.7 with losses falling all along: AUC picks epoch 2, the loss epoch 3."""
    aucs, losses = iter([0.6, 0.9, 0.7]), iter([1.0, 0.8, 0.5])
    real_evaluate = das.train.evaluate
    calls = {"n": 0}

    def scripted(model, dataset, **kwargs):
        result = real_evaluate(model, dataset, **kwargs)
        calls["n"] += 1
        if calls["n"] <= 3:  # the three per-epoch validation passes
            result.loss = next(losses)
            result.metrics["auc"] = next(aucs)
        return result

    monkeypatch.setattr(das.train, "evaluate", scripted)
    result = train(tiny(epochs=3, select_metric="val_auc"), splits)
    assert result.best_epoch == 2
    assert [h["val_auc"] for h in result.history] == [0.6, 0.9, 0.7]
    calls["n"], aucs, losses = 0, iter([0.6, 0.9, 0.7]), iter([1.0, 0.8, 0.5])
    assert train(tiny(epochs=3), splits).best_epoch == 3  # the default: the validation loss


def test_selection_score() -> None:
    assert selection_score("val_loss", 0.4, {"auc": 0.9}) == -0.4
    assert selection_score("val_auc", 0.4, {"auc": 0.9}) == 0.9
    assert selection_score("val_balanced_accuracy", 0.4, {"balanced_accuracy": 0.7}) == 0.7
    assert selection_score("val_auc", 0.4, {"auc": float("nan")}) == -math.inf  # undefined AUC: never best
    assert selection_score("val_auc", 0.4, {"auc": None}) == -math.inf


def test_patience_counts_epochs_without_a_better_selection_metric(
    splits: das.train.Splits, monkeypatch: pytest.MonkeyPatch
) -> None:
    aucs = iter([0.8, 0.7, 0.75, 0.9, 0.95])
    real_evaluate = das.train.evaluate
    calls = {"n": 0}

    def scripted(model, dataset, **kwargs):
        result = real_evaluate(model, dataset, **kwargs)
        calls["n"] += 1
        if calls["n"] <= 5:
            result.metrics["auc"] = next(aucs)
        return result

    monkeypatch.setattr(das.train, "evaluate", scripted)
    result = train(tiny(epochs=5, select_metric="val_auc", patience=2), splits)
    assert result.epochs_run == 3 and result.stopped_early and result.best_epoch == 1


def test_weight_decay_shrinks_the_weights(splits: das.train.Splits) -> None:
    plain = train(tiny(method="uniform", epochs=2, lr=1e-3), splits)
    decayed = train(tiny(method="uniform", epochs=2, lr=1e-3, weight_decay=5.0), splits)
    norm = lambda model: sum(float(p.detach().norm()) for p in model.encoder.parameters())  # noqa: E731
    assert norm(decayed.model) < norm(plain.model)


def test_balanced_class_weights_are_inverse_frequencies() -> None:
    labels = torch.tensor([0, 0, 0, 1])
    weights = class_weight_tensor(tiny(class_weights="balanced"), labels, 3)
    assert weights.tolist() == pytest.approx([4 / 9, 4 / 3, 0.0])  # N / (C n_c); an absent class gets 0
    assert class_weight_tensor(tiny(), labels, 3) is None


def test_class_weights_change_what_is_optimised_not_what_is_reported(splits: das.train.Splits) -> None:
    plain = train(tiny(method="uniform", epochs=2), splits)
    weighted = train(tiny(method="uniform", epochs=2, class_weights="balanced"), splits)
    assert (
        plain.history[0]["train_loss"] != weighted.history[0]["train_loss"]
        or plain.history[1]["train_loss"] != weighted.history[1]["train_loss"]
    )


@pytest.mark.parametrize("name", [name for name in AUGMENTATIONS if name != "none"])
def test_augmentation_keeps_shape_and_range_and_differs_per_volume(name: str) -> None:
    augment = make_augmentation(name)
    x = torch.rand(1, 8, 1, 16, 16).repeat(64, 1, 1, 1, 1)  # 64 copies of one volume
    torch.manual_seed(0)
    out = augment(x)
    assert out.shape == x.shape and out.dtype == x.dtype and out.is_contiguous()
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0 + 1e-6
    distinct = {tuple(out[i].flatten()[:64].tolist()) for i in range(64)}
    assert len(distinct) > 1  # one draw per volume, not one for the whole batch
    torch.manual_seed(0)
    assert torch.equal(augment(x), out)  # parameters from the global RNG: seeded, reproducible


def test_flip_is_a_left_right_mirror_of_whole_volumes() -> None:
    x = torch.rand(32, 6, 1, 8, 8)
    torch.manual_seed(1)
    out = make_augmentation("flip")(x)
    flipped = torch.tensor([torch.equal(out[i], x[i].flip(-1)) for i in range(32)])
    kept = torch.tensor([torch.equal(out[i], x[i]) for i in range(32)])
    assert bool((flipped | kept).all()) and 0 < int(flipped.sum()) < 32


def test_no_augmentation_and_unknown_names() -> None:
    assert make_augmentation("none") is None
    with pytest.raises(ValueError, match="unknown augmentation 'mixup'; valid: none, flip"):
        make_augmentation("mixup")
    with pytest.raises(ValueError, match="augment must be one of"):
        tiny(augment="mixup")


def test_augmented_run_is_deterministic_and_differs_from_a_plain_one(splits: das.train.Splits) -> None:
    first = train(tiny(epochs=2, augment="affine"), splits)
    again = train(tiny(epochs=2, augment="affine"), splits)
    plain = train(tiny(epochs=2), splits)
    assert first.history[-1]["train_loss"] == again.history[-1]["train_loss"]
    assert first.history[-1]["train_loss"] != plain.history[-1]["train_loss"]


def test_augmented_resume_equals_an_uninterrupted_run(splits: das.train.Splits, tmp_path: Path) -> None:
    checkpoint = tmp_path / "run.pt"
    train(tiny(epochs=1, augment="affine"), splits, checkpoint=checkpoint)
    resumed = train(tiny(epochs=2, augment="affine"), splits, checkpoint=checkpoint)
    straight = train(tiny(epochs=2, augment="affine"), splits)
    assert [h["train_loss"] for h in resumed.history] == [h["train_loss"] for h in straight.history]
    assert resumed.metrics == straight.metrics


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("lr_schedule", "linear", "lr_schedule must be one of"),
        ("select_metric", "val_f1", "select_metric must be one of"),
        ("class_weights", "inverse", "class_weights must be one of"),
        ("weight_decay", -0.1, "weight_decay must be a number >= 0"),
        ("weight_decay", float("inf"), "weight_decay must be a number >= 0"),
    ],
)
def test_bad_protocol_settings_are_named(field: str, value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        tiny(**{field: value})


def test_a_schedule_pins_epochs_on_resume(splits: das.train.Splits, tmp_path: Path) -> None:
    """Under a constant rate a resume may run longer; under a schedule the epochs fix the schedule."""
    checkpoint = tmp_path / "run.pt"
    train(tiny(epochs=2, lr_schedule="step"), splits, checkpoint=checkpoint)
    with pytest.raises(ValueError, match="different config.*epochs"):
        train(tiny(epochs=3, lr_schedule="step"), splits, checkpoint=checkpoint)
    assert das.checkpoint.checkpoint_differences(checkpoint, tiny(epochs=3, lr_schedule="step")) == ["epochs"]


def test_a_checkpoint_past_the_asked_epochs_cannot_be_passed_off_as_a_shorter_run(
    splits: das.train.Splits, tmp_path: Path
) -> None:
    checkpoint = tmp_path / "run.pt"
    train(tiny(epochs=2), splits, checkpoint=checkpoint)
    assert das.checkpoint.checkpoint_differences(checkpoint, tiny(epochs=1)) == ["epochs"]
    assert das.checkpoint.checkpoint_differences(checkpoint, tiny(epochs=3)) == []
    with pytest.raises(ValueError, match="different config.*epochs"):
        train(tiny(epochs=1), splits, checkpoint=checkpoint)


def test_a_validation_threshold_is_chosen_on_validation_and_stored(splits: das.train.Splits) -> None:
    """Synthetic data have four classes: the arg-max stays (and the record says no threshold); a
    two-class task gets the threshold chosen on its validation split."""
    assert train(tiny(method="uniform", threshold="validation"), splits).decision_threshold is None
    binary = load_splits(tiny(dataset_options={"num_frames": 8, "num_samples": 32, "num_classes": 2}))
    result = train(
        tiny(
            method="uniform",
            threshold="validation",
            dataset_options=binary.train.name and {"num_frames": 8, "num_samples": 32, "num_classes": 2},
        ),
        binary,
    )
    assert result.decision_threshold is not None and 0.0 <= result.decision_threshold <= 1.0
    plain = train(
        tiny(method="uniform", dataset_options={"num_frames": 8, "num_samples": 32, "num_classes": 2}), binary
    )
    assert result.metrics["auc"] == plain.metrics["auc"]  # the ranking is the same model's
