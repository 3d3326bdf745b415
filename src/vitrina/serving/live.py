"""What the service writes while it runs, in the database every worker shares: shopper events (stored
once per idempotency key) and the catalogue change feed."""

from __future__ import annotations

import io
import logging
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import sqlalchemy as sa
from redis.exceptions import RedisError
from sqlalchemy.dialects import postgresql, sqlite

from vitrina.data.schema import (
    INTERACTION_TYPES,
    ad_events_table,
    interactions_table,
    item_changes_table,
    items_table,
    precomputed_table,
    reviews_table,
    users_table,
)
from vitrina.data.storage import Storage
from vitrina.serving.recent import RecentCache

__all__ = ["Change", "Event", "LiveStore", "UnknownItem", "pack_vectors", "unpack_vectors"]

log = logging.getLogger("vitrina.serving")

MAX_KEY = 64


class UnknownItem(KeyError):
    """An event or request names an item the catalogue does not have."""

    def __str__(self) -> str:
        return f"unknown item id {self.args[0]!r}"


@dataclass(frozen=True)
class Event:
    """One shopper action; `event_id` is its idempotency key."""

    event_id: str
    user_id: str
    item_id: str
    type: str
    value: float = 1.0
    ts: float | None = None

    def __post_init__(self) -> None:
        if self.type not in INTERACTION_TYPES:
            raise ValueError(f"type: {self.type!r} is not one of {', '.join(INTERACTION_TYPES)}")
        if not self.event_id or len(self.event_id) > MAX_KEY:
            raise ValueError(f"event_id: must be 1 to {MAX_KEY} characters")
        if not self.user_id or not self.item_id:
            raise ValueError("user_id and item_id must not be empty")

    @staticmethod
    def new_id() -> str:
        return uuid.uuid4().hex


@dataclass(frozen=True)
class Change:
    seq: int
    item_id: str
    op: str
    vectors: dict[str, np.ndarray]


def pack_vectors(vectors: Mapping[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **{m: np.asarray(v, dtype=np.float32) for m, v in vectors.items()})
    return buf.getvalue()


def unpack_vectors(data: bytes | None) -> dict[str, np.ndarray]:
    if not data:
        return {}
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        return {m: z[m] for m in z.files}


class LiveStore:
    """Events and catalogue changes on a `Storage`'s database."""

    def __init__(self, storage: Storage, cache: RecentCache | None = None) -> None:
        self.storage, self.cache = storage, cache
        self._insert = postgresql.insert if storage.dialect == "postgresql" else sqlite.insert

    def record(self, events: list[Event]) -> list[bool]:
        """Store events in one transaction; per event, True if stored now, False if its key was
        already stored (a retry). A user seen for the first time is created; an unknown item raises
        `UnknownItem` and stores none of them."""
        if not events:
            return []
        t = interactions_table
        with self.storage.begin() as conn:
            items = {e.item_id for e in events}
            found = set(
                conn.execute(sa.select(items_table.c.item_id).where(items_table.c.item_id.in_(items))).scalars()
            )
            missing = sorted(items - found)
            if missing:
                raise UnknownItem(missing[0])
            users = sorted({e.user_id for e in events})
            conn.execute(
                self._insert(users_table).on_conflict_do_nothing(index_elements=[users_table.c.user_id]),
                [{"user_id": u, "attributes": None} for u in users],
            )
            pos = int(conn.execute(sa.select(sa.func.coalesce(sa.func.max(t.c.pos), 0))).scalar_one())
            stored: list[bool] = []
            added: list[tuple[str, tuple[int, str, str, float]]] = []
            now = time.time()
            # RETURNING tells a new row from a retry on both backends (SQLAlchemy reports rowcount -1
            # for this insert on PostgreSQL).
            stmt = self._insert(t).on_conflict_do_nothing(index_elements=[t.c.event_id]).returning(t.c.event_id)
            for e in events:
                pos += 1
                row = {
                    "event_id": e.event_id,
                    "pos": pos,
                    "user_id": e.user_id,
                    "item_id": e.item_id,
                    "type": e.type,
                    "value": float(e.value),
                    "ts": float(e.ts) if e.ts is not None else now,
                    "split": None,
                }
                stored.append(conn.execute(stmt, row).first() is not None)
                if stored[-1]:
                    added.append((e.user_id, (pos, e.item_id, e.type, float(e.value))))
        if self.cache is not None and added:
            try:
                self.cache.push(added)
            except RedisError as exc:  # the database has them; the next read refills the cache
                log.warning("recent-events cache unavailable (%s); users' lists are dropped", exc)
                self._forget_all([u for u, _ in added])
        return stored

    def history(self, user_id: str, limit: int = 500) -> list[tuple[str, str, float]]:
        """The user's most recent events, newest first: (item id, type, value). From the Redis cache
        when one is configured and answers, else from the database."""
        if self.cache is not None and limit <= self.cache.keep:
            try:
                entries = self.cache.get(
                    user_id, lambda: self._entries(user_id, self.cache.keep), lambda: self._latest(user_id)
                )
                return [(item, kind, value) for _, item, kind, value in entries[:limit]]
            except RedisError as exc:
                log.warning("recent-events cache unavailable (%s); reading the database", exc)
        return [(item, kind, value) for _, item, kind, value in self._entries(user_id, limit)]

    def histories(self, limit: int = 500) -> dict[str, list[tuple[str, str, float]]]:
        """`history(user, limit)` of every user with events, in one pass over the database (the batch
        job's read): the same lists, newest first."""
        t = interactions_table
        stmt = sa.select(t.c.user_id, t.c.item_id, t.c.type, t.c.value).order_by(t.c.pos.desc())
        out: dict[str, list[tuple[str, str, float]]] = {}
        with self.storage.engine.connect() as conn:
            for user, item, kind, value in conn.execution_options(yield_per=50_000).execute(stmt):
                events = out.setdefault(user, [])
                if len(events) < limit:
                    events.append((item, kind, float(value)))
        return out

    def _entries(self, user_id: str, limit: int) -> list[tuple[int, str, str, float]]:
        t = interactions_table
        stmt = (
            sa.select(t.c.pos, t.c.item_id, t.c.type, t.c.value)
            .where(t.c.user_id == user_id)
            .order_by(t.c.pos.desc())
            .limit(limit)
        )
        with self.storage.engine.connect() as conn:
            return [(int(r[0]), r[1], r[2], float(r[3])) for r in conn.execute(stmt)]

    def _latest(self, user_id: str) -> int:
        t = interactions_table
        with self.storage.engine.connect() as conn:
            stmt = sa.select(sa.func.coalesce(sa.func.max(t.c.pos), 0)).where(t.c.user_id == user_id)
            return int(conn.execute(stmt).scalar_one())

    def _forget_all(self, users: list[str]) -> None:
        if self.cache is None:
            return
        for user_id in set(users):
            try:
                self.cache.forget(user_id)
            except RedisError:
                return

    def user_exists(self, user_id: str) -> bool:
        with self.storage.engine.connect() as conn:
            stmt = sa.select(users_table.c.user_id).where(users_table.c.user_id == user_id)
            return conn.execute(stmt).first() is not None

    def delete_user(self, user_id: str) -> bool:
        """Remove a user with their events and reviews, and unlink them from the ad log, whose rows
        stay for the advertisers' bills (one transaction); False if unknown."""
        with self.storage.begin() as conn:
            if conn.execute(sa.select(users_table.c.user_id).where(users_table.c.user_id == user_id)).first() is None:
                return False
            conn.execute(interactions_table.delete().where(interactions_table.c.user_id == user_id))
            conn.execute(reviews_table.delete().where(reviews_table.c.user_id == user_id))
            conn.execute(precomputed_table.delete().where(precomputed_table.c.user_id == user_id))
            ads = ad_events_table.c.user_id == user_id
            conn.execute(sa.update(ad_events_table).where(ads).values(user_id=None))
            conn.execute(users_table.delete().where(users_table.c.user_id == user_id))
        self._forget_all([user_id])
        return True

    def delete_review(self, review_id: str) -> bool:
        with self.storage.begin() as conn:
            return conn.execute(reviews_table.delete().where(reviews_table.c.review_id == review_id)).rowcount > 0

    def count_events(self) -> int:
        with self.storage.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(interactions_table)).scalar_one())

    # -- catalogue change feed -------------------------------------------------------------------

    @staticmethod
    def log_changes(conn: sa.Connection, upserts: Mapping[str, Mapping[str, np.ndarray]], deletes: list[str]) -> None:
        """Append change rows inside the caller's transaction (the one writing the items)."""
        now = time.time()
        rows: list[dict[str, Any]] = [
            {"item_id": i, "op": "upsert", "vectors": pack_vectors(v), "ts": now} for i, v in upserts.items()
        ]
        rows += [{"item_id": i, "op": "delete", "vectors": None, "ts": now} for i in deletes]
        if rows:
            conn.execute(sa.insert(item_changes_table), rows)

    def last_seq(self) -> int:
        with self.storage.engine.connect() as conn:
            stmt = sa.select(sa.func.coalesce(sa.func.max(item_changes_table.c.seq), 0))
            return int(conn.execute(stmt).scalar_one())

    def changes_since(self, seq: int) -> list[Change]:
        t = item_changes_table
        stmt = sa.select(t.c.seq, t.c.item_id, t.c.op, t.c.vectors).where(t.c.seq > seq).order_by(t.c.seq)
        with self.storage.engine.connect() as conn:
            return [Change(int(r[0]), r[1], r[2], unpack_vectors(r[3])) for r in conn.execute(stmt)]
