"""The durable impression and click log: `AdServer` hands its events here, one transaction per call."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict

import pandas as pd
import sqlalchemy as sa

from vitrina.ads.server import AdEvent
from vitrina.data.schema import ad_events_table
from vitrina.data.storage import Storage

__all__ = ["StorageAdLog"]


class StorageAdLog:
    """Writes ad events to the `ad_events` table of the shop's database (SQLite or PostgreSQL)."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        storage.create_schema()

    def __call__(self, events: Sequence[AdEvent]) -> None:
        if not events:
            return
        now = time.time()
        rows = [
            {**asdict(e), "event_id": f"{e.impression_id}:{e.kind}", "day": e.day.isoformat(), "ts": now}
            for e in events
        ]
        with self.storage.engine.execution_options(vitrina_write=True).begin() as conn:
            conn.execute(ad_events_table.insert(), rows)

    def read(self) -> pd.DataFrame:
        with self.storage.engine.connect() as conn:
            rows = conn.execute(sa.select(ad_events_table).order_by(ad_events_table.c.ts)).mappings().all()
        return pd.DataFrame([dict(r) for r in rows], columns=[c.name for c in ad_events_table.columns])
