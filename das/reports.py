"""Tables the book's chapters draw from run records: training curves, protocol comparisons and Table 1
with its intervals. Every function takes records (:mod:`das.results`) and returns a DataFrame; the
chapters only format and plot them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from das.samplers import METHODS
from das.stats import bootstrap_table

CURVE_COLUMNS: tuple[str, ...] = ("train_loss", "val_loss", "val_auc", "val_balanced_accuracy")


def curves(records: Sequence[dict[str, Any]], label: str = "group") -> pd.DataFrame:
    """One row per (run, epoch): ``label`` (a record field naming the run's group), ``method``,
    ``seed``, ``epoch``, the :data:`CURVE_COLUMNS`, ``lr`` and ``best`` (the epoch the run selected)."""
    rows = []
    for record in records:
        for entry in record["history"]:
            row = {label: record[label], "method": record["method"], "seed": record["seed"], "epoch": entry["epoch"]}
            row.update({name: entry.get(name, np.nan) for name in (*CURVE_COLUMNS, "lr")})
            row["best"] = entry["epoch"] == record["best_epoch"]
            rows.append(row)
    return pd.DataFrame(rows)


def last_epochs_mean(records: Sequence[dict[str, Any]], column: str = "val_auc", last: int = 5) -> pd.Series:
    """Per record (indexed like ``records``), the mean of ``column`` over its last ``last`` epochs: the
    level a protocol settles at, free of the optimism of picking its best epoch."""
    return pd.Series([float(np.nanmean([e.get(column, np.nan) for e in r["history"][-last:]])) for r in records])


def protocol_table(records: Sequence[dict[str, Any]], last: int = 5) -> pd.DataFrame:
    """One row per candidate protocol (the records' ``group``) and method, from the validation split
    only: ``n_seeds``; the selected epoch's validation AUC and balanced accuracy (means over seeds) and
    their minimum over seeds; the validation AUC averaged over the last ``last`` epochs."""
    frame = pd.DataFrame(
        {
            "protocol": [r["group"].split("/")[-1] for r in records],
            "method": [r["method"] for r in records],
            "seed": [r["seed"] for r in records],
            "selected_epoch": [r["best_epoch"] for r in records],
            "val_auc": [r["val_metrics"].get("auc") for r in records],
            "val_balanced_accuracy": [r["val_metrics"].get("balanced_accuracy") for r in records],
            "val_auc_last": last_epochs_mean(records, "val_auc", last),
        }
    )
    table = (
        frame.groupby(["protocol", "method"], sort=False)
        .agg(
            n_seeds=("seed", "nunique"),
            selected_epoch=("selected_epoch", "mean"),
            val_auc=("val_auc", "mean"),
            val_balanced_accuracy=("val_balanced_accuracy", "mean"),
            min_val_balanced_accuracy=("val_balanced_accuracy", "min"),
            val_auc_last=("val_auc_last", "mean"),
        )
        .reset_index()
    )
    table["order"] = [METHODS.index(m) if m in METHODS else len(METHODS) for m in table["method"]]
    return table.sort_values(["protocol", "order"], kind="stable").drop(columns="order").reset_index(drop=True)


def protocol_ranking(records: Sequence[dict[str, Any]], last: int = 5) -> pd.DataFrame:
    """Candidates ranked by the validation AUC of their last ``last`` epochs, averaged over methods and
    seeds, with its standard error over runs, the lowest selected-epoch validation balanced
    accuracy of any run (whether every method beat the majority class) and the mean training loss
    of the last epoch (the loss each run optimised: class-weighted where the candidate weights)."""
    scores = last_epochs_mean(records, "val_auc", last)
    frame = pd.DataFrame(
        {
            "protocol": [r["group"].split("/")[-1] for r in records],
            "score": scores,
            "val_auc": [r["val_metrics"].get("auc") for r in records],
            "val_balanced_accuracy": [r["val_metrics"].get("balanced_accuracy") for r in records],
            "train_loss": [r["history"][-1].get("train_loss", np.nan) if r["history"] else np.nan for r in records],
        }
    )
    ranking = frame.groupby("protocol", sort=False).agg(
        runs=("score", "size"),
        val_auc_last=("score", "mean"),
        val_auc_last_se=("score", lambda s: s.std(ddof=1) / np.sqrt(len(s)) if len(s) > 1 else np.nan),
        val_auc_selected=("val_auc", "mean"),
        min_val_balanced_accuracy=("val_balanced_accuracy", "min"),
        train_loss_last=("train_loss", "mean"),
    )
    return ranking.sort_values("val_auc_last", ascending=False).reset_index()


def table1(records: Sequence[dict[str, Any]], *, reference: str = "das", num_draws: int = 2000, seed: int = 0):
    """Table 1 of one dataset and setting with bootstrap intervals and paired differences to
    ``reference`` (:func:`das.stats.bootstrap_table`), rows in :data:`METHODS`."""
    table, differences = bootstrap_table(records, reference=reference, num_draws=num_draws, seed=seed)
    order = {m: i for i, m in enumerate(METHODS)}
    table = table.sort_values("method", key=lambda s: s.map(order), kind="stable").reset_index(drop=True)
    if not differences.empty:
        differences = differences.sort_values("method", key=lambda s: s.map(order), kind="stable").reset_index(
            drop=True
        )
    return table, differences


def choose_protocol(ranking: pd.DataFrame, simplest_first: Sequence[str]) -> str:
    """The protocol to use, from :func:`protocol_ranking`: the first of ``simplest_first`` whose
    score is within one standard error of the best score (the best one itself when nothing is close)."""
    best = ranking.iloc[0]
    margin = 0.0 if np.isnan(best["val_auc_last_se"]) else best["val_auc_last_se"]
    close = set(ranking.loc[ranking["val_auc_last"] >= best["val_auc_last"] - margin, "protocol"])
    return next(name for name in simplest_first if name in close)
