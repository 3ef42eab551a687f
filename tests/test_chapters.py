"""The chapters' helpers (das.chapters): sweeps under the book builder, stored measurements, and the
check that figure text stays readable in the book's column."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.pyplot as plt
import pytest
from record_helpers import valid_record

import das.chapters
from das.chapters import EXECUTOR_ENV, PROGRESS_ENV, book_table, machine_label, measured_runs, small_text, sweep
from das.results import write_json_atomic
from das.sweep import profile_runs

TINY = dict(
    epochs=1,
    size=16,
    max_train_samples=16,
    max_eval_samples=16,
    device="cpu",
    quiet=True,
    num_threads=1,
    dataset_options={"num_frames": 8, "num_samples": 16},
)


def test_a_chapter_sweep_follows_the_builders_executor_and_progress(tmp_path: Path, monkeypatch) -> None:
    seen = {}
    monkeypatch.setattr(das.chapters, "run_sweep", lambda runs, store, **options: seen.update(options) or [])
    progress = tmp_path / "progress.log"
    monkeypatch.setenv(PROGRESS_ENV, str(progress))
    monkeypatch.setenv(EXECUTOR_ENV, json.dumps({"executor": "ray", "workers": 2}))
    sweep([], tmp_path, keep_checkpoint=True)
    assert seen["executor"] == "ray" and seen["workers"] == 2 and seen["keep_checkpoint"] is True
    assert seen["progress"].name == str(progress)
    monkeypatch.delenv(EXECUTOR_ENV)
    monkeypatch.delenv(PROGRESS_ENV)
    seen.clear()
    sweep([], tmp_path)
    assert "executor" not in seen and seen["progress"] is False  # in process, silent, outside the builder


def test_a_chapter_sweep_trains_and_reads_back(tmp_path: Path) -> None:
    runs = profile_runs("quick", ["synthetic"], ["uniform"], [0], **TINY)
    first = sweep(runs, tmp_path)
    again = sweep(runs, tmp_path)
    assert first[0].trained and not again[0].trained and again[0].record == first[0].record


def test_measured_runs_are_validated_and_a_damaged_one_is_named(tmp_path: Path) -> None:
    folder = tmp_path / "cpu" / "real" / "adrenalmnist3d" / "das"
    write_json_atomic(folder / "seed0.json", valid_record("adrenalmnist3d", "das", 0, size=28))
    [record] = measured_runs(tmp_path / "cpu")
    assert record["method"] == "das" and "CPU" in machine_label([record])
    (folder / "seed1.json").write_text("{broken")
    with pytest.raises(ValueError, match=r"seed1\.json is not a valid run record"):
        measured_runs(tmp_path / "cpu")
    with pytest.raises(ValueError, match="no run records under"):
        measured_runs(tmp_path / "empty")


def test_small_figure_text_is_found() -> None:
    das.chapters.setup_plots()
    fig, ax = plt.subplots(figsize=(6.8, 3))
    ax.set_title("readable")
    assert small_text(fig) == []
    ax.set_xlabel("tiny", fontsize=6)
    assert any("tiny" in text for text in small_text(fig))
    wide, _ = plt.subplots(figsize=(14, 3))  # shrunk to half in the column: 10 pt ticks become 5 pt
    assert small_text(wide)
    # a title wider than the figure widens the tight-cropped image the page shows, which is shrunk
    long_title, _ = plt.subplots(figsize=(6.8, 1))
    long_title.suptitle("a title that runs far past both edges of its figure " * 3)
    assert small_text(long_title)
    plt.close("all")


def test_error_bars_are_distances_and_never_negative() -> None:
    below, above = das.chapters.error_bars([0.5, 0.8], [0.4, 0.82], [0.7, 0.9])
    assert below.tolist() == pytest.approx([0.1, 0.0])  # the interval starts above the mean: no bar
    assert above.tolist() == pytest.approx([0.2, 0.1])


def test_protocol_differences_name_the_settings_a_stored_run_did_not_use() -> None:
    from das.chapters import protocol_differences
    from das.profiles import get_profile

    config = get_profile("real").config("adrenalmnist3d", "das", 0).to_dict()
    variant = {**config, "ratio": 0.25, "sampler_options": {"heads": 1}, "num_threads": 1}
    assert protocol_differences([{"config": config}, {"config": variant}], "real") == {}
    other = {**config, "lr": 0.123, "epochs": 7}
    assert protocol_differences([{"config": config}, {"config": other}], "real") == {"epochs": [7], "lr": [0.123]}


def test_book_table_has_one_header_row_and_the_frames_text() -> None:
    import pandas as pd

    frame = pd.DataFrame({"dataset": ["a", "a"], "method": ["das", "full"], "auc": [0.7, 0.8]})
    pivot = frame.pivot(index="method", columns="dataset", values="auc")  # named index and columns
    for shown, header in [
        (frame.set_index("method"), ["method", "dataset", "auc"]),
        (frame.set_index(["dataset", "method"]), ["dataset", "method", "auc"]),
        (pivot, ["method", "a"]),
        (frame, ["dataset", "method", "auc"]),  # row numbers are not shown
    ]:
        html = book_table(shown)._repr_html_()
        assert html.count("<tr") == 1 + len(shown), html  # one header row, one row per row
        assert [cell.split("</th>")[0] for cell in html.split("<th>")[1:]] == header
        assert repr(book_table(shown)) == shown.to_string()
    nested = book_table(frame.set_index(["dataset", "method"]))._repr_html_()
    assert nested.count("<td>a</td>") == 1 and nested.count("<td></td>") == 1  # an outer label once per run
