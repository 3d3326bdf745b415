"""VBPR (He & McAuley, AAAI 2016): BPR whose items also have a learned projection of their content.

score(u, i) = [γ_u, θ_u] · [γ_i, E c_i], trained with BPR exactly like `bpr` (MMRec's form: user and
item vectors are the concatenation of an ID part and a content part). With several modalities the
content part is the mean of per-modality projections E_m x_m over the modalities the item has
(masks, not zeros). An item without training interactions has no ID part, so cold items are
scored by content alone instead of by an untrained random vector.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from vitrina.data.snapshot import Snapshot
from vitrina.models.base import register
from vitrina.models.bpr import BPR, squared_norm
from vitrina.models.content import MultimodalRecommender


@register
class VBPR(BPR, MultimodalRecommender):
    name = "vbpr"
    user_rows = ("user_emb", "user_theta")

    def __init__(
        self,
        embedding_dim: int = 64,
        content_dim: int | None = None,
        learning_rate: float = 1e-3,
        reg_weight: float = 0.1,
        batch_size: int = 2048,
        modalities: Sequence[str] | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(embedding_dim, learning_rate, reg_weight, batch_size, seed)
        self.modalities = None if modalities is None else [str(m) for m in modalities]
        self.content_dim = int(content_dim or embedding_dim)
        self.params.update(modalities=self.modalities, content_dim=self.content_dim)

    def _init_training(self, data: Snapshot) -> None:
        super()._init_training(data)
        self.select_content(data, require=True)
        gen = torch.Generator().manual_seed(self.seed + 1)
        self.has_history = torch.from_numpy(np.diff(data.train.tocsc().indptr) > 0)
        self.user_theta = nn.Parameter(torch.randn(data.n_users, self.content_dim, generator=gen) * 0.01)
        self.proj = nn.ModuleDict({m: nn.Linear(x.dim, self.content_dim) for m, x in self.content.items()})
        params = [self.user_emb, self.item_emb, self.user_theta, *self.proj.parameters()]
        self.optimizer = torch.optim.Adam(params, lr=self.lr)

    def _item_content(self) -> torch.Tensor:
        """Mean of the per-modality projections over the modalities each item has."""
        total, count = None, None
        for m, inputs in self.content.items():
            x, mask = inputs.tensor()
            part = self.proj[m](x) * mask.unsqueeze(1)
            total = part if total is None else total + part
            count = mask.float() if count is None else count + mask.float()
        assert total is not None and count is not None
        return total / count.clamp(min=1).unsqueeze(1)

    def _final_embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        items = torch.cat([self.item_emb * self.has_history.unsqueeze(1), self._item_content()], dim=1)
        return torch.cat([self.user_emb, self.user_theta], dim=1), items

    def _penalty(
        self, u: torch.Tensor, i: torch.Tensor, j: torch.Tensor, ue: torch.Tensor, ie: torch.Tensor, je: torch.Tensor
    ) -> torch.Tensor:
        """L2 on the whole user and item vectors (ID and content parts), as MMRec's VBPR: the content
        side otherwise fits the training items' features and generalises worse than plain BPR."""
        return squared_norm(ue, ie, je)

    def _item_vectors(self) -> torch.Tensor:
        return self._final_embeddings()[1].detach()

    def _items_added(self, n_new: int) -> None:
        with torch.no_grad():
            self.item_emb = nn.Parameter(torch.cat([self.item_emb, torch.zeros(n_new, self.dim)]))
        self.has_history = torch.cat([self.has_history, torch.zeros(n_new, dtype=torch.bool)])

    def _state(self) -> dict[str, np.ndarray]:
        state = super()._state()
        state["user_theta"] = self.user_theta.detach().numpy().copy()
        state["has_history"] = self.has_history.numpy().copy()
        for m, layer in self.proj.items():
            state[f"proj__{m}__weight"] = layer.weight.detach().numpy().copy()
            state[f"proj__{m}__bias"] = layer.bias.detach().numpy().copy()
        return {**state, **self.content_state()}

    def _load_state(self, state: dict[str, np.ndarray]) -> None:
        super()._load_state(state)
        self.load_content(state)
        with torch.no_grad():
            if not hasattr(self, "proj"):
                self.proj = nn.ModuleDict({m: nn.Linear(x.dim, self.content_dim) for m, x in self.content.items()})
            for m, layer in self.proj.items():
                layer.weight.copy_(torch.from_numpy(state[f"proj__{m}__weight"]))
                layer.bias.copy_(torch.from_numpy(state[f"proj__{m}__bias"]))
            if hasattr(self, "user_theta") and isinstance(self.user_theta, nn.Parameter):
                self.user_theta.copy_(torch.from_numpy(state["user_theta"]))
            else:
                self.user_theta = nn.Parameter(torch.from_numpy(state["user_theta"].copy()))
        self.has_history = torch.from_numpy(state["has_history"].copy())
