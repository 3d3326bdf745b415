"""BPR matrix factorisation (Rendle et al., 2009), trained with Adam on sampled triples.

Also the base of LightGCN, which only changes how final embeddings are computed from the
free ("ego") embeddings.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from vitrina.data.snapshot import Snapshot
from vitrina.models.base import Recommender, register
from vitrina.models.sampling import PairSampler


def xavier_rows(rows: int, dim: int, gen: torch.Generator) -> torch.Tensor:
    """An embedding table drawn with Xavier-normal scale, as the BPR/LightGCN reference code does."""
    return torch.randn(rows, dim, generator=gen) * (2.0 / (rows + dim)) ** 0.5


@register
class BPR(Recommender):
    name = "bpr"
    user_rows = ("user_emb",)
    iterative = True

    def __init__(
        self,
        embedding_dim: int = 64,
        learning_rate: float = 1e-3,
        reg_weight: float = 1e-5,
        batch_size: int = 2048,
        seed: int = 0,
        sparse_updates: bool = False,
    ) -> None:
        super().__init__(
            seed=seed,
            embedding_dim=embedding_dim,
            learning_rate=learning_rate,
            reg_weight=reg_weight,
            batch_size=batch_size,
            # Recorded only when on: dense models' saved parameters stay as they were.
            **({"sparse_updates": True} if sparse_updates else {}),
        )
        self.dim, self.lr, self.reg = int(embedding_dim), float(learning_rate), float(reg_weight)
        self.batch_size = int(batch_size)
        # Sparse gradients and lazy Adam (torch SparseAdam): a step touches only the batch's rows, so
        # an epoch costs O(events) instead of O(events x (users + items)) with dense Adam over the
        # whole tables; the moments of rows outside the batch are not decayed (a different optimiser,
        # hence off by default). Plain MF only: propagating models need dense gradients.
        self.sparse_updates = bool(sparse_updates)
        if self.sparse_updates and type(self)._final_embeddings is not BPR._final_embeddings:
            raise ValueError(f"{self.name}: sparse_updates needs embeddings used as they are (plain bpr)")
        self._cache: tuple[torch.Tensor, torch.Tensor] | None = None
        # Data parallelism (vitrina.distributed.train): (rank, world size) of this process in a
        # torch.distributed group. Every process draws the same batches; each takes its slice, and
        # the gradients, weighted by slice size, are summed across the group before every step, so
        # the update is the single-process one. None: training alone.
        self.shard: tuple[int, int] | None = None

    def _init_training(self, data: Snapshot) -> None:
        if self.sparse_updates and self.shard is not None:
            raise ValueError("sparse_updates does not train data-parallel (gradients are summed dense)")
        gen = torch.Generator().manual_seed(self.seed)
        self.user_emb = nn.Parameter(xavier_rows(data.n_users, self.dim, gen))
        self.item_emb = nn.Parameter(xavier_rows(data.n_items, self.dim, gen))
        self.sampler = PairSampler(data.train, self.batch_size, self.seed)
        optimizer = torch.optim.SparseAdam if self.sparse_updates else torch.optim.Adam
        self.optimizer = optimizer([self.user_emb, self.item_emb], lr=self.lr)

    def _final_embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        """User and item embeddings used for scoring; MF uses the free parameters directly."""
        return self.user_emb, self.item_emb

    def _train_epoch(self, epoch: int) -> float:
        self._cache = None
        total, n = 0.0, 0
        for users, pos, neg in self.sampler.epoch():
            u, i, j = (torch.from_numpy(a) for a in (users, pos, neg))
            size, share = len(u), 1.0
            if self.shard is not None:
                rank, world = self.shard
                part = slice(rank * size // world, (rank + 1) * size // world)
                u, i, j, share = u[part], i[part], j[part], (part.stop - part.start) / size
            self.optimizer.zero_grad(set_to_none=True)
            loss = self._batch_loss(u, i, j) * share if len(u) else torch.zeros(())
            if loss.requires_grad:
                loss.backward()
            if self.shard is not None:
                loss = _sum_across_group(self.optimizer, loss.detach())
            self.optimizer.step()
            total += loss.item() * size
            n += size
        return total / max(1, n)

    def _epoch_figures(self) -> dict[str, float]:
        """How many processes shared the epoch (data parallelism), when more than this one."""
        return {"workers": float(self.shard[1])} if self.shard is not None else {}

    def _batch_loss(self, u: torch.Tensor, i: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
        """One batch's training loss (subclasses add their terms to `_pairwise_loss`)."""
        user_all, item_all = self._final_embeddings()
        return self._pairwise_loss(u, i, j, user_all, item_all)[0]

    def _pairwise_loss(
        self, u: torch.Tensor, i: torch.Tensor, j: torch.Tensor, user_all: torch.Tensor, item_all: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(BPR loss + L2 penalty, the batch's user vectors) for triples (u, i, j)."""
        if self.sparse_updates:  # the free tables themselves: rows by F.embedding give sparse gradients
            ue, ie, je = (F.embedding(x, t, sparse=True) for x, t in ((u, user_all), (i, item_all), (j, item_all)))
        else:
            ue, ie, je = user_all[u], item_all[i], item_all[j]
        loss = -F.logsigmoid((ue * ie).sum(1) - (ue * je).sum(1)).mean()
        if self.reg > 0:
            loss = loss + self.reg * self._penalty(u, i, j, ue, ie, je) / (2 * len(u))
        return loss, ue

    def _penalty(
        self, u: torch.Tensor, i: torch.Tensor, j: torch.Tensor, ue: torch.Tensor, ie: torch.Tensor, je: torch.Tensor
    ) -> torch.Tensor:
        """Squared L2 of the batch's free embeddings, as in the LightGCN paper (`ue`, `ie`, `je`: the
        final embeddings of the batch, for models that regularise those instead)."""
        if self.sparse_updates:  # plain MF: the batch's rows are its free embeddings, with sparse gradients
            return squared_norm(ue, ie, je)
        return squared_norm(self.user_emb[u], self.item_emb[i], self.item_emb[j])

    def _score(self, users: np.ndarray) -> torch.Tensor:
        if self._cache is None:
            user_all, item_all = self._final_embeddings()
            self._cache = (user_all.detach(), item_all.detach())
        user_all, item_all = self._cache
        return user_all[torch.from_numpy(users)] @ item_all.T

    def factors(self) -> tuple[np.ndarray, np.ndarray]:
        self._check_fitted()
        with torch.no_grad():
            users, items = self._final_embeddings()
        return users.detach().numpy().copy(), items.detach().numpy().copy()

    def _state(self) -> dict[str, np.ndarray]:
        return {
            "user_emb": self.user_emb.detach().numpy().copy(),
            "item_emb": self.item_emb.detach().numpy().copy(),
        }

    def _load_state(self, state: dict[str, np.ndarray]) -> None:
        with torch.no_grad():
            if hasattr(self, "user_emb"):
                self.user_emb.copy_(torch.from_numpy(state["user_emb"]))
                self.item_emb.copy_(torch.from_numpy(state["item_emb"]))
            else:
                self.user_emb = nn.Parameter(torch.from_numpy(state["user_emb"]))
                self.item_emb = nn.Parameter(torch.from_numpy(state["item_emb"]))
        self._cache = None


def squared_norm(*rows: torch.Tensor) -> torch.Tensor:
    """Sum of squares of every entry: the L2 penalty of a batch's embedding rows."""
    return sum((r.pow(2).sum() for r in rows), torch.zeros(()))


def _sum_across_group(optimizer: torch.optim.Optimizer, loss: torch.Tensor) -> torch.Tensor:
    """Sum every parameter's gradient (and the loss) over the torch.distributed group: the shares'
    weighted sums add up to the whole batch's gradient."""
    import torch.distributed as dist

    for group in optimizer.param_groups:
        for p in group["params"]:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            dist.all_reduce(p.grad)
    dist.all_reduce(loss)
    return loss
