"""Implicit-feedback ALS (Hu, Koren & Volinsky, 2008) from the `implicit` library.

Each ALS sweep counts as one epoch, so the same early stopping on validation applies.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
from implicit.cpu.als import AlternatingLeastSquares
from threadpoolctl import threadpool_limits

from vitrina.data.snapshot import Snapshot
from vitrina.models.base import Recommender, register


@register
class ALS(Recommender):
    name = "als"
    user_rows = ("user_factors",)
    iterative = True

    def __init__(self, factors: int = 64, regularization: float = 0.01, alpha: float = 10.0, seed: int = 0) -> None:
        super().__init__(seed=seed, factors=factors, regularization=regularization, alpha=alpha)
        self.factors, self.regularization, self.alpha = int(factors), float(regularization), float(alpha)

    def _init_training(self, data: Snapshot) -> None:
        with threadpool_limits(1, "blas"):  # implicit checks the BLAS thread count here
            self.model = AlternatingLeastSquares(
                factors=self.factors,
                regularization=self.regularization,
                alpha=self.alpha,
                iterations=1,
                random_state=self.seed,
            )
        self.train = data.train.astype(np.float32)

    def _train_epoch(self, epoch: int) -> None:
        # implicit keeps existing factors between fit() calls, so one call is one more sweep.
        # Its own threads do the work; a multi-threaded BLAS underneath would only contend.
        with threadpool_limits(1, "blas"):
            self.model.fit(self.train, show_progress=False)
        self._load_state({"user_factors": self.model.user_factors, "item_factors": self.model.item_factors})

    def observe(self, events: sp.csr_matrix) -> None:
        """New (user, item) events join the shoppers' histories and ALS's user step runs again for
        them against the trained item factors (implicit's `recalculate_user`, exact for ALS), so
        later scores use them without retraining; item factors and other shoppers stay as trained."""
        self._add_seen(events)
        assert self.seen is not None
        users = np.unique(events.tocoo().row)
        if not len(users):
            return
        with threadpool_limits(1, "blas"):
            solver = AlternatingLeastSquares(
                factors=self.factors, regularization=self.regularization, alpha=self.alpha, random_state=self.seed
            )
            solver.item_factors = self.item_factors.numpy()
            self.user_factors[torch.from_numpy(users)] = torch.from_numpy(
                solver.recalculate_user(users, self.seen[users])
            )

    def _score(self, users: np.ndarray) -> torch.Tensor:
        return self.user_factors[torch.from_numpy(users)] @ self.item_factors.T

    def _state(self) -> dict[str, np.ndarray]:
        return {
            "user_factors": self.user_factors.numpy().copy(),
            "item_factors": self.item_factors.numpy().copy(),
        }

    def _load_state(self, state: dict[str, np.ndarray]) -> None:
        self.user_factors = torch.from_numpy(np.ascontiguousarray(state["user_factors"], dtype=np.float32))
        self.item_factors = torch.from_numpy(np.ascontiguousarray(state["item_factors"], dtype=np.float32))
