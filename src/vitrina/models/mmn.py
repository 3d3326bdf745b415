"""MMN: a two-tower multimodal neural recommender, score = user tower · item tower.

Item tower: one small MLP per modality (standardised features -> embedding) for the modalities the
model uses, fused by `fusion`:

- "early": the modality embeddings are concatenated (a learned placeholder where the item lacks a
  modality, never a zero feature row) and mixed by one MLP, so modalities interact before scoring;
- "attention": a learned gate scores each modality embedding per item, softmax over the modalities
  the item has;
- "late": decision-level fusion with one user vector per modality,
  score = Σ_m w_m(i) · u_m·h_m(i) + u_id·e_i, where the learned weights w are renormalised over the
  modalities item i has. As one dot product: user [u_1 … u_M, u_id] · item [w_1 h_1 … w_M h_M, e_i].

plus an item ID embedding e_i for items with training history only, so cold and newly added items
are scored from their content alone. User tower: a user ID embedding, with `user_history` plus the
mean item vector of the user's training items (in training without the item being predicted), the
same fold-in that serves new users' sessions.

Loss: BPR on sampled (user, positive, negative) triples, or binary cross-entropy on the positives
and the sampled negatives; plus `align_weight` (λ) × the symmetric InfoNCE between the embeddings of
each pair of modalities over the batch's items that have both (CLIP-style alignment of the towers).
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import combinations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from vitrina.data.snapshot import Snapshot
from vitrina.fusion.align import info_nce
from vitrina.models.base import register
from vitrina.models.content import MultimodalRecommender
from vitrina.models.sampling import PairSampler

FUSIONS = ("early", "attention", "late")
LOSSES = ("bpr", "bce")


def _mlp(d_in: int, hidden: int, d_out: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, d_out))


def masked_softmax(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Softmax over the last axis restricted to `mask`; rows with nothing present get all zeros
    (not NaN, as a softmax over only -inf would)."""
    return torch.softmax(logits.masked_fill(~mask, -1e9), dim=-1) * mask


class _Towers(nn.Module):
    """The learned parts: ID embeddings, one encoder per modality and the fusion's own weights."""

    def __init__(
        self, n_users: int, n_items: int, dims: dict[str, int], dim: int, hidden: int, dropout: float, fusion: str
    ) -> None:
        super().__init__()
        self.fusion, n_mod = fusion, len(dims)
        user_dim = dim * (n_mod + 1) if fusion == "late" else dim
        self.user_emb = nn.Parameter(torch.randn(n_users, user_dim) * (2.0 / (n_users + user_dim)) ** 0.5)
        self.item_emb = nn.Parameter(torch.randn(n_items, dim) * (2.0 / (n_items + dim)) ** 0.5)
        self.encoders = nn.ModuleList(_mlp(d, hidden, dim, dropout) for d in dims.values())
        if n_mod and fusion == "early":
            self.missing = nn.Parameter(torch.zeros(n_mod, dim))
            self.mix = _mlp(n_mod * dim, hidden, dim, dropout)
        elif n_mod and fusion == "attention":
            self.gate = nn.Sequential(nn.Linear(dim, dim), nn.Tanh(), nn.Linear(dim, 1, bias=False))
        elif n_mod and fusion == "late":
            self.modality_logits = nn.Parameter(torch.zeros(n_mod))

    def items(
        self, feats: list[torch.Tensor], mask: torch.Tensor, has_id: torch.Tensor, rows: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Item vectors of `rows` (None: all items) and their per-modality embeddings [n, M, dim]
        (None without modalities)."""
        if rows is not None:
            feats, mask, has_id = [x[rows] for x in feats], mask[rows], has_id[rows]
        ids = (self.item_emb if rows is None else self.item_emb[rows]) * has_id.unsqueeze(1)
        if not feats:
            return ids, None
        h = torch.stack([enc(x) for enc, x in zip(self.encoders, feats, strict=True)], dim=1)
        if self.fusion == "late":
            w = masked_softmax(self.modality_logits.expand(len(h), -1), mask)
            return torch.cat([(w.unsqueeze(2) * h).flatten(1), ids], dim=1), h
        if self.fusion == "early":
            content = self.mix(torch.where(mask.unsqueeze(2), h, self.missing).flatten(1))
        else:
            w = masked_softmax(self.gate(h).squeeze(2), mask)
            content = (w.unsqueeze(2) * h).sum(1)
        return content + ids, h


@register
class MMN(MultimodalRecommender):
    """Two-tower multimodal network; see the module doc. `hidden`, `dropout`: the encoders' MLPs;
    `align_temperature`: the InfoNCE temperature; `reg_weight`: L2 on the batch's ID embeddings."""

    name = "mmn"
    user_rows = ("net__user_emb",)
    iterative = True

    def __init__(
        self,
        embedding_dim: int = 64,
        hidden: int = 256,
        dropout: float = 0.0,
        fusion: str = "early",
        loss: str = "bpr",
        align_weight: float = 0.0,
        align_temperature: float = 0.2,
        user_history: bool = True,
        learning_rate: float = 3e-3,
        reg_weight: float = 1e-4,
        batch_size: int = 2048,
        modalities: Sequence[str] | None = None,
        seed: int = 0,
    ) -> None:
        if fusion not in FUSIONS:
            raise ValueError(f"mmn: fusion must be one of {', '.join(FUSIONS)}, got '{fusion}'")
        if loss not in LOSSES:
            raise ValueError(f"mmn: loss must be one of {', '.join(LOSSES)}, got '{loss}'")
        if align_temperature <= 0:
            raise ValueError(f"mmn: align_temperature must be positive, got {align_temperature}")
        super().__init__(
            modalities=modalities,
            seed=seed,
            embedding_dim=embedding_dim,
            hidden=hidden,
            dropout=dropout,
            fusion=fusion,
            loss=loss,
            align_weight=align_weight,
            align_temperature=align_temperature,
            user_history=user_history,
            learning_rate=learning_rate,
            reg_weight=reg_weight,
            batch_size=batch_size,
        )
        self.dim, self.hidden, self.dropout = int(embedding_dim), int(hidden), float(dropout)
        self.fusion, self.loss = fusion, loss
        self.align_weight, self.temperature = float(align_weight), float(align_temperature)
        self.user_history = bool(user_history)
        self.lr, self.reg, self.batch_size = float(learning_rate), float(reg_weight), int(batch_size)
        self._cache: tuple[torch.Tensor, torch.Tensor] | None = None

    # --- inputs ----------------------------------------------------------------------------------
    def _build(self, n_users: int, n_items: int) -> None:
        dims = {m: x.dim for m, x in self.content.items()}
        self.net = _Towers(n_users, n_items, dims, self.dim, self.hidden, self.dropout, self.fusion)

    def _inputs(self) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
        """Content features, modality masks [n_items, M] and the has-history mask (ID embedding on)."""
        assert self.popularity is not None
        feats = [torch.from_numpy(x.values) for x in self.content.values()]
        masks = [x.mask for x in self.content.values()]
        mask = np.stack(masks, axis=1) if masks else np.zeros((len(self.popularity), 0), dtype=bool)
        return feats, torch.from_numpy(mask), torch.from_numpy(self.popularity > 0).float()

    def _history_mean(
        self, users: np.ndarray, items: torch.Tensor, leave_out: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Mean vector of each user's training items; `leave_out` (one item vector per user) is taken
        out of the mean. Users with nothing (else) in their history get zeros."""
        assert self.seen is not None
        rows = self.seen[users]
        length = torch.from_numpy(np.diff(rows.indptr)).float().unsqueeze(1)
        owner = torch.from_numpy(np.repeat(np.arange(len(users)), np.diff(rows.indptr)))
        total = items.new_zeros(len(users), items.shape[1]).index_add(0, owner, items[torch.from_numpy(rows.indices)])
        if leave_out is None:
            return total / length.clamp(min=1)
        return (total - leave_out) / (length - 1).clamp(min=1)

    # --- training --------------------------------------------------------------------------------
    def _init_training(self, data: Snapshot) -> None:
        self.select_content(data)
        self._build(data.n_users, data.n_items)
        self.sampler = PairSampler(data.train, self.batch_size, self.seed)
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=self.lr)

    def _train_epoch(self, epoch: int) -> float:
        self._cache = None
        self.net.train()
        inputs = self._inputs()
        total, n = 0.0, 0
        for users, pos, neg in self.sampler.epoch():
            u, i, j = (torch.from_numpy(a) for a in (users, pos, neg))
            user, vi, vj, h, mask = self._batch(inputs, users, i, j)
            pos_score, neg_score = (user * vi).sum(1), (user * vj).sum(1)
            if self.loss == "bpr":
                loss = -F.logsigmoid(pos_score - neg_score).mean()
            else:
                logits = torch.cat([pos_score, neg_score])
                labels = torch.cat([torch.ones_like(pos_score), torch.zeros_like(neg_score)])
                loss = F.binary_cross_entropy_with_logits(logits, labels)
            ego = self.net.user_emb[u].pow(2).sum() + self.net.item_emb[i].pow(2).sum()
            loss = loss + self.reg * (ego + self.net.item_emb[j].pow(2).sum()) / (2 * len(u))
            if self.align_weight > 0 and h is not None:
                loss = loss + self.align_weight * self._align_loss(h, mask)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            total += loss.item() * len(u)
            n += len(u)
        return total / max(1, n)

    def _batch(
        self,
        inputs: tuple[list[torch.Tensor], torch.Tensor, torch.Tensor],
        users: np.ndarray,
        i: torch.Tensor,
        j: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """User, positive and negative item vectors of a batch, plus the modality embeddings and masks
        of its distinct items (for the alignment term)."""
        rows, where = torch.unique(torch.cat([i, j]), return_inverse=True)
        mask = inputs[1][rows]
        if not self.user_history:
            vecs, h = self.net.items(*inputs, rows)
            return self.net.user_emb[torch.from_numpy(users)], vecs[where[: len(i)]], vecs[where[len(i) :]], h, mask
        # The user tower reads every item's vector: encode the whole catalogue once per batch. The
        # positive is left out of its user's history, or the tower learns to find the items it is
        # given rather than the ones the user picks next.
        item_all, h_all = self.net.items(*inputs, None)
        vi = item_all[i]
        user = self.net.user_emb[torch.from_numpy(users)] + self._history_mean(users, item_all, leave_out=vi)
        return user, vi, item_all[j], None if h_all is None else h_all[rows], mask

    def _align_loss(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Symmetric InfoNCE between two modalities' embeddings of the same items (in-batch negatives),
        averaged over the modality pairs, each over the items that have both modalities."""
        losses = []
        for a, b in combinations(range(h.shape[1]), 2):
            both = mask[:, a] & mask[:, b]
            if int(both.sum()) < 2:
                continue
            za, zb = F.normalize(h[both, a], dim=1), F.normalize(h[both, b], dim=1)
            logits = za @ zb.T / self.temperature
            own = torch.eye(len(za), dtype=torch.bool)
            losses.append((info_nce(logits, own) + info_nce(logits.T, own)) / 2)
        return torch.stack(losses).mean() if losses else h.new_zeros(())

    # --- scoring ---------------------------------------------------------------------------------
    def _tables(self) -> tuple[torch.Tensor, torch.Tensor]:
        """User and item vectors of the current parameters (eval mode: no dropout), cached."""
        if self._cache is None:
            self.net.eval()
            with torch.no_grad():
                items, _ = self.net.items(*self._inputs(), None)
                users = self.net.user_emb.detach()
                if self.user_history:
                    users = users + self._history_mean(np.arange(len(users)), items)
            self._cache = (users, items)
        return self._cache

    def _score(self, users: np.ndarray) -> torch.Tensor:
        user_all, item_all = self._tables()
        return user_all[torch.from_numpy(users)] @ item_all.T

    def _item_vectors(self) -> torch.Tensor:
        return self._tables()[1]

    def _items_added(self, n_new: int) -> None:
        """New items get zero ID rows; their has-history flag is off (zero popularity) anyway."""
        with torch.no_grad():
            grown = torch.cat([self.net.item_emb, self.net.item_emb.new_zeros(n_new, self.dim)])
        self.net.item_emb = nn.Parameter(grown)

    def _state(self) -> dict[str, np.ndarray]:
        params = {f"net__{k}": v.detach().numpy().copy() for k, v in self.net.state_dict().items()}
        return {**params, **self.content_state()}

    def _load_state(self, state: dict[str, np.ndarray]) -> None:
        self.load_content(state)
        self._build(*(len(state[f"net__{k}"]) for k in ("user_emb", "item_emb")))
        self.net.load_state_dict(
            {k[len("net__") :]: torch.from_numpy(v) for k, v in state.items() if k.startswith("net__")}
        )
        self._cache = None
