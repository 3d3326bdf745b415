"""SASRec-style next-item model (Kang & McAuley, 2018) whose item embeddings add the items' content.

A causal Transformer reads a user's training items in order (the last `max_len`); the output at each
position predicts the next item. An item's vector is its ID embedding plus a projection of each
modality it has (masks, not zeros: an item without text gets no text term), so items with little
history still have a meaningful vector and `modalities=[]` is the ID-only model. Training uses a
sampled softmax: every position scores its true next item against `negatives` items drawn uniformly
for the batch. A user is scored by the output at the last position of their whole training sequence.

When the events carry types (view, click, cart, purchase, rating) and include purchases, each
position also adds an embedding of its event type, and a second head reads the same output to predict
whether the user's next event is a purchase (binary cross-entropy, weighted by `propensity_weight`):
`purchase_propensity(users)` is that probability after the user's last event.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn
from torch.nn import functional as F

from vitrina.data.schema import INTERACTION_TYPES
from vitrina.data.snapshot import Snapshot
from vitrina.data.splits import TRAIN
from vitrina.models.base import register
from vitrina.models.content import MultimodalRecommender

_PURCHASE = INTERACTION_TYPES.index("purchase") + 1  # 1-based code, as in the sequences


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
        typed: bool = False,
    ) -> None:
        super().__init__()
        # Row 0: no type known (padding, or events observed without one).
        self.type_emb = nn.Embedding(len(INTERACTION_TYPES) + 1, dim, padding_idx=0) if typed else None
        self.propensity = nn.Linear(dim, 1) if typed else None
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

    def encode(
        self,
        seq: torch.Tensor,
        content: dict[str, tuple[torch.Tensor, torch.Tensor]],
        types: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """[batch, L] left-padded 1-based item ids (and 1-based event types) -> [batch, L, dim]."""
        length = seq.shape[1]
        x = self.items(seq, content) * (self.item_emb.shape[1] ** 0.5) + self.pos_emb[-length:]
        if self.type_emb is not None and types is not None:
            x = x + self.type_emb(types)
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
        propensity_weight: float = 1.0,
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
            propensity_weight=propensity_weight,
        )
        self.dim, self.layers, self.heads = int(embedding_dim), int(n_layers), int(n_heads)
        self.max_len, self.dropout, self.negatives = int(max_len), float(dropout), int(negatives)
        self.lr, self.batch_size = float(learning_rate), int(batch_size)
        self.propensity_weight = float(propensity_weight)
        self.typed = False
        self._cache: torch.Tensor | None = None

    # --- data ------------------------------------------------------------------------------------
    def _sequences(self, data: Snapshot) -> None:
        """Each user's training items (and 1-based event types, 0 unknown) in order, CSR-like."""
        log = data.log
        train = log["fold"] == TRAIN
        users, items, order = log["user"][train], log["item"][train], log["order"][train]
        perm = np.lexsort((order, users))
        self.seq_items = items[perm].astype(np.int64)
        self.seq_indptr = np.searchsorted(users[perm], np.arange(data.n_users + 1)).astype(np.int64)
        types = log["type"][train][perm].astype(np.int64) + 1 if "type" in log else np.zeros_like(self.seq_items)
        self.seq_types = types
        # A purchase head needs purchases and something else to tell them from.
        known = set(np.unique(types[types > 0]).tolist())
        self.typed = self.propensity_weight > 0 and _PURCHASE in known and len(known) > 1

    def _padded(self, users: np.ndarray, drop_last: bool) -> tuple[np.ndarray, ...]:
        """Left-padded [len(users), max_len] arrays: 1-based input items, their event types, and when
        training the next items and next event types (the targets)."""
        n, length = len(users), self.max_len
        out = [np.zeros((n, length), dtype=np.int64) for _ in range(4)]
        inputs, in_types, targets, next_types = out
        for row, u in enumerate(users):
            span = slice(self.seq_indptr[u], self.seq_indptr[u + 1])
            seq, types = self.seq_items[span] + 1, self.seq_types[span]
            if drop_last:
                x, t = seq[:-1][-length:], types[:-1][-length:]
                targets[row, length - len(x) :] = seq[1:][-length:]
                next_types[row, length - len(x) :] = types[1:][-length:]
            else:
                x, t = seq[-length:], types[-length:]
            inputs[row, length - len(x) :] = x
            in_types[row, length - len(x) :] = t
        return tuple(out) if drop_last else (inputs, in_types)

    def _content(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        return {m: inputs.tensor() for m, inputs in self.content.items()}

    # --- training --------------------------------------------------------------------------------
    def _init_training(self, data: Snapshot) -> None:
        self.select_content(data)
        self._sequences(data)
        torch.manual_seed(self.seed)
        dims = {m: inputs.dim for m, inputs in self.content.items()}
        self.n_items = data.n_items
        self.net = _Net(data.n_items, self.dim, dims, self.layers, self.heads, self.max_len, self.dropout, self.typed)
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
            batch = (torch.from_numpy(a) for a in self._padded(order[start : start + self.batch_size], True))
            inputs, in_types, targets, next_types = batch
            h = self.net.encode(inputs, content, in_types)  # [B, L, d]
            valid = targets > 0
            buys = self._propensity_loss(h, next_types) if self.typed else None
            h, pos = h[valid], targets[valid]
            negatives = torch.from_numpy(self.rng.integers(1, self.n_items + 1, self.negatives))
            pos_score = (h * self.net.items(pos, content)).sum(-1, keepdim=True)
            neg_score = h @ self.net.items(negatives, content).T
            neg_score = neg_score.masked_fill(negatives.unsqueeze(0) == pos.unsqueeze(1), -torch.inf)
            logits = torch.cat([pos_score, neg_score], dim=1)
            loss = F.cross_entropy(logits, torch.zeros(len(pos), dtype=torch.long))
            if buys is not None:
                loss = loss + self.propensity_weight * buys
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
            total += float(loss.detach()) * len(pos)
            count += len(pos)
        self.net.eval()
        return total / max(count, 1)

    def _propensity_loss(self, h: torch.Tensor, next_types: torch.Tensor) -> torch.Tensor | None:
        """Binary cross-entropy of "the next event is a purchase" where the next event's type is known."""
        assert self.net.propensity is not None
        known = next_types > 0
        if not known.any():
            return None
        logits = self.net.propensity(h[known]).squeeze(-1)
        return F.binary_cross_entropy_with_logits(logits, (next_types[known] == _PURCHASE).float())

    def observe(self, events: sp.csr_matrix, types: np.ndarray | None = None) -> None:
        """Append each user's events (a users × items matrix, in column order within a user) to the
        end of their sequence: later scores see them, without retraining. `types`: the events' type
        codes (index into INTERACTION_TYPES, -1 none) in the matrix's stored order."""
        self._add_seen(events)
        events = events.tocsr()
        codes = np.zeros(events.nnz, dtype=np.int64) if types is None else np.asarray(types, dtype=np.int64) + 1
        if len(codes) != events.nnz:
            raise ValueError(f"{self.name}: {len(codes)} event types for {events.nnz} events")
        n_users = len(self.seq_indptr) - 1
        owners = np.concatenate(
            [
                np.repeat(np.arange(n_users), np.diff(self.seq_indptr)),
                np.repeat(np.arange(n_users), np.diff(events.indptr)),
            ]
        )
        order = np.argsort(owners, kind="stable")  # per user: the old sequence, then the new events
        items = np.concatenate([self.seq_items, events.indices.astype(np.int64)])[order]
        kinds = np.concatenate([self.seq_types, codes])[order]
        indptr = np.searchsorted(owners[order], np.arange(n_users + 1)).astype(np.int64)
        self.seq_items, self.seq_types, self.seq_indptr = items, kinds, indptr

    # --- scoring ---------------------------------------------------------------------------------
    def _item_vectors(self) -> torch.Tensor:
        if self._cache is None:
            with torch.no_grad():
                self.net.eval()
                all_items = torch.arange(1, self.n_items + 1)
                self._cache = self.net.items(all_items, self._content())
        return self._cache

    def _last_outputs(self, users: np.ndarray) -> torch.Tensor:
        """The encoder's output after each user's last event: [len(users), dim]."""
        inputs, in_types = (torch.from_numpy(a) for a in self._padded(users, False))
        with torch.no_grad():
            self.net.eval()
            return self.net.encode(inputs, self._content(), in_types)[:, -1]

    def _score(self, users: np.ndarray) -> torch.Tensor:
        return self._last_outputs(users) @ self._item_vectors().T

    def purchase_propensity(self, users: np.ndarray) -> np.ndarray:
        """P(the next event of each user, dense indices, is a purchase), from their sequence so far."""
        self._check_fitted()
        if self.net.propensity is None:
            raise ValueError(f"{self.name}: trained without typed events that include purchases")
        users = np.asarray(users, dtype=np.int64)
        with torch.no_grad():
            return torch.sigmoid(self.net.propensity(self._last_outputs(users)).squeeze(-1)).numpy()

    # --- state -----------------------------------------------------------------------------------
    def _forget_state(self, state: dict[str, np.ndarray], keep: np.ndarray) -> dict[str, np.ndarray]:
        """Users live in the sequences: drop the forgotten users' spans."""
        indptr = state["seq_indptr"]
        lengths = np.diff(indptr)
        rows = np.repeat(keep, lengths)
        kept = {k: state[k][rows] for k in ("seq_items", "seq_types") if k in state}
        kept["seq_indptr"] = np.concatenate([[0], np.cumsum(lengths[keep])]).astype(indptr.dtype)
        return {**state, **kept}

    def _state(self) -> dict[str, np.ndarray]:
        params = {f"net__{k}": v.detach().numpy().copy() for k, v in self.net.state_dict().items()}
        sequences = {"seq_items": self.seq_items, "seq_types": self.seq_types, "seq_indptr": self.seq_indptr}
        return {**params, **self.content_state(), **sequences}

    def _load_state(self, state: dict[str, np.ndarray]) -> None:
        self.load_content(state)
        self.seq_items, self.seq_indptr = state["seq_items"], state["seq_indptr"]
        self.seq_types = state["seq_types"] if "seq_types" in state else np.zeros_like(self.seq_items)
        if not hasattr(self, "net"):
            self.n_items = int(state["net__item_emb"].shape[0] - 1)
            self.typed = "net__propensity.weight" in state
            dims = {m: inputs.dim for m, inputs in self.content.items()}
            self.net = _Net(
                self.n_items, self.dim, dims, self.layers, self.heads, self.max_len, self.dropout, self.typed
            )
        self.net.load_state_dict({k[5:]: torch.from_numpy(v) for k, v in state.items() if k.startswith("net__")})
        self.net.eval()
        self._cache = None
