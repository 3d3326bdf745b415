"""The search engine: lexical, semantic and hybrid retrieval over one catalogue, with filters,
facets, pagination and optional personal re-ranking.

Each retriever returns its best `candidates` items that pass the filters (the filter runs inside
retrieval: SQL WHERE for the full-text index, an allowed-row mask for the vector index). Hybrid
fuses the lists (`rank_fusion`), facets count the fused pool, and a page is cut from it. With a
user, the pool is re-ranked by a blend of the fused score and the recommender's score for that
user, both min-max scaled.

The catalogue (the items table) is held in memory for filters, facets and result fields; the
full-text index lives in the database and the vector index in files (`save`/`load`).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from vitrina.data.storage import Storage
from vitrina.features.text import item_text
from vitrina.features.text_encoder_base import TextEncoder
from vitrina.search.filters import Filters, facet_counts
from vitrina.search.lexical import LexicalIndex, stale_rows
from vitrina.search.rank_fusion import FUSIONS, fuse, minmax
from vitrina.search.vector import VectorIndex

__all__ = [
    "MODES",
    "SearchEngine",
    "SearchError",
    "SearchHit",
    "SearchResponse",
    "SearchSettings",
    "recommender_personalizer",
]

# Retrievers a text query can use; "hybrid" fuses the lexical and semantic ones.
MODES = ("lexical", "semantic", "hybrid")
# Personal scorer: (user id, candidate item ids) -> one score per candidate, or None for an unknown user.
Personalizer = Callable[[str, Sequence[str]], np.ndarray | None]


class SearchError(ValueError):
    """A request the engine refuses (empty or oversized query, bad page, unknown mode): the message says why."""


@dataclass(frozen=True)
class SearchSettings:
    """`[search]` in the config; see defaults.toml for what each does."""

    candidates: int = 100
    fusion: str = "rrf"
    rrf_k: float = 60.0
    weights: Mapping[str, float] = field(default_factory=lambda: {"lexical": 1.0, "semantic": 1.0})
    field_weights: Mapping[str, float] = field(default_factory=dict)
    text_fields: tuple[str, ...] = ("title", "description", "category_path", "brand")
    personal_weight: float = 0.3
    price_buckets: tuple[float, ...] = (10.0, 25.0, 50.0, 100.0, 250.0)
    facet_attributes: tuple[str, ...] = ()
    max_query_chars: int = 500
    max_page_size: int = 100
    prefix_max_tokens: int = 3
    typo_tolerance: bool = True
    hnsw_m: int = 32
    hnsw_ef_construction: int = 100
    hnsw_ef_search: int = 64
    exact_below: int = 10_000

    def __post_init__(self) -> None:
        if self.fusion not in FUSIONS:
            raise ValueError(f"search.fusion: unknown fusion {self.fusion!r}; known: {', '.join(FUSIONS)}")
        if self.candidates < 1 or self.max_page_size < 1:
            raise ValueError("search.candidates and search.max_page_size must be at least 1")
        if any(w < 0 for w in self.weights.values()):
            raise ValueError(f"search.weights must be non-negative, got {dict(self.weights)}")

    @classmethod
    def from_config(cls, cfg: Any) -> SearchSettings:
        names = {f for f in cls.__dataclass_fields__}
        section = cfg.section("search", names)
        for key in ("text_fields", "price_buckets", "facet_attributes"):
            if key in section:
                section[key] = tuple(section[key])
        return cls(**section)


@dataclass
class SearchHit:
    item_id: str
    score: float
    title: str | None
    # 1-based rank of the item in each retriever's list that found it.
    ranks: dict[str, int]


@dataclass
class SearchResponse:
    query: str
    mode: str
    hits: list[SearchHit]
    page: int
    page_size: int
    # Size of the fused candidate pool the page was cut from (each retriever gives at most
    # `candidates`), which the facets count.
    total: int
    facets: dict[str, dict[str, int]]
    # Query words the lexical retriever widened to a known word (typo tolerance).
    corrections: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "query": self.query,
            "mode": self.mode,
            "page": self.page,
            "page_size": self.page_size,
            "total": self.total,
            "hits": [vars(h) for h in self.hits],
            "facets": self.facets,
            "corrections": self.corrections,
        }


class SearchEngine:
    """Search over the items of one shop's database."""

    def __init__(
        self,
        catalog: pd.DataFrame,
        lexical: LexicalIndex,
        text_index: VectorIndex | None = None,
        text_encoder: TextEncoder | None = None,
        settings: SearchSettings | None = None,
    ) -> None:
        if (text_index is None) != (text_encoder is None):
            raise ValueError("a text index needs its text encoder (and the reverse)")
        self.settings = settings or SearchSettings()
        self.lexical = lexical
        self.text_index, self.text_encoder = text_index, text_encoder
        self._set_catalog(catalog)

    # -- construction -----------------------------------------------------------------------------

    @classmethod
    def build(
        cls,
        storage: Storage,
        text_encoder: TextEncoder | None = None,
        settings: SearchSettings | None = None,
        text_vectors: Callable[[pd.DataFrame], np.ndarray] | None = None,
    ) -> SearchEngine:
        """Index every item of the database: the full-text index (in the database) and, with an
        encoder, the vector index of item texts. `text_vectors(catalog)` supplies the item vectors
        in catalogue row order (e.g. from the feature store); by default the encoder embeds them."""
        settings = settings or SearchSettings()
        catalog = storage.read("items")
        lexical = cls._lexical(storage, settings)
        lexical.build(catalog)
        text_index = None
        if text_encoder is not None:
            text_index = cls._vector_index(text_encoder.dim, settings)
            if text_vectors is not None:
                vectors = text_vectors(catalog)
            else:
                vectors = text_encoder.encode(item_text(catalog, settings.text_fields), progress=True)
            text_index.add(catalog["item_id"].astype(str).tolist(), vectors)
        return cls(catalog, lexical, text_index, text_encoder, settings)

    @staticmethod
    def _lexical(storage: Storage, settings: SearchSettings) -> LexicalIndex:
        return LexicalIndex(
            storage.engine,
            weights=settings.field_weights,
            prefix_max_tokens=settings.prefix_max_tokens,
            typo_tolerance=settings.typo_tolerance,
        )

    @staticmethod
    def _vector_index(dim: int, settings: SearchSettings) -> VectorIndex:
        return VectorIndex(
            dim,
            m=settings.hnsw_m,
            ef_construction=settings.hnsw_ef_construction,
            ef_search=settings.hnsw_ef_search,
            exact_below=settings.exact_below,
        )

    def save(self, folder: str | Path) -> Path:
        """The vector index and what loading needs to check; the full-text index stays in the database."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        info: dict[str, Any] = {"text_encoder": None, "text_fields": list(self.settings.text_fields)}
        if self.text_index is not None and self.text_encoder is not None:
            self.text_index.save(folder / "text")
            info["text_encoder"] = {"name": self.text_encoder.name, "fingerprint": self.text_encoder.fingerprint()}
        (folder / "search.json").write_text(json.dumps(info, indent=2))
        return folder

    @classmethod
    def load(
        cls,
        folder: str | Path,
        storage: Storage,
        text_encoder: TextEncoder | None = None,
        settings: SearchSettings | None = None,
    ) -> SearchEngine:
        """Open a saved engine on the database it was built from; the encoder must be the one it was
        built with (same name and fingerprint), or the query vectors would not match the index."""
        folder = Path(folder)
        info = json.loads((folder / "search.json").read_text())
        settings = settings or SearchSettings()
        saved = info.get("text_encoder")
        text_index = None
        if saved is not None:
            if text_encoder is None:
                raise ValueError(f"{folder} has a text index built with {saved['name']}: pass that encoder")
            if (text_encoder.name, text_encoder.fingerprint()) != (saved["name"], saved["fingerprint"]):
                raise ValueError(
                    f"{folder} was built with text encoder {saved['name']}, not {text_encoder.name} "
                    "(or with other settings): rebuild the index or use the same encoder"
                )
            text_index = VectorIndex.load(folder / "text")
        else:
            text_encoder = None
        return cls(storage.read("items"), cls._lexical(storage, settings), text_index, text_encoder, settings)

    # -- catalogue --------------------------------------------------------------------------------

    def _set_catalog(self, catalog: pd.DataFrame) -> None:
        self.catalog = catalog.reset_index(drop=True)
        ids = self.catalog["item_id"].astype(str)
        self._row = dict(zip(ids, range(len(ids)), strict=True))
        self._titles = self.catalog["title"].tolist()
        self._mask.cache_clear()
        if self.text_index is not None:
            self._text_rows = np.array([self._row.get(i, -1) for i in self.text_index.row_ids], dtype=np.int64)

    @functools.lru_cache(maxsize=256)  # noqa: B019 - one engine per process; cleared on every catalogue change
    def _mask(self, filters: Filters) -> np.ndarray:
        return filters.mask(self.catalog)

    def upsert_items(self, items: pd.DataFrame, text_vectors: np.ndarray | None = None) -> None:
        """Add or replace items (rows in schema columns, already written to the database) in every
        index without a rebuild; their text is embedded here unless vectors are given."""
        ids = items["item_id"].astype(str).tolist()
        self.lexical.upsert(items)
        if self.text_index is not None and self.text_encoder is not None:
            if text_vectors is None:
                text_vectors = self.text_encoder.encode(item_text(items, self.settings.text_fields))
            self.text_index.add(ids, text_vectors)
        kept = self.catalog[~self.catalog["item_id"].astype(str).isin(ids)]
        self._set_catalog(pd.concat([kept, items[self.catalog.columns]], ignore_index=True))

    def delete_items(self, item_ids: Sequence[str]) -> None:
        """Remove items from every index (the database rows are the caller's to delete)."""
        unknown = [i for i in item_ids if i not in self._row]
        if unknown:
            raise KeyError(f"unknown item id {unknown[0]!r} ({len(unknown)} unknown)")
        self.lexical.delete(item_ids)
        if self.text_index is not None:
            self.text_index.delete([i for i in item_ids if i in self.text_index.rows])
        self._set_catalog(self.catalog[~self.catalog["item_id"].astype(str).isin(set(item_ids))])

    def check(self, storage: Storage) -> dict[str, dict[str, list[str]]]:
        """Differences between the indexes and the database's items: per index, the ids missing
        from it, those it still holds after their deletion, and (full-text) those whose text
        changed since indexing. All lists empty means consistent."""
        items = storage.read("items")
        report = {"lexical": {k: v.tolist() for k, v in stale_rows(self.lexical.digests(), items).items()}}
        if self.text_index is not None:
            current, indexed = set(items["item_id"].astype(str)), set(self.text_index.rows)
            report["semantic"] = {"missing": sorted(current - indexed), "extra": sorted(indexed - current)}
        return report

    # -- querying ---------------------------------------------------------------------------------

    def modes(self) -> tuple[str, ...]:
        return MODES if self.text_index is not None else ("lexical",)

    def retrieve(
        self, mode: str, query: str, k: int, filters: Filters, vector: np.ndarray | None = None
    ) -> list[tuple[str, float]]:
        """One retriever's best `k` (item id, score) that pass the filters; `vector` is the query's
        embedding when the caller already has it (batch evaluation)."""
        if mode == "lexical":
            return [(m.item_id, m.score) for m in self.lexical.search(query, k, filters)]
        if mode == "semantic":
            assert self.text_index is not None and self.text_encoder is not None
            allowed = None
            if filters:
                rows = self._text_rows
                allowed = (rows >= 0) & self._mask(filters)[np.maximum(rows, 0)]
            if vector is None:
                vector = self.text_encoder.encode_queries([query])
            return self.text_index.search(vector, k, allowed)[0]
        raise SearchError(f"unknown retriever {mode!r}")

    def search(
        self,
        query: str,
        mode: str = "hybrid",
        filters: Filters | Mapping[str, Any] | None = None,
        page: int = 1,
        page_size: int = 10,
        user_id: str | None = None,
        personalizer: Personalizer | None = None,
        fusion: str | None = None,
    ) -> SearchResponse:
        """One page of results for a text query; see the module docstring for the steps."""
        s = self.settings
        query = self._check_request(query, mode, page, page_size)
        if not isinstance(filters, Filters):
            filters = Filters.parse(filters)
        depth = max(s.candidates, page * page_size)
        names = ("lexical", "semantic") if mode == "hybrid" else (mode,)
        lists = {name: self.retrieve(name, query, depth, filters) for name in names}
        ranked = lists[mode] if len(lists) == 1 else fuse(lists, s.weights, fusion or s.fusion, s.rrf_k)
        if user_id is not None and personalizer is not None and ranked:
            ranked = self._personalise(ranked, user_id, personalizer)
        ranks = {name: {item: r + 1 for r, (item, _) in enumerate(found)} for name, found in lists.items()}
        start = (page - 1) * page_size
        hits = [
            SearchHit(
                item_id=item,
                score=float(score),
                title=self._title(item),
                ranks={n: r[item] for n, r in ranks.items() if item in r},
            )
            for item, score in ranked[start : start + page_size]
        ]
        pool = np.array([self._row[i] for i, _ in ranked if i in self._row], dtype=np.int64)
        corrections = {}
        if "lexical" in names:
            for group in self.lexical.query_terms(query):
                if len(group) > 1 and not group[1].endswith("*"):
                    corrections[group[0]] = group[1]
        return SearchResponse(
            query=query,
            mode=mode,
            hits=hits,
            page=page,
            page_size=page_size,
            total=len(ranked),
            facets=facet_counts(self.catalog, pool, s.price_buckets, s.facet_attributes),
            corrections=corrections,
        )

    def _title(self, item_id: str) -> str | None:
        row = self._row.get(item_id)
        title = self._titles[row] if row is not None else None
        return title if isinstance(title, str) else None

    def _check_request(self, query: str, mode: str, page: int, page_size: int) -> str:
        s = self.settings
        if mode not in self.modes():
            hint = "" if mode not in MODES else " (this engine has no text vector index: build it with an encoder)"
            raise SearchError(f"unknown search mode {mode!r}{hint}; available: {', '.join(self.modes())}")
        if not isinstance(query, str) or not query.strip():
            raise SearchError("the query is empty")
        if len(query) > s.max_query_chars:
            raise SearchError(f"the query has {len(query)} characters; the limit is {s.max_query_chars}")
        if page < 1:
            raise SearchError(f"page must be at least 1, got {page}")
        if not 1 <= page_size <= s.max_page_size:
            raise SearchError(f"page_size must be between 1 and {s.max_page_size}, got {page_size}")
        return query.strip()

    def _personalise(
        self, ranked: list[tuple[str, float]], user_id: str, personalizer: Personalizer
    ) -> list[tuple[str, float]]:
        items = [i for i, _ in ranked]
        personal = personalizer(user_id, items)
        if personal is None:
            return ranked
        blended = minmax(np.array([s for _, s in ranked])) + self.settings.personal_weight * minmax(personal)
        order = np.argsort(-blended, kind="stable")
        return [(items[i], float(blended[i])) for i in order]


def recommender_personalizer(model: Any) -> Personalizer:
    """A personal scorer from a fitted Recommender: its scores for the candidates the model knows
    (the others get the lowest); None for a user the model has never seen."""

    def score(user_id: str, items: Sequence[str]) -> np.ndarray | None:
        if user_id not in model.users:
            return None
        known = np.array([i in model.items for i in items])
        scores = np.full(len(items), np.nan)
        if known.any():
            columns = model.items.to_index([i for i, k in zip(items, known, strict=True) if k])
            scores[known] = model.score([model.users.index(user_id)], columns)[0]
        floor = np.nanmin(scores) if known.any() else 0.0
        return np.where(np.isnan(scores), floor, scores)

    return score
