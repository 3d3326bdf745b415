"""Predicted click-through rate: a classifier on logged impressions, calibrated, with its metrics.

The auction multiplies bids by pCTR, so the probabilities themselves must be right, not only their
order: after fitting, an isotonic map from raw scores to observed click rates is learned on a
validation slice of the logs (never the evaluation slice). Kinds: "logistic" (standardised
logistic regression) and "gbdt" (histogram gradient boosting); `bench ads` compares them.

Metrics: AUC (ranking), log loss (probabilities), expected calibration error (ECE: the
impression-weighted gap between mean pCTR and click rate over equal-width pCTR bins, here 10
bins on [0, max pCTR]) and the reliability curve behind it.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss, roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from vitrina.evaluation.calibration import calibration

__all__ = ["CTR_KINDS", "CtrModel", "calibration", "ctr_metrics"]

CTR_KINDS = ("logistic", "gbdt")
_EPS = 1e-6


def ctr_metrics(p: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    p = np.clip(np.asarray(p, dtype=float), _EPS, 1 - _EPS)
    cal = calibration(p, y)
    return {
        "auc": float(roc_auc_score(y, p)),
        "logloss": float(log_loss(y, p)),
        "ece": cal["ece"],
        "mean_pctr": float(p.mean()),
        "click_rate": float(np.mean(y)),
        "reliability": cal["curve"],
    }


@dataclass
class CtrModel:
    kind: str = "logistic"
    seed: int = 0
    params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in CTR_KINDS:
            raise ValueError(f"unknown pCTR model {self.kind!r}; known: {', '.join(CTR_KINDS)}")
        self._model: Any = None
        self._calibrator: IsotonicRegression | None = None

    def fit(self, x: np.ndarray, y: np.ndarray, x_valid: np.ndarray, y_valid: np.ndarray) -> CtrModel:
        """Fit on (x, y) and calibrate on (x_valid, y_valid)."""
        x, y = _check(x, y, "training"), np.asarray(y, dtype=int)
        x_valid, y_valid = _check(x_valid, y_valid, "validation"), np.asarray(y_valid, dtype=int)
        if self.kind == "logistic":
            self._model = make_pipeline(
                StandardScaler(), LogisticRegression(C=self.params.get("C", 1.0), max_iter=1000)
            )
        else:
            self._model = HistGradientBoostingClassifier(
                learning_rate=self.params.get("learning_rate", 0.1),
                max_iter=self.params.get("max_iter", 200),
                max_leaf_nodes=self.params.get("max_leaf_nodes", 31),
                early_stopping=True,
                random_state=self.seed,
            )
        self._model.fit(x, y)
        self._calibrator = IsotonicRegression(y_min=_EPS, y_max=1 - _EPS, out_of_bounds="clip")
        self._calibrator.fit(self.raw(x_valid), y_valid)
        return self

    def raw(self, x: np.ndarray) -> np.ndarray:
        """The classifier's own probability, before calibration."""
        if self._model is None:
            raise RuntimeError("call fit() or load() first")
        return self._model.predict_proba(np.asarray(x, dtype=float))[:, 1]

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Calibrated click probability per row."""
        raw = self.raw(x)
        return self._calibrator.predict(raw) if self._calibrator is not None else raw

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        state = {"kind": self.kind, "seed": self.seed, "params": self.params}
        state |= {"model": self._model, "calibrator": self._calibrator}
        path.write_bytes(pickle.dumps(state))
        return path

    @classmethod
    def load(cls, path: str | Path) -> CtrModel:
        state = pickle.loads(Path(path).read_bytes())
        model = cls(state["kind"], state["seed"], state["params"])
        model._model, model._calibrator = state["model"], state["calibrator"]
        return model


def _check(x: np.ndarray, y: np.ndarray, what: str) -> np.ndarray:
    x = np.asarray(x, dtype=float)
    if x.ndim != 2 or len(x) != len(y):
        raise ValueError(f"{what} features must be [rows, features] with one label per row, got {x.shape}, {len(y)}")
    if not np.isfinite(x).all():
        raise ValueError(f"{what} features contain NaN or infinity")
    if len(np.unique(y)) < 2:
        raise ValueError(f"{what} labels need both clicks and non-clicks")
    return x
