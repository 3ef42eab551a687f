"""What the book's chapters share: paths, ``glue``, their sweeps and the stored measurements.

A chapter declares the runs it wants (:mod:`das.experiments`, :mod:`das.sweep`), calls :func:`sweep`
and reads records; every number its prose quotes is glued from a record or a results file, never
typed. Training progress goes to the terminal of ``python -m das.book`` (through the file named by
``$DAS_BOOK_PROGRESS``), never into the page. Notebooks must not depend on the working directory:
use :data:`ROOT` for paths in the repository.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from das.checkpoint import DamagedCheckpointWarning
from das.model import SubsampledClassifier
from das.results import DamagedRecordWarning, read_record
from das.sweep import Outcome, Run, run_sweep
from das.train import build_model

ROOT = Path(__file__).resolve().parents[1]
MEASUREMENTS = ROOT / "measurements"
PROGRESS_ENV = "DAS_BOOK_PROGRESS"
EXECUTOR_ENV = "DAS_BOOK_EXECUTOR"  # JSON of run_sweep's executor options, set by python -m das.book


def glue(name: str, value: object, display: bool = False) -> None:
    """myst-nb's ``glue`` for values quoted in prose; numpy and torch scalars become Python numbers.

    ``{glue:text}`name:.2f``` formats the stored ``text/plain`` repr, and numpy 2 writes it as
    ``np.float64(0.5)``, which myst-nb cannot parse: a build warning, so an error under ``-W``.
    """
    from myst_nb import glue as myst_glue

    if getattr(value, "ndim", None) == 0 and hasattr(value, "item"):
        value = value.item()
    myst_glue(name, value, display=display)


SCALES: tuple[str, ...] = ("ci", "laptop", "gpu")  # the book's scales (notebooks/parameters.yml)


def book_store(results_dir: str | Path, scale: str) -> Path:
    """Where a chapter at ``scale`` keeps its runs: ``<results_dir>/<scale>`` in the repository;
    ``ValueError`` for a scale the book does not have (a typo would start a store of its own)."""
    if scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r}; valid scales: {', '.join(SCALES)}")
    return in_repository(results_dir) / scale


def in_repository(path: str | Path) -> Path:
    """``path`` made absolute against the repository root (absolute paths are kept)."""
    path = Path(path)
    return path if path.is_absolute() else ROOT / path


def sweep(runs: Sequence[Run], results_dir: str | Path, **options: Any) -> list[Outcome]:
    """:func:`das.sweep.run_sweep` for a chapter: the store relative to the repository, progress to
    the book builder's terminal (nothing when the chapter runs elsewhere), the builder's executor
    (``python -m das.book build --executor ray ...``; in process otherwise), and a failed run an error."""
    path = os.environ.get(PROGRESS_ENV)
    executor = json.loads(os.environ.get(EXECUTOR_ENV) or "{}")
    stream = open(path, "a", buffering=1) if path else None  # noqa: SIM115 -- closed below
    try:
        # A damaged record or checkpoint is set aside and its run retrained: say so on the builder's
        # terminal; as a warning it would reach the page (stderr), which fails the build.
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", DamagedRecordWarning)
            warnings.simplefilter("always", DamagedCheckpointWarning)
            outcomes = run_sweep(runs, in_repository(results_dir), progress=stream or False, **executor, **options)
        for warning in caught:
            if issubclass(warning.category, (DamagedRecordWarning, DamagedCheckpointWarning)) and stream:
                stream.write(f"{warning.category.__name__}: {warning.message}\n")
            else:
                warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
        return outcomes
    finally:
        if stream is not None:
            stream.close()


def trained_model(outcome: Outcome, results_dir: str | Path) -> SubsampledClassifier:
    """The model of a run swept with ``keep_checkpoint=True``, with its best epoch's weights, in eval mode."""
    record = outcome.record
    if record is None:
        raise ValueError(f"{outcome.run.label} has no record: {outcome.error}")
    checkpoint = outcome.run.checkpoint(in_repository(results_dir))
    if not checkpoint.exists():
        raise ValueError(f"{outcome.run.label}: no checkpoint at {checkpoint} (sweep it with keep_checkpoint=True)")
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)["best_state"]
    num_classes, in_channels = state["head.weight"].shape[0], state["encoder.features.0.0.weight"].shape[1]
    model = build_model(outcome.run.config, record["num_frames"], num_classes, in_channels)
    model.load_state_dict(state)
    return model.eval()


def measured_runs(folder: str | Path) -> list[dict[str, Any]]:
    """Every run record stored under ``measurements/<folder>`` (recursively), validated; each with its
    file under ``"path"``. A damaged record is an error naming the file: the book never shows it."""
    root = in_repository(Path("measurements") / folder) if not Path(folder).is_absolute() else Path(folder)
    records = []
    for path in sorted(root.rglob("seed*.json")):
        record, problems = read_record(path)
        if record is None:
            raise ValueError(f"{path} is not a valid run record: {problems[0]}")
        record["path"] = str(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)
        records.append(record)
    if not records:
        raise ValueError(f"no run records under {root}")
    return records


# What identifies a stored run, rather than how it was trained: not part of a protocol.
RUN_IDENTITY = frozenset({"dataset", "method", "seed", "ratio", "size", "sampler_options"})


def protocol_differences(
    records: Sequence[dict[str, Any]], profile: str, ignore: frozenset[str] = RUN_IDENTITY
) -> dict[str, list[Any]]:
    """The settings in which stored ``records`` differ from what ``profile`` trains for the same
    dataset, method and seed (:mod:`das.profiles`), fields in ``ignore`` and run-local fields aside:
    ``{field: the values the records used}``, empty when every record ran under the profile. A chapter
    that says "profile X" checks this; Table 1 runs should also match ratio and sampler options
    (``ignore={"size"}``), ablation variants differ there by design (the default)."""
    from das.config import RUN_LOCAL_FIELDS, TrainConfig
    from das.profiles import get_profile

    spec = get_profile(profile)
    defaults = TrainConfig.default_dict()
    used: dict[str, set[str]] = {}
    for record in records:
        stored = record["config"]
        expected = spec.config(stored["dataset"], stored["method"], stored["seed"])
        for key in expected.differences(stored, ignore=RUN_LOCAL_FIELDS | {"dataset", "method", "seed"} | ignore):
            used.setdefault(key, set()).add(json.dumps(stored.get(key, defaults[key]), sort_keys=True))
    return {key: [json.loads(v) for v in sorted(values)] for key, values in used.items()}


def machine_label(records: Sequence[dict[str, Any]]) -> str:
    """Where stored runs ran, in words: ``"CPU (x86_64, 2 cores), 1 thread per run, torch 2.14.1"``."""
    kinds = set()
    for record in records:
        platform = record["provenance"].get("platform", {})
        device = record["device"].split(":")[0]
        where = "CPU" if device == "cpu" else "GPU"
        cores = f", {platform.get('cpu_count')} cores" if platform.get("cpu_count") else ""
        threads = (
            f", {record['threads']} thread{'s' if record['threads'] != 1 else ''} per run" if device == "cpu" else ""
        )
        kinds.add(
            f"{where} ({platform.get('machine', '?')}{cores}){threads}, torch {record['provenance']['versions']['torch']}"
        )
    return "; ".join(sorted(kinds))


# Figures: the text column of the book's theme is at most COLUMN_PX CSS pixels wide (the article at a 1280 px
# rendered book), and a figure wider than that is scaled down to fit. MIN_TEXT_PX is 9 pt.
COLUMN_PX = 688
MIN_TEXT_PX = 12.0
PLOT_STYLE = {
    "figure.figsize": (6.8, 3.4),  # as wide as the column at 100 dpi: no scaling down
    "figure.dpi": 100,
    "font.size": 10,
    "axes.titlesize": 10,
    "axes.labelsize": 10,
    "xtick.labelsize": 9,
    "ytick.labelsize": 9,
    "legend.fontsize": 9,
    "figure.titlesize": 11,
}


def error_bars(center: Any, low: Any, high: Any) -> list[Any]:
    """``[below, above]``: the distances from ``center`` to an interval's ends, as matplotlib's
    ``errorbar`` takes them. A percentile interval need not contain the mean of the seeds; the side
    it falls short on is drawn with length 0 (the tables print the interval itself)."""
    import numpy as np

    center, low, high = (np.asarray(v, dtype=float) for v in (center, low, high))
    return [np.clip(center - low, 0, None), np.clip(high - center, 0, None)]


def setup_plots() -> None:
    """The book's matplotlib style: figures as wide as the text column, text of at least 9 pt."""
    import matplotlib.pyplot as plt

    plt.rcParams.update(PLOT_STYLE)


def small_text(fig) -> list[str]:  # noqa: ANN001 -- a matplotlib Figure
    """The visible texts of ``fig`` that would render below 9 pt in the book's column."""
    fig.canvas.draw()
    # The page shows the figure saved with bbox_inches="tight" (the inline backend's default), so
    # text that reaches past the figure's edge widens the image, and the browser shrinks all of it.
    tight = fig.get_tightbbox(fig.canvas.get_renderer())
    width_px = max(fig.get_figwidth(), tight.width) * fig.dpi
    shrink = min(1.0, COLUMN_PX / width_px)
    found = []
    for text in fig.findobj(lambda artist: hasattr(artist, "get_fontsize") and hasattr(artist, "get_text")):
        if not text.get_visible() or not text.get_text().strip():
            continue
        rendered = text.get_fontsize() * fig.dpi / 72 * shrink
        if rendered < MIN_TEXT_PX - 1e-6:
            found.append(f"{text.get_text()[:40]!r} at {rendered * 0.75:.1f} pt")
    return found


class Table:
    """A table as the book shows it: one header row, in which the row labels' names head their
    columns (pandas gives index names a header row of their own), and the plain-text form that
    nbval compares. Make one with :func:`book_table`."""

    def __init__(self, frame: Any) -> None:
        self.frame = frame

    def _repr_html_(self) -> str:
        import pandas as pd

        frame, keep_index = self.frame, True
        if any(name is not None for name in frame.index.names):
            outer = list(frame.index.names[:-1])
            frame, keep_index = frame.reset_index(), False
            for depth, name in enumerate(outer):  # an outer label once per run of equal ones, as pandas does
                repeated = (frame[outer[: depth + 1]] == frame[outer[: depth + 1]].shift()).all(axis=1)
                frame[name] = frame[name].astype(str).where(~repeated, "")
        elif isinstance(frame.index, pd.RangeIndex):
            keep_index = False  # row numbers say nothing to a reader
        if frame.columns.nlevels == 1:
            frame = frame.rename_axis(columns=None)  # pandas would give its name a column of its own
        return frame.to_html(index=keep_index, border=0)

    def __repr__(self) -> str:
        return self.frame.to_string()


def book_table(frame: Any) -> Table:
    """``frame`` (a pandas DataFrame) ready to ``display`` in a chapter, with one header row."""
    return Table(frame)


def show() -> None:
    """Display the open figures, after checking that their text is readable in the book (at least
    9 pt at the rendered width); ``ValueError`` naming the small texts otherwise."""
    import matplotlib.pyplot as plt

    for number in plt.get_fignums():
        problems = small_text(plt.figure(number))
        if problems:
            raise ValueError(f"figure {number}: text below 9 pt in the book's column: {', '.join(problems[:5])}")
    plt.show()
