"""The benchmark suite writes the figures the compute chapter reads, with ratios that follow from
the method (a backbone on k of T frames costs k/T of its FLOPs), one row per frame size, batch size,
method and ratio, latency percentiles at batch 1 and peak memory per method."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from das.bench import TARGETS, BenchConfig, check_targets, interleaved_call_seconds, main_summary, run_bench
from das.model import SubsampledClassifier
from das.samplers import make_sampler

METHODS = ("uniform", "random", "dps", "adps", "das")


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    out = tmp_path_factory.mktemp("bench")
    threads = torch.get_num_threads()
    config = BenchConfig.quick(
        sizes=(16,),
        batch_sizes=(1, 3),
        repeats=1,
        warmup=1,
        latency_repeats=5,
        train_steps=1,
        data_batches=2,
        device="cpu",
        num_threads=1,
        fused=False,  # the compiled path has tests of its own (test_fused.py); compiling here takes seconds
    )
    data = run_bench(config, out)
    assert torch.get_num_threads() == threads  # num_threads applies to the run only
    return data, out


def test_writes_json_and_markdown(report: tuple[dict, Path]) -> None:
    data, out = report
    assert json.loads((out / "bench.json").read_text()) == json.loads(json.dumps(data))
    markdown = (out / "bench.md").read_text()
    for heading in ("time_ratio_to_full", "latency_ms_p99", "Peak memory", "frames_per_second", "Targets"):
        assert heading in markdown, heading


def test_a_row_per_size_batch_method_and_ratio_with_its_ratios(report: tuple[dict, Path]) -> None:
    rows = {(r["method"], r["ratio"], r["size"], r["batch_size"]): r for r in report[0]["inference"]}
    expected = {("full", 1.0, 16, b) for b in (1, 3)} | {
        (m, r, 16, b) for m in METHODS for r in (0.25, 0.5) for b in (1, 3)
    }
    assert set(rows) == expected
    for key, row in rows.items():
        assert row["time_ratio_to_full"] > 0 and row["flops_ratio_to_full"] > 0, key
        assert row["num_frames"] == 16 and row["ms_per_volume"] == pytest.approx(row["ms_per_batch"] / key[3])
    assert rows[("full", 1.0, 16, 3)]["time_ratio_to_full"] == 1.0
    # Parameter-free samplers add no FLOPs: the backbone on k of T frames is k/T of full (up to the
    # linear head, which runs once per volume whatever k is).
    assert rows[("uniform", 0.5, 16, 3)]["flops_ratio_to_full"] == pytest.approx(0.5, rel=1e-3)
    assert rows[("uniform", 0.25, 16, 3)]["flops_ratio_to_full"] == pytest.approx(4 / 16, rel=1e-3)
    # DAS pays for its sampler on top of k/T, a small share of the full model.
    das = rows[("das", 0.5, 16, 3)]
    assert 0.5 < das["flops_ratio_to_full"] < 0.55
    assert 0 < das["sampler_flops_share"] < 0.05
    assert das["sampler_time_share"] > 0


def test_latency_percentiles_at_batch_1_only(report: tuple[dict, Path]) -> None:
    for row in report[0]["inference"]:
        if row["batch_size"] == 1:
            assert 0 < row["latency_ms_p50"] <= row["latency_ms_p99"]
            assert row["latency_ms_p50"] == pytest.approx(row["ms_per_batch"])
        else:
            assert "latency_ms_p99" not in row


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_peak_memory_per_method_for_inference_and_training(report: tuple[dict, Path]) -> None:
    memory = {(r["method"], r["mode"]): r for r in report[0]["memory"]}
    assert set(memory) == {(m, mode) for m in ("full", *METHODS) for mode in ("inference", "training")}
    assert all(r["peak_memory_mb"] > 0 and r["batch_size"] == 16 for r in memory.values())
    assert memory[("das", "inference")]["ratio"] == 0.5 and "fresh process" in memory[("das", "inference")]["measure"]
    # Training keeps every activation for the backward pass and allocates Adam's state.
    assert memory[("full", "training")]["peak_memory_mb"] > memory[("full", "inference")]["peak_memory_mb"]


def test_training_data_and_environment(report: tuple[dict, Path]) -> None:
    data = report[0]
    assert {(r["method"], r["ratio"]) for r in data["training"]} == {("full", 1.0), ("das", 0.5)}
    assert all(r["frames_per_second"] > 0 for r in data["training"])
    path = data["data"]
    assert path["batches_timed"] == 2
    assert 0 < path["data_share_of_epoch"] < 1
    env = data["environment"]
    assert env["torch"] == torch.__version__ and env["threads"] == 1 and env["peak_rss_mb"] > 0
    assert env["das_evaluation"] == "eager"  # fused=False
    summary = main_summary(data)
    assert "threads 1" in summary and "das ratio 0.50 at 16 px, batch 3" in summary


def _row(method: str, ratio: float, size: int, batch: int, time_ratio: float, **extra: float) -> dict:
    return {
        "method": method,
        "ratio": ratio,
        "size": size,
        "batch_size": batch,
        "time_ratio_to_full": time_ratio,
        **extra,
    }


def test_timed_calls_take_turns_so_drift_falls_on_every_model_alike() -> None:
    calls: list[str] = []
    fns = [lambda: calls.append("full"), lambda: calls.append("das")]
    times = interleaved_call_seconds(fns, torch.device("cpu"), warmup=1, repeats=3)
    assert calls == ["full", "das"] * 4  # one warm-up round, then three timed rounds
    assert [len(t) for t in times] == [3, 3]
    assert all(t >= 0 for row in times for t in row)


def test_targets_read_the_rows_they_name() -> None:
    rows = [
        _row("uniform", 0.25, 28, 16, 0.30),
        _row("das", 0.25, 28, 16, 0.31, sampler_time_share=0.02),
        _row("uniform", 0.5, 28, 16, 0.50),
        _row("das", 0.5, 28, 16, 0.55, sampler_time_share=0.015),
        _row("das", 0.5, 28, 1, 0.1),  # another batch size: not a target's row
    ]
    checks = {c["target"]: c for c in check_targets({"config": {}, "inference": rows})}
    assert [c["target"] for c in checks.values()] == [t.name for t in TARGETS]
    values = [(c["value"], c["met"]) for c in checks.values()]
    assert values[0][0] == pytest.approx(0.01) and values[0][1] is True
    assert values[1][0] == pytest.approx(0.05) and values[1][1] is False
    assert values[2] == (0.015, True)
    assert values[3] == (None, None)  # 112 px at batch 1 not measured


def test_rows_of_files_without_batch_sizes_read_as_the_configs_batch() -> None:
    """The stored GPU file predates batch sizes: its rows count as the config's batch of 16."""
    stored = json.loads(Path(__file__).parents[1].joinpath("measurements/gpu/bench.json").read_text())
    checks = check_targets(stored)
    assert checks[2]["value"] == pytest.approx(
        next(r for r in stored["inference"] if r["method"] == "das" and r["ratio"] == 0.5 and r["size"] == 28)[
            "sampler_time_share"
        ]
    )


def test_command_line_rejects_a_bad_device(capsys: pytest.CaptureFixture[str]) -> None:
    from das.cli import main

    assert main(["bench", "--quick", "--device", "tpu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "tpu" in err[0] and "cpu" in err[0]


def test_cuda_graphs_on_a_cpu_is_one_error_line(capsys: pytest.CaptureFixture[str]) -> None:
    from das.cli import main

    assert main(["bench", "--quick", "--device", "cpu", "--cuda-graphs"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "CUDA" in err[0] and "cpu" in err[0]


def test_command_line_options_reach_the_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import das.bench
    from das.cli import main

    seen = {}

    def fake_run_bench(config: BenchConfig, out_dir: str) -> dict:
        seen["config"] = config
        raise ValueError("stop here")

    monkeypatch.setattr(das.bench, "run_bench", fake_run_bench)
    argv = ["bench", "--sizes", "28", "112", "--batch-sizes", "1", "16", "--frames", "32", "--threads", "2"]
    assert main([*argv, "--no-fused", "--out", str(tmp_path)]) == 2
    config = seen["config"]
    assert (config.sizes, config.batch_sizes, config.num_frames, config.num_threads) == ((28, 112), (1, 16), 32, 2)
    assert config.fused is False and config.frames(112) == 32
    assert main(["bench", "--quick", "--num-threads", "3"]) == 2
    assert seen["config"].num_threads == 3 and seen["config"].fused is None and seen["config"].sizes == (28,)


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"sizes": (28, 0)}, "sizes must be one or more integers >= 1"),
        ({"batch_sizes": ()}, "batch_sizes must be one or more integers >= 1"),
        ({"ratios": (0.5, 1.5)}, r"ratios must be one or more numbers in \(0, 1\]"),
        ({"methods": ("das", "full")}, "unknown method"),
        ({"num_frames": 0}, "num_frames must be an integer >= 1"),
    ],
)
def test_bad_configs_are_refused_in_one_line(overrides: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        BenchConfig(**overrides)


def test_compiled_for_inference_compiles_the_model_in_eval_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    model = SubsampledClassifier(make_sampler("uniform", 8, 4), 2, in_channels=1).train()
    seen = {}

    def fake_compile(fn: Callable[..., object], mode: str) -> Callable[..., object]:
        seen["mode"] = mode

        def run(*args: object) -> object:
            seen["grad"] = torch.is_grad_enabled()
            return fn(*args)

        return run

    monkeypatch.setattr(torch, "compile", fake_compile)
    infer = model.compiled_for_inference("reduce-overhead")
    logits = infer(torch.rand(2, 8, 1, 16, 16)).logits
    assert seen == {"mode": "reduce-overhead", "grad": False} and not model.training and logits.shape == (2, 2)
    with pytest.raises(ValueError, match="mode must be one of"):
        model.compiled_for_inference("fast")


def test_training_is_timed_with_the_trainers_own_step_eager_and_compiled(monkeypatch: pytest.MonkeyPatch) -> None:
    """The throughput rows come from das.train.TrainStep, and --compiled-training adds its compiled
    twin (compiling itself is left out here: test_train compiles a whole run)."""
    from das.bench import BenchConfig, bench_training

    compiled = []
    monkeypatch.setattr(torch, "compile", lambda fn, mode="default": compiled.append(fn) or fn)

    config = BenchConfig(
        sizes=(16,), warmup=1, train_steps=1, batch_size=4, compiled_training=True, memory=False, device="cpu"
    )
    rows = bench_training(config, torch.device("cpu"), size=16)
    assert [(r["method"], r["compiled"]) for r in rows] == [
        ("full", False),
        ("full", True),
        ("das", False),
        ("das", True),
    ]
    assert all(r["frames_per_second"] > 0 and r["step_ms"] > 0 for r in rows)
    assert len(compiled) == 4  # the model and the training objective, for each compiled row
