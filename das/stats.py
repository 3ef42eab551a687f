"""Uncertainty of a results table: bootstrap intervals over test volumes and seeds, and paired
differences between methods, from the test predictions stored in each run's record.

One bootstrap draw resamples, with replacement, the seeds and the test volumes. The same volumes are
used for every seed and method of the draw, so that methods are compared on the same test set. Every
resampled (method, seed) run's metric is recomputed from its stored predictions and averaged over the
resampled seeds. The 95% interval is the 2.5th to 97.5th percentile of the draws (percentile
bootstrap, numpy and scipy). A paired difference uses the same draws for both methods and pairs runs
by seed, so that what the two methods share (the test set, the seed's data order) cancels.

Metrics are recomputed as :mod:`das.metrics` defines them: AUC of the positive class for two classes,
one-vs-rest macro AUC otherwise; balanced accuracy (mean recall over the classes present); accuracy;
with the run's own decision threshold where it has one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from das.metrics import METRICS, predictions

CONFIDENCE = 0.95


def _binary_auc(positive: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Row-wise ROC AUC (Mann-Whitney, ties counted half): ``positive`` bool ``[B, N]``, ``scores [B, N]``."""
    ranks = rankdata(scores, axis=1)
    pos = positive.sum(axis=1)
    neg = positive.shape[1] - pos
    with np.errstate(invalid="ignore", divide="ignore"):
        return ((ranks * positive).sum(axis=1) - pos * (pos + 1) / 2) / (pos * neg)


def batch_metrics(labels: np.ndarray, probs: np.ndarray, threshold: float | None = None) -> dict[str, np.ndarray]:
    """The metrics of :data:`das.metrics.METRICS` for each row of ``labels [B, N]`` and ``probs [B, N, C]``
    (NaN where a row lacks a class the metric needs); predictions as :func:`das.metrics.predictions`."""
    num_classes = probs.shape[-1]
    pred = predictions(probs, threshold)
    if num_classes == 2:
        auc = _binary_auc(labels == 1, probs[..., 1])
    else:
        auc = np.mean([_binary_auc(labels == c, probs[..., c]) for c in range(num_classes)], axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        recalls = np.stack(
            [((pred == c) & (labels == c)).sum(axis=1) / (labels == c).sum(axis=1) for c in range(num_classes)], axis=1
        )
        balanced = np.nanmean(np.where(np.isfinite(recalls), recalls, np.nan), axis=1)
    return {"balanced_accuracy": balanced, "auc": auc, "accuracy": (pred == labels).mean(axis=1)}


def _predictions(record: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    stored = record.get("test_predictions")
    if not stored:
        raise ValueError(
            f"run {record.get('path', record.get('dataset'))} has no stored test predictions "
            "(records before they were stored cannot be bootstrapped)"
        )
    return np.asarray(stored["labels"], dtype=np.int64), np.asarray(stored["probs"], dtype=np.float64)


def _draws(
    runs: dict[str, dict[int, dict[str, Any]]], seeds: Sequence[int], num_draws: int, rng: np.random.Generator
) -> dict[str, dict[str, np.ndarray]]:
    """Per method and metric, ``[num_draws]`` bootstrap means over resampled seeds and test volumes."""
    labels0, _ = _predictions(next(iter(next(iter(runs.values())).values())))
    volume_draws = rng.integers(0, len(labels0), size=(num_draws, len(labels0)))
    seed_draws = rng.integers(0, len(seeds), size=(num_draws, len(seeds)))
    out: dict[str, dict[str, np.ndarray]] = {}
    for method, by_seed in runs.items():
        per_seed = []
        for seed in seeds:
            labels, probs = _predictions(by_seed[seed])
            if not np.array_equal(labels, labels0):
                raise ValueError(f"{method} seed {seed} was tested on other volumes than the other runs")
            threshold = by_seed[seed].get("decision_threshold")
            per_seed.append(batch_metrics(labels[volume_draws], probs[volume_draws], threshold))
        out[method] = {
            name: np.nanmean(
                np.stack([per_seed[j][name] for j in range(len(seeds))], axis=1)[
                    np.arange(num_draws)[:, None], seed_draws
                ],
                axis=1,
            )
            for name in METRICS
        }
    return out


def _metric(record: dict[str, Any], name: str) -> float:
    value = record["metrics"].get(name)
    return float("nan") if value is None else float(value)


def _interval(values: np.ndarray) -> tuple[float, float]:
    tail = 100 * (1 - CONFIDENCE) / 2
    low, high = np.nanpercentile(values, [tail, 100 - tail])
    return float(low), float(high)


def _by_method_and_seed(records: Sequence[dict[str, Any]]) -> dict[str, dict[int, dict[str, Any]]]:
    """``{method: {seed: record}}``; ``ValueError`` when two records claim one method and seed (two
    settings in one table row would be averaged as if they were seeds)."""
    runs: dict[str, dict[int, dict[str, Any]]] = {}
    for record in records:
        by_seed = runs.setdefault(record["method"], {})
        if record["seed"] in by_seed:
            raise ValueError(
                f"two runs of {record['method']} with seed {record['seed']} "
                f"({by_seed[record['seed']].get('path', '?')} and {record.get('path', '?')}): "
                "one table row must hold runs of one setting"
            )
        by_seed[record["seed"]] = record
    return runs


def bootstrap_table(
    records: Sequence[dict[str, Any]], *, reference: str = "das", num_draws: int = 2000, seed: int = 0
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Intervals for the runs of one dataset and setting (one record per method and seed).

    Returns ``(table, differences)``. ``table``: one row per method with ``n_seeds`` and, per metric,
    ``<metric>_mean`` and ``<metric>_std`` over seeds (on the whole test set) and the bootstrap
    ``<metric>_low``/``<metric>_high``. ``differences``: one row per other method with the paired
    ``reference`` minus that method over their common seeds: ``<metric>_diff`` and its interval.
    """
    runs = _by_method_and_seed(records)
    rng = np.random.default_rng(seed)
    rows = []
    for method, by_seed in runs.items():
        seeds = sorted(by_seed)
        draws = _draws({method: by_seed}, seeds, num_draws, rng)[method]
        row: dict[str, Any] = {"method": method, "n_seeds": len(seeds)}
        for name in METRICS:
            values = np.array([_metric(by_seed[s], name) for s in seeds])
            row[f"{name}_mean"] = float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")
            row[f"{name}_std"] = float(np.nanstd(values, ddof=1)) if np.isfinite(values).sum() > 1 else float("nan")
            row[f"{name}_low"], row[f"{name}_high"] = _interval(draws[name])
        rows.append(row)
    diffs = []
    if reference in runs:
        for method, by_seed in runs.items():
            if method == reference:
                continue
            common = sorted(set(by_seed) & set(runs[reference]))
            if not common:
                continue
            draws = _draws({reference: runs[reference], method: by_seed}, common, num_draws, rng)
            row = {"method": method, "n_seeds": len(common)}
            for name in METRICS:
                paired = np.array([_metric(runs[reference][s], name) - _metric(by_seed[s], name) for s in common])
                mean = np.nanmean(paired) if np.isfinite(paired).any() else float("nan")
                row[f"{name}_diff"] = float(mean)
                row[f"{name}_low"], row[f"{name}_high"] = _interval(draws[reference][name] - draws[method][name])
            diffs.append(row)
    return pd.DataFrame(rows), pd.DataFrame(diffs)
