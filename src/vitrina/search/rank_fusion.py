"""Merging the ranked lists of several retrievers (lexical, semantic, image, ...) into one.

Reciprocal-rank fusion (Cormack et al., SIGIR 2009) uses ranks only, so a BM25 score and a cosine
need no common scale: item score = Σ_r w_r / (k + rank_r). Weighted score fusion min-max scales
each list's scores to [0, 1] first and sums them with the weights; it keeps how far ahead the top
hit was, which ranks alone lose. An item missing from a list gets nothing from it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

__all__ = ["FUSIONS", "fuse", "minmax"]

FUSIONS = ("rrf", "weighted")
Ranked = Sequence[tuple[str, float]]


def minmax(scores: np.ndarray) -> np.ndarray:
    """Scores scaled to [0, 1]; a list of equal scores maps to all ones (every hit counts fully)."""
    scores = np.asarray(scores, dtype=np.float64)
    if not len(scores):
        return scores
    lo, hi = scores.min(), scores.max()
    return np.ones_like(scores) if hi - lo < 1e-12 else (scores - lo) / (hi - lo)


def fuse(
    lists: Mapping[str, Ranked], weights: Mapping[str, float], method: str = "rrf", rrf_k: float = 60.0
) -> list[tuple[str, float]]:
    """One ranked (item id, fused score) list, best first; ties keep the first list's order."""
    if method not in FUSIONS:
        raise ValueError(f"unknown fusion {method!r}; known: {', '.join(FUSIONS)}")
    totals: dict[str, float] = {}
    for name, ranked in lists.items():
        weight = float(weights.get(name, 1.0))
        if weight == 0 or not ranked:
            continue
        if method == "rrf":
            contributions = weight / (rrf_k + np.arange(1, len(ranked) + 1))
        else:
            contributions = weight * minmax(np.array([s for _, s in ranked]))
        for (item, _), c in zip(ranked, contributions, strict=True):
            totals[item] = totals.get(item, 0.0) + float(c)
    return sorted(totals.items(), key=lambda kv: -kv[1])
