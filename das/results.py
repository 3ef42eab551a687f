"""The results store: one JSON file per run, written atomically, and the summary over seeds.

Layout under ``results_dir`` (default ``results/``)::

    <profile>/<dataset>/<method>/seed<N>.json          one finished run (config, metrics, timings, ...)
    <profile>/checkpoints/<dataset>/<method>/seed<N>.pt  per-epoch checkpoint of a run in progress
    <profile>/summary.csv, <profile>/summary.md          written by :func:`write_summary`

A run's JSON appears only once the run has finished (temporary file, then ``os.replace``), so its
presence is what a sweep checks to skip work; the checkpoint is deleted once the JSON is written.
Non-finite floats (e.g. an undefined AUC) are stored as ``null`` so the files stay strict JSON.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from das.metrics import METRICS

# Display order of methods in tables: baselines first, then learnable samplers, ours last.
METHOD_ORDER: tuple[str, ...] = ("full", "random", "uniform", "dps", "adps", "das")


def result_path(results_dir: str | Path, profile: str, dataset: str, method: str, seed: int) -> Path:
    """Where the JSON of one run lives: ``<results_dir>/<profile>/<dataset>/<method>/seed<N>.json``."""
    return Path(results_dir) / profile / dataset / method / f"seed{seed}.json"


def checkpoint_path(results_dir: str | Path, profile: str, dataset: str, method: str, seed: int) -> Path:
    """Where a run in progress keeps its per-epoch checkpoint (under ``<profile>/checkpoints/``)."""
    return Path(results_dir) / profile / "checkpoints" / dataset / method / f"seed{seed}.pt"


def package_digest() -> str:
    """Hash of every source file of the ``das`` package: a notebook's output or a benchmark's figures
    depend on all of them."""
    package = Path(__file__).parent
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        digest.update(path.relative_to(package.parent).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def versions() -> dict[str, str]:
    """Versions that decide the numbers: python, torch, torchvision, numpy, scikit-learn, das."""
    import numpy
    import sklearn
    import torch
    import torchvision

    import das

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "numpy": numpy.__version__,
        "sklearn": sklearn.__version__,
        "das": das.__version__,
    }


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
    os.replace(tmp.name, path)
    return path


def load_runs(results_dir: str | Path, profile: str) -> list[dict[str, Any]]:
    """Every finished run of ``profile``: the JSON records, each with its file under ``"path"``."""
    root = Path(results_dir) / profile
    runs = []
    for path in sorted(root.glob("*/*/seed*.json")):
        record = json.loads(path.read_text())
        record["path"] = str(path)
        runs.append(record)
    return runs


def _method_key(methods: Iterable[str]) -> list[int]:
    return [METHOD_ORDER.index(m) if m in METHOD_ORDER else len(METHOD_ORDER) for m in methods]


def summary(results_dir: str | Path = "results", profile: str = "quick") -> pd.DataFrame:
    """Mean and standard deviation (ddof=1; NaN for one seed) over seeds, per (dataset, method).

    Columns: ``dataset``, ``method``, ``n_seeds``, ``ratio``, ``k``, ``num_frames``, then
    ``<metric>_mean``/``<metric>_std`` for ``balanced_accuracy``, ``auc``, ``accuracy``, and the means of
    ``informative_hit_rate`` (synthetic data only, else NaN), ``epochs_run``,
    ``throughput_frames_per_s`` and ``flops_per_volume``. Rows are sorted by dataset,
    then method in :data:`METHOD_ORDER`. An empty store gives an empty frame with these columns.
    """
    rows = []
    for run in load_runs(results_dir, profile):
        row = {
            "dataset": run["dataset"],
            "method": run["method"],
            "seed": run["seed"],
            "ratio": run["config"]["ratio"],
            "k": run["k"],
            "num_frames": run["num_frames"],
            "epochs_run": run["epochs_run"],
            "throughput_frames_per_s": run["timings"]["throughput_frames_per_s"],
            "flops_per_volume": run["flops_per_volume"],
        }
        row.update({name: run["metrics"][name] for name in METRICS})
        row["informative_hit_rate"] = run["metrics"].get("informative_hit_rate")
        rows.append(row)
    metric_cols = [f"{name}_{stat}" for name in METRICS for stat in ("mean", "std")]
    columns = ["dataset", "method", "n_seeds", "ratio", "k", "num_frames", *metric_cols,
               "informative_hit_rate_mean", "epochs_run_mean", "throughput_frames_per_s_mean", "flops_per_volume_mean"]
    if not rows:
        return pd.DataFrame(columns=columns)
    runs = pd.DataFrame(rows)
    for name in (*METRICS, "informative_hit_rate"):  # JSON null (undefined AUC, real data) -> NaN
        runs[name] = pd.to_numeric(runs[name], errors="coerce")
    grouped = runs.groupby(["dataset", "method"], sort=False)
    table = grouped.agg(
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
    return table.sort_values(["dataset", "order"])[columns].reset_index(drop=True)


def format_summary(table: pd.DataFrame) -> pd.DataFrame:
    """The summary for people: one ``mean ± std`` column per metric (percent for accuracies)."""

    def cell(mean: float, std: float, scale: float, digits: int) -> str:
        if pd.isna(mean):
            return "n/a"
        if pd.isna(std):
            return f"{mean * scale:.{digits}f}"
        return f"{mean * scale:.{digits}f} ± {std * scale:.{digits}f}"

    out = table[["dataset", "method", "n_seeds"]].copy()
    for name, scale, digits, label in (
        ("balanced_accuracy", 100.0, 1, "balanced acc. (%)"),
        ("auc", 1.0, 3, "AUC"),
        ("accuracy", 100.0, 1, "accuracy (%)"),
    ):
        out[label] = [cell(m, s, scale, digits) for m, s in zip(table[f"{name}_mean"], table[f"{name}_std"])]
    if table["informative_hit_rate_mean"].notna().any():  # synthetic datasets in the table
        out["informative picked (%)"] = [cell(m, float("nan"), 100.0, 1) for m in table["informative_hit_rate_mean"]]
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
