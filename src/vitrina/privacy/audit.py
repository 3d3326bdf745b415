"""Audit log: who did what to the shop's data, and who read whose personal data, and when.

Rows are only ever appended: the database itself refuses UPDATE and DELETE on the table (triggers
made with the schema, SQLite and PostgreSQL), so a compromised service key cannot rewrite history.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import pandas as pd
import sqlalchemy as sa

from vitrina.data.schema import audit_log_table
from vitrina.data.storage import Storage

__all__ = ["AuditEntry", "AuditLog"]


@dataclass(frozen=True)
class AuditEntry:
    action: str  # "admin" (a change) | "personal-read" | "keys" (key management) | ...
    target: str  # what was touched, e.g. "DELETE /users/u7"
    key_id: str | None = None
    role: str | None = None
    subject: str | None = None  # the shopper concerned, when one is
    status: int | None = None


class AuditLog:
    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    def record(self, entry: AuditEntry) -> None:
        with self.storage.begin() as conn:
            conn.execute(sa.insert(audit_log_table).values(ts=time.time(), **entry.__dict__))

    def query(
        self,
        since: float | None = None,
        key_id: str | None = None,
        subject: str | None = None,
        action: str | None = None,
        limit: int = 100,
    ) -> pd.DataFrame:
        """The newest entries first, filtered by time (epoch seconds), key, shopper and action."""
        t = audit_log_table
        query = sa.select(t).order_by(t.c.seq.desc()).limit(limit)
        for column, value in ((t.c.key_id, key_id), (t.c.subject, subject), (t.c.action, action)):
            if value is not None:
                query = query.where(column == value)
        if since is not None:
            query = query.where(t.c.ts >= since)
        with self.storage.engine.connect() as conn:
            return pd.DataFrame(conn.execute(query).mappings().all(), columns=[c.name for c in t.columns])
