"""Projection of a profile's time: split sizes without the data files, the trainer's batch counts, one
measurement per distinct cost, the report on disk and the command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import das.projection
from das.cli import main
from das.config import TrainConfig
from das.model import SubsampledClassifier
from das.projection import SplitShape, project_runs, run_batches, run_seconds, split_shape
from das.sweep import profile_configs
from das.train import load_splits, train

TINY = dict(
    epochs=3,
    size=16,
    max_train_samples=40,
    max_eval_samples=20,
    batch_size=8,
    device="cpu",
    num_threads=1,
    dataset_options={"num_frames": 8, "num_samples": 48},
)


def test_medmnist_split_sizes_come_from_the_official_table_without_files(tmp_path: Path) -> None:
    adrenal = split_shape(TrainConfig(dataset="adrenalmnist3d", data_dir=str(tmp_path)))
    assert adrenal == SplitShape(
        train=1188, val=98, test=298, num_frames=28, in_channels=1, height=28, width=28, num_classes=2
    )
    organ = split_shape(TrainConfig(dataset="organmnist3d", size=64, max_train_samples=500, max_eval_samples=100))
    assert organ == SplitShape(500, 100, 100, 64, 1, 64, 64, 11)


def test_generated_split_sizes_are_those_the_trainer_loads() -> None:
    config = TrainConfig(dataset="synthetic", **TINY)
    splits = load_splits(config)
    assert split_shape(config) == SplitShape(len(splits.train), len(splits.val), len(splits.test), 8, 1, 16, 16, 4)
    assert (len(splits.train), len(splits.val)) == (40, 20)


@pytest.mark.parametrize("max_train_samples", [40, 5])
def test_run_batches_are_the_batches_the_trainer_runs(max_train_samples: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """40 volumes in batches of 8: 5 per epoch; 5 volumes: the one incomplete batch. Eval: ceil(20 / 8)."""
    calls = {True: 0, False: 0}
    forward = SubsampledClassifier.forward

    def counting(self: SubsampledClassifier, *args: object, **kwargs: object) -> object:
        calls[self.training] += 1
        return forward(self, *args, **kwargs)

    config = TrainConfig(
        dataset="synthetic",
        method="uniform",
        quiet=True,
        patience=None,
        **{**TINY, "max_train_samples": max_train_samples},
    )
    splits = load_splits(config)
    monkeypatch.setattr(SubsampledClassifier, "forward", counting)
    train(config, splits)
    init_batchnorm, count_flops = 1, 1  # one pass each, not batches: before training and after testing
    assert run_batches(config, split_shape(config)) == (calls[True] - init_batchnorm, calls[False] - count_flops)


def test_run_seconds_weighs_the_batches_by_the_measured_times() -> None:
    shape = SplitShape(train=100, val=40, test=50, num_frames=8, in_channels=1, height=8, width=8, num_classes=2)
    config = TrainConfig(epochs=3, batch_size=16)
    assert run_batches(config, shape) == (3 * 6, 3 * 3 + 3 + 4)
    assert run_seconds(config, shape, {"step_s": 1.0, "eval_batch_s": 0.5}) == pytest.approx(18 + 16 * 0.5)


def test_runs_of_the_same_cost_share_one_measurement(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    measured = []

    def fake(config: TrainConfig, shape: SplitShape, steps: int) -> dict[str, float]:
        measured.append((config.dataset, config.method, config.ratio))
        return {"step_s": 0.1 * len(measured), "eval_batch_s": 0.01, "train_frames_per_s": 1.0}

    monkeypatch.setattr(das.projection, "measure_step", fake)
    paper = profile_configs("paper", ["adrenalmnist3d", "nodulemnist3d"], ["uniform", "das"], [0, 1])
    other_ratio = profile_configs("paper", ["adrenalmnist3d"], ["das"], [0], ratio=0.25)
    report = project_runs(paper + other_ratio, steps=1, out_dir=None)
    # the two datasets have the same shape (28^3) and the seeds the same settings: one measurement per
    # method, plus one for the other ratio
    assert measured == [
        ("adrenalmnist3d", "uniform", 0.5),
        ("adrenalmnist3d", "das", 0.5),
        ("adrenalmnist3d", "das", 0.25),
    ]
    assert report["measurements"] == 3
    steps = {(r["dataset"], r["method"], r["ratio"], r["seed"]): r["step_s"] for r in report["runs"]}
    assert steps[("nodulemnist3d", "das", 0.5, 1)] == steps[("adrenalmnist3d", "das", 0.5, 0)] == pytest.approx(0.2)
    assert steps[("adrenalmnist3d", "das", 0.25, 0)] == pytest.approx(0.3)
    assert report["total_s"] == pytest.approx(sum(r["run_s"] for r in report["runs"]))


def test_a_real_measurement_is_written_atomically(tmp_path: Path) -> None:
    configs = profile_configs("quick", ["synthetic"], ["das"], [0], **TINY)
    report = project_runs(configs, steps=2, profile="quick", out_dir=tmp_path)
    run = report["runs"][0]
    assert run["step_s"] > 0 and run["eval_batch_s"] > 0 and run["run_s"] > 0
    assert report["device"] == "cpu" and report["environment"]["threads"] == 1
    assert json.loads((tmp_path / "projection-quick.json").read_text()) == report
    assert not list(tmp_path.glob("*.tmp"))


def test_command_line_projects_and_rejects_a_bad_device(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = [
        "project",
        "--profile",
        "quick",
        "--datasets",
        "synthetic",
        "--methods",
        "uniform",
        "--seeds",
        "0",
        "--steps",
        "1",
        "--epochs",
        "2",
        "--num-threads",
        "1",
        "--device",
        "cpu",
        "--out",
        str(tmp_path),
    ]
    assert main(argv) == 0
    out = capsys.readouterr().out
    report = json.loads((tmp_path / "projection-quick.json").read_text())
    assert report["runs"][0]["epochs"] == 2 and "1 runs of profile 'quick': about" in out
    assert main([*argv[:-4], "--device", "tpu", "--out", str(tmp_path)]) == 2
    assert "das project: error:" in capsys.readouterr().err


def test_packed_runs_on_ray_are_measured_together_and_share_the_wall_time(tmp_path: Path) -> None:
    """Two runs at a time on a local Ray cluster of 2 CPUs: each cost is measured with two copies
    training at once, and the projected wall time is the runs' total over two."""
    ray = pytest.importorskip("ray")
    configs = profile_configs("quick", ["synthetic"], ["uniform", "das"], [0, 1], **TINY)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        report = project_runs(configs, 2, out_dir=None, executor="ray", workers=2, cpus_per_run=1)
    finally:
        ray.shutdown()
    assert report["concurrent_runs"] == 2 and report["measurements"] == 2
    assert report["wall_s"] == pytest.approx(report["total_s"] / 2)
    assert all(row["step_s"] > 0 for row in report["runs"])
    with pytest.raises(ValueError, match="unknown executor 'dask'"):
        project_runs(configs, 2, out_dir=None, executor="dask")
