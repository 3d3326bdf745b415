"""Top-K lists ranked ahead for every shopper by the batch job (`vitrina serve precompute`, on Ray
with `--ray`), kept in the database the workers share.

A list is exactly what a request would rank at that moment, so it may answer a request only while
the three things it was ranked from still hold: the version, the catalogue (the change feed's
position) and the shopper's history (its digest). An event, an item change or a new version makes
the request score online again, as it does without lists; the next batch run catches up. Only the
reasons are worked out per request (cheap: k items against the last events).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, TypeVar

import numpy as np
import sqlalchemy as sa
from redis.exceptions import RedisError

from vitrina.data.schema import precomputed_table
from vitrina.data.storage import Storage
from vitrina.serving.view import Recommendation, View

__all__ = ["PrecomputedLists", "batched", "history_key", "rank_users"]

log = logging.getLogger("vitrina.serving")

History = Sequence[tuple[str, str, float]]
T = TypeVar("T")


def history_key(history: History) -> str:
    """Digest of a history (item, type, value, newest first): equal in every process, unlike hash()."""
    digest = hashlib.blake2b(digest_size=16)
    for item, kind, value in history:
        digest.update(f"{item}\x1f{kind}\x1f{float(value)!r}\x1e".encode())
    return digest.hexdigest()


def rank_users(view: View, users: Sequence[str], histories: Sequence[History], k: int) -> list[dict[str, Any]]:
    """Rows of the lists table for these shoppers: what `View.recommend` would rank for each now
    (no filters, seen items left out)."""
    rows = []
    for user, history in zip(users, histories, strict=True):
        top, scores, basis = view.rank(user, history, k)
        ranked = {"k": k, "items": [view.ids[r] for r in top.tolist()], "scores": [float(x) for x in scores]}
        rows.append(
            {
                "version": view.bundle.version,
                "user_id": user,
                "feed_seq": view.seq,
                "history_key": history_key(history),
                "basis": basis,
                "ranked": json.dumps(ranked),
            }
        )
    return rows


class PrecomputedLists:
    """The lists table, replaced whole by each batch run and read one shopper at a time by the
    workers; with Redis (`[serve] redis_url`) also a copy there per version (a hash: shopper -> row),
    which the workers read first. The database stays the record: a shopper missing from Redis, or
    Redis not answering, is read from the table."""

    def __init__(self, storage: Storage, redis: Any | None = None, prefix: str = "vitrina:lists:") -> None:
        self.storage, self.redis, self.prefix = storage, redis, prefix

    def replace(self, rows: Iterable[dict[str, Any]], batch_size: int = 5000) -> int:
        """The new lists in place of all old ones, in one transaction (a worker reads the old set or
        the new one); lists of older versions are never read again, so they go too. Each batch is
        also copied to Redis as it is written (a row carries what it was ranked from, so a copy is
        valid whenever it matches), and the older versions' hashes are deleted at the end."""
        n, versions = 0, set()
        with self.storage.begin() as conn:
            conn.execute(precomputed_table.delete())
            for batch in batched(rows, batch_size):
                conn.execute(sa.insert(precomputed_table), batch)
                self._cache(batch)
                n += len(batch)
                versions.update(row["version"] for row in batch)
        self._drop_cached(keep=versions)
        return n

    def _cache(self, batch: list[dict[str, Any]]) -> None:
        if self.redis is None:
            return
        try:
            pipe = self.redis.pipeline(transaction=False)
            for row in batch:
                pipe.hset(self.prefix + row["version"], row["user_id"], json.dumps(row))
            pipe.execute()
        except RedisError as exc:  # the table has them; workers read it
            log.warning("precomputed lists not copied to Redis (%s); workers read the database", exc)

    def _drop_cached(self, keep: set[str]) -> None:
        if self.redis is None:
            return
        try:
            stale = [
                k for k in self.redis.scan_iter(match=self.prefix + "*") if k.decode()[len(self.prefix) :] not in keep
            ]
            if stale:
                self.redis.delete(*stale)
        except RedisError as exc:
            log.warning("old precomputed lists left in Redis (%s)", exc)

    def forget(self, user_id: str) -> None:
        """Drop a shopper's Redis copies (their table row goes with the user's other rows)."""
        if self.redis is None:
            return
        try:
            for key in self.redis.scan_iter(match=self.prefix + "*"):
                self.redis.hdel(key, user_id)
        except RedisError as exc:  # as for the recent-events cache: logged, the erasure goes on
            log.warning("a shopper's precomputed lists left in Redis (%s)", exc)

    def _row(self, version: str, user_id: str) -> dict[str, Any] | None:
        if self.redis is not None:
            try:
                cached = self.redis.hget(self.prefix + version, user_id)
                if cached is not None:
                    return json.loads(cached)
            except RedisError as exc:
                log.warning("precomputed lists unavailable in Redis (%s); reading the database", exc)
        t = precomputed_table
        stmt = sa.select(t).where(t.c.version == version, t.c.user_id == user_id)
        with self.storage.engine.connect() as conn:
            found = conn.execute(stmt).mappings().first()
        return dict(found) if found is not None else None

    def has(self, version: str) -> bool:
        """Whether the batch job has written lists for this version (asked once per refresh)."""
        t = precomputed_table
        with self.storage.engine.connect() as conn:
            return conn.execute(sa.select(t.c.user_id).where(t.c.version == version).limit(1)).first() is not None

    def recommend(self, view: View, user_id: str, history: History, k: int) -> list[Recommendation] | None:
        """The shopper's stored list as `View.recommend(user_id, history, k)` would answer it, or None
        when there is none or it no longer holds."""
        found = self._row(view.bundle.version, user_id)
        if found is None or int(found["feed_seq"]) != view.seq or found["history_key"] != history_key(history):
            return None
        ranked = json.loads(found["ranked"])
        items = ranked["items"]
        if k > ranked["k"] and len(items) >= ranked["k"]:
            return None  # asked for more than was ranked, and there were more candidates
        rows = [view.row.get(i) for i in items[:k]]
        if any(r is None for r in rows):
            return None
        scores = np.asarray(ranked["scores"][:k], dtype=np.float64)  # exactly the floats that were ranked
        return view.explain(np.asarray(rows, dtype=np.int64), scores, history, found["basis"], user_id)


def batched(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Lists of `size` consecutive items (the last one shorter), as they come."""
    batch: list[T] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch
