"""LGMRec-style local and global graph learning (Guo et al., AAAI 2024): Vitrina's model aimed at
the state of the art.

Three views of every user and item, summed:
- collaborative (local): LightGCN over the user–item graph on free ID embeddings;
- modality (local), one per modality: items are their projected features, users the mean of their
  items' (over the items that have the modality), smoothed `n_mm_layers` times over the same graph;
  each view is L2-normalised before the sum, so no modality drowns the others;
- global hypergraph, one per modality: `hyperedges` learned "interest" hyperedges; an item belongs
  to each by a (Gumbel-)softmax of its features, a user by the sum over their items; ID embeddings
  flow item → hyperedge → item/user `n_hyper_layers` times. Weighted by `alpha`.
A contrastive term (InfoNCE, weight `cl_weight`) makes the hypergraph views of one user (or item)
agree across modalities. Missing modalities are masks: an item without one has no projected
feature, no hyperedge membership and does not count in its users' means.

Items without training history have untrained ID parts, so their vector is the row-normalised mean
of the final vectors of their content neighbours among warm items (as in `freedom`); that is also
how `add_items` makes a new item recommendable without retraining.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import combinations

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn
from torch.nn import functional as F

from vitrina.data.snapshot import Snapshot
from vitrina.fusion.align import info_nce
from vitrina.models.base import register
from vitrina.models.bpr import squared_norm
from vitrina.models.content import MultimodalRecommender, fill_cold_items, row_normalize
from vitrina.models.lightgcn import LightGCN, _SymmetricSpMM, normalized_adjacency, torch_csr


@register
class LGMRec(LightGCN, MultimodalRecommender):
    name = "lgmrec"

    def __init__(
        self,
        embedding_dim: int = 64,
        n_ui_layers: int = 2,
        n_mm_layers: int = 2,
        n_hyper_layers: int = 1,
        hyperedges: int = 4,
        keep_rate: float = 0.4,
        alpha: float = 0.6,
        cl_weight: float = 1e-4,
        temperature: float = 0.2,
        cold_k: int = 10,
        learning_rate: float = 1e-3,
        reg_weight: float = 1e-6,
        batch_size: int = 2048,
        modalities: Sequence[str] | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(
            n_layers=n_ui_layers,
            embedding_dim=embedding_dim,
            learning_rate=learning_rate,
            reg_weight=reg_weight,
            batch_size=batch_size,
            seed=seed,
        )
        if not 0.0 < keep_rate <= 1.0:
            raise ValueError(f"lgmrec: keep_rate is the share of hyperedge links kept, in (0, 1]; got {keep_rate}")
        if hyperedges < 1:
            raise ValueError(f"lgmrec: hyperedges must be at least 1; got {hyperedges}")
        self.modalities = None if modalities is None else [str(m) for m in modalities]
        self.n_mm_layers, self.n_hyper_layers = int(n_mm_layers), int(n_hyper_layers)
        self.n_hyperedges, self.keep_rate = int(hyperedges), float(keep_rate)
        self.alpha, self.cl_weight, self.temperature = float(alpha), float(cl_weight), float(temperature)
        self.cold_k = int(cold_k)
        self.training = False
        del self.params["n_layers"]
        self.params.update(
            n_ui_layers=self.n_layers,
            n_mm_layers=self.n_mm_layers,
            n_hyper_layers=self.n_hyper_layers,
            hyperedges=self.n_hyperedges,
            keep_rate=self.keep_rate,
            alpha=self.alpha,
            cl_weight=self.cl_weight,
            temperature=self.temperature,
            cold_k=self.cold_k,
            modalities=self.modalities,
        )

    # --- set-up ----------------------------------------------------------------------------------
    def _init_training(self, data: Snapshot) -> None:
        super()._init_training(data)  # ID embeddings, sampler, normalised user–item graph
        self.select_content(data, require=True)
        self.has_history = torch.from_numpy(np.diff(data.train.tocsc().indptr) > 0)
        self._build_parts(torch.Generator().manual_seed(self.seed + 1))
        self._set_interactions(data.train)
        self.optimizer = torch.optim.Adam(
            [self.user_emb, self.item_emb, *self.proj.parameters(), *self.hyper.parameters()], lr=self.lr
        )

    def _build_parts(self, gen: torch.Generator) -> None:
        """Per-modality projection to the embedding space and hyperedge embeddings (in feature space)."""
        self.proj = nn.ModuleDict({m: nn.Linear(x.dim, self.dim, bias=False) for m, x in self.content.items()})
        for layer in self.proj.values():
            nn.init.xavier_uniform_(layer.weight, generator=gen)
        self.hyper = nn.ParameterDict(
            {
                m: nn.Parameter(nn.init.xavier_uniform_(torch.empty(x.dim, self.n_hyperedges), generator=gen))
                for m, x in self.content.items()
            }
        )

    def _set_interactions(self, train: sp.csr_matrix) -> None:
        """The user × item 0/1 matrix (sums over a user's items) and the cold items' neighbour rows."""
        self.interactions = torch_csr((train > 0).astype(np.float32))
        # Per user, how many of their items have each modality (constant: computed once, not per batch).
        self.modality_counts = {
            m: self.interactions @ torch.from_numpy(x.mask).float().unsqueeze(1) for m, x in self.content.items()
        }
        cold = np.flatnonzero(~self.has_history.numpy())
        warm = np.flatnonzero(self.has_history.numpy())
        weights = {m: 1.0 / len(self.content) for m in self.content}
        graph = row_normalize(self.content_knn_graph(cold, warm, self.cold_k, weights, symmetric=False))
        self.cold_graph, self.cold_adj = graph, torch_csr(graph)

    # --- the three views -------------------------------------------------------------------------
    def _dependencies(self, m: str, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(user, item) soft memberships in modality m's hyperedges; rows without m are zero."""
        logits_i = x @ self.hyper[m]
        logits_u = self.interactions @ (logits_i * mask.unsqueeze(1))
        has_u = self.modality_counts[m] > 0
        if self.training:  # Gumbel noise and link dropout while training only: scoring is deterministic
            dep_i = F.gumbel_softmax(logits_i, tau=self.temperature, dim=1)
            dep_u = F.gumbel_softmax(logits_u, tau=self.temperature, dim=1)
            dep_i, dep_u = (F.dropout(d, p=1.0 - self.keep_rate) for d in (dep_i, dep_u))
        else:
            dep_i = torch.softmax(logits_i / self.temperature, dim=1)
            dep_u = torch.softmax(logits_u / self.temperature, dim=1)
        return dep_u * has_u, dep_i * mask.unsqueeze(1)

    def _views(self) -> tuple[torch.Tensor, torch.Tensor, dict[str, tuple[torch.Tensor, torch.Tensor]]]:
        """Final (users, items) before the cold-item step, and each modality's hypergraph view."""
        users, items = super()._final_embeddings()  # collaborative view (LightGCN)
        n_users = users.shape[0]
        local = torch.cat([users, items])
        hyper_views: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        global_sum = torch.zeros_like(local)
        for m, inputs in self.content.items():
            x, mask = inputs.tensor()
            z = self.proj[m](x) * mask.unsqueeze(1)
            h = torch.cat([(self.interactions @ z) / self.modality_counts[m].clamp(min=1.0), z])
            for _ in range(self.n_mm_layers):
                h = _SymmetricSpMM.apply(self.adj, h)
            local = local + F.normalize(h, dim=1)
            dep_u, dep_i = self._dependencies(m, x, mask)
            e_i = items
            for _ in range(self.n_hyper_layers):
                edges = dep_i.T @ e_i
                e_i, e_u = dep_i @ edges, dep_u @ edges
            hyper_views[m] = (e_u, e_i)
            global_sum = global_sum + torch.cat([e_u, e_i])
        final = local + self.alpha * F.normalize(global_sum, dim=1)
        return final[:n_users], final[n_users:], hyper_views

    def _final_embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        users, items, _ = self._views()
        return users, fill_cold_items(items, self.has_history, self.cold_adj)

    # --- training ----------------------------------------------------------------------------------
    def _train_epoch(self, epoch: int) -> float:
        self.training = True  # Gumbel noise and hyperedge-link dropout
        try:
            return super()._train_epoch(epoch)
        finally:
            self.training = False
            self._cache = None

    def _batch_loss(self, u: torch.Tensor, i: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
        user_all, item_all, views = self._views()
        loss, _ = self._pairwise_loss(u, i, j, user_all, fill_cold_items(item_all, self.has_history, self.cold_adj))
        if self.cl_weight > 0 and len(views) > 1:
            loss = loss + self.cl_weight * self._contrast(views, u, i)
        return loss

    def _penalty(
        self, u: torch.Tensor, i: torch.Tensor, j: torch.Tensor, ue: torch.Tensor, ie: torch.Tensor, je: torch.Tensor
    ) -> torch.Tensor:
        """L2 on the batch's final vectors (as LGMRec), not on the free ID embeddings."""
        return squared_norm(ue, ie, je)

    def _contrast(
        self, views: dict[str, tuple[torch.Tensor, torch.Tensor]], u: torch.Tensor, i: torch.Tensor
    ) -> torch.Tensor:
        """InfoNCE between two modalities' hypergraph views of the batch's users and items (the
        other rows of the batch are the negatives; repeated ids count as positives)."""
        loss = torch.zeros(())
        for a, b in combinations(sorted(views), 2):
            for side, rows in ((0, u), (1, i)):
                za = F.normalize(views[a][side][rows], dim=1)
                zb = F.normalize(views[b][side][rows], dim=1)
                same = rows.unsqueeze(0) == rows.unsqueeze(1)
                loss = loss + info_nce(za @ zb.T / self.temperature, same)
        return loss

    # --- scoring, new items, state ---------------------------------------------------------------
    def _item_vectors(self) -> torch.Tensor:
        with torch.no_grad():
            return self._final_embeddings()[1].detach()

    def _items_added(self, n_new: int) -> None:
        """New items get a zero ID embedding and their content neighbours among the warm items."""
        with torch.no_grad():
            self.item_emb = nn.Parameter(torch.cat([self.item_emb, torch.zeros(n_new, self.dim)]))
        self.has_history = torch.cat([self.has_history, torch.zeros(n_new, dtype=torch.bool)])
        assert self.seen is not None
        self.adj = normalized_adjacency(self.seen)
        self._set_interactions(self.seen)

    def _state(self) -> dict[str, np.ndarray]:
        state = super()._state()
        state["has_history"] = self.has_history.numpy().copy()
        for m in self.content:
            state[f"proj__{m}"] = self.proj[m].weight.detach().numpy().copy()
            state[f"hyper__{m}"] = self.hyper[m].detach().numpy().copy()
        return {**state, **self.content_state()}

    def _load_state(self, state: dict[str, np.ndarray]) -> None:
        super()._load_state(state)  # ID embeddings; the user–item graph from the seen matrix
        self.load_content(state)
        self.has_history = torch.from_numpy(state["has_history"].copy())
        if not hasattr(self, "proj"):
            self._build_parts(torch.Generator().manual_seed(0))
        with torch.no_grad():
            for m in self.content:
                self.proj[m].weight.copy_(torch.from_numpy(state[f"proj__{m}"]))
                self.hyper[m].copy_(torch.from_numpy(state[f"hyper__{m}"]))
        assert self.seen is not None
        self._set_interactions(self.seen)
