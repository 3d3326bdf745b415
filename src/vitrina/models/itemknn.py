"""Item-based kNN with cosine similarity over training co-occurrence (Sarwar et al., 2001)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from vitrina.data.snapshot import Snapshot
from vitrina.models.base import Recommender, register


def top_k_rows(m: sp.csr_matrix, k: int) -> sp.csr_matrix:
    """Keep the k largest entries of every row of a CSR matrix."""
    m = m.tocsr()
    lengths = np.diff(m.indptr)
    if lengths.max(initial=0) <= k:
        return m
    rows = np.repeat(np.arange(m.shape[0]), lengths)
    # Sort each row's entries by value, descending, then keep the first k of each row.
    order = np.lexsort((-m.data, rows))
    rank = np.arange(len(order)) - np.repeat(m.indptr[:-1], lengths)
    keep = order[rank < k]
    return sp.csr_matrix((m.data[keep], (rows[keep], m.indices[keep])), shape=m.shape)


@register
class ItemKNN(Recommender):
    """score(u, j) = sum over u's training items i of sim(i, j), keeping each item's top neighbours."""

    name = "itemknn"

    def __init__(self, neighbours: int = 100, shrink: float = 10.0, seed: int = 0) -> None:
        super().__init__(seed=seed, neighbours=neighbours, shrink=shrink)
        self.neighbours, self.shrink = int(neighbours), float(shrink)

    def _fit(self, data: Snapshot) -> None:
        x = data.train.astype(np.float32)
        co = (x.T @ x).tocsr()
        norms = np.sqrt(np.asarray(x.sum(axis=0)).ravel())
        co.setdiag(0)
        co.eliminate_zeros()
        coo = co.tocoo()
        coo.data = coo.data / (norms[coo.row] * norms[coo.col] + self.shrink)
        self.sim = top_k_rows(coo.tocsr(), self.neighbours).astype(np.float32)

    def _score(self, users: np.ndarray) -> torch.Tensor:
        assert self.seen is not None
        return torch.from_numpy((self.seen[users] @ self.sim).toarray())

    def observe(self, events: sp.csr_matrix) -> None:
        """New (user, item) events join the users' histories: later scores sum their neighbours too
        (the similarities stay as trained)."""
        self._add_seen(events)

    def _state(self) -> dict[str, np.ndarray]:
        return {"data": self.sim.data, "indices": self.sim.indices, "indptr": self.sim.indptr}

    def _load_state(self, state: dict[str, np.ndarray]) -> None:
        n = len(state["indptr"]) - 1
        self.sim = sp.csr_matrix((state["data"], state["indices"], state["indptr"]), shape=(n, n))
