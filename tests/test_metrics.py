"""Classification metrics (das.metrics): AUC conventions, undefined cases, bad input, and the
selection statistics."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from das.metrics import UndefinedAUCWarning, auc, classification_metrics, informative_hit_rate, selection_histogram


def test_binary_auc_scores_the_positive_class() -> None:
    y = np.array([0, 1, 1, 0, 1])
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7], [0.1, 0.9]])
    assert auc(y, probs) == pytest.approx(roc_auc_score(y, probs[:, 1]))
    metrics = classification_metrics(y, probs)
    assert metrics["accuracy"] == pytest.approx(3 / 5)
    assert metrics["balanced_accuracy"] == pytest.approx((1 / 2 + 2 / 3) / 2)


def test_multiclass_auc_is_one_vs_rest_macro() -> None:
    rng = np.random.default_rng(0)
    y = np.arange(30) % 3
    probs = rng.dirichlet(np.ones(3), size=30).astype(np.float32)
    expected = np.mean([roc_auc_score(y == c, probs[:, c]) for c in range(3)])
    assert auc(y, probs) == pytest.approx(expected)


def test_auc_with_a_class_absent_is_nan_with_a_warning() -> None:
    y = np.array([0, 1, 0, 1])
    probs = np.full((4, 3), 1 / 3)
    with pytest.warns(UndefinedAUCWarning, match="class\\(es\\) \\[2\\] absent"):
        assert np.isnan(auc(y, probs))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedAUCWarning)
        assert np.isnan(classification_metrics(y, probs)["auc"])


def test_metrics_reject_mismatched_shapes_and_labels() -> None:
    with pytest.raises(ValueError, match="shape"):
        classification_metrics(np.array([0, 1]), np.ones((3, 2)) / 2)
    with pytest.raises(ValueError, match="y_true values"):
        classification_metrics(np.array([0, 2]), np.ones((2, 2)) / 2)


def test_selection_histogram_counts_positions() -> None:
    assert selection_histogram(np.array([[0, 2], [2, 3]]), 5) == [1, 0, 2, 1, 0]
    with pytest.raises(ValueError, match="indices must lie"):
        selection_histogram(np.array([[5]]), 5)


def test_informative_hit_rate_counts_inputs_with_an_informative_pick() -> None:
    informative = np.array([[True, False, False], [False, False, True]])
    assert informative_hit_rate(np.array([[0, 1], [0, 1]]), informative) == 0.5
    assert informative_hit_rate(np.array([[0], [2]]), informative) == 1.0


def test_the_balanced_threshold_maximises_balanced_accuracy() -> None:
    from das.metrics import balanced_threshold

    y = np.array([0, 0, 0, 0, 0, 0, 1, 1])
    p1 = np.array([0.05, 0.1, 0.15, 0.2, 0.25, 0.4, 0.3, 0.35])  # the positives score low, but above most
    probs = np.stack([1 - p1, p1], axis=1)
    assert classification_metrics(y, probs)["balanced_accuracy"] == 0.5  # arg-max: all negative
    threshold = balanced_threshold(y, probs)
    assert 0.25 < threshold <= 0.3
    assert classification_metrics(y, probs, threshold)["balanced_accuracy"] == pytest.approx((5 / 6 + 1) / 2)
    assert classification_metrics(y, probs, threshold)["auc"] == classification_metrics(y, probs)["auc"]
    with pytest.raises(ValueError, match="needs two classes"):
        balanced_threshold(np.array([0, 1, 2]), np.eye(3))


def test_bootstrap_metrics_use_the_runs_threshold() -> None:
    from das.stats import batch_metrics

    rng = np.random.default_rng(0)
    y = (rng.random(50) < 0.3).astype(int)
    p1 = rng.random(50)
    probs = np.stack([1 - p1, p1], axis=1)
    got = batch_metrics(y[None], probs[None], 0.2)
    assert got["balanced_accuracy"][0] == pytest.approx(classification_metrics(y, probs, 0.2)["balanced_accuracy"])
