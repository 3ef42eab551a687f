"""Command line: bad arguments give one line on stderr and exit status 2; good ones train and summarise."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from record_helpers import valid_record

from das.cli import main

REPO = Path(__file__).parents[1]
TINY = [
    "--epochs",
    "1",
    "--size",
    "16",
    "--max-train-samples",
    "16",
    "--max-eval-samples",
    "16",
    "--device",
    "cpu",
    "--num-threads",
    "1",
    "--quiet",
    "--dataset-option",
    "num_frames=8",
    "--dataset-option",
    "num_samples=16",
]


def run_main(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        status = main(argv)
    except SystemExit as exit_:  # argparse errors
        status = exit_.code
    out, err = capsys.readouterr()
    return status, out, err


@pytest.mark.parametrize(
    "argv,message",
    [
        (["train", "--dataset", "mnist", "--method", "das"], "invalid choice: 'mnist'"),
        (["train", "--dataset", "synthetic", "--method", "best"], "invalid choice: 'best'"),
        (["train", "--dataset", "synthetic", "--method", "das", "--ratio", "0"], "ratio must be in (0, 1]"),
        (["train", "--dataset", "synthetic", "--method", "das", "--ratio", "1.5"], "ratio must be in (0, 1]"),
        (["train", "--dataset", "synthetic", "--method", "das", "--ratio", "half"], "ratio must be a number"),
        (["train", "--dataset", "synthetic", "--method", "das", "--epochs", "0"], "integer >= 1"),
        (["train", "--dataset", "synthetic", "--method", "das", "--sampler-option", "heads=0"], "heads"),
        (["train", "--dataset", "synthetic", "--method", "das", "--device", "tpu"], "device"),
        (["table1", "--profile", "huge"], "invalid choice: 'huge'"),
        (["table1", "--datasets", "mnist"], "invalid choice: 'mnist'"),
        (["table1", "--seeds", "-1"], "integer >= 0"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run_main(argv, capsys)
    assert status == 2
    assert message in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_missing_data_without_download_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = run_main(
        [
            "train",
            "--dataset",
            "adrenalmnist3d",
            "--method",
            "das",
            "--data-dir",
            str(tmp_path),
            "--results-dir",
            str(tmp_path),
        ],
        capsys,
    )
    assert status == 2
    assert "adrenalmnist3d" in err and len(err.strip().splitlines()) == 1


def test_summary_of_nothing_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = run_main(["summary", "--profile", "quick", "--results-dir", str(tmp_path)], capsys)
    assert status == 2 and "no finished runs" in err
    assert not (tmp_path / "quick" / "summary.csv").exists()


def test_train_then_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for seed in ("0", "1"):
        status, out, _ = run_main(
            [
                "train",
                "--dataset",
                "synthetic",
                "--method",
                "uniform",
                "--seed",
                seed,
                "--results-dir",
                str(tmp_path),
                *TINY,
            ],
            capsys,
        )
        assert status == 0 and "balanced_accuracy" in out
    record = json.loads((tmp_path / "custom" / "synthetic" / "uniform" / "seed1.json").read_text())
    assert record["config"]["max_train_samples"] == 16 and record["k"] == 4
    status, out, _ = run_main(
        [
            "train",
            "--dataset",
            "synthetic",
            "--method",
            "uniform",
            "--seed",
            "1",
            "--results-dir",
            str(tmp_path),
            *TINY,
        ],
        capsys,
    )
    assert status == 0 and "read back" in out  # not retrained
    status, out, _ = run_main(["summary", "--profile", "custom", "--results-dir", str(tmp_path)], capsys)
    assert status == 0 and "uniform" in out and "±" in out
    assert (tmp_path / "custom" / "summary.csv").exists() and (tmp_path / "custom" / "summary.md").exists()


def test_python_dash_m_reports_bad_ratio_without_traceback() -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-m", "das", "train", "--dataset", "synthetic", "--method", "das", "--ratio", "2"],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == "das train: error: argument --ratio: ratio must be in (0, 1], got 2"


def test_bench_flags_reach_the_benchmark_config(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import das.bench

    seen = {}

    def fake_run_bench(config: das.bench.BenchConfig, out_dir: str) -> dict:
        seen.update(config=config, out_dir=out_dir)
        raise ValueError("stop here")  # reported as a usage error, after the config was built

    monkeypatch.setattr(das.bench, "run_bench", fake_run_bench)
    status, _, err = run_main(["bench", "--quick", "--fused-features", "--out", str(tmp_path)], capsys)
    assert status == 2 and "stop here" in err
    assert seen["config"].fused_features and seen["config"].sizes == (28,) and seen["out_dir"] == str(tmp_path)


def test_sweep_list_says_stored_for_what_a_ray_sweep_would_skip(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from das.experiments import SWEEPS
    from das.results import write_json_atomic
    from das.sweep import as_executed

    runs = as_executed(SWEEPS["literal"][1]("paper"), "ray", cpus_per_run=3)
    for run in runs:  # stored as a Ray worker with 3 threads writes them
        config = {k: v for k, v in run.config.to_dict().items() if k not in ("dataset", "method", "seed")}
        record = valid_record(run.config.dataset, run.config.method, run.config.seed, group=run.group, **config)
        write_json_atomic(run.path(tmp_path), {**record, "threads": 3})
    listing = ["sweep", "literal", "--profile", "paper", "--list", "--results-dir", str(tmp_path)]
    status, out, _ = run_main([*listing, "--executor", "ray", "--cpus-per-run", "3"], capsys)
    assert status == 0 and out.count(": stored") == len(runs) and "to train" not in out
    status, out, _ = run_main([*listing, "--executor", "ray", "--cpus-per-run", "2"], capsys)
    assert status == 0 and out.count(": to train") == len(runs)
