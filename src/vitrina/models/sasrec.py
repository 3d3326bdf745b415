"""SASRec-style next-item model (Kang & McAuley, 2018) whose item embeddings add the items' content.

A causal Transformer reads a user's training items in order (the last `max_len`); the output at each
position predicts the next item. An item's vector is its ID embedding plus a projection of each
modality it has (masks, not zeros: an item without text gets no text term), so items with little
history still have a meaningful vector and `modalities=[]` is the ID-only model. Training uses a
sampled softmax: every position scores its true next item against `negatives` items drawn uniformly
for the batch. A user is scored by the output at the last position of their whole training sequence.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn
from torch.nn import functional as F

from vitrina.data.snapshot import Snapshot
from vitrina.data.splits import TRAIN
from vitrina.models.base import register
from vitrina.models.content import MultimodalRecommender


class _Net(nn.Module):
    def __init__(
        self,
        n_items: int,
        dim: int,
        content_dims: dict[str, int],
        layers: int,
        heads: int,
        max_len: int,
        dropout: float,
    ) -> None:
        super().__init__()
        self.item_emb = nn.Parameter(torch.randn(n_items + 1, dim) * 0.02)  # row 0: padding
        self.proj = nn.ModuleDict({m: nn.Linear(d, dim) for m, d in content_dims.items()})
        self.pos_emb = nn.Parameter(torch.randn(max_len, dim) * 0.02)
        block = nn.TransformerEncoderLayer(dim, heads, 2 * dim, dropout, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(block, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.drop = nn.Dropout(dropout)

    def items(self, idx: torch.Tensor, content: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
        """Vectors of items `idx` (1-based; 0 is padding and stays zero)."""
        out = self.item_emb[idx]
        rows = (idx - 1).clamp(min=0)
        for m, (values, mask) in content.items():
            keep = (mask[rows] & (idx > 0)).unsqueeze(-1)
            out = out + self.proj[m](values[rows]) * keep
        return out

    def encode(self, seq: torch.Tensor, content: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
        """[batch, L] left-padded 1-based item ids -> [batch, L, dim]."""
        length = seq.shape[1]
        x = self.items(seq, content) * (self.item_emb.shape[1] ** 0.5) + self.pos_emb[-length:]
        # One mask for order and padding (True: may not attend): later positions and padding keys,
        # except a position's own key, so that no row is fully masked (the fused inference kernel
        # turns such rows into NaN, which then spread through the next layer).
        future = torch.triu(torch.ones(length, length, dtype=torch.bool), diagonal=1)
        blocked = future.unsqueeze(0) | (seq == 0).unsqueeze(1)
        blocked = blocked & ~torch.eye(length, dtype=torch.bool).unsqueeze(0)
        heads = self.encoder.layers[0].self_attn.num_heads
        h = self.encoder(self.drop(x), mask=blocked.repeat_interleave(heads, dim=0))
        return self.norm(h)


@register
class SASRec(MultimodalRecommender):
    name = "sasrec"
    iterative = True

    def __init__(
        self,
        modalities: list[str] | None = None,
        embedding_dim: int = 64,
        n_layers: int = 2,
        n_heads: int = 2,
        max_len: int = 50,
        dropout: float = 0.2,
        negatives: int = 256,
        learning_rate: float = 1e-3,
        batch_size: int = 128,
        seed: int = 0,
    ) -> None:
        super().__init__(
            modalities=modalities,
            seed=seed,
            embedding_dim=embedding_dim,
            n_layers=n_layers,
            n_heads=n_heads,
            max_len=max_len,
            dropout=dropout,
            negatives=negatives,
            learning_rate=learning_rate,
            batch_size=batch_size,
        )
        self.dim, self.layers, self.heads = int(embedding_dim), int(n_layers), int(n_heads)
        self.max_len, self.dropout, self.negatives = int(max_len), float(dropout), int(negatives)
        self.lr, self.batch_size = float(learning_rate), int(batch_size)
        self._cache: torch.Tensor | None = None

    # --- data ------------------------------------------------------------------------------------
    def _sequences(self, data: Snapshot) -> None:
        """Each user's training items in order, as a CSR-like (indptr, items) pair."""
        log = data.log
        train = log["fold"] == TRAIN
        users, items, order = log["user"][train], log["item"][train], log["order"][train]
        perm = np.lexsort((order, users))
        self.seq_items = items[perm].astype(np.int64)
        self.seq_indptr = np.searchsorted(users[perm], np.arange(data.n_users + 1)).astype(np.int64)

    def _padded(self, users: np.ndarray, drop_last: bool) -> tuple[np.ndarray, np.ndarray]:
        """Left-padded 1-based inputs [len(users), max_len] (and next-item targets when training)."""
        n, length = len(users), self.max_len
        inputs = np.zeros((n, length), dtype=np.int64)
        targets = np.zeros((n, length), dtype=np.int64)
        for row, u in enumerate(users):
            seq = self.seq_items[self.seq_indptr[u] : self.seq_indptr[u + 1]] + 1
            if drop_last:
                x, y = seq[:-1][-length:], seq[1:][-length:]
                targets[row, length - len(y) :] = y
            else:
                x = seq[-length:]
            inputs[row, length - len(x) :] = x
        return inputs, targets

    def _content(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        return {m: inputs.tensor() for m, inputs in self.content.items()}

    # --- training --------------------------------------------------------------------------------
    def _init_training(self, data: Snapshot) -> None:
        self.select_content(data)
        self._sequences(data)
        torch.manual_seed(self.seed)
        dims = {m: inputs.dim for m, inputs in self.content.items()}
        self.n_items = data.n_items
        self.net = _Net(data.n_items, self.dim, dims, self.layers, self.heads, self.max_len, self.dropout)
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=self.lr)
        lengths = np.diff(self.seq_indptr)
        self.trainable = np.flatnonzero(lengths >= 2)
        self.rng = np.random.default_rng(self.seed)

    def _train_epoch(self, epoch: int) -> float:
        self._cache = None
        self.net.train()
        content = self._content()
        order = self.rng.permutation(self.trainable)
        total, count = 0.0, 0
        for start in range(0, len(order), self.batch_size):
            inputs, targets = (torch.from_numpy(a) for a in self._padded(order[start : start + self.batch_size], True))
            h = self.net.encode(inputs, content)  # [B, L, d]
            valid = targets > 0
            h, pos = h[valid], targets[valid]
            negatives = torch.from_numpy(self.rng.integers(1, self.n_items + 1, self.negatives))
            pos_score = (h * self.net.items(pos, content)).sum(-1, keepdim=True)
            neg_score = h @ self.net.items(negatives, content).T
            neg_score = neg_score.masked_fill(negatives.unsqueeze(0) == pos.unsqueeze(1), -torch.inf)
            logits = torch.cat([pos_score, neg_score], dim=1)
            loss = F.cross_entropy(logits, torch.zeros(len(pos), dtype=torch.long))
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
            total += float(loss.detach()) * len(pos)
            count += len(pos)
        self.net.eval()
        return total / max(count, 1)

    def observe(self, events: sp.csr_matrix) -> None:
        """Append each user's events (a users × items matrix, in column order within a user) to the
        end of their sequence: later scores see them, without retraining."""
        self._add_seen(events)
        events = events.tocsr()
        lengths = np.diff(self.seq_indptr) + np.diff(events.indptr)
        indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        items = np.empty(indptr[-1], dtype=np.int64)
        for u in range(len(lengths)):
            old = self.seq_items[self.seq_indptr[u] : self.seq_indptr[u + 1]]
            new = events.indices[events.indptr[u] : events.indptr[u + 1]]
            items[indptr[u] : indptr[u + 1]] = np.concatenate([old, new])
        self.seq_items, self.seq_indptr = items, indptr

    # --- scoring ---------------------------------------------------------------------------------
    def _item_vectors(self) -> torch.Tensor:
        if self._cache is None:
            with torch.no_grad():
                self.net.eval()
                all_items = torch.arange(1, self.n_items + 1)
                self._cache = self.net.items(all_items, self._content())
        return self._cache

    def _score(self, users: np.ndarray) -> torch.Tensor:
        items = self._item_vectors()
        inputs, _ = self._padded(users, False)
        with torch.no_grad():
            self.net.eval()
            h = self.net.encode(torch.from_numpy(inputs), self._content())[:, -1]
        return h @ items.T

    # --- state -----------------------------------------------------------------------------------
    def _state(self) -> dict[str, np.ndarray]:
        params = {f"net__{k}": v.detach().numpy().copy() for k, v in self.net.state_dict().items()}
        return {**params, **self.content_state(), "seq_items": self.seq_items, "seq_indptr": self.seq_indptr}

    def _load_state(self, state: dict[str, np.ndarray]) -> None:
        self.load_content(state)
        self.seq_items, self.seq_indptr = state["seq_items"], state["seq_indptr"]
        if not hasattr(self, "net"):
            self.n_items = int(state["net__item_emb"].shape[0] - 1)
            dims = {m: inputs.dim for m, inputs in self.content.items()}
            self.net = _Net(self.n_items, self.dim, dims, self.layers, self.heads, self.max_len, self.dropout)
        self.net.load_state_dict({k[5:]: torch.from_numpy(v) for k, v in state.items() if k.startswith("net__")})
        self.net.eval()
        self._cache = None
