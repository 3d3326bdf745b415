"""Ranking metrics computed from a hit matrix, one row per user, vectorised over users.

`hits[u, r]` is 1.0 when the item ranked r (0-based) for user u is one of u's positives and
`n_pos[u]` is the number of positives. Each function returns one value per user at cut-off k;
the evaluator averages over users that have at least one positive.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def _cut(hits: torch.Tensor, k: int) -> torch.Tensor:
    return hits[:, :k]


def recall(hits: torch.Tensor, n_pos: torch.Tensor, k: int) -> torch.Tensor:
    """Hits in the top k over all of the user's positives (MMRec: not capped at k)."""
    return _cut(hits, k).sum(1) / n_pos


def precision(hits: torch.Tensor, n_pos: torch.Tensor, k: int) -> torch.Tensor:
    return _cut(hits, k).sum(1) / k


def hit_rate(hits: torch.Tensor, n_pos: torch.Tensor, k: int) -> torch.Tensor:
    return (_cut(hits, k).sum(1) > 0).float()


def ndcg(hits: torch.Tensor, n_pos: torch.Tensor, k: int) -> torch.Tensor:
    """Binary gains; the ideal DCG places min(n_pos, k) positives at the top."""
    h = _cut(hits, k)
    discount = 1.0 / torch.log2(torch.arange(2, h.shape[1] + 2, dtype=torch.float32))
    dcg = (h * discount).sum(1)
    ideal_cum = torch.cumsum(discount, 0)
    n_ideal = torch.clamp(n_pos, max=h.shape[1]).long()
    return dcg / ideal_cum[n_ideal - 1]


def mrr(hits: torch.Tensor, n_pos: torch.Tensor, k: int) -> torch.Tensor:
    """Reciprocal rank of the first hit within the top k (0 when there is none)."""
    h = _cut(hits, k)
    first = torch.argmax(h, dim=1)
    found = h.sum(1) > 0
    return torch.where(found, 1.0 / (first.float() + 1.0), torch.zeros_like(n_pos))


def average_precision(hits: torch.Tensor, n_pos: torch.Tensor, k: int) -> torch.Tensor:
    """Sum of precision at each hit position, over min(n_pos, k) (the MMRec MAP)."""
    h = _cut(hits, k)
    prec_at = torch.cumsum(h, 1) / torch.arange(1, h.shape[1] + 1, dtype=torch.float32)
    return (prec_at * h).sum(1) / torch.clamp(n_pos, max=h.shape[1])


MetricFn = Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]
RANKING_METRICS: dict[str, MetricFn] = {
    "recall": recall,
    "ndcg": ndcg,
    "precision": precision,
    "map": average_precision,
    "hit": hit_rate,
    "mrr": mrr,
}
