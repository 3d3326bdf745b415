"""Content kNN: items similar in content to what the user already has (the cold-start fallback).

score(u, i) = Σ_{j ∈ history(u)} s(j, i), where s keeps each item's `neighbours` most similar items
by fused content cosine. Fused similarity of two items is the weighted mean, over the modalities
both items have, of that modality's cosine (masks, not zeros: a missing photo neither helps nor
hurts). Needs no interactions to score an item, so new items are recommendable as soon as their
content is known, and a session of items is a user.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp
import torch

from vitrina.data.snapshot import Snapshot
from vitrina.models.base import register
from vitrina.models.content import MultimodalRecommender, masked_normalize
from vitrina.search.similar import blockwise_topk


def fused_knn(
    content: dict[str, tuple[torch.Tensor, torch.Tensor]], weights: dict[str, float], k: int
) -> sp.csr_matrix:
    """Top-`k` fused-cosine neighbours of every item (itself excluded) as a sparse [n, n] matrix.

    `content[m]` = (features, mask); per pair, the modalities both items have are averaged with
    their `weights`. Computed in row blocks (`blockwise_topk`), never n × n.
    """
    normed = {m: (masked_normalize(x, mask), mask.float()) for m, (x, mask) in content.items()}
    n = next(iter(normed.values()))[0].shape[0]

    def score_rows(start: int, stop: int) -> torch.Tensor:
        num = torch.zeros(stop - start, n)
        den = torch.zeros(stop - start, n)
        for m, (x, mask) in normed.items():
            w = float(weights.get(m, 1.0))
            num += w * (x[start:stop] @ x.T)
            den += w * torch.outer(mask[start:stop], mask)
        sim = torch.where(den > 0, num / den.clamp(min=1e-12), torch.full_like(num, -torch.inf))
        sim[torch.arange(stop - start), torch.arange(start, stop)] = -torch.inf
        return sim

    values, cols = blockwise_topk(score_rows, n, n, min(k, n - 1))
    keep = torch.isfinite(values) & (values > 0)
    rows = torch.arange(n).unsqueeze(1).expand_as(cols)
    return sp.csr_matrix(
        (values[keep].numpy().astype(np.float32), (rows[keep].numpy(), cols[keep].numpy())), shape=(n, n)
    )


@register
class ContentKNN(MultimodalRecommender):
    name = "content-knn"

    def __init__(
        self,
        neighbours: int = 100,
        weights: dict[str, float] | None = None,
        modalities: Sequence[str] | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(modalities=modalities, seed=seed, neighbours=int(neighbours), weights=dict(weights or {}))
        self.neighbours = int(neighbours)
        self.weights = dict(weights or {})
        self.sim: sp.csr_matrix | None = None

    def _fit(self, data: Snapshot) -> None:
        self.select_content(data, require=True)
        self._build()

    def _build(self) -> None:
        self.sim = fused_knn({m: x.tensor() for m, x in self.content.items()}, self.weights, self.neighbours)

    def _score(self, users: np.ndarray) -> torch.Tensor:
        assert self.seen is not None and self.sim is not None
        return torch.from_numpy(np.asarray((self.seen[users] @ self.sim).todense(), dtype=np.float32))

    def session_scores(self, item_indices: Sequence[int]) -> np.ndarray:
        idx = np.asarray(item_indices, dtype=np.int64)
        if len(idx) == 0:
            return super().session_scores(idx)
        assert self.sim is not None
        return np.asarray(self.sim[idx].sum(axis=0), dtype=np.float32).ravel()

    def _items_added(self, n_new: int) -> None:
        self._build()

    def _state(self) -> dict[str, np.ndarray]:
        return self.content_state()

    def _load_state(self, state: dict[str, np.ndarray]) -> None:
        self.load_content(state)
        self._build()
