"""What every multimodal recommender shares: choosing modalities, masks, new items and new users.

A multimodal model reads the snapshot's item feature matrices (`Snapshot.item_features`, one per
modality) together with their masks (`Snapshot.feature_masks`: False where an item lacks the
modality). Missing rows are never read as zeros: `ModalityInputs` standardises the present rows and
keeps the mask next to them, and each model decides what a missing modality means for it (left out
of a fusion, its weight renormalised over the modalities the item has).

Content is what makes items scorable without interactions. `add_items` appends new items with
their features to a fitted model (no retraining): the id map, the seen matrix and the content
arrays grow, and the model's item representation is recomputed from content. `recommend_session`
serves a user the model has never seen from the items of their current session, and an empty
session gets the onboarding list (the most popular training items).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp
import torch
from torch.nn import functional as F

from vitrina.data.idmap import IdMap
from vitrina.data.snapshot import Snapshot
from vitrina.models.base import Recommender
from vitrina.search.similar import blockwise_topk

__all__ = ["ModalityInputs", "MultimodalRecommender", "fill_cold_items", "masked_normalize", "row_normalize"]


def masked_normalize(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Rows L2-normalised; rows where `mask` is False become exact zeros (they carry no content)."""
    return torch.nn.functional.normalize(x, dim=1) * mask.unsqueeze(1).to(x.dtype)


def row_normalize(m: sp.spmatrix) -> sp.csr_matrix:
    """Rows scaled to sum 1 (empty rows stay empty): a weighted mean over each row's neighbours."""
    total = np.asarray(m.sum(axis=1)).ravel()
    inv = np.divide(1.0, total, out=np.zeros_like(total), where=total > 0)
    return (sp.diags(inv.astype(np.float32)) @ m).tocsr()


def fill_cold_items(items: torch.Tensor, has_history: torch.Tensor, cold_adj: torch.Tensor) -> torch.Tensor:
    """Item vectors where items without training history (untrained ID parts) are replaced by the
    `cold_adj`-weighted mean of their content neighbours' vectors (no gradient through those)."""
    warm = items * has_history.unsqueeze(1).to(items.dtype)
    return warm + cold_adj @ warm.detach()


@dataclass
class ModalityInputs:
    """One modality's item features, standardised on the rows that have it, with its mask.

    Standardisation (mean and scale of the present rows, per column) puts raw CNN activations,
    float16 benchmark vectors and L2-normalised text embeddings on one footing; the statistics are
    kept so that items added later are transformed the same way.
    """

    values: np.ndarray  # [n_items, d] float32, standardised; missing rows are zeros
    mask: np.ndarray  # [n_items] bool
    mean: np.ndarray
    scale: np.ndarray

    @classmethod
    def fit(cls, values: np.ndarray, mask: np.ndarray) -> ModalityInputs:
        values, mask = np.asarray(values, dtype=np.float32), np.asarray(mask, dtype=bool)
        if not mask.any():
            raise ValueError("a modality with no item that has it cannot be used")
        present = values[mask]
        mean = present.mean(0)
        scale = np.maximum(present.std(0), 1e-6).astype(np.float32)
        out = cls(np.zeros_like(values), mask, mean.astype(np.float32), scale)
        out.values[mask] = out.transform(present)
        return out

    def transform(self, values: np.ndarray) -> np.ndarray:
        return ((np.asarray(values, dtype=np.float32) - self.mean) / self.scale).astype(np.float32)

    def append(self, values: np.ndarray, mask: np.ndarray) -> None:
        """Rows for new items (same columns), transformed with the fitted statistics."""
        rows = np.where(mask[:, None], self.transform(values), 0.0).astype(np.float32)
        self.values = np.vstack([self.values, rows])
        self.mask = np.concatenate([self.mask, mask])

    @property
    def dim(self) -> int:
        return int(self.values.shape[1])

    def tensor(self) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.from_numpy(self.values), torch.from_numpy(self.mask)

    def state(self, name: str) -> dict[str, np.ndarray]:
        return {f"{name}__{k}": getattr(self, k) for k in ("values", "mask", "mean", "scale")}

    @classmethod
    def from_state(cls, state: dict[str, np.ndarray], name: str) -> ModalityInputs:
        return cls(*(state[f"{name}__{k}"] for k in ("values", "mask", "mean", "scale")))


class MultimodalRecommender(Recommender):
    """Base of content-aware models. `modalities`: which of the snapshot's feature matrices to use
    (None: all it has; [] : none, which makes the model ID-only where it has ID parts).

    Subclasses read `self.content` (modality -> ModalityInputs) in `_init_training` / `_fit`, keep
    it in `_state` via `content_state()` and restore it with `load_content()`, and implement
    `_item_vectors` (the item side of their dot-product score) so sessions and new items work.
    """

    multimodal: ClassVar[bool] = True

    def __init__(self, modalities: Sequence[str] | None = None, seed: int = 0, **params: Any) -> None:
        super().__init__(seed=seed, modalities=None if modalities is None else list(modalities), **params)
        self.modalities = None if modalities is None else [str(m) for m in modalities]
        self.content: dict[str, ModalityInputs] = {}
        self.popularity: np.ndarray | None = None

    # --- content -------------------------------------------------------------------------------
    def select_content(self, data: Snapshot, require: bool = False) -> dict[str, ModalityInputs]:
        """Standardised features of the chosen modalities (sorted by name), checked against the data."""
        available = sorted(data.item_features)
        wanted = available if self.modalities is None else self.modalities
        unknown = [m for m in wanted if m not in data.item_features]
        if unknown:
            raise ValueError(
                f"{self.name}: modality {unknown} is not in the {data.name} snapshot "
                f"(it has: {', '.join(available) or 'none'})"
            )
        if require and not wanted:
            raise ValueError(f"{self.name} needs at least one modality; the {data.name} snapshot has none")
        content = {}
        for m in sorted(wanted):
            values = data.item_features[m]
            mask = data.feature_masks.get(m, np.ones(len(values), dtype=bool))
            content[m] = ModalityInputs.fit(values, mask)
        self.content = content
        self.popularity = np.asarray(data.train.sum(axis=0)).ravel().astype(np.float32)
        return content

    def content_state(self) -> dict[str, np.ndarray]:
        state: dict[str, np.ndarray] = {}
        for m, inputs in self.content.items():
            state.update(inputs.state(f"content__{m}"))
        if self.popularity is not None:
            state["popularity"] = self.popularity
        return state

    def load_content(self, state: dict[str, np.ndarray]) -> None:
        names = sorted({k.split("__")[1] for k in state if k.startswith("content__")})
        self.content = {m: ModalityInputs.from_state(state, f"content__{m}") for m in names}
        if "popularity" in state:
            self.popularity = state["popularity"]

    def content_knn_graph(
        self, rows: np.ndarray, candidates: np.ndarray, k: int, weights: dict[str, float], symmetric: bool
    ) -> sp.csr_matrix:
        """Σ_m weights[m] · (0/1 graph joining each of `rows` to its k cosine-nearest `candidates` in
        modality m), [n_items, n_items]. Items without m take part in no edge of m (masks, not
        zeros); `symmetric`: an edge when either item is among the other's nearest."""
        assert self.popularity is not None  # one entry per item, set with the content
        n = len(self.popularity)
        total = sp.csr_matrix((n, n), dtype=np.float32)
        for m, w in weights.items():
            inputs = self.content[m]
            r, c = rows[inputs.mask[rows]], candidates[inputs.mask[candidates]]
            if len(r) == 0 or len(c) == 0:
                continue
            x = torch.from_numpy(inputs.values)
            q = F.normalize(x[torch.from_numpy(r)], dim=1)
            keys = q if rows is candidates else F.normalize(x[torch.from_numpy(c)], dim=1)
            nb = blockwise_topk(lambda a, b, q=q, keys=keys: q[a:b] @ keys.T, len(q), len(keys), k)[1].numpy()
            edges = (np.ones(nb.size, dtype=np.float32), (np.repeat(r, nb.shape[1]), c[nb.ravel()]))
            knn = sp.csr_matrix(edges, shape=(n, n))
            knn = ((knn + knn.T) > 0).astype(np.float32) if symmetric else knn
            total = total + w * knn
        return total.tocsr()

    # --- hooks ---------------------------------------------------------------------------------
    def _item_vectors(self) -> torch.Tensor:
        """Item representations [n_items, d] such that a user's score is user_vector @ item.T."""
        raise NotImplementedError

    def _items_added(self, n_new: int) -> None:
        """Grow per-item parameters by `n_new` rows (e.g. ID embeddings of cold items: zeros)."""

    # --- new items and new users ---------------------------------------------------------------
    def add_items(self, item_ids: Sequence[str], features: dict[str, np.ndarray]) -> None:
        """Make new items recommendable without retraining, from their content.

        `features[modality]`: [len(item_ids), d] rows (NaN rows: the item lacks that modality).
        Every modality the model uses must be given (all-NaN if none of the new items has it).
        """
        self._check_fitted()
        assert self.items is not None and self.seen is not None
        ids = [str(i) for i in item_ids]
        if not ids:
            return
        known = [i for i in ids if i in self.items]
        if known:
            raise ValueError(f"{self.name}: item(s) already known: {', '.join(known[:5])}")
        missing = [m for m in self.content if m not in features]
        if missing:
            raise ValueError(f"{self.name}: new items need the modalities the model uses; missing {missing}")
        rows: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for m, inputs in self.content.items():
            x = np.asarray(features[m], dtype=np.float32)
            if x.shape != (len(ids), inputs.dim):
                raise ValueError(f"{self.name}: '{m}' features must be ({len(ids)}, {inputs.dim}), got {x.shape}")
            mask = ~np.isnan(x).all(axis=1)
            if np.isnan(x[mask]).any():
                raise ValueError(f"{self.name}: '{m}' features hold NaN inside a row (a missing row is all-NaN)")
            rows[m] = (np.nan_to_num(x), mask)
        for m, (x, mask) in rows.items():
            self.content[m].append(x, mask)
        self.items = IdMap([*self.items.to_list(), *ids], "item")
        n_users, n_items = self.seen.shape
        seen = self.seen
        self.seen = sp.csr_matrix((seen.data, seen.indices, seen.indptr), shape=(n_users, n_items + len(ids)))
        if self.popularity is not None:
            self.popularity = np.concatenate([self.popularity, np.zeros(len(ids), dtype=np.float32)])
        self._items_added(len(ids))
        self._invalidate()

    def _invalidate(self) -> None:
        """Drop cached scoring tensors (after items were added)."""
        if hasattr(self, "_cache"):
            self._cache = None

    def session_scores(self, item_indices: Sequence[int]) -> np.ndarray:
        """Scores of all items for an unknown user whose session holds `item_indices`: the mean of
        the session items' vectors as the user vector (a fold-in); empty session: popularity."""
        self._check_fitted()
        idx = np.asarray(item_indices, dtype=np.int64)
        if len(idx) == 0:
            assert self.popularity is not None
            return self.popularity.astype(np.float32).copy()
        with torch.no_grad():
            items = self._item_vectors()
            return (items[torch.from_numpy(idx)].mean(0) @ items.T).numpy()

    def recommend_session(self, session: Sequence[str], k: int = 10) -> list[tuple[str, float]]:
        """Top-k (item id, score) for a new user from the items of their current session (shop ids);
        an empty session gives the onboarding list. Session items are not recommended back."""
        self._check_fitted()
        assert self.items is not None
        idx = self.items.to_index(list(session)) if len(session) else np.zeros(0, dtype=np.int64)
        scores = torch.from_numpy(self.session_scores(idx))
        scores[torch.from_numpy(idx)] = -torch.inf
        top = torch.topk(scores, min(k, len(scores)))
        keep = torch.isfinite(top.values)
        ids = self.items.to_ids(top.indices[keep].numpy())
        return list(zip(ids.tolist(), top.values[keep].tolist(), strict=True))
