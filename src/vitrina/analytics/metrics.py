"""Classification metrics from label arrays: accuracy, macro-F1, top-k accuracy, per-class report.

Everything derives from one confusion matrix over an explicit class list, so the figures in a
benchmark's JSON, its table and its plot cannot disagree. Macro-F1 averages over the classes that
occur in the truth or the predictions (scikit-learn's default), so a class absent from a fold does
not count as a zero.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["classification_report", "confusion_matrix", "top_k_accuracy"]


def _codes(values: Sequence[Any] | np.ndarray, index: dict[str, int], what: str) -> np.ndarray:
    out = np.array([index.get(str(v), -1) for v in values], dtype=np.int64)
    if (out < 0).any():
        raise ValueError(f"{what} holds label {values[int(np.flatnonzero(out < 0)[0])]!r} missing from the class list")
    return out


def confusion_matrix(
    y_true: Sequence[Any] | np.ndarray, y_pred: Sequence[Any] | np.ndarray, classes: Sequence[str]
) -> np.ndarray:
    """counts[i, j]: items of true class `classes[i]` predicted as `classes[j]`."""
    if len(y_true) != len(y_pred):
        raise ValueError(f"y_true has {len(y_true)} labels but y_pred has {len(y_pred)}")
    index = {str(c): i for i, c in enumerate(classes)}
    t, p = _codes(y_true, index, "y_true"), _codes(y_pred, index, "y_pred")
    counts = np.zeros((len(classes), len(classes)), dtype=np.int64)
    np.add.at(counts, (t, p), 1)
    return counts


def top_k_accuracy(y_true: Sequence[Any] | np.ndarray, proba: np.ndarray, classes: Sequence[str], k: int) -> float:
    """Share of items whose true class is among the k most probable columns of `proba`.
    A true label outside `classes` (a class the model never saw) is a miss."""
    proba = np.asarray(proba)
    if proba.shape != (len(y_true), len(classes)):
        raise ValueError(f"proba must be [{len(y_true)}, {len(classes)}], got {list(proba.shape)}")
    if not len(y_true):
        return float("nan")
    index = {str(c): i for i, c in enumerate(classes)}
    t = np.array([index.get(str(v), -1) for v in y_true])
    top = np.argsort(-proba, axis=1, kind="stable")[:, :k]
    return float(((top == t[:, None]) & (t[:, None] >= 0)).any(axis=1).mean())


def classification_report(
    y_true: Sequence[Any] | np.ndarray, y_pred: Sequence[Any] | np.ndarray, classes: Sequence[str]
) -> dict[str, Any]:
    """{"accuracy", "macro_f1", "per_class": {class: {precision, recall, f1, support}}, "n"}.

    Precision (recall) of a class never predicted (never present) is 0, as its F1 is.
    """
    counts = confusion_matrix(y_true, y_pred, classes)
    tp = np.diag(counts).astype(np.float64)
    predicted, support = counts.sum(0), counts.sum(1)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    seen = (support > 0) | (predicted > 0)
    n = int(counts.sum())
    return {
        "n": n,
        "accuracy": float(tp.sum() / n) if n else float("nan"),
        "macro_f1": float(f1[seen].mean()) if seen.any() else float("nan"),
        "per_class": {
            str(c): {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, c in enumerate(classes)
            if seen[i]
        },
    }
