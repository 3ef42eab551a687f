"""Classification metrics (scikit-learn) and the histogram of selected frame positions.

AUC as the paper reports it: binary tasks score the positive class (column 1); multi-class tasks use the
one-vs-rest macro average. AUC is undefined when a class never occurs in ``y_true`` (no positives for
its one-vs-rest curve): we then return NaN and emit an :class:`UndefinedAUCWarning` naming the absent
classes, instead of averaging over a subset of classes, which would not be comparable across runs.
"""

from __future__ import annotations

import warnings

import numpy as np
from numpy.typing import ArrayLike
from sklearn.metrics import accuracy_score, balanced_accuracy_score, roc_auc_score

METRICS: tuple[str, ...] = ("balanced_accuracy", "auc", "accuracy")


class UndefinedAUCWarning(UserWarning):
    """AUC was returned as NaN because some class is absent from ``y_true``."""


def _check(y_true: ArrayLike, probs: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true)
    p = np.asarray(probs, dtype=np.float64)
    if y.ndim != 1 or p.ndim != 2 or p.shape[0] != y.shape[0] or p.shape[1] < 2:
        raise ValueError(
            f"need y_true of shape [N] and probs of shape [N, num_classes >= 2], got {y.shape} and {p.shape}"
        )
    if y.size == 0:
        raise ValueError("y_true is empty: metrics need at least one sample")
    if y.min() < 0 or y.max() >= p.shape[1]:
        raise ValueError(f"y_true values must lie in [0, {p.shape[1] - 1}], got range [{y.min()}, {y.max()}]")
    return y, p


def auc(y_true: ArrayLike, probs: ArrayLike) -> float:
    """ROC AUC: positive-class probability when binary, one-vs-rest macro when multi-class; NaN (with
    an :class:`UndefinedAUCWarning`) if a class is absent from ``y_true``."""
    y, p = _check(y_true, probs)
    num_classes = p.shape[1]
    absent = sorted(set(range(num_classes)) - set(y.tolist()))
    if absent:
        warnings.warn(
            f"AUC undefined: class(es) {absent} absent from y_true ({y.size} samples); returning NaN",
            UndefinedAUCWarning,
            stacklevel=2,
        )
        return float("nan")
    if num_classes == 2:
        return float(roc_auc_score(y, p[:, 1]))
    # Renormalise in float64: sklearn insists the rows sum to 1 and float32 softmax can miss by 1e-7.
    p = p / p.sum(axis=1, keepdims=True)
    return float(roc_auc_score(y, p, multi_class="ovr", average="macro", labels=list(range(num_classes))))


def predictions(probs: np.ndarray, threshold: float | None = None) -> np.ndarray:
    """The predicted class of each row of ``probs [N, C]``: the arg-max class, or for two classes with
    a ``threshold``, class 1 where its probability is at least ``threshold``."""
    if threshold is None:
        return probs.argmax(axis=-1)
    if probs.shape[-1] != 2:
        raise ValueError(f"a decision threshold needs two classes, got {probs.shape[-1]}")
    return (probs[..., 1] >= threshold).astype(np.int64)


def balanced_threshold(y_true: ArrayLike, probs: ArrayLike) -> float:
    """The threshold on the positive class's probability that maximises the balanced accuracy of
    ``probs [N, 2]`` against ``y_true`` (midpoints between the sorted scores; among equally good
    thresholds, the middle one). Chosen on validation, applied to test: the arg-max of a model
    trained on imbalanced classes leans to the majority class, which balanced accuracy punishes."""
    y, p = _check(y_true, probs)
    if p.shape[1] != 2:
        raise ValueError(f"a decision threshold needs two classes, got {p.shape[1]}")
    scores = np.unique(p[:, 1])
    candidates = np.concatenate([[0.0], (scores[:-1] + scores[1:]) / 2, [np.nextafter(scores[-1], 2.0)]])
    positives, negatives = max(int((y == 1).sum()), 1), max(int((y == 0).sum()), 1)
    predicted = p[:, 1][None, :] >= candidates[:, None]
    balanced = ((predicted & (y == 1)).sum(1) / positives + (~predicted & (y == 0)).sum(1) / negatives) / 2
    best = np.flatnonzero(balanced == balanced.max())
    return float(candidates[best[len(best) // 2]])


def classification_metrics(y_true: ArrayLike, probs: ArrayLike, threshold: float | None = None) -> dict[str, float]:
    """``balanced_accuracy``, ``auc`` and ``accuracy`` of class probabilities ``probs [N, C]``; the
    prediction is the arg-max class, or with ``threshold`` (two classes) see :func:`predictions`."""
    y, p = _check(y_true, probs)
    pred = predictions(p, threshold)
    with warnings.catch_warnings():
        # balanced accuracy warns when a predicted class is absent from y_true; its value is still defined.
        warnings.simplefilter("ignore", UserWarning)
        balanced = float(balanced_accuracy_score(y, pred))
    return {"balanced_accuracy": balanced, "auc": auc(y, p), "accuracy": float(accuracy_score(y, pred))}


def selection_histogram(indices: ArrayLike, num_frames: int) -> list[int]:
    """How often each frame position ``0..num_frames-1`` was selected: counts over all rows of
    ``indices`` (``[N, k]`` positions picked per input)."""
    flat = np.asarray(indices, dtype=np.int64).ravel()
    if flat.size and (flat.min() < 0 or flat.max() >= num_frames):
        raise ValueError(f"indices must lie in [0, {num_frames - 1}], got range [{flat.min()}, {flat.max()}]")
    return np.bincount(flat, minlength=num_frames).tolist()


def informative_hit_rate(indices: ArrayLike, informative: ArrayLike) -> float:
    """Fraction of inputs for which at least one selected frame is informative (synthetic data, whose
    ``informative [N, T]`` marks the frames carrying the label); ``indices [N, k]`` as picked."""
    picks = np.asarray(indices, dtype=np.int64)
    mask = np.asarray(informative, dtype=bool)
    if picks.ndim != 2 or mask.ndim != 2 or picks.shape[0] != mask.shape[0]:
        raise ValueError(f"need indices [N, k] and informative [N, T], got {picks.shape} and {mask.shape}")
    return float(np.take_along_axis(mask, picks, axis=1).any(axis=1).mean())
