"""Results store, summary over seeds, profiles and the Table 1 sweep (skip, resume, force)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
import torch
from record_helpers import valid_record

import das.sweep
import das.train
from das.profiles import get_profile
from das.results import (
    checkpoint_path,
    format_summary,
    load_runs,
    result_path,
    summary,
    write_json_atomic,
    write_summary,
)
from das.sweep import Run, profile_runs, run_sweep

TINY = dict(
    epochs=1,
    sampler_warmup=0,
    size=16,
    max_train_samples=16,
    max_eval_samples=16,
    device="cpu",
    quiet=True,
    num_threads=1,
    dataset_options={"num_frames": 8, "num_samples": 16},
)


def fake_run(root: Path, dataset: str, method: str, seed: int, bal: float, auc: float | None, **config) -> Path:
    record = valid_record(
        dataset, method, seed, metrics={"balanced_accuracy": bal, "auc": auc, "accuracy": bal}, **config
    )
    return write_json_atomic(result_path(root, "p", dataset, method, seed), record)


def test_paths_follow_the_layout(tmp_path: Path) -> None:
    assert result_path(tmp_path, "quick", "synthetic", "das", 2) == tmp_path / "quick/synthetic/das/seed2.json"
    assert (
        checkpoint_path(tmp_path, "quick", "synthetic", "das", 2)
        == tmp_path / "quick/checkpoints/synthetic/das/seed2.pt"
    )


def test_atomic_write_leaves_no_temporary_and_stores_nan_as_null(tmp_path: Path) -> None:
    path = write_json_atomic(tmp_path / "a" / "b.json", {"x": math.nan, "y": [1.5, math.inf], "z": "ok"})
    assert json.loads(path.read_text()) == {"x": None, "y": [1.5, None], "z": "ok"}
    assert [p.name for p in path.parent.iterdir()] == ["b.json"]
    write_json_atomic(path, {"x": 2})  # overwrite in place
    assert json.loads(path.read_text()) == {"x": 2}


def test_summary_means_and_stds_over_seeds_in_method_order(tmp_path: Path) -> None:
    for seed, bal in enumerate([0.6, 0.8, 1.0]):
        fake_run(tmp_path, "synthetic", "das", seed, bal, 0.9)
    fake_run(tmp_path, "synthetic", "full", 0, 0.5, None)  # undefined AUC stored as null
    assert len(load_runs(tmp_path, "p")) == 4
    table = summary(tmp_path, "p")
    assert list(table["method"]) == ["full", "das"]  # the registry order, not alphabetical
    das_row = table.set_index("method").loc["das"]
    assert das_row["n_seeds"] == 3
    assert das_row["balanced_accuracy_mean"] == pytest.approx(0.8)
    assert das_row["balanced_accuracy_std"] == pytest.approx(0.2)  # sample std, ddof=1
    full_row = table.set_index("method").loc["full"]
    assert math.isnan(full_row["auc_mean"]) and math.isnan(full_row["balanced_accuracy_std"])
    pretty = format_summary(table).set_index("method")
    assert pretty.loc["das", "bal. acc. (%)"] == "80.0\u00a0±\u00a020.0"
    assert pretty.loc["full", "AUC"] == "-"


def test_write_summary_writes_csv_and_markdown(tmp_path: Path) -> None:
    fake_run(tmp_path, "synthetic", "das", 0, 0.7, 0.8)
    fake_run(tmp_path, "synthetic", "das", 1, 0.9, 0.8)
    table, csv_path, md_path = write_summary(tmp_path, "p")
    assert pd.read_csv(csv_path)["balanced_accuracy_mean"].tolist() == pytest.approx([0.8])
    assert "80.0\u00a0±\u00a014.1" in md_path.read_text()


def test_summary_of_an_empty_store_is_an_empty_frame(tmp_path: Path) -> None:
    table = summary(tmp_path, "nothing")
    assert table.empty and "balanced_accuracy_mean" in table.columns


def sweep_one(config, tmp_path: Path, **options) -> Path:  # noqa: ANN001
    """Train or read back one run of the quick profile's store; its record's path."""
    [outcome] = run_sweep([Run("quick", config)], tmp_path, progress=False, **options)
    return outcome.path


def sweep_quick(tmp_path: Path, methods: list[str], force: bool = False, **overrides) -> list[Path]:  # noqa: ANN003
    runs = profile_runs("quick", ["synthetic"], methods, [0], **{**TINY, **overrides})
    return [outcome.path for outcome in run_sweep(runs, tmp_path, force=force, progress=False)]


def test_sweep_skips_existing_runs_and_force_reruns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    paths = sweep_quick(tmp_path, ["uniform", "das"])
    assert paths == [result_path(tmp_path, "quick", "synthetic", m, 0) for m in ("uniform", "das")]
    record = json.loads(paths[1].read_text())
    assert record["group"] == "quick" and record["config"]["epochs"] == 1 and record["epochs_run"] == 1
    assert {"torch", "das", "python"} <= set(record["provenance"]["versions"])
    assert not (tmp_path / "quick" / "checkpoints" / "synthetic" / "das" / "seed0.pt").exists()
    before = paths[0].stat().st_mtime_ns

    def no_training(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError("a finished run was retrained")

    monkeypatch.setattr(das.sweep, "train", no_training)
    monkeypatch.setattr(das.sweep, "load_splits", no_training)
    assert sweep_quick(tmp_path, ["uniform", "das"]) == paths  # nothing to do: no data loaded, nothing trained
    monkeypatch.undo()
    sweep_quick(tmp_path, ["uniform"], force=True)
    assert paths[0].stat().st_mtime_ns != before


def test_a_stored_run_of_another_config_is_redone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = get_profile("quick").config("synthetic", "uniform", 0, **TINY)
    path = sweep_one(config, tmp_path)
    before = path.stat().st_mtime_ns

    def no_training(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError("a finished run of the same config was retrained")

    # How verbosely it runs, or where the data come from, does not make another run...
    monkeypatch.setattr(das.sweep, "train", no_training)
    same = get_profile("quick").config("synthetic", "uniform", 0, **{**TINY, "quiet": False, "data_dir": "elsewhere"})
    assert sweep_one(same, tmp_path) == path
    monkeypatch.undo()
    # ... another CPU thread count does (float sums differ):
    sweep_one(get_profile("quick").config("synthetic", "uniform", 0, **{**TINY, "num_threads": 2}), tmp_path)
    assert json.loads(path.read_text())["threads"] == 2
    # ... but another number of epochs does, and so does asking for a checkpoint that was not kept.
    longer = get_profile("quick").config("synthetic", "uniform", 0, **{**TINY, "epochs": 2})
    sweep_one(longer, tmp_path)
    assert json.loads(path.read_text())["config"]["epochs"] == 2 and path.stat().st_mtime_ns != before
    sweep_one(longer, tmp_path, keep_checkpoint=True)
    assert checkpoint_path(tmp_path, "quick", "synthetic", "uniform", 0).exists()


def test_sweep_redoes_a_stored_run_whose_profile_settings_changed(tmp_path: Path) -> None:
    """A sweep must not present a run made with other settings (say, before a profile changed) as a
    result of the current profile: it reruns it."""
    [path] = sweep_quick(tmp_path, ["uniform"])
    assert json.loads(path.read_text())["config"]["lr"] == 1e-3  # the quick profile's synthetic lr
    [again] = sweep_quick(tmp_path, ["uniform"], lr=5e-4)
    assert again == path and json.loads(path.read_text())["config"]["lr"] == 5e-4


def test_a_redone_run_resumes_its_own_checkpoint_and_drops_one_of_other_settings(tmp_path: Path) -> None:
    config = get_profile("quick").config("synthetic", "dps", 0, **{**TINY, "epochs": 2})
    path = result_path(tmp_path, "quick", "synthetic", "dps", 0)
    checkpoint = checkpoint_path(tmp_path, "quick", "synthetic", "dps", 0)
    write_json_atomic(path, {"config": {**config.to_dict(), "lr": 0.5}})  # a stored run of other settings
    # An interrupted redo: one epoch done and checkpointed with the current settings.
    das.sweep.train(das.config.TrainConfig(**{**config.to_dict(), "epochs": 1}), checkpoint=checkpoint)
    first_epoch = torch.load(checkpoint, weights_only=False)["history"][0]
    sweep_one(config, tmp_path)
    record = json.loads(path.read_text())
    assert record["epochs_run"] == 2 and record["history"][0] == first_epoch  # resumed, not restarted
    # A checkpoint of other settings is not resumed (train would refuse it): it is dropped, and the
    # run starts over, with the same first epoch as before (training is deterministic).
    write_json_atomic(path, {"config": {**config.to_dict(), "pool": "max"}})
    das.sweep.train(das.config.TrainConfig(**{**config.to_dict(), "epochs": 1, "pool": "max"}), checkpoint=checkpoint)
    other = torch.load(checkpoint, weights_only=False)["history"][0]
    sweep_one(config, tmp_path)
    redone = json.loads(path.read_text())["history"][0]
    assert redone["train_loss"] == first_epoch["train_loss"] != other["train_loss"]


def test_numbers_in_tables_have_no_negative_zero_and_stay_on_one_line() -> None:
    from das.results import NBSP, interval, mean_std, number

    assert number(-1e-17, signed=True) == "+0.000"
    assert number(-0.0004) == "0.000"
    assert number(-0.0123, signed=True) == "-0.012"
    assert number(0.07449, 1, signed=True) == "+0.1"
    assert number(float("nan")) == "-"
    assert mean_std(0.7481, 0.0302) == f"0.748{NBSP}±{NBSP}0.030"
    assert mean_std(0.7481, float("nan")) == "0.748"
    assert interval(-1e-12, 0.0801, signed=True) == f"[+0.000,{NBSP}+0.080]"
    assert " " not in interval(0.6871, 0.8034) + mean_std(0.5, 0.1)
