"""Sponsored slots in the running service: campaigns in the shared database, one `AdServer` per
worker rebuilt every `ads_sync_s` from the shared impression and click log (so that budgets,
pacing and frequency caps hold across workers, to within that interval), clicks charged in the
database in one transaction.

Until a shop has a trained pCTR model, each campaign's CTR is estimated from its own logged
impressions and clicks with a Beta prior (about 2% before any data): the empirical-Bayes estimate
that ranks new campaigns on the prior and proven ones on their record.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from datetime import date, timedelta
from typing import Any

import numpy as np
import sqlalchemy as sa

from vitrina.ads.campaign import AdsError, Campaign
from vitrina.ads.event_log import StorageAdLog
from vitrina.ads.matching import AdRequest, CampaignMatcher
from vitrina.ads.server import AdEvent, AdServer
from vitrina.data.schema import ad_events_table, campaigns_table
from vitrina.data.storage import Storage

__all__ = ["BufferedAdLog", "CampaignStore", "ServingAds"]

# Beta(α, β) prior of a campaign's click-through rate: mean α / (α + β) ≈ 2%.
PRIOR_CLICKS, PRIOR_SKIPS = 1.0, 49.0
# Days of impressions and clicks a campaign's CTR is estimated from.
CTR_WINDOW_DAYS = 28


class CampaignStore:
    """Campaign specs in the `campaigns` table; every one checked by `Campaign.from_dict`."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    def put(self, specs: Sequence[Mapping[str, Any]]) -> list[str]:
        """Create or replace campaigns (all or none)."""
        if not specs:
            raise AdsError("no campaigns given: send one campaign object or a non-empty list")
        campaigns = [Campaign.from_dict(spec) for spec in specs]  # AdsError names the bad field
        now = time.time()
        with self.storage.begin() as conn:
            ids = [c.campaign_id for c in campaigns]
            conn.execute(campaigns_table.delete().where(campaigns_table.c.campaign_id.in_(ids)))
            conn.execute(
                campaigns_table.insert(),
                [
                    {"campaign_id": c.campaign_id, "spec": dict(s), "ts": now}
                    for c, s in zip(campaigns, specs, strict=True)
                ],
            )
        return ids

    def all(self) -> list[Campaign]:
        with self.storage.engine.connect() as conn:
            specs = conn.execute(sa.select(campaigns_table.c.spec).order_by(campaigns_table.c.campaign_id)).scalars()
            return [Campaign.from_dict(spec) for spec in specs]

    def specs(self) -> list[dict[str, Any]]:
        with self.storage.engine.connect() as conn:
            return [dict(s) for s in conn.execute(sa.select(campaigns_table.c.spec)).scalars()]


class BufferedAdLog:
    """Impressions are logged in batches, one transaction every `flush_s` from a background thread,
    instead of one write-lock per page view: a request never waits for the database's write lock
    (SQLite's busy wait sleeps in steps of milliseconds) to show an ad."""

    def __init__(self, log: StorageAdLog, flush_s: float = 0.5) -> None:
        self.log, self.flush_s = log, flush_s
        self._buffer: list[AdEvent] = []
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def __call__(self, events: Sequence[AdEvent]) -> None:
        with self._lock:
            self._buffer.extend(events)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, daemon=True, name="vitrina-adlog")
                self._thread.start()

    def _run(self) -> None:
        while True:
            time.sleep(self.flush_s)
            self.flush()

    def flush(self) -> None:
        with self._lock:
            batch, self._buffer = self._buffer, []
        if batch:
            self.log(batch)


class ServingAds:
    """One worker's ad server, rebuilt from the database when stale."""

    def __init__(self, storage: Storage, cfg: Any, sync_s: float = 10.0) -> None:
        self.storage, self.cfg, self.sync_s = storage, cfg, sync_s
        self.store = CampaignStore(storage)
        self.log = BufferedAdLog(StorageAdLog(storage))
        self.server: AdServer | None = None
        self._built_for: object = None
        self._built_at = 0.0
        self._syncing = False

    def invalidate(self) -> None:
        """Rebuild on the next request (campaigns changed)."""
        self._built_for = None

    def current(self, view: Any, user_id: str | None = None) -> AdServer | None:
        """The ad server for this view (None when there are no campaigns), with `user_id`'s
        impressions of today loaded for the frequency cap. The first server for a view is built
        here; later ones are rebuilt from the shared log in a background thread every `sync_s`
        while requests keep using the current one."""
        if self._built_for is not view:
            self._install(view, self._build(view))
        elif time.monotonic() - self._built_at > self.sync_s and not self._syncing:
            self._syncing = True
            threading.Thread(target=self._sync, args=(view,), daemon=True, name="vitrina-ads").start()
        server = self.server
        if server is not None and user_id is not None and user_id not in self._users:
            # Per user, on first sight: one indexed query instead of every shopper's counts at once.
            self._users.add(user_id)
            server.restore({}, self._seen_today(user_id))
        return server

    def _install(self, view: Any, server: AdServer | None) -> None:
        self.server, self._built_for, self._built_at = server, view, time.monotonic()
        self._users: set[str] = set()

    def _seen_today(self, user_id: str) -> dict[tuple[str, str, date], int]:
        t = ad_events_table
        today = date.today()
        stmt = (
            sa.select(t.c.campaign_id, sa.func.count())
            .where((t.c.user_id == user_id) & (t.c.day == today.isoformat()) & (t.c.kind == "impression"))
            .group_by(t.c.campaign_id)
        )
        with self.storage.engine.connect() as conn:
            return {(user_id, c, today): int(n) for c, n in conn.execute(stmt)}

    def _sync(self, view: Any) -> None:
        try:
            server = self._build(view)
            if self._built_for is view:  # not replaced meanwhile by a new view or new campaigns
                self._install(view, server)
        finally:
            self._syncing = False

    def _build(self, view: Any) -> AdServer | None:
        campaigns = self.store.all()
        if not campaigns:
            return None
        advertised = {i for c in campaigns for i in c.items if i in view.row}
        vectors: dict[str, dict[str, np.ndarray]] = {"text": {}, "image": {}}
        for by, name in (("text", "semantic"), ("image", "image")):
            index = (
                view.engine.vectors.get(name).index if view.engine is not None and name in view.engine.vectors else None
            )
            if index is not None:
                vectors[by] = {i: index.vector(i) for i in advertised if i in index.rows}
        matcher = CampaignMatcher(
            campaigns,
            text_vectors=vectors["text"],
            image_vectors=vectors["image"],
            item_categories={i: view.card(i)["category"] for i in advertised},
            semantic_threshold=float(self.cfg.get("ads.semantic_threshold", 0.85)),
        )
        today = date.today()
        spent, ctr = self._history(today)

        def predict(request: AdRequest, candidates: list) -> np.ndarray:
            return np.array(
                [ctr.get(c.campaign_id, PRIOR_CLICKS / (PRIOR_CLICKS + PRIOR_SKIPS)) for c, *_ in candidates]
            )

        server = AdServer.from_config(self.cfg, matcher, predict, sink=self.log)
        server.restore(spent, {})
        return server

    def _history(self, today: date) -> tuple[dict[tuple[str, date], float], dict[str, float]]:
        t = ad_events_table
        since = (today - timedelta(days=CTR_WINDOW_DAYS)).isoformat()
        with self.storage.engine.connect() as conn:
            spend = conn.execute(
                sa.select(t.c.campaign_id, t.c.day, sa.func.sum(t.c.price))
                .where(t.c.kind == "click")
                .group_by(t.c.campaign_id, t.c.day)
            ).all()  # clicks only: far fewer rows than impressions
            counts = conn.execute(
                sa.select(t.c.campaign_id, t.c.kind, sa.func.count())
                .where(t.c.day >= since)
                .group_by(t.c.campaign_id, t.c.kind)
            ).all()
        spent = {(c, date.fromisoformat(d)): float(v or 0.0) for c, d, v in spend}
        tally: dict[str, dict[str, int]] = {}
        for c, kind, n in counts:
            tally.setdefault(c, {})[kind] = int(n)
        ctr = {
            c: (k.get("click", 0) + PRIOR_CLICKS) / (k.get("impression", 0) + PRIOR_CLICKS + PRIOR_SKIPS)
            for c, k in tally.items()
        }
        return spent, ctr

    def click(self, impression_id: str) -> float:
        """Charge a click on a logged impression: its auction price, capped by what is left of the
        campaign's budgets; a second click on the same impression charges nothing. One transaction."""
        t = ad_events_table
        self.log.flush()  # this worker's own recent impressions
        # Another worker's impression reaches the database within its flush interval.
        deadline = time.monotonic() + 2 * self.log.flush_s + 0.5
        while True:
            with self.storage.engine.connect() as conn:
                if conn.execute(sa.select(t.c.event_id).where(t.c.event_id == f"{impression_id}:impression")).first():
                    break
            if time.monotonic() > deadline:
                raise AdsError(f"unknown impression {impression_id!r}")
            time.sleep(0.05)
        with self.storage.begin() as conn:
            keys = [f"{impression_id}:impression", f"{impression_id}:click"]  # the log's primary keys
            rows = conn.execute(sa.select(t).where(t.c.event_id.in_(keys))).mappings().all()
            shown = [r for r in rows if r["kind"] == "impression"]
            if any(r["kind"] == "click" for r in rows):
                return 0.0
            imp = shown[0]
            spec = conn.execute(
                sa.select(campaigns_table.c.spec).where(campaigns_table.c.campaign_id == imp["campaign_id"])
            ).scalar_one_or_none()
            if spec is None:
                raise AdsError(f"campaign {imp['campaign_id']!r} no longer exists")
            campaign = Campaign.from_dict(spec)
            spent_total = conn.execute(
                sa.select(sa.func.coalesce(sa.func.sum(t.c.price), 0.0)).where(
                    (t.c.campaign_id == campaign.campaign_id) & (t.c.kind == "click")
                )
            ).scalar_one()
            spent_day = conn.execute(
                sa.select(sa.func.coalesce(sa.func.sum(t.c.price), 0.0)).where(
                    (t.c.campaign_id == campaign.campaign_id) & (t.c.kind == "click") & (t.c.day == imp["day"])
                )
            ).scalar_one()
            left = min(campaign.daily_budget - spent_day, campaign.total_budget - spent_total)
            charge = max(0.0, min(float(imp["price"]), left))
            row = {k: imp[k] for k in imp if k not in ("event_id", "kind", "ts", "price")}
            conn.execute(
                t.insert(),
                [{**row, "event_id": f"{impression_id}:click", "kind": "click", "price": charge, "ts": time.time()}],
            )
        return charge
