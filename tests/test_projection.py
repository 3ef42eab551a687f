"""Projection of a profile's time: split sizes without the data files, batch arithmetic, one measurement
per distinct cost, the report on disk and the command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import das.projection
from das.cli import main
from das.projection import SplitShape, project_runs, run_seconds, split_shape
from das.sweep import table1_configs
from das.train import TrainConfig, load_splits

TINY = dict(epochs=3, size=16, max_train_samples=40, max_eval_samples=20, batch_size=8, device="cpu", num_threads=1,
            dataset_options={"num_frames": 8, "num_samples": 48})


def test_medmnist_split_sizes_come_from_the_official_table_without_files(tmp_path: Path) -> None:
    adrenal = split_shape(TrainConfig(dataset="adrenalmnist3d", data_dir=str(tmp_path)))
    assert adrenal == SplitShape(train=1188, val=98, test=298, num_frames=28, in_channels=1, num_classes=2)
    organ = split_shape(TrainConfig(dataset="organmnist3d", size=64, max_train_samples=500, max_eval_samples=100))
    assert organ == SplitShape(train=500, val=100, test=100, num_frames=64, in_channels=1, num_classes=11)


def test_generated_split_sizes_are_those_the_trainer_loads() -> None:
    config = TrainConfig(dataset="synthetic", **TINY)
    splits = load_splits(config)
    assert split_shape(config) == SplitShape(len(splits.train), len(splits.val), len(splits.test), 8, 1, 4)
    assert (len(splits.train), len(splits.val)) == (40, 20)


@pytest.mark.parametrize(("train", "expected"), [(100, 3 * (6 * 1.0 + 3 * 0.5) + (3 + 4) * 0.5), (5, 3 * (1.0 + 1.5) + 3.5)])
def test_run_seconds_counts_the_trainers_batches(train: int, expected: float) -> None:
    # batch 16: 100 -> 6 full training batches (drop_last), 5 -> the one incomplete batch;
    # val 40 -> 3 batches each epoch and once more at the end; test 50 -> 4 batches
    shape = SplitShape(train=train, val=40, test=50, num_frames=8, in_channels=1, num_classes=2)
    step = {"step_s": 1.0, "eval_batch_s": 0.5}
    assert run_seconds(TrainConfig(epochs=3, batch_size=16), shape, step) == pytest.approx(expected)


def test_project_runs_measures_each_cost_once_and_writes_the_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    measure = das.projection.measure_step
    monkeypatch.setattr(das.projection, "measure_step", lambda *a, **k: calls.append(a[0].method) or measure(*a, **k))
    configs = table1_configs("quick", ["synthetic"], ["uniform", "das"], [0, 1], **TINY)
    report = project_runs(configs, steps=2, profile="quick", out_dir=tmp_path)
    assert calls == ["uniform", "das"]  # the second seed reuses the first's measurement
    runs = report["runs"]
    assert [(r["method"], r["seed"]) for r in runs] == [("uniform", 0), ("uniform", 1), ("das", 0), ("das", 1)]
    for run, config in zip(runs, configs):
        assert run["step_s"] > 0 and run["eval_batch_s"] > 0
        assert run["train_frames_per_s"] == pytest.approx(8 * 4 / run["step_s"])  # batch 8, k = 4 of 8 frames
        assert run["run_s"] == pytest.approx(run_seconds(config, split_shape(config), run))
    assert report["total_s"] == pytest.approx(sum(r["run_s"] for r in runs))
    assert report["environment"]["threads"] == 1
    assert json.loads((tmp_path / "projection-quick.json").read_text()) == report
    assert not list(tmp_path.glob("*.tmp"))


def test_command_line_projects_and_rejects_a_bad_device(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["project", "--profile", "quick", "--datasets", "synthetic", "--methods", "uniform", "--seeds", "0",
            "--steps", "1", "--epochs", "2", "--num-threads", "1", "--device", "cpu", "--out", str(tmp_path)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    report = json.loads((tmp_path / "projection-quick.json").read_text())
    assert report["runs"][0]["epochs"] == 2 and "1 runs of profile 'quick': at most" in out
    assert main([*argv[:-4], "--device", "tpu", "--out", str(tmp_path)]) == 2
    assert "das project: error:" in capsys.readouterr().err
