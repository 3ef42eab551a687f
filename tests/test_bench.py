"""The benchmark suite writes the figures the compute chapter reads, with ratios that follow from
the method (a backbone on k of T frames costs k/T of its FLOPs)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from das.bench import BenchConfig, main_summary, run_bench


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    out = tmp_path_factory.mktemp("bench")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        config = BenchConfig.quick(sizes=(16,), repeats=1, warmup=1, train_steps=1, data_batches=2, device="cpu")
        return run_bench(config, out), out
    finally:
        torch.set_num_threads(threads)


def test_writes_json_and_markdown(report: tuple[dict, Path]) -> None:
    data, out = report
    assert json.loads((out / "bench.json").read_text()) == json.loads(json.dumps(data))
    markdown = (out / "bench.md").read_text()
    assert "time_ratio_to_full" in markdown and "frames_per_second" in markdown


def test_every_method_ratio_size_has_its_ratios(report: tuple[dict, Path]) -> None:
    rows = {(r["method"], r["ratio"], r["size"]): r for r in report[0]["inference"]}
    expected = {("full", 1.0, 16)} | {
        (m, r, 16) for m in ("uniform", "random", "dps", "adps", "das") for r in (0.25, 0.5)
    }
    assert set(rows) == expected
    for key, row in rows.items():
        assert row["time_ratio_to_full"] > 0, key
        assert row["flops_ratio_to_full"] > 0, key
    assert rows[("full", 1.0, 16)]["time_ratio_to_full"] == 1.0
    # Parameter-free samplers add no FLOPs: the backbone on k of T frames is k/T of full (up to the
    # linear head, which runs once per volume whatever k is).
    assert rows[("uniform", 0.5, 16)]["flops_ratio_to_full"] == pytest.approx(0.5, rel=1e-3)
    assert rows[("uniform", 0.25, 16)]["flops_ratio_to_full"] == pytest.approx(4 / 16, rel=1e-3)
    # DAS pays for its sampler on top of k/T, a small share of the full model.
    das = rows[("das", 0.5, 16)]
    assert 0.5 < das["flops_ratio_to_full"] < 0.55
    assert 0 < das["sampler_flops_share"] < 0.05
    assert das["sampler_time_share"] > 0


def test_training_data_and_environment(report: tuple[dict, Path]) -> None:
    data = report[0]
    assert {(r["method"], r["ratio"]) for r in data["training"]} == {("full", 1.0), ("das", 0.5)}
    assert all(r["frames_per_second"] > 0 for r in data["training"])
    path = data["data"]
    assert path["batches_timed"] == 2
    assert 0 < path["data_share_of_epoch"] < 1
    env = data["environment"]
    assert env["torch"] == torch.__version__ and env["threads"] == 1 and env["peak_rss_mb"] > 0
    summary = main_summary(data)
    assert "threads 1" in summary and "das ratio 0.50" in summary


def test_command_line_rejects_a_bad_device(capsys: pytest.CaptureFixture[str]) -> None:
    from das.cli import main

    assert main(["bench", "--quick", "--device", "tpu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "tpu" in err[0] and "cpu" in err[0]
