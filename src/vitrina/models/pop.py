"""Most popular items in training: the baseline every personalised model must beat."""

from __future__ import annotations

import numpy as np
import torch

from vitrina.data.snapshot import Snapshot
from vitrina.models.base import Recommender, register


@register
class Popularity(Recommender):
    name = "pop"

    def _fit(self, data: Snapshot) -> None:
        self.counts = torch.from_numpy(np.asarray(data.train.sum(axis=0), dtype=np.float32).ravel())

    def _score(self, users: np.ndarray) -> torch.Tensor:
        return self.counts.unsqueeze(0).repeat(len(users), 1)

    def _state(self) -> dict[str, np.ndarray]:
        return {"counts": self.counts.numpy()}

    def _load_state(self, state: dict[str, np.ndarray]) -> None:
        self.counts = torch.from_numpy(state["counts"])
