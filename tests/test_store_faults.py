"""The results store under faults, concurrency and bad input: damaged files are named and never
trusted, an unwritable store fails before training, two sweeps never train a run twice, and a sweep
killed anywhere resumes to the numbers of an uninterrupted one."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from record_helpers import valid_record

import das.results
import das.sweep
from das.checkpoint import DamagedCheckpointWarning
from das.config import TrainConfig
from das.results import DamagedRecordWarning, read_record, summary, write_json_atomic
from das.sweep import profile_runs, run_sweep
from das.train import train

ROOT = Path(__file__).resolve().parents[1]
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


def tiny_runs(methods=("uniform", "das", "dps")):
    return profile_runs("quick", ["synthetic"], list(methods), [0], **TINY)


def metrics_of(store: Path) -> dict[str, dict]:
    out = {}
    for path in sorted(store.glob("quick/*/*/seed*.json")):
        record, problems = read_record(path)
        assert record is not None, f"{path}: {problems}"
        out[str(path.relative_to(store))] = {
            "metrics": record["metrics"],
            "history": [{k: v for k, v in h.items() if k != "train_s"} for h in record["history"]],
        }
    return out


def test_a_damaged_checkpoint_is_set_aside_and_the_run_starts_over(tmp_path: Path) -> None:
    config = TrainConfig(**{**TINY, "dataset": "synthetic", "method": "uniform"})
    fresh = train(config)
    checkpoint = tmp_path / "run.pt"
    train(TrainConfig(**{**config.to_dict(), "epochs": 1}), checkpoint=checkpoint)
    checkpoint.write_bytes(checkpoint.read_bytes()[: checkpoint.stat().st_size // 2])  # truncated
    with pytest.warns(DamagedCheckpointWarning, match=r"run\.pt is damaged .* moved to .*run\.pt\.damaged"):
        again = train(config, checkpoint=checkpoint)
    assert (tmp_path / "run.pt.damaged").exists()
    assert again.metrics == fresh.metrics and again.history[0]["train_loss"] == fresh.history[0]["train_loss"]
    checkpoint.write_text("garbage")
    with pytest.warns(DamagedCheckpointWarning):
        assert das.checkpoint.checkpoint_differences(checkpoint, config) == []  # nothing left to resume from


@pytest.mark.parametrize("content", ['{"schema": 2, "metrics": {"auc":', "not json", '{"schema": 2, "group": "quick"}'])
def test_a_damaged_record_is_named_and_retrained(tmp_path: Path, content: str) -> None:
    [run] = tiny_runs(["uniform"])
    path = run.path(tmp_path)
    path.parent.mkdir(parents=True)
    path.write_text(content)
    with pytest.warns(DamagedRecordWarning, match=str(path)):
        [outcome] = run_sweep([run], tmp_path, progress=False)
    assert outcome.trained and read_record(path)[0] is not None


def test_summary_leaves_out_damaged_records_and_says_which(tmp_path: Path) -> None:
    [good, bad] = tiny_runs(["uniform", "das"])
    run_sweep([good], tmp_path, progress=False)
    record = json.loads(good.path(tmp_path).read_text())
    write_json_atomic(bad.path(tmp_path), {k: v for k, v in {**record, "method": "das"}.items() if k != "metrics"})
    with pytest.warns(DamagedRecordWarning, match=r"das/seed0\.json: not a valid run record, skipped: metrics"):
        table = summary(tmp_path, "quick")
    assert list(table["method"]) == ["uniform"]


def test_a_record_labelled_with_fewer_epochs_than_it_ran_is_refused(tmp_path: Path) -> None:
    [run] = tiny_runs(["uniform"])
    run_sweep([run], tmp_path, progress=False)
    record = json.loads(run.path(tmp_path).read_text())
    record["config"]["epochs"] = 1  # what a resume with a smaller --epochs used to store
    write_json_atomic(run.path(tmp_path), record)
    assert "epochs_run 2 does not fit config.epochs 1" in " ".join(read_record(run.path(tmp_path))[1])


@pytest.mark.parametrize("kind", ["file", "read-only"])
def test_an_unwritable_store_fails_before_any_training(tmp_path: Path, kind: str, monkeypatch) -> None:
    if kind == "file":
        store = tmp_path / "store"
        store.write_text("")
    else:
        if os.geteuid() == 0:
            pytest.skip("root writes into read-only folders")
        store = tmp_path / "store"
        store.mkdir(mode=0o500)
    monkeypatch.setattr(das.sweep, "train", lambda *a, **k: pytest.fail("trained into an unwritable store"))
    with pytest.raises(ValueError, match=r"results folder .*store is (not writable|a file)"):
        run_sweep(tiny_runs(["uniform"]), store, progress=False)


def test_cli_names_an_unwritable_store_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "store").write_text("")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "das",
            "train",
            "--dataset",
            "synthetic",
            "--method",
            "uniform",
            "--epochs",
            "1",
            "--results-dir",
            str(tmp_path / "store"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "store is a file, not a folder" in proc.stderr


DRIVER = textwrap.dedent("""
    import json, os, sys
    import torch
    fault = json.loads(sys.argv[2])
    if fault.get("kind") == "replace":  # die just before the n-th atomic rename (a record or a checkpoint)
        real_replace, calls = os.replace, [0]
        def replace(src, dst):
            calls[0] += 1
            if calls[0] == fault["n"]:
                os._exit(9)
            return real_replace(src, dst)
        os.replace = replace
    if fault.get("kind") == "partial_save":  # die halfway through writing the n-th checkpoint
        real_save, calls = torch.save, [0]
        def save(obj, f, *args, **kwargs):
            calls[0] += 1
            if calls[0] == fault["n"]:
                import io
                buffer = io.BytesIO()
                real_save(obj, buffer)
                f.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
                f.flush()
                os._exit(9)
            return real_save(obj, f, *args, **kwargs)
        torch.save = save
    from das.sweep import profile_runs, run_sweep
    TINY = json.loads(sys.argv[3])
    runs = profile_runs("quick", ["synthetic"], ["uniform", "das", "dps"], [0], **TINY)
    outcomes = run_sweep(runs, sys.argv[1], progress=False)
    print(json.dumps(sum(o.trained for o in outcomes)))
""")


def drive(tmp_path: Path, store: Path, fault: dict, kill_after: float | None = None) -> subprocess.CompletedProcess:
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    args = [sys.executable, str(script), str(store), json.dumps(fault), json.dumps(TINY)]
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if kill_after is not None:
        time.sleep(kill_after)
        proc.send_signal(signal.SIGKILL)
    out, err = proc.communicate(timeout=300)
    return subprocess.CompletedProcess(args, proc.returncode, out, err)


def test_a_sweep_killed_anywhere_resumes_to_the_uninterrupted_numbers(tmp_path: Path) -> None:
    """Two dozen faults: kills at random times, deaths just before an atomic rename (of a record or a
    checkpoint) and halfway through a checkpoint write. After every fault the store holds only valid
    records; after a final clean run its numbers equal an uninterrupted sweep's."""
    reference = tmp_path / "reference"
    assert drive(tmp_path, reference, {}).returncode == 0
    expected = metrics_of(reference)
    assert len(expected) == 3
    rng = random.Random(0)
    faults = (
        [{"kind": "replace", "n": n} for n in range(1, 10)]
        + [{"kind": "partial_save", "n": n} for n in (1, 2, 4, 5)]
        + [{"kill_after": rng.uniform(0.5, 8.0)} for _ in range(11)]
    )
    rng.shuffle(faults)
    chains = [faults[i::4] for i in range(4)]
    for number, chain in enumerate(chains):
        store = tmp_path / f"store{number}"
        for fault in chain:
            drive(tmp_path, store, fault, kill_after=fault.get("kill_after"))
            metrics_of(store)  # every record present is valid, none partial or mislabelled
        final = drive(tmp_path, store, {})
        assert final.returncode == 0, final.stderr[-2000:]
        assert metrics_of(store) == expected


def test_two_sweeps_on_one_store_train_each_run_once(tmp_path: Path) -> None:
    store = tmp_path / "store"
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    args = [sys.executable, str(script), str(store), "{}", json.dumps(TINY)]
    procs = [
        subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)
    ]
    results = [proc.communicate(timeout=300) for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0], [err[-1500:] for _, err in results]
    assert sum(json.loads(out.strip().splitlines()[-1]) for out, _ in results) == 3  # each run trained once
    assert len(metrics_of(store)) == 3
    assert not list(store.rglob("*.tmp"))


def test_sweeps_in_opposite_orders_on_one_store_never_deadlock(tmp_path: Path) -> None:
    """Two sweeps (threads of one process: OS locks still exclude each other) over the same runs in
    opposite orders finish, train each run once and agree on every record."""
    import threading

    runs = tiny_runs(["uniform", "das", "dps"])
    results: dict[str, list] = {}

    def sweep(name: str, order: list) -> None:
        results[name] = run_sweep(order, tmp_path, progress=False)

    threads = [
        threading.Thread(target=sweep, args=("forward", runs)),
        threading.Thread(target=sweep, args=("backward", runs[::-1])),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=240)
    assert not any(thread.is_alive() for thread in threads), "the two sweeps deadlocked"
    trained = sum(o.trained for outcomes in results.values() for o in outcomes)
    assert trained == 3
    forward = {o.path: o.record for o in results["forward"]}
    assert all(forward[o.path] == o.record for o in results["backward"])


def test_a_checkpoint_of_another_device_or_thread_count_is_not_resumed(tmp_path: Path) -> None:
    from das.checkpoint import checkpoint_differences

    config = TrainConfig(**{**TINY, "dataset": "synthetic", "method": "uniform", "epochs": 2})
    checkpoint = tmp_path / "run.pt"
    train(TrainConfig(**{**config.to_dict(), "epochs": 1}), checkpoint=checkpoint)
    assert checkpoint_differences(checkpoint, config) == []
    assert checkpoint_differences(checkpoint, TrainConfig(**{**config.to_dict(), "num_threads": 2})) == ["CPU threads"]
    state = torch.load(checkpoint, weights_only=False)
    torch.save({**state, "device_type": "cuda"}, checkpoint)
    assert checkpoint_differences(checkpoint, config) == ["device"]


def test_a_gpu_run_is_a_valid_record_on_a_machine_without_gpu(tmp_path: Path) -> None:
    record = valid_record("synthetic", "das", 0, device="cuda")
    assert read_record(write_json_atomic(tmp_path / "seed0.json", record))[1] == []
    [run] = tiny_runs(["das"])
    assert "it ran on cuda" in " ".join(das.results.stale_reasons({**record, "device": "cuda:0"}, run.config))


def test_a_checkpoint_left_beside_a_finished_record_is_cleaned_up(tmp_path: Path) -> None:
    [run] = tiny_runs(["uniform"])
    run_sweep([run], tmp_path, progress=False)
    leftover = run.checkpoint(tmp_path)
    leftover.parent.mkdir(parents=True, exist_ok=True)
    leftover.write_bytes(b"left by a sweep killed after writing the record")
    [outcome] = run_sweep([run], tmp_path, progress=False)
    assert not outcome.trained and not leftover.exists()


def test_two_settings_never_share_a_table_row(tmp_path: Path) -> None:
    from das.stats import bootstrap_table

    a = valid_record("adrenalmnist3d", "das", 0, size=28, ratio=0.5)
    b = valid_record("adrenalmnist3d", "das", 0, size=28, ratio=0.25)
    with pytest.raises(ValueError, match="two runs of das with seed 0"):
        bootstrap_table([a, b])
    for record, group_ratio in ((a, 0.5), (b, 0.25)):
        write_json_atomic(tmp_path / "p" / "adrenalmnist3d" / "das" / f"seed{int(group_ratio * 4)}.json", record)
    table = summary(tmp_path, "p")
    assert len(table) == 2 and set(table["setting"]) == {"ratio=0.5", "ratio=0.25"}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("empty_train", "the train split is empty"),
        ("other_frames", "val volumes are .* but training volumes are"),
    ],
)
def test_splits_that_cannot_make_a_run_are_refused_before_training(change: str, message: str) -> None:
    import das.train

    config = TrainConfig(**{**TINY, "dataset": "synthetic", "method": "uniform"})
    splits = das.train.load_splits(config)
    if change == "empty_train":
        splits = splits._replace(train=splits.train.subset([]))
    else:
        val = splits.val
        splits = splits._replace(
            val=type(val)(val.images[:, :4], val.labels, name=val.name, task=val.task, label_names=val.label_names)
        )
    with pytest.raises(ValueError, match=message):
        train(config, splits)


def test_an_absurd_learning_rate_is_refused_in_one_line() -> None:
    with pytest.raises(ValueError, match=r"lr must be a number in \(0, 10\], got 1e\+300"):
        TrainConfig(**{**TINY, "dataset": "synthetic", "lr": 1e300})


def test_a_chapter_refuses_an_unknown_scale(tmp_path: Path) -> None:
    from das.chapters import book_store

    with pytest.raises(ValueError, match="unknown scale 'laptp'; valid scales: ci, laptop, gpu"):
        book_store(tmp_path, "laptp")
