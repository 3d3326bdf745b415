"""Top-k similar items from item vectors, the item itself excluded.

Every item-to-item list in Vitrina is a dot product between a query-side vector of the item and
item-side vectors of the candidates (cosine when both are L2-normalised; a weighted sum of several
cosines when normalised modalities are concatenated with square-root weights), plus an optional
per-candidate bias (e.g. popularity). The query side may differ from the item side (a two-tower
model that maps "what was bought" and "what goes with it" apart), so both can be given.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

__all__ = ["blockwise_topk", "similar_items"]

# Elements in one block of scores (float32: 128 MB), whatever the catalogue size.
_BLOCK_ELEMENTS = 1 << 25


def blockwise_topk(
    score_rows: Callable[[int, int], torch.Tensor], n_rows: int, n_cols: int, k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-`k` (values, column indices) of every row of an n_rows × n_cols score matrix that is
    never held whole: `score_rows(start, stop)` gives the rows start..stop-1, in blocks of about
    128 MB. Every neighbour list in Vitrina (similar items, content kNN, FREEDOM's item graph) runs
    on this."""
    k = min(k, n_cols)
    block = max(1, min(4096, _BLOCK_ELEMENTS // max(1, n_cols)))
    values, indices = [], []
    for start in range(0, n_rows, block):
        best = torch.topk(score_rows(start, min(start + block, n_rows)), k, dim=1)
        values.append(best.values)
        indices.append(best.indices)
    if not values:
        return torch.zeros(0, k), torch.zeros(0, k, dtype=torch.long)
    return torch.cat(values), torch.cat(indices)


def similar_items(
    vectors: np.ndarray,
    rows: np.ndarray | list[int],
    k: int = 10,
    candidates: np.ndarray | None = None,
    query_vectors: np.ndarray | None = None,
    bias: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """For each item row in `rows`, the `k` rows of `vectors` with the highest score, best first.

    score(q, c) = query_vectors[q] · vectors[c] + bias[c] (`query_vectors` defaults to `vectors`).
    The query item is never its own neighbour; `candidates` (item rows) restricts the answer to a
    candidate set. Returns (item rows [len(rows), k], scores); when fewer than k candidates exist
    the tail is padded with row -1 and score -inf. Computed in blocks of queries (`blockwise_topk`).
    """
    items = torch.from_numpy(np.ascontiguousarray(vectors, dtype=np.float32))
    queries = items if query_vectors is None else torch.from_numpy(np.ascontiguousarray(query_vectors, np.float32))
    if queries.shape != items.shape:
        raise ValueError(f"query_vectors have shape {tuple(queries.shape)} but vectors {tuple(items.shape)}")
    n = items.shape[0]
    rows_t = torch.as_tensor(np.asarray(rows, dtype=np.int64))
    if rows_t.ndim != 1 or (len(rows_t) and (rows_t.min() < 0 or rows_t.max() >= n)):
        raise ValueError(f"rows must be a 1-D array of item rows in 0..{n - 1}")
    extra = torch.zeros(n)
    if bias is not None:
        if np.shape(bias) != (n,):
            raise ValueError(f"bias needs one value per item ({n}), got shape {np.shape(bias)}")
        extra = torch.as_tensor(np.asarray(bias, dtype=np.float32))
    if candidates is not None:
        allowed = torch.zeros(n, dtype=torch.bool)
        allowed[torch.as_tensor(np.asarray(candidates, dtype=np.int64))] = True
        extra = torch.where(allowed, extra, torch.tensor(-torch.inf))

    def score_rows(start: int, stop: int) -> torch.Tensor:
        q = rows_t[start:stop]
        scores = queries[q] @ items.T + extra
        scores[torch.arange(len(q)), q] = -torch.inf
        return scores

    values, indices = blockwise_topk(score_rows, len(rows_t), n, k)
    k_eff = values.shape[1]
    top_rows = np.full((len(rows_t), k), -1, dtype=np.int64)
    top_scores = np.full((len(rows_t), k), -np.inf, dtype=np.float32)
    top_rows[:, :k_eff] = torch.where(torch.isfinite(values), indices, -1).numpy()
    top_scores[:, :k_eff] = values.numpy()
    return top_rows, top_scores
