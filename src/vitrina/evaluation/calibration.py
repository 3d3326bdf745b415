"""How well predicted probabilities match observed rates (pCTR, review sentiment)."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["calibration"]

_EPS = 1e-6


def calibration(p: np.ndarray, y: np.ndarray, bins: int = 10) -> dict[str, Any]:
    """Reliability curve (mean predicted probability, observed rate, count per non-empty bin; bins
    span 0..max(p), so that small probabilities such as CTRs get resolution) and the expected
    calibration error."""
    p, y = np.asarray(p, dtype=float), np.asarray(y, dtype=float)
    top = max(float(p.max()), _EPS) if len(p) else 1.0
    slot = np.minimum((p / top * bins).astype(int), bins - 1)
    curve = {"mean_pctr": [], "click_rate": [], "count": []}
    ece = 0.0
    for b in range(bins):
        inside = slot == b
        if inside.any():
            mean_p, rate, n = float(p[inside].mean()), float(y[inside].mean()), int(inside.sum())
            curve["mean_pctr"].append(mean_p)
            curve["click_rate"].append(rate)
            curve["count"].append(n)
            ece += n / len(p) * abs(mean_p - rate)
    return {"ece": ece, "curve": curve}
