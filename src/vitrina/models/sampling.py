"""Pairwise training data: (user, positive, negative) triples drawn uniformly, vectorised."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import scipy.sparse as sp


class PairSampler:
    """One epoch = every training pair once, in a random order, each with one sampled negative.

    Negatives are drawn uniformly from the items the user has not interacted with in training
    (rejection sampling over the whole epoch at once, so no Python loop per pair).
    """

    def __init__(self, train: sp.csr_matrix, batch_size: int, seed: int) -> None:
        coo = train.tocoo()
        self.users = coo.row.astype(np.int64)
        self.items = coo.col.astype(np.int64)
        self.n_items = train.shape[1]
        self.keys = np.sort(self.users * self.n_items + self.items)
        self.batch_size = batch_size
        self.rng = np.random.default_rng(seed)
        full = np.diff(train.indptr) >= self.n_items
        if full.any():
            raise ValueError(f"{int(full.sum())} user(s) interacted with every item: no negative to sample")

    def __len__(self) -> int:
        return -(-len(self.users) // self.batch_size)

    def _is_positive(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        keys = users * self.n_items + items
        pos = np.searchsorted(self.keys, keys)
        pos = np.minimum(pos, len(self.keys) - 1)
        return self.keys[pos] == keys

    def negatives(self, users: np.ndarray) -> np.ndarray:
        neg = self.rng.integers(0, self.n_items, len(users))
        bad = np.flatnonzero(self._is_positive(users, neg))
        while len(bad):
            neg[bad] = self.rng.integers(0, self.n_items, len(bad))
            bad = bad[self._is_positive(users[bad], neg[bad])]
        return neg

    def epoch(self) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        order = self.rng.permutation(len(self.users))
        users, items = self.users[order], self.items[order]
        negs = self.negatives(users)
        for s in range(0, len(users), self.batch_size):
            yield (
                users[s : s + self.batch_size],
                items[s : s + self.batch_size],
                negs[s : s + self.batch_size],
            )
