"""Serving sponsored slots: match, predict CTR, pace budgets, cap frequency, auction, log, blend.

Budget pacing spreads a campaign's daily budget over the day instead of spending it on the first
requests: a campaign that has spent a larger share of its daily budget than the share of the day
gone by plus `pacing_slack` skips requests, with a probability that grows from 0 to 1 as the
overspend grows from 0 to one more slack. A campaign at
its daily or total budget stops. Frequency capping drops a campaign once a user has seen it
`frequency_cap` times that day. Every impression and click is logged with its price, slot and
pCTR, which is what the next pCTR model trains on.

Spending is per click (CPC): a click charges the price its auction set, capped by what is left of
the budgets.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import numpy as np

from vitrina.ads.auction import Bid, Placement, run_auction
from vitrina.ads.campaign import AdsError, Campaign
from vitrina.ads.matching import AdRequest, CampaignMatcher

__all__ = ["AdEvent", "AdServer", "ServedAd", "blend"]

# Keys of `[ads]` in the config.
AD_SETTINGS = frozenset(
    {"semantic_threshold", "reserve", "frequency_cap", "pacing_slack", "search_slots", "feed_slots"}
)
# (request, candidate (campaign, item, how, similarity) list) -> pCTR per candidate
CtrPredictor = Callable[[AdRequest, list[tuple[Campaign, str, str, float]]], np.ndarray]


@dataclass(frozen=True)
class ServedAd:
    """A sponsored result as the page shows it: always labelled."""

    impression_id: str
    campaign_id: str
    item_id: str
    slot: int
    price: float
    pctr: float
    how: str
    sponsored: bool = True


@dataclass(frozen=True)
class AdEvent:
    kind: str  # "impression" | "click"
    impression_id: str
    campaign_id: str
    item_id: str
    user_id: str | None
    day: date
    slot: int
    pctr: float
    price: float  # per-click price set by the auction; for a click, what was charged
    how: str
    query: str | None


def _day_fraction(now: datetime) -> float:
    return (now.hour * 3600 + now.minute * 60 + now.second) / 86400


@dataclass
class AdServer:
    matcher: CampaignMatcher
    predict_ctr: CtrPredictor
    reserve: float = 0.05
    frequency_cap: int = 3
    pacing_slack: float = 0.1
    seed: int = 0
    # Multiply eCPM by the match's similarity (semantic / visual); off: rank by bid × pCTR alone.
    use_quality: bool = True
    # Where new events go as well (e.g. `StorageAdLog`): called once per serve() and click().
    sink: Callable[[list[AdEvent]], None] | None = None
    log: list[AdEvent] = field(default_factory=list)
    # The clock that pacing reads (fraction of the day gone by); a simulation sets its own.
    day_fraction: Callable[[], float] = field(default=lambda: _day_fraction(datetime.now()))

    @classmethod
    def from_config(cls, cfg: Any, matcher: CampaignMatcher, predict_ctr: CtrPredictor, **over: Any) -> AdServer:
        """`[ads]` reserve, frequency_cap and pacing_slack (and the seed), overridable by keyword."""
        section = cfg.section("ads", AD_SETTINGS)
        keys = ("reserve", "frequency_cap", "pacing_slack")
        settings = {k: section[k] for k in keys if k in section} | {"seed": cfg.seed}
        return cls(matcher, predict_ctr, **(settings | over))

    def __post_init__(self) -> None:
        if self.reserve < 0 or self.frequency_cap < 1:
            raise AdsError("reserve must be ≥ 0 and frequency_cap ≥ 1")
        self._rng = np.random.default_rng(self.seed)
        self._spent_day: defaultdict[tuple[str, date], float] = defaultdict(float)
        self._spent_total: defaultdict[str, float] = defaultdict(float)
        self._seen: defaultdict[tuple[str, str, date], int] = defaultdict(int)
        self._shown: dict[str, tuple[ServedAd, AdRequest]] = {}
        self._campaigns = {c.campaign_id: c for c in self.matcher.campaigns}
        # Impression ids unique across processes and restarts: they are keys of the shared log.
        self._run = uuid.uuid4().hex[:12]

    def restore(self, spent: Mapping[tuple[str, date], float], seen: Mapping[tuple[str, str, date], int]) -> None:
        """Start from what the shared log says was spent (per campaign and day) and shown (per user,
        campaign and day): what several serving processes need to keep one set of budgets and caps."""
        for (campaign_id, day), amount in spent.items():
            self._spent_day[(campaign_id, day)] += amount
            self._spent_total[campaign_id] += amount
        for key, count in seen.items():
            self._seen[key] += count

    def spent(self, campaign_id: str, day: date | None = None) -> float:
        return self._spent_day[(campaign_id, day)] if day else self._spent_total[campaign_id]

    def _budget_left(self, c: Campaign, day: date) -> float:
        return min(
            c.daily_budget - self._spent_day[(c.campaign_id, day)], c.total_budget - self._spent_total[c.campaign_id]
        )

    def _paced_out(self, c: Campaign, day: date) -> bool:
        share = self._spent_day[(c.campaign_id, day)] / c.daily_budget if c.daily_budget else 1.0
        overspend = share - (self.day_fraction() + self.pacing_slack)
        return overspend > 0 and self._rng.random() < min(1.0, overspend / max(self.pacing_slack, 1e-9))

    def serve(self, request: AdRequest, slots: int) -> list[ServedAd]:
        """The ads for up to `slots` sponsored places of one page, logged as impressions."""
        if slots < 0:
            raise AdsError(f"slots must be non-negative, got {slots}")
        candidates = [
            m
            for m in self.matcher.match(request)
            if self._budget_left(m[0], request.day) > 0
            and (
                request.user_id is None
                or self._seen[(request.user_id, m[0].campaign_id, request.day)] < self.frequency_cap
            )
            and not self._paced_out(m[0], request.day)
        ]
        if not candidates or slots == 0:
            return []
        pctr = np.clip(np.asarray(self.predict_ctr(request, candidates), dtype=float), 0.0, 1.0)
        bids = [
            Bid(c.campaign_id, item, c.bid, float(p), quality=self._quality(how, similarity))
            for (c, item, how, similarity), p in zip(candidates, pctr, strict=True)
        ]
        how_of = {(c.campaign_id, item): how for c, item, how, _ in candidates}
        start = len(self.log)
        served = [
            self._record(request, placement, how_of[(placement.campaign_id, placement.item_id)])
            for placement in run_auction(bids, slots, self.reserve)
        ]
        self._emit(start)
        return served

    def _emit(self, start: int) -> None:
        if self.sink is not None and len(self.log) > start:
            self.sink(self.log[start:])

    def _quality(self, how: str, similarity: float) -> float:
        """A keyword or feed match counts fully; a semantic or visual one by its similarity."""
        if not self.use_quality or how in ("keyword", "feed"):
            return 1.0
        return max(similarity, 0.0)

    def _record(self, request: AdRequest, p: Placement, how: str) -> ServedAd:
        ad = ServedAd(f"imp-{self._run}-{len(self.log)}", p.campaign_id, p.item_id, p.slot, p.price, p.pctr, how)
        self._shown[ad.impression_id] = (ad, request)
        if request.user_id is not None:
            self._seen[(request.user_id, p.campaign_id, request.day)] += 1
        self.log.append(self._event("impression", ad, request, p.price))
        return ad

    def _event(self, kind: str, ad: ServedAd, request: AdRequest, price: float) -> AdEvent:
        return AdEvent(
            kind=kind,
            impression_id=ad.impression_id,
            campaign_id=ad.campaign_id,
            item_id=ad.item_id,
            user_id=request.user_id,
            day=request.day,
            slot=ad.slot,
            pctr=ad.pctr,
            price=price,
            how=ad.how,
            query=request.query,
        )

    def click(self, impression_id: str) -> float:
        """Record a click on a shown ad; returns what it cost the advertiser."""
        if impression_id not in self._shown:
            raise AdsError(f"unknown impression {impression_id!r}")
        ad, request = self._shown.pop(impression_id)  # one charge per impression
        campaign = self._campaigns[ad.campaign_id]
        charge = max(0.0, min(ad.price, self._budget_left(campaign, request.day)))
        self._spent_day[(ad.campaign_id, request.day)] += charge
        self._spent_total[ad.campaign_id] += charge
        self.log.append(self._event("click", ad, request, charge))
        self._emit(len(self.log) - 1)
        return charge


def blend(organic: Sequence[Any], ads: Sequence[ServedAd], slots: Sequence[int]) -> list[tuple[str, Any]]:
    """A result page with ads at the configured 0-based positions: [("organic" | "sponsored", hit)].
    Unfilled ad slots close up; an organic result never disappears, it moves down."""
    page: list[tuple[str, Any]] = [("organic", hit) for hit in organic]
    for position, ad in sorted(zip(slots, ads, strict=False), key=lambda pa: pa[0]):
        page.insert(min(position, len(page)), ("sponsored", ad))
    return page
