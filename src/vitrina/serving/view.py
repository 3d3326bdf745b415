"""One worker's read-only picture of a serving version: recommendations, similar items and "bought
together", blended online with the shopper's latest events.

A `View` never changes after it is built; catalogue changes and new versions produce a new `View`
that replaces the old one with a single assignment, so a request that took a view keeps scoring on
one consistent model from start to end.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from vitrina.search.engine import SearchEngine
from vitrina.search.filters import Filters
from vitrina.serving.build import TYPE_WEIGHTS
from vitrina.serving.bundle import Bundle
from vitrina.serving.live import Change, UnknownItem
from vitrina.serving.settings import ServeSettings

__all__ = ["SIMILAR_BY", "Recommendation", "View"]

SIMILAR_BY = ("fused", "image", "text")
_VERBS = {"view": "viewed", "click": "clicked", "cart": "added to cart", "purchase": "bought", "rating": "rated"}
_INDEX_OF = {"image": "image", "text": "semantic"}


@dataclass(frozen=True)
class Recommendation:
    item_id: str
    score: float
    reason: str
    because: str | None = None  # the item of the shopper's history that explains it


def _standardise(x: np.ndarray, rows: np.ndarray | None) -> np.ndarray:
    """(x - mean) / std over `rows` (None: all), so scores of different kinds add up on one scale."""
    sel = x if rows is None else x[rows]
    if not len(sel):
        return np.zeros_like(x)
    std = float(sel.std())
    return (x - np.float32(sel.mean())) / np.float32(std if std > 1e-12 else 1.0)


class View:
    def __init__(
        self,
        bundle: Bundle,
        catalog: pd.DataFrame,
        engine: SearchEngine | None,
        settings: ServeSettings,
        seq: int = 0,
    ) -> None:
        """`catalog`: the items table (any order); rows of bundle items come first, in bundle order."""
        self.bundle, self.engine, self.settings, self.seq = bundle, engine, settings, seq
        ids = bundle.items.ids.tolist()
        by_id = catalog.drop_duplicates("item_id").set_index(catalog["item_id"].astype(str).to_numpy(), drop=False)
        known = [i for i in ids if i in by_id.index]
        meta = by_id.loc[known].reindex(ids)
        meta["item_id"] = ids
        self.meta = meta.reset_index(drop=True)
        self.ids: list[str] = ids
        self.row = {i: r for r, i in enumerate(ids)}
        self.alive = np.array([i in by_id.index for i in ids], dtype=bool)
        self.joint = bundle.joint
        self.item_factors, self.has_factors = bundle.item_factors, bundle.has_factors
        self.popularity = np.log1p(bundle.popularity.astype(np.float32))
        self.segments: dict[str, Any] = {}  # the version's user segments (analytics.segments), if any
        self._derive()

    def _derive(self) -> None:
        """What every request would otherwise recompute: the live rows, the standardised popularity
        and the fields a result card shows, as plain lists."""
        self.live_rows = None if self.alive.all() else np.flatnonzero(self.alive)
        self.factor_rows = np.flatnonzero(self.has_factors & self.alive)
        self.pop_z = _standardise(self.popularity, self.live_rows)
        # Review sentiment's share of every ranking ([serve] sentiment_weight × its standardised value).
        self.mood = self.settings.sentiment_weight * self._sentiment_z()
        self.popular = self.pop_z + self.mood  # the ranking when nothing is known about the shopper
        self.popular.flags.writeable = False  # `scores` hands it out as it is
        meta = self.meta
        self._titles = [t if isinstance(t, str) and t else i for t, i in zip(meta["title"], self.ids, strict=True)]
        self._cards = [
            {
                "category": c if isinstance(c, str) else None,
                "brand": b if isinstance(b, str) else None,
                "price": None if p is None or p != p else float(p),
                "photo": bool(isinstance(ph, list) and ph),
            }
            for c, b, p, ph in zip(
                meta["category_path"], meta["brand"], meta["price"], meta["image_paths"], strict=True
            )
        ]
        self._filter_mask = functools.lru_cache(maxsize=128)(self._mask_uncached)

    def __getstate__(self) -> dict[str, Any]:
        """Picklable (the batch job ships one view to its Ray workers): without the filter cache."""
        state = dict(self.__dict__)
        state.pop("_filter_mask", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._filter_mask = functools.lru_cache(maxsize=128)(self._mask_uncached)

    # -- catalogue changes ---------------------------------------------------------------------

    def apply(self, changes: Sequence[Change], catalog_rows: pd.DataFrame) -> View:
        """A new view with the changes applied (vectors from the feed, metadata from `catalog_rows`,
        the items table rows of the changed items). Items new to the version have content only."""
        new = object.__new__(View)
        new.__dict__.update(self.__dict__)
        new.ids, new.row = list(self.ids), dict(self.row)
        new.alive = self.alive.copy()
        joint, meta = self.joint, self.meta
        by_id = catalog_rows.set_index(catalog_rows["item_id"].astype(str).to_numpy(), drop=False)
        added_vectors, added_meta = [], []
        replaced: dict[int, np.ndarray] = {}
        for change in changes:
            r = new.row.get(change.item_id)
            if change.op == "delete":
                if r is not None:
                    new.alive[r] = False
                continue
            if change.item_id not in by_id.index:
                continue  # deleted again later in the feed
            vector = self.bundle.space.project(
                {m: v[None, :] for m, v in change.vectors.items()},
                {m: np.ones(1, bool) for m in change.vectors},
            )[0]
            if r is None:
                new.row[change.item_id] = len(new.ids)
                new.ids.append(change.item_id)
                added_vectors.append(vector)
                added_meta.append(by_id.loc[change.item_id])
            else:
                replaced[r] = vector
                new.alive[r] = True
        if replaced:
            joint, meta = joint.copy(), meta.copy()
            for r, v in replaced.items():
                joint[r] = v
        n_new = len(added_vectors)
        if n_new:
            joint = np.vstack([joint, np.stack(added_vectors)]).astype(np.float32)
            meta = pd.concat([meta, pd.DataFrame(added_meta)[meta.columns]], ignore_index=True)
            new.alive = np.concatenate([new.alive, np.ones(n_new, bool)])
            pad = np.zeros((n_new, self.item_factors.shape[1]), np.float32)
            new.item_factors = np.vstack([self.item_factors, pad])
            new.has_factors = np.concatenate([self.has_factors, np.zeros(n_new, bool)])
            new.popularity = np.concatenate([self.popularity, np.zeros(n_new, self.popularity.dtype)])
        for r in replaced:
            meta.loc[r] = by_id.loc[new.ids[r]][meta.columns]
        new.joint, new.meta = joint, meta.reset_index(drop=True)
        new.seq = max([self.seq, *(c.seq for c in changes)])
        new._derive()
        return new

    def __len__(self) -> int:
        return int(self.alive.sum())

    # -- lookups ---------------------------------------------------------------------------------

    def segment_of(self, user_id: str | None) -> tuple[str, ...]:
        """The user's segment label (ad targeting), empty when unknown."""
        found = self.segments.get("assignment", {}).get(user_id) if user_id is not None else None
        return () if found is None else (f"seg-{found}",)

    def index(self, item_id: str) -> int:
        r = self.row.get(item_id)
        if r is None or not self.alive[r]:
            raise UnknownItem(item_id)
        return r

    def item(self, item_id: str) -> dict:
        return self.meta.iloc[self.index(item_id)].to_dict()

    def card(self, item_id: str) -> dict[str, Any]:
        """What a result list shows of an item: title, category, brand, price and its photo URL."""
        r = self.row[item_id]
        card = self._cards[r]
        return {
            "item_id": item_id,
            "title": self._titles[r],
            "category": card["category"],
            "brand": card["brand"],
            "price": card["price"],
            "photo": f"/media/{item_id}" if card["photo"] else None,
        }

    def title(self, r: int) -> str:
        return self._titles[r]

    def _sentiment_z(self) -> np.ndarray:
        """Standardised review sentiment per row (0: no reviews, or an item added since the build)."""
        out = np.zeros(len(self.ids), dtype=np.float32)
        mood = self.bundle.sentiment
        if mood is None:
            return out
        rows = np.flatnonzero(~np.isnan(mood))
        if len(rows) > 1:
            out[rows] = _standardise(mood.astype(np.float32), rows)[rows]
        return out

    def _mask_uncached(self, filters: Filters) -> np.ndarray:
        return filters.mask(self.meta) & self.alive

    def allowed(self, filters: Filters | None) -> np.ndarray:
        return self._filter_mask(filters) if filters else self.alive

    # -- recommendations -------------------------------------------------------------------------

    def _profile(self, history: Sequence[tuple[str, str, float]]) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """Rows, weights and types of the recent events that count (known, live items)."""
        rows, weights, types = [], [], []
        decay = self.settings.recency_decay
        for rank, (item_id, kind, _value) in enumerate(history[: self.settings.recent_events]):
            r = self.row.get(item_id)
            if r is None or not self.alive[r]:
                continue
            rows.append(r)
            weights.append(TYPE_WEIGHTS.get(kind, 1.0) * decay**rank)
            types.append(kind)
        return np.array(rows, dtype=np.int64), np.array(weights, dtype=np.float32), types

    def scores(
        self,
        user_id: str | None,
        history: Sequence[tuple[str, str, float]],
        profile: tuple[np.ndarray, np.ndarray, list[str]] | None = None,
    ) -> tuple[np.ndarray, str]:
        """A score per item row and what it rests on: "personal" (trained vector and/or recent
        items) or "popular" (nothing known about the shopper)."""
        s = self.settings
        rows, weights, _ = profile if profile is not None else self._profile(history)
        parts: list[tuple[float, np.ndarray]] = []
        b = self.bundle
        if self.item_factors.shape[1]:
            u = b.users.lookup([user_id])[0] if user_id is not None else -1
            vector = b.user_factors[u] if u >= 0 else None
            fr = rows[self.has_factors[rows]] if len(rows) else rows
            if len(fr):
                fw = weights[self.has_factors[rows]]
                recent = (fw[:, None] * self.item_factors[fr]).sum(0) / fw.sum()
                recent = recent.astype(np.float32)
                vector = recent if vector is None else (1 - s.session_weight) * vector + s.session_weight * recent
            if vector is not None:
                cf = _standardise(self.item_factors @ vector.astype(np.float32), self.factor_rows)
                cf[~self.has_factors] = 0.0
                parts.append((1 - s.content_weight, cf))
        if len(rows):
            query = (weights[:, None] * self.joint[rows]).sum(0)
            content = _standardise(self.joint @ query.astype(np.float32), self.live_rows)
            parts.append((s.content_weight if parts else 1.0, content))
        if not parts:
            return self.popular, "popular"
        total = sum(w for w, _ in parts)
        return sum(w * p for w, p in parts) / max(total, 1e-12) + self.mood + 1e-3 * self.pop_z, "personal"

    def recommend(
        self,
        user_id: str | None,
        history: Sequence[tuple[str, str, float]],
        k: int = 10,
        filters: Filters | None = None,
        exclude_seen: bool = True,
    ) -> list[Recommendation]:
        top, scores, basis = self.rank(user_id, history, k, filters, exclude_seen)
        return self.explain(top, scores, history, basis, user_id)

    def rank(
        self,
        user_id: str | None,
        history: Sequence[tuple[str, str, float]],
        k: int = 10,
        filters: Filters | None = None,
        exclude_seen: bool = True,
    ) -> tuple[np.ndarray, np.ndarray, str]:
        """The top-k rows, best first, their scores and the basis: `recommend` without the reasons
        (what the batch job stores)."""
        profile = self._profile(history)
        scores, basis = self.scores(user_id, history, profile)
        allowed = self.allowed(filters).copy()
        if exclude_seen:
            seen = [self.row[i] for i, _, _ in history if i in self.row]
            allowed[seen] = False
        candidates = np.flatnonzero(allowed)
        if not len(candidates):
            return candidates, np.zeros(0, np.float32), basis
        k = min(k, len(candidates))
        top = candidates[np.argpartition(-scores[candidates], k - 1)[:k]]
        top = top[np.argsort(-scores[top], kind="stable")]
        return top, scores[top], basis

    def explain(
        self,
        top: np.ndarray,
        scores: np.ndarray,
        history: Sequence[tuple[str, str, float]],
        basis: str,
        user_id: str | None,
    ) -> list[Recommendation]:
        """Each ranked row with the reason it is there (the history item it rests on)."""
        rows, _, types = self._profile(history)
        out = []
        together = self.bundle.together
        stores = {by: (index, index.vectors) for by in ("image", "text") if (index := self._index(by)) is not None}
        known_user = user_id is not None and self.bundle.users.lookup([user_id])[0] >= 0
        for r, score in zip(top.tolist(), scores.tolist(), strict=True):
            if basis == "popular":
                out.append(Recommendation(self.ids[r], score, "popular right now"))
                continue
            if not len(rows):
                out.append(Recommendation(self.ids[r], score, "popular with shoppers like you"))
                continue
            sims = self.joint[rows] @ self.joint[r]
            j = int(np.argmax(sims))
            h = int(rows[j])
            bought = together.indices[together.indptr[h] : together.indptr[h + 1]] if h < together.shape[0] else ()
            if r in bought:
                reason = f"often bought together with {self.title(h)}"
            elif self._looks_alike(stores, h, r):
                reason = f"visually similar to {self.title(h)}"
            elif known_user and sims[j] < 0.3:
                out.append(Recommendation(self.ids[r], score, "popular with shoppers like you"))
                continue
            else:
                reason = f"because you {_VERBS.get(types[j], 'viewed')} {self.title(h)}"
            out.append(Recommendation(self.ids[r], score, reason, self.ids[h]))
        return out

    def _pair_cosine(self, stores: dict[str, Any], by: str, a: int, b: int) -> float | None:
        if by not in stores:
            return None
        index, vectors = stores[by]
        ra, rb = index.rows.get(self.ids[a]), index.rows.get(self.ids[b])
        return None if ra is None or rb is None else float(vectors[ra] @ vectors[rb])

    def _looks_alike(self, stores: dict[str, Any], a: int, b: int) -> bool:
        """The photos are much closer than the texts (cosines shifted by each space's typical level)."""
        image, text = self._pair_cosine(stores, "image", a, b), self._pair_cosine(stores, "text", a, b)
        return image is not None and text is not None and image > 0.75 and image - 0.75 > text - 0.85

    def _index(self, by: str):
        if self.engine is None or by not in _INDEX_OF:
            return None
        retriever = self.engine.vectors.get(_INDEX_OF[by])
        return retriever.index if retriever is not None else None

    # -- item to item ----------------------------------------------------------------------------

    def similar(self, item_id: str, by: str = "fused", k: int = 10) -> list[tuple[str, float]]:
        """Items like this one by look ("image"), by description ("text") or both ("fused")."""
        if by not in SIMILAR_BY:
            raise ValueError(f"by: {by!r} is not one of {', '.join(SIMILAR_BY)}")
        r = self.index(item_id)
        index = self._index(by)
        if by != "fused":
            if index is None or item_id not in index.rows:
                return []
            # Over-fetch a little: items deleted since the index was built are dropped here.
            hits = index.search(index.vector(item_id)[None, :], k + 11)[0]
            return [(i, s) for i, s in hits if i != item_id and self.alive[self.row.get(i, r)]][:k]
        scores = self.joint @ self.joint[r]
        allowed = self.alive.copy()
        allowed[r] = False
        candidates = np.flatnonzero(allowed)
        k = min(k, len(candidates))
        if not k:
            return []
        top = candidates[np.argpartition(-scores[candidates], k - 1)[:k]]
        top = top[np.argsort(-scores[top], kind="stable")]
        return [(self.ids[t], float(scores[t])) for t in top]

    def together(self, item_id: str, k: int = 6) -> list[tuple[str, float]]:
        """Items bought with this one, strongest first."""
        r = self.index(item_id)
        matrix = self.bundle.together
        if r >= matrix.shape[0]:
            return []
        start, stop = matrix.indptr[r], matrix.indptr[r + 1]
        cols, vals = matrix.indices[start:stop], matrix.data[start:stop]
        order = np.argsort(-vals, kind="stable")
        out = [(self.ids[c], float(vals[o])) for o, c in zip(order, cols[order], strict=True) if self.alive[c]]
        return out[:k]
