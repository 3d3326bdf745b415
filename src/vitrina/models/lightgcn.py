"""LightGCN (He et al., SIGIR 2020): embeddings smoothed over the user-item graph, no weights.

Final embedding = mean of layer outputs E_0..E_L with E_{l+1} = D^-1/2 A D^-1/2 E_l over the
bipartite training graph. Trained exactly like BPR; only the final embeddings differ.
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.sparse as sp
import torch

from vitrina.data.snapshot import Snapshot
from vitrina.models.base import register
from vitrina.models.bpr import BPR


def torch_csr(m: sp.spmatrix) -> torch.Tensor:
    """A scipy sparse matrix as a float32 torch sparse CSR tensor (what the sparse products run on)."""
    m = m.astype(np.float32).tocsr()
    m.sort_indices()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return torch.sparse_csr_tensor(
            torch.from_numpy(m.indptr.astype(np.int64)),
            torch.from_numpy(m.indices.astype(np.int64)),
            torch.from_numpy(m.data),
            size=m.shape,
            check_invariants=False,
        )


def normalized_adjacency(train: sp.csr_matrix) -> torch.Tensor:
    """Symmetric-normalised adjacency of the bipartite graph as a torch sparse CSR tensor."""
    r = (train > 0).astype(np.float32)
    adj = sp.bmat([[None, r], [r.T, None]], format="csr", dtype=np.float32)
    deg = np.asarray(adj.sum(axis=1)).ravel()
    inv_sqrt = np.zeros_like(deg)
    inv_sqrt[deg > 0] = deg[deg > 0] ** -0.5
    return torch_csr(sp.diags(inv_sqrt) @ adj @ sp.diags(inv_sqrt))


class _SymmetricSpMM(torch.autograd.Function):
    """adj @ x for a symmetric adj: the backward pass is adj @ grad, with no transpose to build."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, adj: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        ctx.adj = adj  # type: ignore[attr-defined]
        return adj @ x

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor) -> tuple[None, torch.Tensor]:
        return None, ctx.adj @ grad  # type: ignore[attr-defined]


@register
class LightGCN(BPR):
    name = "lightgcn"

    def __init__(self, n_layers: int = 4, **params: float) -> None:
        super().__init__(**params)
        self.n_layers = int(n_layers)
        self.params["n_layers"] = self.n_layers

    def _init_training(self, data: Snapshot) -> None:
        super()._init_training(data)
        self.adj = normalized_adjacency(data.train)

    def _final_embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        n_users = self.user_emb.shape[0]
        ego = torch.cat([self.user_emb, self.item_emb])
        total, layer = ego, ego
        for _ in range(self.n_layers):
            layer = _SymmetricSpMM.apply(self.adj, layer)
            total = total + layer
        final = total / (self.n_layers + 1)
        return final[:n_users], final[n_users:]

    def observe(self, events: sp.csr_matrix) -> None:
        """Add new (user, item) events to the graph the embeddings propagate over: later scores see
        them without retraining (the trained layer-0 embeddings stay), as SASRec appends them to a
        sequence. FREEDOM inherits this for its user–item graph."""
        self._add_seen(events)
        assert self.seen is not None
        self.adj = normalized_adjacency(self.seen)
        self._cache = None

    def _load_state(self, state: dict[str, np.ndarray]) -> None:
        super()._load_state(state)
        if not hasattr(self, "adj"):
            assert self.seen is not None
            self.adj = normalized_adjacency(self.seen)
