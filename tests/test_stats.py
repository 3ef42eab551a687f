"""Bootstrap intervals and paired differences (das.stats) against scikit-learn and known cases."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, balanced_accuracy_score, roc_auc_score

from das.metrics import classification_metrics
from das.stats import batch_metrics, bootstrap_table


@pytest.mark.parametrize("num_classes", [2, 3])
def test_batch_metrics_equal_scikit_learn_row_by_row(num_classes: int) -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, num_classes, size=(5, 60))
    probs = rng.dirichlet(np.ones(num_classes), size=(5, 60))
    probs[..., 0] = np.round(probs[..., 0], 1)  # ties, which AUC counts half
    probs /= probs.sum(axis=-1, keepdims=True)
    got = batch_metrics(labels, probs)
    for row in range(5):
        expected = classification_metrics(labels[row], probs[row])
        for name in expected:
            assert got[name][row] == pytest.approx(expected[name], abs=1e-12), name
    assert got["accuracy"][0] == accuracy_score(labels[0], probs[0].argmax(-1))
    assert got["balanced_accuracy"][0] == pytest.approx(balanced_accuracy_score(labels[0], probs[0].argmax(-1)))
    if num_classes == 2:
        assert got["auc"][0] == pytest.approx(roc_auc_score(labels[0], probs[0, :, 1]))


def record(method: str, seed: int, labels: np.ndarray, probs: np.ndarray) -> dict:
    return {
        "method": method,
        "seed": seed,
        "metrics": classification_metrics(labels, probs),
        "test_predictions": {"labels": labels.tolist(), "probs": probs.tolist()},
    }


def noisy(labels: np.ndarray, noise: float, rng: np.random.Generator) -> np.ndarray:
    score = np.clip(labels + rng.normal(0, noise, labels.shape), -3, 4)
    p1 = 1 / (1 + np.exp(-(score - 0.5) * 3))
    return np.stack([1 - p1, p1], axis=1)


def test_intervals_hold_the_mean_and_a_better_method_wins_its_paired_difference() -> None:
    rng = np.random.default_rng(1)
    labels = (rng.random(300) < 0.25).astype(int)
    records = [record("das", s, labels, noisy(labels, 0.5, rng)) for s in range(5)]
    records += [record("uniform", s, labels, noisy(labels, 1.5, rng)) for s in range(5)]
    table, diffs = bootstrap_table(records, num_draws=500)
    for _, row in table.iterrows():
        for name in ("auc", "balanced_accuracy", "accuracy"):
            assert row[f"{name}_low"] <= row[f"{name}_mean"] <= row[f"{name}_high"]
    [row] = diffs.to_dict("records")
    assert row["method"] == "uniform" and row["n_seeds"] == 5
    assert row["auc_diff"] > 0 and row["auc_low"] > 0  # the interval excludes no difference


def test_a_method_against_its_own_copy_differs_by_exactly_nothing() -> None:
    rng = np.random.default_rng(2)
    labels = (rng.random(100) < 0.3).astype(int)
    runs = [record("das", s, labels, noisy(labels, 1.0, rng)) for s in range(3)]
    copies = [{**r, "method": "copy"} for r in runs]
    _, diffs = bootstrap_table(runs + copies, num_draws=200)
    [row] = diffs.to_dict("records")
    assert row["auc_diff"] == row["auc_low"] == row["auc_high"] == 0.0


def test_more_test_volumes_give_a_narrower_interval() -> None:
    rng = np.random.default_rng(3)
    widths = []
    for n in (60, 600):
        labels = (rng.random(n) < 0.3).astype(int)
        table, _ = bootstrap_table([record("das", s, labels, noisy(labels, 1.0, rng)) for s in range(3)], num_draws=400)
        widths.append(float(table["auc_high"].iloc[0] - table["auc_low"].iloc[0]))
    assert widths[1] < widths[0] / 2


def test_records_without_predictions_are_refused_by_name() -> None:
    with pytest.raises(ValueError, match="no stored test predictions"):
        bootstrap_table([{"method": "das", "seed": 0, "dataset": "x", "metrics": {}}])
