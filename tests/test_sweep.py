"""Sweeps: runs read back or trained, in process or on a local Ray cluster; failures stay alone; a
worker killed mid-run is retried and resumes; the named sweeps of the project."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

import das.config
import das.sweep
from das.experiments import SWEEPS, ablation_plan, ablation_runs, protocol_runs, size64_runs
from das.profiles import get_profile
from das.sweep import Run, SweepFailed, profile_runs, run_sweep

TINY = dict(
    epochs=2,
    sampler_warmup=0,
    size=16,
    max_train_samples=16,
    max_eval_samples=16,
    device="cpu",
    quiet=True,
    num_threads=1,
    dataset_options={"num_frames": 8, "num_samples": 16},
)
ROOT = Path(__file__).resolve().parents[1]


def tiny_runs(methods=("uniform", "das"), seeds=(0,), group="quick", **overrides) -> list[Run]:
    runs = profile_runs("quick", ["synthetic"], list(methods), list(seeds), **{**TINY, **overrides})
    return [Run(group, run.config) for run in runs]


def missing_data_run(folder: Path) -> Run:
    """A valid config whose data are not there: it fails when it trains."""
    tiny = {key: value for key, value in TINY.items() if key != "dataset_options"}
    return Run(
        "quick",
        get_profile("real").config("adrenalmnist3d", "uniform", 0, **{**tiny, "size": 28, "data_dir": str(folder)}),
    )


def numbers(record: dict) -> dict:
    """What a run computed, without its timings and provenance."""
    return {
        "metrics": record["metrics"],
        "val_metrics": record["val_metrics"],
        "best_epoch": record["best_epoch"],
        "history": [{k: v for k, v in h.items() if k != "train_s"} for h in record["history"]],
        "histogram": record["selection_histogram"],
    }


def test_local_sweep_trains_then_reads_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runs = tiny_runs()
    first = run_sweep(runs, tmp_path, progress=False)
    assert [o.trained for o in first] == [True, True]
    assert [o.path for o in first] == [
        tmp_path / "quick/synthetic/uniform/seed0.json",
        tmp_path / "quick/synthetic/das/seed0.json",
    ]
    assert not (tmp_path / "quick" / "checkpoints").exists()  # checkpoints go once the record is written

    def no_training(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError("a stored, current run was retrained")

    monkeypatch.setattr(das.sweep, "train", no_training)
    monkeypatch.setattr(das.sweep, "load_splits", no_training)
    again = run_sweep(runs, tmp_path, progress=False)
    assert [o.trained for o in again] == [False, False]
    assert [o.record for o in again] == [o.record for o in first]


def test_a_failed_run_fails_alone_and_is_named(tmp_path: Path) -> None:
    good = tiny_runs(methods=("uniform",))
    bad = [missing_data_run(tmp_path)]
    with pytest.raises(
        SweepFailed,
        match=r"1 of 3 runs failed:\n  quick: adrenalmnist3d/uniform seed 0: "
        r"DatasetNotFoundError",
    ) as caught:
        run_sweep([*good[:1], *bad, *tiny_runs(methods=("das",))], tmp_path, progress=False)
    outcomes = caught.value.outcomes
    assert [o.error is None for o in outcomes] == [True, False, True]
    assert outcomes[0].path.exists() and outcomes[2].path.exists() and not outcomes[1].path.exists()
    assert "Traceback" in outcomes[1].traceback


def test_two_runs_of_one_result_file_are_refused(tmp_path: Path) -> None:
    runs = tiny_runs()
    with pytest.raises(ValueError, match="share a result file"):
        run_sweep([runs[0], runs[0]], tmp_path)
    with pytest.raises(ValueError, match="unknown executor 'dask'; valid: local, ray"):
        run_sweep(runs, tmp_path, executor="dask")
    with pytest.raises(ValueError, match="local executor runs one run at a time"):
        run_sweep(runs, tmp_path, workers=2)


def test_cli_sweep_reports_failures_and_exits_non_zero(tmp_path: Path) -> None:
    env = {**os.environ, "DAS_DATA_DIR": str(tmp_path / "no-data")}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "das",
            "table1",
            "--profile",
            "quick",
            "--datasets",
            "adrenalmnist3d",
            "--methods",
            "uniform",
            "--seeds",
            "0",
            "--epochs",
            "1",
            "--results-dir",
            str(tmp_path / "store"),
            "--quiet",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=300,
    )
    assert proc.returncode == 1, proc.stderr
    assert "FAILED quick: adrenalmnist3d/uniform seed 0: DatasetNotFoundError" in proc.stderr
    assert "1 runs: 0 trained now, 0 read back, 1 failed" in proc.stdout


ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def ray_cluster():
    """A local Ray cluster of 2 CPUs, shared by the tests of this module."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def test_ray_records_equal_the_local_executors(tmp_path: Path, ray_cluster: None) -> None:
    runs = tiny_runs(methods=("uniform", "das", "dps"))
    local = run_sweep(runs, tmp_path / "local", progress=False)
    remote = run_sweep(runs, tmp_path / "ray", executor="ray", workers=2, progress=False)
    assert all(o.trained for o in remote)
    assert [numbers(o.record) for o in remote] == [numbers(o.record) for o in local]
    assert [json.loads(o.path.read_text())["group"] for o in remote] == ["quick"] * 3  # the driver wrote them


def test_ray_sets_a_runs_threads_to_its_cpus(tmp_path: Path, ray_cluster: None) -> None:
    runs = tiny_runs(methods=("uniform",), num_threads=None)
    [outcome] = run_sweep(runs, tmp_path, executor="ray", progress=False)
    assert outcome.record["threads"] == 1 and outcome.run.config.num_threads == 1
    [again] = run_sweep(runs, tmp_path, executor="ray", progress=False)
    assert not again.trained  # read back: the same thread count


def test_a_bad_run_fails_alone_on_ray(tmp_path: Path, ray_cluster: None) -> None:
    bad = missing_data_run(tmp_path)
    outcomes = run_sweep(
        [bad, *tiny_runs(methods=("uniform",))], tmp_path, executor="ray", progress=False, raise_on_failure=False
    )
    assert outcomes[0].error.startswith("DatasetNotFoundError") and outcomes[1].error is None
    assert outcomes[1].path.exists()


def test_a_killed_worker_is_retried_and_resumes(tmp_path: Path) -> None:
    """Kill the Ray worker of a 4-epoch run once its checkpoint exists: the task is retried, resumes
    from the checkpoint, and the stored run equals an uninterrupted one."""
    args = [
        "--profile",
        "quick",
        "--datasets",
        "synthetic",
        "--methods",
        "uniform",
        "--seeds",
        "0",
        "--epochs",
        "4",
        "--max-train-samples",
        "96",
        "--max-eval-samples",
        "32",
        "--sampler-warmup",
        "0",
        "--num-threads",
        "1",
        "--device",
        "cpu",
        "--quiet",
    ]
    store = tmp_path / "store"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "das",
            "table1",
            *args,
            "--executor",
            "ray",
            "--workers",
            "1",
            "--results-dir",
            str(store),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    checkpoint = store / "quick/checkpoints/synthetic/uniform/seed0.pt"
    deadline = time.time() + 240
    killed = False
    while not killed and time.time() < deadline and proc.poll() is None:
        if checkpoint.exists():
            for process in psutil.Process(proc.pid).children(recursive=True):  # this sweep's workers only
                try:
                    if any("ray::_ray_task" in part for part in process.cmdline()):
                        process.send_signal(signal.SIGKILL)
                        killed = True
                except psutil.NoSuchProcess:
                    pass
        time.sleep(0.05)
    out, err = proc.communicate(timeout=300)
    assert killed, f"no worker to kill (exit {proc.returncode}): {err[-2000:]}"
    assert proc.returncode == 0, err[-2000:]
    record = json.loads((store / "quick/synthetic/uniform/seed0.json").read_text())
    assert record["epochs_run"] == 4
    straight = subprocess.run(
        [sys.executable, "-m", "das", "table1", *args, "--results-dir", str(tmp_path / "plain")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert straight.returncode == 0, straight.stderr[-2000:]
    assert numbers(record) == numbers(json.loads((tmp_path / "plain/quick/synthetic/uniform/seed0.json").read_text()))


def test_named_sweeps_are_valid_run_lists() -> None:
    for name, (_, make) in SWEEPS.items():
        runs = make("real")
        paths = [run.path("r") for run in runs]
        assert runs and len(set(paths)) == len(paths), name


def test_ablations_share_the_table1_runs_they_equal() -> None:
    runs = ablation_runs("real")
    table1 = {run.path("r") for run in profile_runs("real", ["adrenalmnist3d"], seeds=[0, 1, 2])}
    shared = [run for run in runs if run.path("r") in table1]
    assert sorted({run.config.method for run in shared}) == ["das", "dps", "full", "uniform"]
    assert len(runs) - len(shared) == 18 * 3  # 18 variants of their own (9 ratio, 4 H/tau0, 5 toggles), 3 seeds
    names = {variant for variant, *_ in ablation_plan("real")}
    assert {"ratio-0.5_heads-1", "ratio-0.5_estimator-st", "ratio-0.25", "ratio-0.5_replacement-True"} <= names
    assert "ratio-0.5_heads-4" not in names  # the default value is the default variant


def test_protocol_and_size64_runs() -> None:
    runs = protocol_runs()
    assert {run.group for run in runs} == {f"protocol/{name}" for name in das.experiments.PROTOCOL_CANDIDATES}
    assert all(run.config.dataset == "adrenalmnist3d" and run.config.epochs == 20 for run in runs)
    sizes = size64_runs()
    assert {run.config.size for run in sizes} == {64} and {run.group for run in sizes} == {"real/size-64"}


def test_ablations_of_a_dataset_outside_the_table1_have_their_own_folders() -> None:
    """The paper profile's ablations include the synthetic benchmark, which its Table 1 does not."""
    runs = ablation_runs("paper", datasets=["synthetic"], seeds=[0])
    assert all(run.group.startswith("paper/ablations/") for run in runs)


def test_ray_runs_say_which_device_and_threads_their_worker_gives_them() -> None:
    from das.sweep import _on_ray_worker

    config = tiny_runs(methods=("uniform",), num_threads=None)[0].config
    assert (_on_ray_worker(config, 2, 0.0).num_threads, _on_ray_worker(config, 2, 0.0).device) == (2, "cpu")
    auto = Run("quick", das.config.TrainConfig(**{**config.to_dict(), "device": "auto"})).config
    assert _on_ray_worker(auto, 1, 0.5).device == "cuda" and _on_ray_worker(auto, 1, 0.0).device == "cpu"
