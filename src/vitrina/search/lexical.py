"""Keyword search inside the shop's own database: SQLite FTS5 (BM25) or PostgreSQL full-text search.

Text is tokenised by Vitrina before it reaches the database (`TextPreprocessor`: cleaning, jieba
for Chinese, stop words, English stems), stored space-separated, and queries go through the same
steps, so both backends see identical terms and Chinese works without a database extension.

Ranking: SQLite scores with FTS5's `bm25()` and per-field weights (title above description).
PostgreSQL has no BM25: it ranks with `ts_rank` over four weight classes (A title, B brand and
category, C description, D attributes), the class weights taken from the same field weights.

Short queries match the last word as a prefix (as-you-type), and a word the index has never seen is
widened to its nearest indexed word (`Speller`, on the unstemmed words kept in `search_vocab`: a
typo often changes the stem, "cordles" -> "cordl" but "cordless" -> "cordless"). Filters are a
WHERE on the joined items table, so they act inside the ranked retrieval.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
import sqlalchemy as sa

from vitrina.data.schema import items_table
from vitrina.features.text import TextPreprocessor, stem
from vitrina.search.filters import Filters
from vitrina.search.spelling import Speller

__all__ = ["FIELDS", "LexicalIndex", "Match", "index_fields"]

FIELDS = ("title", "description", "category", "brand", "attributes")
DEFAULT_WEIGHTS = {"title": 3.0, "description": 1.0, "category": 1.5, "brand": 2.0, "attributes": 1.0}
_SOURCE = {"title": "title", "description": "description", "category": "category_path", "brand": "brand"}
_PG_CLASS = {"title": "A", "brand": "B", "category": "B", "description": "C", "attributes": "D"}
_FTS = "search_fts"
_PG = "search_docs"
_VOCAB = "search_vocab"
# Full-text query syntax per backend (is it SQLite?): prefix term, exact term, OR, AND.
_SYNTAX = {True: ('"{}" *', '"{}"', " OR ", " AND "), False: ("'{}':*", "'{}'", " | ", " & ")}
# Results below which lexical retrieval also ORs the common words in (a page must not come back empty).
FULL_PAGE = 10
# Rows per INSERT batch when (re)indexing.
_CHUNK = 2000


@dataclass(frozen=True)
class Match:
    item_id: str
    score: float


def _attribute_text(attributes: Any) -> str:
    """The text of an item's attribute values (strings and lists of strings), keys left out."""
    if not isinstance(attributes, Mapping):
        return ""
    parts: list[str] = []
    for value in attributes.values():
        if isinstance(value, str):
            parts.append(value)
        elif isinstance(value, list | tuple):
            parts.extend(v for v in value if isinstance(v, str))
    return " ".join(parts)


def index_fields(items: pd.DataFrame) -> dict[str, list[Any]]:
    """Raw text per search field for an items frame (schema columns), in row order."""
    out = {f: items[src].tolist() for f, src in _SOURCE.items()}
    out["attributes"] = [_attribute_text(a) for a in items["attributes"].tolist()]
    return out


def content_digest(values: Iterable[Any]) -> str:
    """What a document was built from; the consistency check compares it with the items table."""
    text = json.dumps([None if v is None or (isinstance(v, float) and v != v) else str(v) for v in values])
    return hashlib.blake2b(text.encode(), digest_size=12).hexdigest()


class LexicalIndex:
    """The full-text index of the items table, in the same database (`engine`)."""

    def __init__(
        self,
        engine: sa.Engine,
        weights: Mapping[str, float] | None = None,
        preprocessor: TextPreprocessor | None = None,
        prefix_max_tokens: int = 3,
        typo_tolerance: bool = True,
        max_df: float = 0.2,
    ) -> None:
        weights = {**DEFAULT_WEIGHTS, **(weights or {})}
        unknown = set(weights) - set(FIELDS)
        if unknown:
            raise ValueError(f"unknown search field(s) {sorted(unknown)} in weights; fields: {', '.join(FIELDS)}")
        if any(w < 0 for w in weights.values()):
            raise ValueError(f"field weights must be non-negative, got {weights}")
        self.engine = engine
        self.dialect = engine.dialect.name
        self.weights = weights
        # Stemming happens here, after spelling correction: see the module docstring.
        self.preprocessor = preprocessor or TextPreprocessor(stem=True)
        self._words = dataclasses.replace(self.preprocessor, stem=False)
        self.prefix_max_tokens = prefix_max_tokens
        self.typo_tolerance = typo_tolerance
        self.max_df = max_df
        self._speller: Speller | None = None
        self._count: int | None = None
        self._built = False  # known to exist: spares every query a look at the schema
        self._writer = engine.execution_options(vitrina_write=True)
        # PostgreSQL's ts_rank takes four class weights in [0, 1]: the field weights over their maximum.
        top = max(weights.values()) or 1.0
        classes = [max(w for f, w in weights.items() if _PG_CLASS[f] == c) / top for c in "DCBA"]
        self._pg_weights = sa.literal_column(f"ARRAY[{', '.join(map(str, classes))}]::real[]")

    # -- building and maintenance -----------------------------------------------------------------

    def _create(self, conn: sa.Connection) -> None:
        if self.dialect == "sqlite":
            cols = ", ".join(FIELDS)
            conn.exec_driver_sql(
                f"CREATE VIRTUAL TABLE IF NOT EXISTS {_FTS} USING fts5({cols}, item_id UNINDEXED, digest UNINDEXED,"
                " tokenize = \"unicode61 remove_diacritics 0 tokenchars '-.'''\")"
            )
            conn.exec_driver_sql(f"CREATE VIRTUAL TABLE IF NOT EXISTS {_FTS}_vocab USING fts5vocab({_FTS}, 'row')")
        else:
            conn.exec_driver_sql(
                f"CREATE TABLE IF NOT EXISTS {_PG} (item_id text PRIMARY KEY, digest text NOT NULL, doc tsvector)"
            )
            conn.exec_driver_sql(f"CREATE INDEX IF NOT EXISTS {_PG}_doc ON {_PG} USING gin (doc)")
        conn.exec_driver_sql(f"CREATE TABLE IF NOT EXISTS {_VOCAB} (term text PRIMARY KEY, n integer NOT NULL)")

    def build(self, items: pd.DataFrame) -> int:
        """(Re)index every item of the frame in one transaction; returns the number indexed."""
        with self._writer.begin() as conn:
            self._create(conn)
            conn.exec_driver_sql(f"DELETE FROM {self._table}")
            conn.exec_driver_sql(f"DELETE FROM {_VOCAB}")
            self._insert(conn, items)
        self._changed()
        return len(items)

    def upsert(self, items: pd.DataFrame) -> int:
        """Index new items and re-index changed ones, without touching the rest."""
        with self._writer.begin() as conn:
            self._create(conn)
            self._delete(conn, items["item_id"].astype(str).tolist())
            self._insert(conn, items)
        self._changed()
        return len(items)

    def delete(self, item_ids: Sequence[str]) -> None:
        with self._writer.begin() as conn:
            self._create(conn)
            self._delete(conn, list(item_ids))
        self._changed()

    def _changed(self) -> None:
        """The index exists and its counts moved: drop what was cached from it."""
        self._speller, self._count, self._built = None, None, True

    @property
    def _table(self) -> str:
        return _FTS if self.dialect == "sqlite" else _PG

    def _delete(self, conn: sa.Connection, ids: list[str]) -> None:
        stmt = sa.text(f"DELETE FROM {self._table} WHERE item_id IN :ids").bindparams(
            sa.bindparam("ids", expanding=True)
        )
        for start in range(0, len(ids), 900):
            conn.execute(stmt, {"ids": ids[start : start + 900]})

    def _stems(self, words: list[str]) -> list[str]:
        return [stem(w) for w in words] if self.preprocessor.stem else words

    def _insert(self, conn: sa.Connection, items: pd.DataFrame) -> None:
        fields = index_fields(items)
        words = {f: [self._words.tokens(t) for t in texts] for f, texts in fields.items()}
        tokens = {f: [" ".join(self._stems(w)) for w in docs] for f, docs in words.items()}
        vocabulary: Counter[str] = Counter()
        for docs in zip(*words.values(), strict=True):
            vocabulary.update({w for d in docs for w in d})
        ids = items["item_id"].astype(str).tolist()
        digests = _digests(fields)
        rows = [
            {"item_id": i, "digest": d, **{f: tokens[f][n] for f in FIELDS}}
            for n, (i, d) in enumerate(zip(ids, digests, strict=True))
        ]
        if self.dialect == "sqlite":
            stmt = sa.text(
                f"INSERT INTO {_FTS} ({', '.join(FIELDS)}, item_id, digest) "
                f"VALUES ({', '.join(':' + f for f in FIELDS)}, :item_id, :digest)"
            )
        else:
            doc = " || ".join(f"setweight(to_tsvector('simple', :{f}), '{_PG_CLASS[f]}')" for f in FIELDS)
            stmt = sa.text(f"INSERT INTO {_PG} (item_id, digest, doc) VALUES (:item_id, :digest, {doc})")
        for start in range(0, len(rows), _CHUNK):
            conn.execute(stmt, rows[start : start + _CHUNK])
        # Counts only grow on upserts (a deleted item's words stay): they rank corrections, nothing more.
        upsert = (
            f"INSERT INTO {_VOCAB} (term, n) VALUES (:term, :n) "
            f"ON CONFLICT (term) DO UPDATE SET n = {_VOCAB}.n + excluded.n"
        )
        terms = [{"term": t, "n": n} for t, n in vocabulary.items()]
        for start in range(0, len(terms), _CHUNK):
            conn.execute(sa.text(upsert), terms[start : start + _CHUNK])

    def digests(self) -> dict[str, str]:
        """item id -> digest of what its document was built from (empty when never built)."""
        with self.engine.connect() as conn:
            if not self._exists(conn):
                return {}
            return dict(conn.exec_driver_sql(f"SELECT item_id, digest FROM {self._table}").all())

    def _exists(self, conn: sa.Connection) -> bool:
        self._built = self._built or sa.inspect(conn).has_table(self._table)
        return self._built

    # -- querying ---------------------------------------------------------------------------------

    def _n_items(self) -> int:
        """Indexed documents (cached with the vocabulary, refreshed on every change)."""
        if self._count is None:
            with self.engine.connect() as conn:
                sql = f"SELECT count(*) FROM {self._table}"
                self._count = int(conn.exec_driver_sql(sql).scalar_one()) if self._exists(conn) else 0
        return self._count

    def speller(self) -> Speller:
        """The indexed words (word, items holding it), read once from the database."""
        if self._speller is None:
            speller = Speller()
            with self.engine.connect() as conn:
                if self._exists(conn):
                    speller.add((str(t), int(n)) for t, n in conn.exec_driver_sql(f"SELECT term, n FROM {_VOCAB}"))
            self._speller = speller
        return self._speller

    def corrections(self, query: str) -> dict[str, str]:
        """Query words the index has never seen, and the indexed word each is widened to."""
        if not self.typo_tolerance:
            return {}
        speller = self.speller()
        return {w: fix for w in self._words.tokens(query) if (fix := speller.correct(w))}

    def query_terms(self, query: str) -> list[tuple[str, ...]]:
        """The query as groups of alternatives: each token, plus its correction when it is unknown;
        a trailing '*' marks the prefix token of a short query."""
        return self._groups(self._words.tokens(query))

    def _groups(self, words: list[str]) -> list[tuple[str, ...]]:
        groups: list[tuple[str, ...]] = []
        speller = self.speller() if self.typo_tolerance else None
        for n, word in enumerate(words):
            fix = speller.correct(word) if speller is not None else None
            alternatives = self._stems([word, fix] if fix else [word])
            if n == len(words) - 1 and len(words) <= self.prefix_max_tokens and len(word) >= 2:
                alternatives.append(word + "*")
            groups.append(tuple(dict.fromkeys(alternatives)))
        return groups

    def _match_expression(self, groups: list[tuple[str, ...]], every: bool) -> str:
        """The full-text query: each group's alternatives OR-ed; the groups AND-ed (`every`) or OR-ed."""
        prefix, exact, any_of, all_of = _SYNTAX[self.dialect == "sqlite"]
        join = all_of if every else any_of

        def term(t: str) -> str:
            return prefix.format(t[:-1]) if t.endswith("*") else exact.format(t)

        return join.join("(" + any_of.join(term(t) for t in g) + ")" for g in groups)

    def _common(self, word: str) -> bool:
        """A word in more than `max_df` of the items ("x" in "2 x 4", "12"): it barely ranks, yet
        an OR query over it scores a third of the catalogue."""
        total = self._n_items()
        return total > 0 and self.speller().frequency.get(word, 0) > self.max_df * total

    def search(self, query: str, k: int = 10, filters: Filters | None = None) -> list[Match]:
        """Best `k` items for the query (higher score is better), filters applied in the query."""
        return self._ranked(query, k, filters or Filters(), None)

    def score(self, query: str, item_ids: Sequence[str]) -> dict[str, float]:
        """Scores of the given items for the query (those that do not match are left out): for
        re-ranking a fixed candidate list."""
        return {m.item_id: m.score for m in self._ranked(query, len(item_ids), Filters(), list(item_ids))}

    def _ranked(self, query: str, k: int, filters: Filters, only: list[str] | None) -> list[Match]:
        """Items holding every query word first (BM25 order), then, if fewer than `k`, items holding
        any of the less common words, and only if still fewer than a page, any word at all.
        Coordination first is what shoppers expect ("12 x 12 pavers": pavers of that size before
        anything 12-inch), and the AND query is an intersection of posting lists: a query of common
        words costs milliseconds instead of scoring 20,000 rows."""
        words = self._words.tokens(query)  # unstemmed, one per group: what the vocabulary counts
        groups = self._groups(words)
        if not groups or k < 1:
            return []
        found = self._run(self._match_expression(groups, every=True), k, filters, only)
        if len(found) >= k or len(groups) == 1:
            return found
        rare = [g for g, w in zip(groups, words, strict=True) if not self._common(w)]
        passes = [rare, groups] if rare and len(rare) < len(groups) else [groups]
        for n, subset in enumerate(passes):
            # The commonest words come back only when the page would otherwise be nearly empty.
            if n and len(found) >= min(k, FULL_PAGE):
                break
            seen = {m.item_id for m in found}
            more = self._run(self._match_expression(subset, every=False), k, filters, only)
            found += [m for m in more if m.item_id not in seen][: k - len(found)]
        return found

    def _run(self, expression: str, k: int, filters: Filters, only: list[str] | None) -> list[Match]:
        if self.dialect == "sqlite":
            fts = sa.table(_FTS, sa.column("item_id"))
            weights = [self.weights[f] for f in FIELDS]
            rank = sa.func.bm25(sa.literal_column(_FTS), *weights)
            stmt = sa.select(fts.c.item_id, (-rank).label("score")).where(
                sa.literal_column(_FTS).op("MATCH")(expression)
            )
        else:
            docs = sa.table(_PG, sa.column("item_id"), sa.column("doc"))
            q = sa.func.to_tsquery("simple", expression)
            rank = sa.func.ts_rank(self._pg_weights, docs.c.doc, q)
            stmt = sa.select(docs.c.item_id, rank.label("score")).where(docs.c.doc.op("@@")(q))
            fts = docs
        if filters:
            stmt = stmt.join(items_table, items_table.c.item_id == fts.c.item_id).where(filters.where(items_table))
        if only is not None:
            stmt = stmt.where(fts.c.item_id.in_(only))
        stmt = stmt.order_by(sa.desc("score")).limit(k)
        with self.engine.connect() as conn:
            if not self._exists(conn):
                raise RuntimeError("the lexical index was never built: run `vitrina search build` first")
            rows = conn.execute(stmt).all()
        return [Match(str(i), float(s)) for i, s in rows]


def _digests(fields: Mapping[str, list[Any]]) -> list[str]:
    return [content_digest(row) for row in zip(*fields.values(), strict=True)]


def stale_rows(indexed: Mapping[str, str], items: pd.DataFrame) -> dict[str, list[str]]:
    """Compare an index's {item id: digest} with the items table: ids missing from the index,
    ids indexed but no longer in the table, and ids whose text changed since indexing."""
    current = dict(zip(items["item_id"].astype(str), _digests(index_fields(items)), strict=True))
    return {
        "missing": sorted(set(current) - set(indexed)),
        "extra": sorted(set(indexed) - set(current)),
        "changed": sorted(i for i in set(current) & set(indexed) if current[i] != indexed[i]),
    }
