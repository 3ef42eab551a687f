"""The results store: one JSON record per run, written atomically, validated on read, and the summary
over seeds.

Layout under ``results_dir`` (default ``results/``); ``<group>`` is a profile's name for its Table 1
runs (``quick``, ``real``), or a folder under it for other sweeps (``real/ablations/ratio-0.25``)::

    <group>/<dataset>/<method>/seed<N>.json              one finished run: its record
    <group>/checkpoints/<dataset>/<method>/seed<N>.pt    per-epoch checkpoint of a run in progress
    <profile>/summary.csv, <profile>/summary.md          written by :func:`write_summary`

A record appears only once its run has finished (temporary file, then ``os.replace``), and the
checkpoint is deleted once the record is written. Non-finite floats (an undefined AUC) are stored as
``null`` so the files stay strict JSON.

The record (schema version :data:`SCHEMA_VERSION`, checked by :func:`validate_record`)::

    schema            2
    group, dataset, method, seed
    config            the whole TrainConfig (das.train)
    num_frames, k     T and the frames the backbone saw per input
    metrics           test balanced_accuracy, auc, accuracy (and informative_hit_rate on synthetic data)
    val_metrics       the same on the validation split, at the best epoch
    epochs_run, best_epoch, stopped_early
    history           one dict per epoch: epoch, lr, train_loss, val_loss, val_<metric>, train_s
    timings           wall_s, data_s, train_s, eval_s, throughput_frames_per_s
    flops_per_volume, selection_histogram, sampler_lr
    test_predictions  labels [N] and class probabilities [N, C] of the test split (for bootstrap intervals)
    decision_threshold  the validation-chosen threshold the accuracies used (threshold="validation"), or null
    device, threads   where it ran: the device, and torch's CPU threads (they change float sums)
    split_sizes       volumes in the train, val and test splits the run used
    provenance        versions, training_digest, platform, finished_at

A stored record stands for a config only if :func:`stale_reasons` finds nothing: the same settings
(outside the fields that only say where a run runs), the same training code
(:func:`das.provenance.training_digest`), the same torch, the same device type and, on CPU, the
same thread count.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import warnings
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from das.metrics import METRICS
from das.provenance import machine, training_digest, versions
from das.samplers import METHODS

if TYPE_CHECKING:
    from das.config import TrainConfig
    from das.train import TrainResult

SCHEMA_VERSION = 2


def result_path(results_dir: str | Path, profile: str, dataset: str, method: str, seed: int) -> Path:
    """Where the JSON of one run lives: ``<results_dir>/<profile>/<dataset>/<method>/seed<N>.json``."""
    return Path(results_dir) / profile / dataset / method / f"seed{seed}.json"


def checkpoint_path(results_dir: str | Path, profile: str, dataset: str, method: str, seed: int) -> Path:
    """Where a run in progress keeps its per-epoch checkpoint (under ``<profile>/checkpoints/``)."""
    return Path(results_dir) / profile / "checkpoints" / dataset / method / f"seed{seed}.pt"


def make_record(group: str, result: TrainResult) -> dict[str, Any]:
    """The JSON record of a finished run stored under ``group`` (see the module docstring)."""
    config = result.config
    return {
        "schema": SCHEMA_VERSION,
        "group": group,
        "dataset": config.dataset,
        "method": config.method,
        "seed": config.seed,
        **result.record(),
        "provenance": {
            "versions": versions(),
            "training_digest": training_digest(),
            "platform": machine(),
            "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        },
    }


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def validate_record(record: Any) -> list[str]:
    """What is wrong with a stored record (empty when it is a valid record of schema
    :data:`SCHEMA_VERSION`): missing or mistyped fields, metrics out of range, a config that
    :class:`~das.config.TrainConfig` rejects, a history that disagrees with ``epochs_run``."""
    from das.config import TrainConfig

    if not isinstance(record, dict):
        return [f"not a JSON object but {type(record).__name__}"]
    if record.get("schema") != SCHEMA_VERSION:
        return [f"schema {record.get('schema')!r}, expected {SCHEMA_VERSION} (written by an older version?)"]
    problems = []
    kinds = {
        "group": str,
        "dataset": str,
        "method": str,
        "seed": int,
        "config": dict,
        "metrics": dict,
        "val_metrics": dict,
        "epochs_run": int,
        "best_epoch": int,
        "stopped_early": bool,
        "history": list,
        "timings": dict,
        "num_frames": int,
        "k": int,
        "device": str,
        "threads": int,
        "provenance": dict,
    }
    for key, kind in kinds.items():
        if not isinstance(record.get(key), kind) or (kind is int and isinstance(record.get(key), bool)):
            problems.append(f"{key} missing or not a {kind.__name__}")
    if problems:
        return problems
    for name in METRICS:
        value = record["metrics"].get(name, "missing")
        if value is not None and not (_number(value) and 0.0 <= value <= 1.0):
            problems.append(f"metrics.{name} is {value!r}, not a number in [0, 1] or null")
    try:
        config = TrainConfig.from_dict(record["config"])
    except (TypeError, ValueError) as error:
        return [*problems, f"config invalid: {error}"]
    for key in ("dataset", "method", "seed"):
        if record[key] != getattr(config, key):
            problems.append(f"{key} {record[key]!r} differs from config.{key} {getattr(config, key)!r}")
    epochs = [entry.get("epoch") if isinstance(entry, dict) else None for entry in record["history"]]
    if epochs != list(range(1, len(epochs) + 1)) or record["epochs_run"] != len(epochs):
        problems.append(f"history holds epochs {epochs} but epochs_run is {record['epochs_run']}")
    elif record["epochs_run"] > config.epochs or (
        not record["stopped_early"] and record["epochs_run"] != config.epochs
    ):
        problems.append(
            f"epochs_run {record['epochs_run']} does not fit config.epochs {config.epochs} "
            f"(stopped_early {record['stopped_early']})"
        )
    if not 1 <= record["best_epoch"] <= max(record["epochs_run"], 1):
        problems.append(f"best_epoch {record['best_epoch']} outside 1..{record['epochs_run']}")
    if not 1 <= record["k"] <= record["num_frames"]:
        problems.append(f"k {record['k']} outside 1..num_frames {record['num_frames']}")
    predictions = record.get("test_predictions")
    if predictions is not None and not isinstance(predictions, dict):
        problems.append("test_predictions is not an object of labels and probs")
    elif predictions is not None:
        labels, probs = predictions.get("labels"), predictions.get("probs")
        if not isinstance(labels, list) or not isinstance(probs, list) or len(labels) != len(probs):
            problems.append("test_predictions needs lists labels [N] and probs [N, C] of one length")
    return problems


def stale_reasons(record: dict[str, Any], config: TrainConfig) -> list[str]:
    """Why a stored ``record`` does not stand for a run of ``config`` (empty: it does). The one check
    every sweep, chapter and command uses before reading a run back instead of training it."""
    from das.config import resolve_device

    problems = validate_record(record)
    if problems:
        return [f"invalid record: {problem}" for problem in problems]
    reasons = [f"setting {name} differs" for name in config.differences(record["config"])]
    if record["provenance"].get("training_digest") != training_digest():
        reasons.append("the training code changed since it ran")
    ran_with = record["provenance"].get("versions", {}).get("torch")
    if ran_with != versions()["torch"]:
        reasons.append(f"it ran with torch {ran_with}, this is torch {versions()['torch']}")
    device = resolve_device(config.device).type
    stored_device = record["device"].split(":")[0]
    if stored_device != device:
        reasons.append(f"it ran on {stored_device}, this run would run on {device}")
    elif device == "cpu":
        import torch

        threads = config.num_threads or torch.get_num_threads()
        if record["threads"] != threads:
            reasons.append(f"it ran with {record['threads']} CPU threads, this run would use {threads}")
    return reasons


def _strict(value: Any) -> Any:
    """Replace NaN/Inf by None (JSON null) recursively; leave everything else as is."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _strict(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict(item) for item in value]
    return value


def write_json_atomic(path: str | Path, record: dict[str, Any]) -> Path:
    """Write ``record`` as JSON to ``path`` atomically: a temporary file in the same folder, then
    ``os.replace``, so a reader (or an interrupted sweep) never sees a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(_strict(record), indent=2, sort_keys=True, allow_nan=False)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False) as tmp:
        tmp.write(text + "\n")
        tmp.flush()
        os.fsync(tmp.fileno())
    os.replace(tmp.name, path)
    return path


class DamagedRecordWarning(UserWarning):
    """A stored record that is not valid JSON or not a valid record was skipped (the message names it)."""


def read_record(path: str | Path) -> tuple[dict[str, Any] | None, list[str]]:
    """``(record, [])`` for a valid stored record at ``path``, else ``(None, problems)``."""
    try:
        record = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        return None, [f"unreadable ({type(error).__name__}: {error})"]
    problems = validate_record(record)
    return (None, problems) if problems else (record, [])


def load_runs(results_dir: str | Path, group: str) -> list[dict[str, Any]]:
    """Every valid record stored directly under ``group`` (``<group>/<dataset>/<method>/seed<N>.json``),
    each with its file under ``"path"``. A damaged one is skipped with a :class:`DamagedRecordWarning`
    naming the file and what is wrong."""
    root = Path(results_dir) / group
    runs = []
    for path in sorted(root.glob("*/*/seed*.json")):
        record, problems = read_record(path)
        if record is None:
            warnings.warn(f"{path}: not a valid run record, skipped: {problems[0]}", DamagedRecordWarning, stacklevel=2)
            continue
        record["path"] = str(path)
        runs.append(record)
    return runs


def _method_key(methods: Iterable[str]) -> list[int]:
    return [METHODS.index(m) if m in METHODS else len(METHODS) for m in methods]


def setting_key(config: dict[str, Any]) -> str:
    """What makes runs of one config comparable seeds of each other: the config without its seed and
    the fields that only say where a run ran, as canonical JSON."""
    from das.config import RUN_LOCAL_FIELDS, TrainConfig

    values = {**TrainConfig.default_dict(), **config}
    return json.dumps(
        {k: v for k, v in values.items() if k != "seed" and k not in RUN_LOCAL_FIELDS}, sort_keys=True, default=str
    )


def _setting_labels(keys: pd.Series) -> list[str]:
    """For the settings of one (dataset, method): ``""`` if there is one, else the fields that tell
    them apart (``ratio=0.25, max_train_samples=16``)."""
    settings = {key: json.loads(key) for key in keys.unique()}
    if len(settings) == 1:
        return [""] * len(keys)
    varying = sorted(
        {field for a in settings.values() for b in settings.values() for field in a if a[field] != b.get(field)}
    )
    return [", ".join(f"{field}={settings[key][field]}" for field in varying) for key in keys]


def summary(results_dir: str | Path = "results", profile: str = "quick") -> pd.DataFrame:
    """:func:`summarize` of the valid records stored under ``profile`` (damaged ones are left out,
    with a warning; see :func:`load_runs`)."""
    return summarize(load_runs(results_dir, profile))


def summarize(records: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """Mean and standard deviation (ddof=1; NaN for one seed) over seeds, one row per (dataset,
    method, setting): runs of different settings are never averaged together.

    Columns: ``dataset``, ``method``, ``setting`` (empty when a method has one setting, else the
    fields that tell its settings apart), ``n_seeds``, ``ratio``, ``k``, ``num_frames``, then
    ``<metric>_mean``/``<metric>_std`` for ``balanced_accuracy``, ``auc``, ``accuracy``, and the means of
    ``informative_hit_rate`` (synthetic data only, else NaN), ``epochs_run``,
    ``throughput_frames_per_s`` and ``flops_per_volume``. Rows are sorted by dataset, then method in
    :data:`METHODS`. No records give an empty frame with these columns.
    """
    rows = []
    for run in records:
        row = {
            "dataset": run["dataset"],
            "method": run["method"],
            "key": setting_key(run["config"]),
            "seed": run["seed"],
            "ratio": run["config"]["ratio"],
            "k": run["k"],
            "num_frames": run["num_frames"],
            "epochs_run": run["epochs_run"],
            "throughput_frames_per_s": run["timings"].get("throughput_frames_per_s"),
            "flops_per_volume": run.get("flops_per_volume"),
        }
        row.update({name: run["metrics"].get(name) for name in METRICS})
        row["informative_hit_rate"] = run["metrics"].get("informative_hit_rate")
        rows.append(row)
    metric_cols = [f"{name}_{stat}" for name in METRICS for stat in ("mean", "std")]
    columns = [
        "dataset",
        "method",
        "setting",
        "n_seeds",
        "ratio",
        "k",
        "num_frames",
        *metric_cols,
        "informative_hit_rate_mean",
        "epochs_run_mean",
        "throughput_frames_per_s_mean",
        "flops_per_volume_mean",
    ]
    if not rows:
        return pd.DataFrame(columns=columns)
    runs = pd.DataFrame(rows)
    for name in (*METRICS, "informative_hit_rate", "throughput_frames_per_s", "flops_per_volume"):
        runs[name] = pd.to_numeric(runs[name], errors="coerce")  # JSON null (undefined AUC) -> NaN
    runs["setting"] = ""
    for _, index in runs.groupby(["dataset", "method"], sort=False).groups.items():
        runs.loc[index, "setting"] = _setting_labels(runs.loc[index, "key"])
    grouped = runs.groupby(["dataset", "method", "key"], sort=False)
    table = grouped.agg(
        setting=("setting", "first"),
        n_seeds=("seed", "nunique"),
        ratio=("ratio", "first"),
        k=("k", "first"),
        num_frames=("num_frames", "first"),
        **{f"{name}_{stat}": (name, stat) for name in METRICS for stat in ("mean", "std")},
        informative_hit_rate_mean=("informative_hit_rate", "mean"),
        epochs_run_mean=("epochs_run", "mean"),
        throughput_frames_per_s_mean=("throughput_frames_per_s", "mean"),
        flops_per_volume_mean=("flops_per_volume", "mean"),
    ).reset_index()
    table["order"] = _method_key(table["method"])
    return table.sort_values(["dataset", "order", "setting"])[columns].reset_index(drop=True)


NBSP = "\u00a0"  # keeps "0.748 ± 0.030" and "[0.687, 0.803]" on one line in a table cell


def number(value: float, digits: int = 3, signed: bool = False) -> str:
    """``value`` rounded to ``digits`` decimals, with its sign when ``signed``; never ``-0.000``
    (a difference that rounds to zero is zero), and ``-`` for NaN (a value nobody measured)."""
    if value != value:  # NaN
        return "-"
    rounded = round(float(value), digits) + 0.0  # adding 0.0 turns -0.0 into 0.0
    return f"{rounded:{'+' if signed else ''}.{digits}f}"


def mean_std(mean: float, std: float, digits: int = 3) -> str:
    """``mean ± std`` on one line: ``mean`` alone when ``std`` is NaN (one seed), ``-`` when ``mean``
    is NaN."""
    text = number(mean, digits)
    return text if std != std or text == "-" else f"{text}{NBSP}±{NBSP}{number(std, digits)}"


def interval(low: float, high: float, digits: int = 3, signed: bool = False) -> str:
    """``[low, high]`` on one line, each end as :func:`number` writes it."""
    return f"[{number(low, digits, signed)},{NBSP}{number(high, digits, signed)}]"


def format_summary(table: pd.DataFrame) -> pd.DataFrame:
    """The summary for people: one ``mean ± std`` column per metric (percent for accuracies, ``-``
    where nothing was measured), as :func:`mean_std` writes it, so a rendered table never wraps a cell."""

    def cell(mean: float, std: float, scale: float, digits: int) -> str:
        return mean_std(mean * scale, std * scale, digits)

    out = table[["dataset", "method", "n_seeds"]].rename(columns={"n_seeds": "seeds"})
    if table["setting"].astype(bool).any():  # some method has runs of more than one setting
        out.insert(2, "setting", table["setting"])
    for name, scale, digits, label in (
        ("balanced_accuracy", 100.0, 1, "bal. acc. (%)"),
        ("auc", 1.0, 3, "AUC"),
        ("accuracy", 100.0, 1, "acc. (%)"),
    ):
        out[label] = [cell(m, s, scale, digits) for m, s in zip(table[f"{name}_mean"], table[f"{name}_std"])]
    if table["informative_hit_rate_mean"].notna().any():  # synthetic datasets in the table
        out["informative kept (%)"] = [cell(m, float("nan"), 100.0, 1) for m in table["informative_hit_rate_mean"]]
    return out


def write_summary(results_dir: str | Path = "results", profile: str = "quick") -> tuple[pd.DataFrame, Path, Path]:
    """Write ``<profile>/summary.csv`` (numbers) and ``<profile>/summary.md`` (``mean ± std``);
    returns the numeric table and the two paths."""
    table = summary(results_dir, profile)
    root = Path(results_dir) / profile
    root.mkdir(parents=True, exist_ok=True)
    csv_path, md_path = root / "summary.csv", root / "summary.md"
    table.to_csv(csv_path, index=False)
    md_path.write_text(format_summary(table).to_markdown(index=False) + "\n")
    return table, csv_path, md_path
