"""FREEDOM (Zhou & Shen, ACM MM 2023): a frozen item–item content graph plus a denoised user–item graph.

"A Tale of Two Graphs": the item–item graph is built once from each modality's features (cosine
kNN) and frozen, which is cheaper and, per the paper, better than learning it (LATTICE); the
user–item graph is denoised each epoch by degree-sensitive edge pruning: edges are sampled to keep
with probability ∝ 1/sqrt(d_u d_i), so edges between popular nodes, the likeliest noise, go first.

item = LightGCN item embedding (over the pruned graph in training, the full one when scoring)
       + A_mm^L · item ID embeddings (A_mm: the frozen item–item graph)
user = LightGCN user embedding; score = user · item. Each modality also gets a linear projection of
its features, trained with an extra BPR term against the user embeddings (MMRec's `reg_weight`,
here `modality_weight`); the projections only regularise the users, they do not enter the score.

How this differs from the reference code (MMRec / enoche/FREEDOM), and why:
- features are frozen (standardised by `select_content`); MMRec fine-tunes the raw feature table,
  a large parameter matrix that only the small auxiliary loss ever touches;
- each modality's kNN graph is symmetrised (an edge if either item is among the other's k nearest)
  and the weighted sum of the modality graphs is symmetric-normalised once, so the graph is its
  own transpose (backward = one more sparse product) and an item missing a modality simply has no
  edges from it: its remaining modalities carry its whole (renormalised) weight;
- items with no training interaction (cold items of the snapshot, items added later) are scored
  as the weighted mean of their k nearest items *with* history in each modality they have, not by
  an ID embedding that only ever served as a sampled negative;
- `modalities=[]` is allowed: then there is no item–item graph and the model is LightGCN with
  FREEDOM's edge pruning (and cold items score zero).

New items (`add_items`) therefore need no retraining: they get a zero ID embedding and their content
neighbours; they join neither graph, so the scores of trained items do not move.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn
from torch.nn import functional as F

from vitrina.data.snapshot import Snapshot
from vitrina.models.base import register
from vitrina.models.content import MultimodalRecommender, fill_cold_items, row_normalize
from vitrina.models.lightgcn import LightGCN, _SymmetricSpMM, normalized_adjacency, torch_csr


def modality_weights(names: Sequence[str], image_weight: float) -> dict[str, float]:
    """Graph weight per modality: MMRec's `mm_image_weight` for image, the rest split evenly.

    One modality gets weight 1; without an image modality all get equal shares."""
    names = list(names)
    if len(names) <= 1 or "image" not in names:
        return {m: 1.0 / len(names) for m in names}
    rest = (1.0 - image_weight) / (len(names) - 1)
    return {m: image_weight if m == "image" else rest for m in names}


@register
class Freedom(LightGCN, MultimodalRecommender):
    name = "freedom"

    def __init__(
        self,
        embedding_dim: int = 64,
        n_ui_layers: int = 2,
        n_mm_layers: int = 1,
        knn_k: int = 10,
        dropout: float = 0.8,
        modality_weight: float = 1e-4,
        mm_image_weight: float = 0.1,
        learning_rate: float = 1e-3,
        reg_weight: float = 0.0,
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
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"freedom: dropout is the share of user–item edges pruned, in [0, 1); got {dropout}")
        if not 0.0 <= mm_image_weight <= 1.0:
            raise ValueError(f"freedom: mm_image_weight must be in [0, 1]; got {mm_image_weight}")
        self.modalities = None if modalities is None else [str(m) for m in modalities]
        self.n_mm_layers, self.knn_k = int(n_mm_layers), int(knn_k)
        self.dropout, self.modality_weight = float(dropout), float(modality_weight)
        self.image_weight = float(mm_image_weight)
        del self.params["n_layers"]  # stored under FREEDOM's name
        self.params.update(
            n_ui_layers=self.n_layers,
            n_mm_layers=self.n_mm_layers,
            knn_k=self.knn_k,
            dropout=self.dropout,
            modality_weight=self.modality_weight,
            mm_image_weight=self.image_weight,
            modalities=self.modalities,
        )

    # --- the frozen item–item graph and the content neighbours of items without history -------
    def _weighted_knn(self, rows: np.ndarray, candidates: np.ndarray, symmetric: bool) -> sp.csr_matrix:
        weights = modality_weights(list(self.content), self.image_weight)
        return self.content_knn_graph(rows, candidates, self.knn_k, weights, symmetric)

    def _build_item_graph(self) -> None:
        """FREEDOM's frozen graph over all items: modality kNN graphs summed, symmetric-normalised."""
        everything = np.arange(len(self.has_history))
        total = self._weighted_knn(everything, everything, symmetric=True).tocoo()
        deg = np.asarray(total.sum(axis=1), dtype=np.float64).ravel()
        inv = np.zeros_like(deg)
        inv[deg > 0] = deg[deg > 0] ** -0.5
        values = (total.data * inv[total.row] * inv[total.col]).astype(np.float32)
        self._set_graphs(sp.csr_matrix((values, (total.row, total.col)), shape=total.shape), None)

    def _cold_rows(self, rows: np.ndarray) -> sp.csr_matrix:
        """Row-normalised content neighbours of `rows` among the items with training history."""
        warm = np.flatnonzero(self.has_history.numpy())
        return row_normalize(self._weighted_knn(rows, warm, symmetric=False))

    def _set_graphs(self, mm: sp.csr_matrix | None, cold: sp.csr_matrix | None) -> None:
        """Keep the scipy matrices (for the state) and their torch copies (for the products)."""
        if mm is not None:
            self.mm_graph, self.mm_adj = mm.tocsr(), torch_csr(mm)
        if cold is not None:
            self.cold_graph, self.cold_adj = cold.tocsr(), torch_csr(cold)

    # --- training ---------------------------------------------------------------------------
    def _init_training(self, data: Snapshot) -> None:
        super()._init_training(data)  # ID embeddings, PairSampler, full normalised user–item graph
        self.select_content(data)
        self.has_history = torch.from_numpy(np.diff(data.train.tocsc().indptr) > 0)
        self._build_item_graph()
        self._set_graphs(None, self._cold_rows(np.flatnonzero(~self.has_history.numpy())))
        self.proj = nn.ModuleDict({m: nn.Linear(x.dim, self.dim) for m, x in self.content.items()})
        self.optimizer = torch.optim.Adam([self.user_emb, self.item_emb, *self.proj.parameters()], lr=self.lr)
        coo = data.train.tocoo()
        self.edge_users, self.edge_items = coo.row.astype(np.int64), coo.col.astype(np.int64)
        deg_u = np.diff(data.train.indptr).astype(np.float64)
        deg_i = np.diff(data.train.tocsc().indptr).astype(np.float64)
        self.edge_weight = 1.0 / np.sqrt(deg_u[self.edge_users] * deg_i[self.edge_items])
        self.prune_rng = np.random.default_rng([self.seed, 7])

    def _pruned_adjacency(self) -> torch.Tensor:
        """This epoch's user–item graph: (1 - dropout) of the edges, drawn without replacement with
        probability ∝ 1/sqrt(d_u d_i) (Efraimidis–Spirakis keys), re-normalised on what is kept."""
        n_keep = round(len(self.edge_weight) * (1.0 - self.dropout))
        if self.dropout <= 0.0 or n_keep >= len(self.edge_weight):
            return self.adj
        keys = np.log(self.prune_rng.random(len(self.edge_weight))) / self.edge_weight
        keep = np.argpartition(-keys, n_keep - 1)[:n_keep] if n_keep > 0 else np.zeros(0, dtype=np.int64)
        assert self.seen is not None
        kept = sp.csr_matrix(
            (np.ones(n_keep, dtype=np.float32), (self.edge_users[keep], self.edge_items[keep])),
            shape=self.seen.shape,
        )
        return normalized_adjacency(kept)

    def _item_graph_part(self) -> torch.Tensor:
        """A_mm^L · item ID embeddings (with no modality the graph has no edges: zeros)."""
        h = self.item_emb
        for _ in range(self.n_mm_layers):
            h = _SymmetricSpMM.apply(self.mm_adj, h)
        return h

    def _final_embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        """FREEDOM's sum of the LightGCN item embedding and the item–item convolution for items with
        training history; items without it are the weighted mean of their content neighbours."""
        users, items = super()._final_embeddings()  # LightGCN over self.adj
        return users, fill_cold_items(items + self._item_graph_part(), self.has_history, self.cold_adj)

    def _train_epoch(self, epoch: int) -> float:
        full, self.adj = self.adj, self._pruned_adjacency()  # this epoch's pruned user–item graph
        try:
            return super()._train_epoch(epoch)
        finally:
            self.adj = full
            self._cache = None

    def _batch_loss(self, u: torch.Tensor, i: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
        user_all, item_all = self._final_embeddings()
        loss, ue = self._pairwise_loss(u, i, j, user_all, item_all)
        if self.modality_weight > 0:
            loss = loss + self.modality_weight * self._modality_loss(ue, i.numpy(), j.numpy())
        return loss

    def _modality_loss(self, ue: torch.Tensor, pos: np.ndarray, neg: np.ndarray) -> torch.Tensor:
        """Sum over modalities of BPR with the projected features as items, on the triples whose
        positive and negative both have the modality (missing content is never read as zeros)."""
        loss = ue.new_zeros(())
        for m, inputs in self.content.items():
            ok = inputs.mask[pos] & inputs.mask[neg]
            if not ok.any():
                continue
            rows = torch.from_numpy(np.concatenate([pos[ok], neg[ok]]))
            z = self.proj[m](torch.from_numpy(inputs.values)[rows])
            zp, zn = z.split(int(ok.sum()))
            uo = ue[torch.from_numpy(ok)]
            loss = loss - F.logsigmoid((uo * zp).sum(1) - (uo * zn).sum(1)).mean()
        return loss

    # --- scoring, new items, state --------------------------------------------------------------
    def _item_vectors(self) -> torch.Tensor:
        """The item side of the score (full user–item graph), for session fold-in."""
        with torch.no_grad():
            return self._final_embeddings()[1].detach()

    def _items_added(self, n_new: int) -> None:
        """New items join no graph (trained items keep their scores); they get a zero ID embedding
        and their content neighbours among the items with history."""
        n = len(self.has_history) + n_new
        mm, cold = self.mm_graph.copy(), self.cold_graph.copy()
        mm.resize((n, n))
        cold.resize((n, n))
        with torch.no_grad():
            self.item_emb = nn.Parameter(torch.cat([self.item_emb, torch.zeros(n_new, self.dim)]))
        self.has_history = torch.cat([self.has_history, torch.zeros(n_new, dtype=torch.bool)])
        self._set_graphs(mm, cold + self._cold_rows(np.arange(n - n_new, n)))
        assert self.seen is not None
        self.adj = normalized_adjacency(self.seen)

    def _state(self) -> dict[str, np.ndarray]:
        state = super()._state()
        state["has_history"] = self.has_history.numpy().copy()
        for key, g in (("mm", self.mm_graph), ("cold", self.cold_graph)):
            state.update(
                {f"{key}_indptr": g.indptr.copy(), f"{key}_indices": g.indices.copy(), f"{key}_data": g.data.copy()}
            )
        for m, layer in self.proj.items():
            state[f"proj__{m}__weight"] = layer.weight.detach().numpy().copy()
            state[f"proj__{m}__bias"] = layer.bias.detach().numpy().copy()
        return {**state, **self.content_state()}

    def _load_state(self, state: dict[str, np.ndarray]) -> None:
        super()._load_state(state)  # embeddings; the user–item graph from the seen matrix
        self.load_content(state)
        self.has_history = torch.from_numpy(state["has_history"].copy())
        n = len(self.has_history)
        mm, cold = (
            sp.csr_matrix((state[f"{k}_data"], state[f"{k}_indices"], state[f"{k}_indptr"]), shape=(n, n))
            for k in ("mm", "cold")
        )
        self._set_graphs(mm, cold)
        if not hasattr(self, "proj"):
            self.proj = nn.ModuleDict({m: nn.Linear(x.dim, self.dim) for m, x in self.content.items()})
        with torch.no_grad():
            for m, layer in self.proj.items():
                layer.weight.copy_(torch.from_numpy(state[f"proj__{m}__weight"]))
                layer.bias.copy_(torch.from_numpy(state[f"proj__{m}__bias"]))
