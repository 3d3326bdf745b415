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

import dataclasses
import functools
import json
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from vitrina.ads.matching import AdRequest
from vitrina.ads.server import AdServer, ServedAd, blend
from vitrina.data.storage import Storage
from vitrina.features.encoder import Encoder
from vitrina.features.image_io import ImageError
from vitrina.features.text import item_text
from vitrina.features.text_encoder_base import TextEncoder
from vitrina.fusion.align import ContrastiveAligner
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

# "hybrid" fuses the text retrievers (lexical, semantic, text-image) and, given a photo, the image one;
# "voice" transcribes a clip and searches the transcript as hybrid.
MODES = ("lexical", "semantic", "text-image", "image", "voice", "hybrid")
_POOL = ThreadPoolExecutor(max_workers=4, thread_name_prefix="vitrina-search")
# Personal scorer: (user id, candidate item ids) -> one score per candidate, or None for an unknown user.
Personalizer = Callable[[str, Sequence[str]], np.ndarray | None]


class SearchError(ValueError):
    """A request the engine refuses (empty or oversized query, bad page, unknown mode): the message says why."""


@dataclass(frozen=True)
class SearchSettings:
    """`[search]` in the config; see defaults.toml for what each does."""

    candidates: int = 100
    fusion: str = "weighted"
    rrf_k: float = 60.0
    weights: Mapping[str, float] = field(
        default_factory=lambda: {"lexical": 2.0, "semantic": 1.0, "text-image": 0.5, "image": 1.0}
    )
    field_weights: Mapping[str, float] = field(default_factory=dict)
    text_fields: tuple[str, ...] = ("title", "description", "category_path", "brand")
    personal_weight: float = 0.3
    price_buckets: tuple[float, ...] = (10.0, 25.0, 50.0, 100.0, 250.0)
    facet_attributes: tuple[str, ...] = ()
    max_query_chars: int = 500
    max_page_size: int = 100
    max_upload_bytes: int = 10_000_000
    prefix_max_tokens: int = 3
    typo_tolerance: bool = True
    lexical_max_df: float = 0.2
    hnsw_m: int = 32
    hnsw_ef_construction: int = 100
    hnsw_ef_search: int = 64
    exact_below: int = 10_000
    mmap_vectors: bool = True

    def __post_init__(self) -> None:
        if self.fusion not in FUSIONS:
            raise ValueError(f"search.fusion: unknown fusion {self.fusion!r}; known: {', '.join(FUSIONS)}")
        if self.candidates < 1 or self.max_page_size < 1:
            raise ValueError("search.candidates and search.max_page_size must be at least 1")
        if any(w < 0 for w in self.weights.values()):
            raise ValueError(f"search.weights must be non-negative, got {dict(self.weights)}")

    @classmethod
    def from_config(cls, cfg: Any) -> SearchSettings:
        section = cfg.section("search", set(cls.__dataclass_fields__))
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
    # What the speech recogniser heard (voice queries).
    transcript: str | None = None
    # Sponsored results won in the ad auction, and the page order: ("organic" | "sponsored", item id).
    sponsored: list[ServedAd] = field(default_factory=list)
    layout: list[tuple[str, str]] = field(default_factory=list)

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
            "transcript": self.transcript,
            "sponsored": [dataclasses.asdict(ad) for ad in self.sponsored],
            "layout": [{"kind": kind, "item_id": item} for kind, item in self.layout],
        }


@dataclass
class VectorRetriever:
    """A vector index of items and how a query (text or photo) becomes a vector in its space."""

    index: VectorIndex
    embed: Callable[[Any], np.ndarray]


@dataclass
class Models:
    """What turns queries and new items into vectors; None where the engine lacks that part."""

    text_encoder: TextEncoder | None = None
    image_encoder: Encoder | None = None
    aligner: ContrastiveAligner | None = None
    recognizer: Any = None  # anything with transcribe(audio) -> Transcript (features.speech)


def _photo(paths: Any, root: Path | None) -> str | None:
    """The first photo path of an item, resolved against the catalogue's image folder."""
    if not isinstance(paths, list | tuple) or not paths:
        return None
    path = Path(str(paths[0]))
    return str(path if path.is_absolute() or root is None else root / path)


def _encode_photos(models: Models, items: pd.DataFrame, root: Path | None) -> tuple[np.ndarray, np.ndarray]:
    """Image vectors of the items' first photos, and which items have one that decodes: a corrupt
    photo costs its item the photo indexes, not the build."""
    encoder = models.image_encoder
    assert encoder is not None
    paths = [_photo(p, root) for p in items["image_paths"].tolist()]
    has = np.array([p is not None and Path(p).is_file() for p in paths], dtype=bool)
    vectors = np.zeros((len(items), encoder.dim), dtype=np.float32)
    if has.any():
        present = [p for p, h in zip(paths, has, strict=True) if h]
        vectors[has] = encoder.encode(present, progress=len(present) > 1000, on_error="mask")
        has[np.flatnonzero(has)[list(encoder.last_errors)]] = False
    return vectors, has


def _photo_rows(models: Models, photos: np.ndarray) -> dict[str, np.ndarray]:
    """Rows for the photo-based indexes: raw image vectors, and their aligned form."""
    if not len(photos):
        return {}
    out = {"image": photos}
    if models.aligner is not None and models.text_encoder is not None:
        out["text-image"] = models.aligner.embed_image(photos)
    return out


class SearchEngine:
    """Search over the items of one shop's database."""

    def __init__(
        self,
        catalog: pd.DataFrame,
        lexical: LexicalIndex,
        indexes: Mapping[str, VectorIndex] | None = None,
        models: Models | None = None,
        settings: SearchSettings | None = None,
        image_root: str | Path | None = None,
    ) -> None:
        self.settings = settings or SearchSettings()
        self.lexical = lexical
        self.models = models or Models()
        self.image_root = Path(image_root) if image_root else None
        self.vectors: dict[str, VectorRetriever] = {}
        for name, index in (indexes or {}).items():
            self.vectors[name] = self._retriever(name, index)
        self._set_catalog(catalog)

    def _retriever(self, name: str, index: VectorIndex) -> VectorRetriever:
        m = self.models
        need = {"semantic": ("text encoder", m.text_encoder), "image": ("image encoder", m.image_encoder)}
        need["text-image"] = ("aligner and text encoder", m.aligner if m.text_encoder is not None else None)
        if name not in need:
            raise ValueError(f"unknown vector index {name!r}; known: {', '.join(need)}")
        what, model = need[name]
        if model is None:
            raise ValueError(f"the {name!r} index needs its {what}")
        if name == "semantic":
            return VectorRetriever(index, lambda q: m.text_encoder.encode_queries([q]))
        if name == "image":
            return VectorRetriever(index, lambda photo: m.image_encoder.encode([photo]))
        # Item texts trained the aligner's text head, so a query is embedded as a passage too.
        return VectorRetriever(index, lambda q: m.aligner.embed_text(m.text_encoder.encode([q])))

    # -- construction -----------------------------------------------------------------------------

    @classmethod
    def build(
        cls,
        storage: Storage,
        models: Models | TextEncoder | None = None,
        settings: SearchSettings | None = None,
        text_vectors: Callable[[pd.DataFrame], np.ndarray] | None = None,
        image_vectors: Callable[[pd.DataFrame], tuple[np.ndarray, np.ndarray]] | None = None,
        image_root: str | Path | None = None,
    ) -> SearchEngine:
        """Index every item of the database: the full-text index (in the database) and a vector
        index per model given (item texts with the text encoder; photos with the image encoder;
        photos in the aligner's joint space for text -> image). `text_vectors(catalog)` and
        `image_vectors(catalog)` -> (vectors, has-photo mask) supply item vectors in catalogue row
        order (e.g. from the feature store); by default the encoders embed the items."""
        settings = settings or SearchSettings()
        models = models if isinstance(models, Models) else Models(text_encoder=models)
        catalog = storage.read("items")
        lexical = cls.lexical_index(storage, settings)
        lexical.build(catalog)
        ids = np.array(catalog["item_id"].astype(str).tolist(), dtype=object)
        indexes: dict[str, VectorIndex] = {}
        if models.text_encoder is not None:
            if text_vectors is not None:
                vectors = text_vectors(catalog)
            else:
                vectors = models.text_encoder.encode(item_text(catalog, settings.text_fields), progress=True)
            indexes["semantic"] = cls.vector_index(vectors.shape[1], settings)
            indexes["semantic"].add(list(ids), vectors)
        if models.image_encoder is not None:
            image_root = Path(image_root) if image_root else None
            photos, has = image_vectors(catalog) if image_vectors else _encode_photos(models, catalog, image_root)
            for name, rows in _photo_rows(models, photos[has]).items():
                indexes[name] = cls.vector_index(rows.shape[1], settings)
                indexes[name].add(list(ids[has]), rows)
        return cls(catalog, lexical, indexes, models, settings, image_root)

    @staticmethod
    def lexical_index(storage: Storage, settings: SearchSettings) -> LexicalIndex:
        """The full-text index of a database (it lives in the database: every process shares it)."""
        return LexicalIndex(
            storage.engine,
            weights=settings.field_weights,
            prefix_max_tokens=settings.prefix_max_tokens,
            typo_tolerance=settings.typo_tolerance,
            max_df=settings.lexical_max_df,
        )

    @staticmethod
    def vector_index(dim: int, settings: SearchSettings) -> VectorIndex:
        """An empty HNSW index with the [search] settings."""
        return VectorIndex(
            dim,
            m=settings.hnsw_m,
            ef_construction=settings.hnsw_ef_construction,
            ef_search=settings.hnsw_ef_search,
            exact_below=settings.exact_below,
        )

    def _identity(self) -> dict[str, Any]:
        m = self.models
        out: dict[str, Any] = {}
        for key, encoder in (("text_encoder", m.text_encoder), ("image_encoder", m.image_encoder)):
            out[key] = {"name": encoder.name, "fingerprint": encoder.fingerprint()} if encoder is not None else None
        return out

    def save(self, folder: str | Path) -> Path:
        """The vector indexes, the aligner and what loading needs to check; the full-text index
        stays in the database."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        for name, retriever in self.vectors.items():
            retriever.index.save(folder / name)
        if self.models.aligner is not None:
            self.models.aligner.save(folder / "aligner")
        info = {
            **self._identity(),
            "indexes": list(self.vectors),
            "text_fields": list(self.settings.text_fields),
            "image_root": str(self.image_root) if self.image_root else None,
        }
        (folder / "search.json").write_text(json.dumps(info, indent=2))
        return folder

    @classmethod
    def load(
        cls,
        folder: str | Path,
        storage: Storage,
        models: Models | TextEncoder | None = None,
        settings: SearchSettings | None = None,
    ) -> SearchEngine:
        """Open a saved engine on the database it was built from; the encoders must be the ones it
        was built with (same name and fingerprint), or query vectors would not match the index."""
        folder = Path(folder)
        info = json.loads((folder / "search.json").read_text())
        models = models if isinstance(models, Models) else Models(text_encoder=models)
        if (folder / "aligner").exists() and models.aligner is None:
            models = dataclasses.replace(models, aligner=ContrastiveAligner.load(folder / "aligner"))
        for key in ("text_encoder", "image_encoder"):
            saved, given = info.get(key), getattr(models, key)
            if saved is None:
                models = dataclasses.replace(models, **{key: None})
            elif given is None:
                raise ValueError(f"{folder} has indexes built with {saved['name']}: pass that {key.replace('_', ' ')}")
            elif (given.name, given.fingerprint()) != (saved["name"], saved["fingerprint"]):
                raise ValueError(
                    f"{folder} was built with {key.replace('_', ' ')} {saved['name']}, not {given.name} "
                    "(or with other settings): rebuild the index or use the same encoder"
                )
        settings = settings or SearchSettings()
        indexes = {name: VectorIndex.load(folder / name, mmap=settings.mmap_vectors) for name in info["indexes"]}
        lexical = cls.lexical_index(storage, settings)
        return cls(storage.read("items"), lexical, indexes, models, settings, info["image_root"])

    # -- catalogue --------------------------------------------------------------------------------

    def _set_catalog(self, catalog: pd.DataFrame) -> None:
        self.catalog = catalog.reset_index(drop=True)
        ids = self.catalog["item_id"].astype(str)
        self._row = dict(zip(ids, range(len(ids)), strict=True))
        self._titles = self.catalog["title"].tolist()
        self._mask.cache_clear()
        # Catalogue row of each vector-index row (-1: not in the catalogue any more).
        self._index_rows = {
            name: np.array([self._row.get(i, -1) for i in r.index.row_ids], dtype=np.int64)
            for name, r in self.vectors.items()
        }

    def __contains__(self, item_id: object) -> bool:
        return str(item_id) in self._row

    @functools.lru_cache(maxsize=256)  # noqa: B019 - one engine per process; cleared on every catalogue change
    def _mask(self, filters: Filters) -> np.ndarray:
        return filters.mask(self.catalog)

    def upsert_items(
        self,
        items: pd.DataFrame,
        text_vectors: np.ndarray | None = None,
        image_vectors: tuple[np.ndarray, np.ndarray] | None = None,
        index_text: bool = True,
    ) -> None:
        """Add or replace items (rows in schema columns, already written to the database) in every
        index without a rebuild. Their text and photos are embedded here unless vectors are given
        (`image_vectors` = (vectors, has-photo mask)); an item whose photo is gone leaves the photo
        indexes. `index_text=False` leaves the full-text index (in the shared database) alone: a
        serving worker catching up with a change another process already indexed."""
        ids = np.array(items["item_id"].astype(str).tolist(), dtype=object)
        if index_text:
            self.lexical.upsert(items)
        m = self.models
        if "semantic" in self.vectors and m.text_encoder is not None:
            if text_vectors is None:
                text_vectors = m.text_encoder.encode(item_text(items, self.settings.text_fields))
            self.vectors["semantic"].index.add(list(ids), text_vectors)
        if "image" in self.vectors:
            photos, has = image_vectors if image_vectors is not None else _encode_photos(m, items, self.image_root)
            for name in ("image", "text-image"):
                if name in self.vectors:
                    index = self.vectors[name].index
                    index.delete([i for i in ids[~has] if i in index.rows])
            for name, rows in _photo_rows(m, photos[has]).items():
                self.vectors[name].index.add(list(ids[has]), rows)
        kept = self.catalog[~self.catalog["item_id"].astype(str).isin(set(ids))]
        self._set_catalog(pd.concat([kept, items[self.catalog.columns]], ignore_index=True))

    def delete_items(self, item_ids: Sequence[str], index_text: bool = True) -> None:
        """Remove items from every index (the database rows are the caller's to delete);
        `index_text` as in `upsert_items`."""
        unknown = [i for i in item_ids if i not in self._row]
        if unknown:
            raise KeyError(f"unknown item id {unknown[0]!r} ({len(unknown)} unknown)")
        if index_text:
            self.lexical.delete(item_ids)
        for retriever in self.vectors.values():
            retriever.index.delete([i for i in item_ids if i in retriever.index.rows])
        self._set_catalog(self.catalog[~self.catalog["item_id"].astype(str).isin(set(item_ids))])

    def check(self, storage: Storage) -> dict[str, dict[str, list[str]]]:
        """Differences between the indexes and the database's items: per index, the ids missing
        from it, those it still holds after their deletion, and (full-text) those whose text
        changed since indexing. All lists empty means consistent. Photo indexes hold only items
        with a photo, so only their extra ids count."""
        items = storage.read("items")
        report = {"lexical": stale_rows(self.lexical.digests(), items)}
        current = set(items["item_id"].astype(str))
        for name, retriever in self.vectors.items():
            indexed = set(retriever.index.rows)
            report[name] = {"extra": sorted(indexed - current)}
            if name == "semantic":
                report[name]["missing"] = sorted(current - indexed)
        return report

    # -- querying ---------------------------------------------------------------------------------

    def modes(self) -> tuple[str, ...]:
        """The modes this engine can serve, in `MODES` order."""
        have = {"lexical", *self.vectors}
        if self.models.recognizer is not None:
            have.add("voice")
        if have & {"semantic", "text-image", "image"}:
            have.add("hybrid")
        return tuple(m for m in MODES if m in have)

    def retrieve(
        self, name: str, query: Any, k: int, filters: Filters, vector: np.ndarray | None = None
    ) -> list[tuple[str, float]]:
        """One retriever's best `k` (item id, score) that pass the filters. `query` is text, or a
        photo (path or bytes) for "image"; `vector` is the query's embedding when the caller
        already has it (batch evaluation)."""
        if name == "lexical":
            return [(m.item_id, m.score) for m in self.lexical.search(query, k, filters)]
        retriever = self.vectors.get(name)
        if retriever is None:
            raise SearchError(f"no {name!r} index in this engine; available: {', '.join(self.modes())}")
        allowed = None
        if filters:
            rows = self._index_rows[name]
            allowed = (rows >= 0) & self._mask(filters)[np.maximum(rows, 0)]
        if vector is None:
            try:
                vector = retriever.embed(query)
            except ImageError as exc:
                raise SearchError(f"the photo cannot be used: {exc}") from exc
        return retriever.index.search(vector, k, allowed)[0]

    def search(
        self,
        query: str | None = None,
        mode: str = "hybrid",
        filters: Filters | Mapping[str, Any] | None = None,
        page: int = 1,
        page_size: int = 10,
        user_id: str | None = None,
        personalizer: Personalizer | None = None,
        fusion: str | None = None,
        photo: bytes | str | None = None,
        audio: bytes | str | None = None,
        ads: AdServer | None = None,
        ad_slots: Sequence[int] = (0, 5),
        segments: Sequence[str] = (),
    ) -> SearchResponse:
        """One page of results for a text query, a photo ("image", or with text in "hybrid") or a
        spoken query ("voice": transcribed, then searched as hybrid text); see the module docstring.
        With an ad server, the first page also gets sponsored results (matched on the query and its
        vector, auctioned, logged) at `ad_slots` of the `layout`, labelled as such."""
        s = self.settings
        self._check_page(mode, page, page_size)
        if not isinstance(filters, Filters):
            filters = Filters.parse(filters)
        transcript = None
        if mode == "voice":
            query = transcript = self.transcribe(audio)
        elif audio is not None:
            raise SearchError(f"an audio query needs mode 'voice', not {mode!r}")
        if photo is not None:
            if mode not in ("image", "hybrid"):
                raise SearchError(f"a photo query needs mode 'image' or 'hybrid', not {mode!r}")
            self._check_upload("photo", photo)
        text_needed = mode != "image" and not (mode == "hybrid" and photo is not None)
        if query is not None or text_needed:
            query = self._check_query(query)
        payload: dict[str, Any] = {}
        if mode in ("hybrid", "voice"):
            if query is not None:
                payload |= {n: query for n in ("lexical", "semantic", "text-image") if n in self.modes()}
                payload = {n: q for n, q in payload.items() if s.weights.get(n, 1.0) > 0}
            if photo is not None and "image" in self.vectors:
                payload["image"] = photo
        elif mode == "image":
            if photo is None:
                raise SearchError("mode 'image' needs a photo")
            payload["image"] = photo
        else:
            payload[mode] = query
        depth = max(s.candidates, page * page_size)
        vectors: dict[str, np.ndarray | None] = dict.fromkeys(payload)
        if ads is not None and query is not None and "semantic" in self.vectors:
            # The ad matcher compares the same query vector with the advertised items' text vectors.
            vectors["semantic"] = self.vectors["semantic"].embed(query)
        if len(payload) == 1:
            lists = {name: self.retrieve(name, q, depth, filters, vectors[name]) for name, q in payload.items()}
        else:  # the database query and the encoder both release the GIL: run the retrievers side by side
            futures = {
                name: _POOL.submit(self.retrieve, name, q, depth, filters, vectors[name]) for name, q in payload.items()
            }
            lists = {name: f.result() for name, f in futures.items()}
        if len(lists) == 1:
            (ranked,) = lists.values()
        else:
            ranked = fuse(lists, s.weights, fusion or s.fusion, s.rrf_k)
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
        sponsored: list[ServedAd] = []
        if ads is not None and page == 1:
            request = AdRequest(
                day=date.today(),
                query=query,
                user_id=user_id,
                segments=tuple(segments),
                category=filters.category[0] if filters.category else None,
                query_vector=None if vectors.get("semantic") is None else vectors["semantic"][0],
            )
            sponsored = ads.serve(request, len(ad_slots))
        return SearchResponse(
            query=query or "",
            mode=mode,
            hits=hits,
            page=page,
            page_size=page_size,
            total=len(ranked),
            facets=facet_counts(self.catalog, pool, s.price_buckets, s.facet_attributes),
            corrections=self.lexical.corrections(query) if "lexical" in lists else {},
            transcript=transcript,
            sponsored=sponsored,
            layout=[(kind, h.item_id) for kind, h in blend(hits, sponsored, ad_slots)],
        )

    def transcribe(self, audio: bytes | str | None) -> str:
        """The text of a spoken query (checked like any upload); SearchError when nothing usable."""
        if self.models.recognizer is None:
            raise SearchError(f"this engine has no speech recogniser; available: {', '.join(self.modes())}")
        if audio is None:
            raise SearchError("mode 'voice' needs an audio clip")
        self._check_upload("audio clip", audio)
        try:
            text = self.models.recognizer.transcribe(audio).text.strip()
        except (ValueError, OSError, RuntimeError) as exc:
            raise SearchError(f"the audio clip cannot be decoded: {exc}") from exc
        if not text:
            raise SearchError("no speech was recognised in the audio clip")
        return text

    def _title(self, item_id: str) -> str | None:
        row = self._row.get(item_id)
        title = self._titles[row] if row is not None else None
        return title if isinstance(title, str) else None

    def _check_page(self, mode: str, page: int, page_size: int) -> None:
        s = self.settings
        if mode not in self.modes():
            hint = " (this engine was built without what it needs)" if mode in MODES else ""
            raise SearchError(f"unknown search mode {mode!r}{hint}; available: {', '.join(self.modes())}")
        if page < 1:
            raise SearchError(f"page must be at least 1, got {page}")
        if not 1 <= page_size <= s.max_page_size:
            raise SearchError(f"page_size must be between 1 and {s.max_page_size}, got {page_size}")

    def _check_query(self, query: str | None) -> str:
        if not isinstance(query, str) or not query.strip():
            raise SearchError("the query is empty")
        if len(query) > self.settings.max_query_chars:
            raise SearchError(f"the query has {len(query)} characters; the limit is {self.settings.max_query_chars}")
        return query.strip()

    def _check_upload(self, what: str, data: bytes | str) -> None:
        if isinstance(data, bytes):
            size = len(data)
        elif Path(data).is_file():
            size = Path(data).stat().st_size
        else:
            raise SearchError(f"the {what} {data!r} is not a file")
        if size == 0:
            raise SearchError(f"the {what} is empty")
        if size > self.settings.max_upload_bytes:
            raise SearchError(f"the {what} has {size:,} bytes; the limit is {self.settings.max_upload_bytes:,}")

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
