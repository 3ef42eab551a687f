"""Trainer and metrics: determinism, resume, early stopping, config validation, the metrics' edge cases."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import das.samplers.base
import das.train
from das.config import TrainConfig
from das.data.medmnist3d import default_root
from das.train import Evaluation, load_splits, train


def tiny(**overrides: object) -> TrainConfig:
    """Synthetic benchmark, 24 train / 16 val / 16 test volumes of 8 slices at 16x16, 1 epoch."""
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
    )  # one thread: fast and immune to oversubscription by parallel jobs
    values.update(overrides)
    return TrainConfig(**values)


@pytest.fixture(scope="module")
def splits() -> das.train.Splits:
    return load_splits(tiny())


def state_equal(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_same_seed_gives_identical_numbers_and_seed_matters(splits: das.train.Splits) -> None:
    first, second = train(tiny(epochs=2), splits), train(tiny(epochs=2), splits)
    assert first.metrics == second.metrics
    assert [h["train_loss"] for h in first.history] == [h["train_loss"] for h in second.history]
    assert state_equal(first.model, second.model)
    other = train(tiny(epochs=2, seed=1), splits)
    assert [h["train_loss"] for h in other.history] != [h["train_loss"] for h in first.history]


def test_train_leaves_global_state_alone(splits: das.train.Splits) -> None:
    rng, threads = torch.get_rng_state(), torch.get_num_threads()
    train(tiny(method="uniform", num_threads=threads + 1), splits)
    assert torch.equal(torch.get_rng_state(), rng)
    assert torch.get_num_threads() == threads


def test_resume_from_checkpoint_equals_an_uninterrupted_run(splits: das.train.Splits, tmp_path: Path) -> None:
    checkpoint = tmp_path / "run.pt"
    interrupted = train(tiny(epochs=2), splits, checkpoint=checkpoint)  # "killed" after epoch 2 ...
    assert checkpoint.exists() and interrupted.epochs_run == 2
    resumed = train(tiny(epochs=3), splits, checkpoint=checkpoint)  # ... and restarted with epochs=3
    straight = train(tiny(epochs=3), splits)
    assert resumed.epochs_run == straight.epochs_run == 3
    strip = lambda history: [{k: v for k, v in h.items() if k != "train_s"} for h in history]  # noqa: E731
    assert strip(resumed.history) == strip(straight.history)
    assert resumed.metrics == straight.metrics
    assert resumed.best_epoch == straight.best_epoch
    assert state_equal(resumed.model, straight.model)


def test_checkpoint_of_another_config_is_refused(splits: das.train.Splits, tmp_path: Path) -> None:
    checkpoint = tmp_path / "run.pt"
    train(tiny(method="uniform"), splits, checkpoint=checkpoint)
    with pytest.raises(ValueError, match="different config.*method"):
        train(tiny(method="random"), splits, checkpoint=checkpoint)


def test_early_stopping_and_best_epoch_restored(splits: das.train.Splits, monkeypatch: pytest.MonkeyPatch) -> None:
    """Validation losses 1, 0.5, 2, 3, 4, ...: best epoch 2; patience 2 stops after epoch 4."""
    real_evaluate = das.train.evaluate
    losses = iter([1.0, 0.5, 2.0, 3.0, 4.0, 5.0])
    weights_at_val: list[torch.Tensor] = []

    def fake_evaluate(model, dataset, **kwargs):  # type: ignore[no-untyped-def]
        result = real_evaluate(model, dataset, **kwargs)
        if dataset is splits.val and len(weights_at_val) < 4:  # the per-epoch validation passes
            weights_at_val.append(model.head.weight.detach().clone())
            return Evaluation(next(losses), result.metrics, result.probs, result.labels, result.indices)
        return result

    monkeypatch.setattr(das.train, "evaluate", fake_evaluate)
    result = train(tiny(method="uniform", epochs=10, patience=2, lr=1e-2), splits)
    assert result.epochs_run == 4 and result.best_epoch == 2 and result.stopped_early
    assert [h["val_loss"] for h in result.history] == [1.0, 0.5, 2.0, 3.0]
    assert torch.equal(result.model.head.weight, weights_at_val[1])
    assert not torch.equal(weights_at_val[1], weights_at_val[3])


def test_result_record_has_metrics_timings_flops_and_histogram(splits: das.train.Splits) -> None:
    result = train(tiny(method="uniform"), splits)
    full = train(tiny(method="full"), splits)
    record = result.record()
    assert set(record["metrics"]) == {"balanced_accuracy", "auc", "accuracy", "informative_hit_rate"}
    assert full.metrics["informative_hit_rate"] == 1.0  # every slice seen
    picked = [i for i, count in enumerate(record["selection_histogram"]) if count]  # uniform's fixed slices
    informative = splits.test.informative[:, picked]
    assert record["metrics"]["informative_hit_rate"] == pytest.approx(informative.any(dim=1).float().mean().item())
    assert record["k"] == 4 and record["num_frames"] == 8 and full.k == 8
    assert record["config"]["method"] == "uniform" and record["sampler_lr"] == pytest.approx(1e-3)
    assert record["timings"]["throughput_frames_per_s"] > 0 and record["timings"]["wall_s"] > 0
    # Uniform's histogram on the 16 test volumes: 16 picks at each of its 4 fixed positions.
    assert sorted(record["selection_histogram"]) == [0] * 4 + [16] * 4
    assert sum(full.selection_histogram) == 16 * 8
    # FLOPs: the backbone dominates, so half the frames cost about half.
    assert 0.45 < result.flops_per_volume / full.flops_per_volume < 0.55


def test_score_function_term_gradient_is_leave_one_out_advantage_times_score() -> None:
    losses = torch.tensor([1.0, 2.0, 4.0], requires_grad=True)
    log_prob = torch.zeros(3, requires_grad=True)
    das.train.score_function_term(losses, log_prob).backward()
    # advantage_i = loss_i - mean of the other losses; gradient = advantage / batch size.
    assert torch.allclose(log_prob.grad, torch.tensor([1.0 - 3.0, 2.0 - 2.5, 4.0 - 1.5]) / 3)
    assert losses.grad is None  # the losses enter detached: no gradient to the backbone
    assert das.train.score_function_term(losses, None) == 0.0


def test_score_estimator_trains_the_sampler_through_the_trainer(splits: das.train.Splits) -> None:
    config = tiny(sampler_options={"estimator": "score"})
    torch.manual_seed(0)
    before = das.train.build_model(config, 8, splits.train.num_classes, 1).sampler.state_dict()
    result = train(config, splits)
    after = result.model.sampler.state_dict()
    assert not torch.equal(before["head_weight"], after["head_weight"])
    assert not torch.equal(before["base_mlp.0.weight"], after["base_mlp.0.weight"])
    assert torch.equal(before["temperature_mlp.0.weight"], after["temperature_mlp.0.weight"])  # unused by "score"
    assert result.record()["config"]["sampler_options"] == {"estimator": "score"}


def test_sampler_warmup_freezes_the_sampler_while_the_backbone_learns(splits: das.train.Splits) -> None:
    config = tiny(method="dps", sampler_warmup=1)
    torch.manual_seed(0)
    before = das.train.build_model(config, 8, splits.train.num_classes, 1).state_dict()
    with pytest.warns(UserWarning, match="sampler stays frozen for the whole run"):
        model = train(config, splits).model
    after = model.state_dict()
    assert torch.equal(before["sampler.logits"], after["sampler.logits"])  # frozen for the one epoch run
    assert not torch.equal(before["head.weight"], after["head.weight"])  # the rest trained
    assert all(p.requires_grad for p in model.sampler.parameters())  # handed back trainable
    unfrozen = train(tiny(method="dps"), splits).model.state_dict()
    assert not torch.equal(before["sampler.logits"], unfrozen["sampler.logits"])


@pytest.mark.parametrize(
    "options",
    [
        {"method": "das"},
        {"method": "das", "sampler_options": {"estimator": "score"}},
        {"method": "dps", "sampler_warmup": 1, "epochs": 2},
        {"method": "adps"},
    ],
)
def test_compiled_training_captures_the_whole_forward_in_one_graph(
    options: dict, splits: das.train.Splits, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CPU stand-in for "CUDA graphs can capture it": ``fullgraph=True`` raises at any graph break
    (an explicit generator, ``.item()``, a branch on a tensor's value such as the finite check), in
    the compiled training objective (forward pass and loss) and the compiled evaluation model.
    The eager backend traces without generating code, so the test takes seconds."""
    compile_, compiled = torch.compile, []

    def strict(fn, mode="default"):  # noqa: ANN001, ANN202
        compiled.append(fn)
        return compile_(fn, fullgraph=True, backend="eager")

    monkeypatch.setattr(torch, "compile", strict)
    torch._dynamo.reset()
    result = train(tiny(compile=True, **options), splits)
    assert result.model in compiled and len(compiled) == 2 and np.isfinite(result.metrics["auc"])


def test_training_never_runs_the_finite_check(splits: das.train.Splits, monkeypatch: pytest.MonkeyPatch) -> None:
    seen = []
    check_input = das.samplers.base.check_input

    def spy(x: torch.Tensor, num_frames: int, check_finite: bool = True) -> torch.Tensor:
        seen.append(check_finite)
        return check_input(x, num_frames, check_finite)

    monkeypatch.setattr(das.samplers.base, "check_input", spy)
    model = train(tiny(), splits).model
    assert seen and not any(seen)  # every batch, training and evaluation, skipped the host-side wait
    assert model.sampler.check_finite  # on again for whoever uses the model next


@pytest.mark.parametrize(
    "overrides,message",
    [
        ({"dataset": "mnist"}, "unknown dataset 'mnist'"),
        ({"method": "best"}, "unknown method 'best'"),
        ({"ratio": 0.0}, "ratio must be a number in \\(0, 1\\]"),
        ({"ratio": 1.5}, "ratio"),
        ({"epochs": 0}, "epochs"),
        ({"patience": 0}, "patience"),
        ({"lr": -1.0}, "lr"),
        ({"pool": "sum"}, "unknown pool"),
        ({"device": "tpu"}, "device"),
        ({"sampler_warmup": -1}, "sampler_warmup"),
        ({"dataset": "organmnist3d", "size": 32}, "unknown size 32 for organmnist3d; valid sizes: 28, 64"),
    ],
)
def test_bad_config_raises_value_error(overrides: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TrainConfig(**overrides)


@pytest.mark.parametrize(
    "method,ratio,frames,k",
    [("das", 0.5, 28, 14), ("uniform", 0.01, 28, 1), ("random", 0.25, 10, 2), ("full", 0.1, 28, 28)],
)
def test_k_is_round_ratio_times_t_and_full_keeps_all(method: str, ratio: float, frames: int, k: int) -> None:
    assert TrainConfig(method=method, ratio=ratio).num_selected(frames) == k


def test_real_adrenalmnist3d_trains_end_to_end() -> None:
    data_dir = default_root()  # where the real MedMNIST files are looked for
    if not (data_dir / "adrenalmnist3d.npz").exists():
        pytest.skip(f"real AdrenalMNIST3D not found in {data_dir} (set DAS_DATA_DIR)")
    config = TrainConfig(
        dataset="adrenalmnist3d",
        method="das",
        data_dir=str(data_dir),
        epochs=1,
        max_train_samples=16,
        max_eval_samples=16,
        device="cpu",
        quiet=True,
        num_threads=1,
    )
    result = train(config)
    assert result.num_frames == 28 and result.k == 14
    assert len(result.selection_histogram) == 28 and sum(result.selection_histogram) == 16 * 14


# Metrics ---------------------------------------------------------------------------------------


def test_config_differences_count_a_missing_field_as_its_default() -> None:
    """A stored config written before a field existed still matches when the field has its default."""
    config = tiny()
    stored = config.to_dict()
    del stored["sampler_warmup"]
    assert config.differences(stored) == []
    assert tiny(sampler_warmup=2).differences(stored) == ["sampler_warmup"]
    assert config.differences({**config.to_dict(), "device": "cuda", "lr": 0.5}) == ["lr"]  # device: run-local


def test_static_shape_evaluation_gives_the_same_numbers(splits: das.train.Splits) -> None:
    """Padding the last evaluation batch (for captured graphs) changes no number, DAS's picks included."""
    result = train(tiny(method="das"), splits)
    plain = das.train.evaluate(result.model, splits.test, batch_size=6)
    padded = das.train.evaluate(result.model, splits.test, batch_size=6, static_shapes=True)
    assert len(splits.test) % 6 != 0  # there is a partial last batch to pad
    assert plain.metrics == padded.metrics and plain.loss == pytest.approx(padded.loss, rel=1e-6)
    assert (plain.indices == padded.indices).all() and np.allclose(plain.probs, padded.probs, atol=1e-6)


def test_a_compiled_run_learns_like_an_eager_one(splits: das.train.Splits) -> None:
    """torch.compile (inductor, default mode) on CPU: the same training, up to float rounding."""
    torch._dynamo.reset()
    eager = train(tiny(method="uniform", epochs=2), splits)
    compiled = train(tiny(method="uniform", epochs=2, compile=True), splits)
    for a, b in zip(eager.history, compiled.history, strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-3)


def test_a_training_step_never_waits_for_the_device(splits: das.train.Splits, monkeypatch: pytest.MonkeyPatch) -> None:
    """No value of a tensor is read on the host inside a step's forward, loss and backward passes (a
    sync on a GPU); the epoch's loss is read once, after the last step. (Adam reads its step counts,
    which torch keeps on the CPU: not a device sync, so the optimiser step is left out.)"""
    reads, counting = [], [True]
    for name in ("item", "tolist", "__float__", "__bool__", "__int__"):
        original = getattr(torch.Tensor, name)

        def spy(self, *args, _original=original, _name=name, **kwargs):  # noqa: ANN001, ANN202
            if counting[0]:
                reads.append(_name)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, spy)
    config = tiny(epochs=1, sampler_options={"estimator": "score"}, class_weights="balanced")
    model = das.train.build_model(config, splits.train.num_frames, splits.train.num_classes, splits.train.in_channels)
    model.sampler.check_finite = False
    step = das.train.TrainStep(config, model, splits.train, torch.device("cpu"), torch.Generator().manual_seed(0))
    optimizer_step = step.optimizer.step

    def quiet_step() -> None:
        counting[0] = False
        optimizer_step()
        counting[0] = True

    monkeypatch.setattr(step.optimizer, "step", quiet_step)
    x, y = next(das.train.iterate_batches(splits.train, 8, shuffle=True))
    reads.clear()
    step(x, y)
    assert reads == []
