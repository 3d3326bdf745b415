"""The generalised second-price auction for sponsored slots.

Candidates are ranked by eCPM = bid × pCTR × quality (expected revenue per impression, times a
relevance factor so that an irrelevant ad cannot simply buy the top). The ad in slot i pays, per
click, the least that would have kept its place: the next ad's eCPM over its own pCTR × quality,
never below the reserve price and never above its own bid. An ad whose bid is below the reserve
does not take part; each campaign wins at most one slot per auction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from vitrina.ads.campaign import AdsError

__all__ = ["Bid", "Placement", "run_auction"]


@dataclass(frozen=True)
class Bid:
    campaign_id: str
    item_id: str
    bid: float
    pctr: float
    quality: float = 1.0

    @property
    def ecpm(self) -> float:
        return self.bid * self.pctr * self.quality


@dataclass(frozen=True)
class Placement:
    """A won slot (0-based) and its price per click."""

    slot: int
    campaign_id: str
    item_id: str
    price: float
    pctr: float
    ecpm: float


def run_auction(bids: Sequence[Bid], slots: int, reserve: float = 0.0) -> list[Placement]:
    """Fill up to `slots` places; see the module docstring for ranking and prices."""
    if slots < 0 or reserve < 0:
        raise AdsError(f"slots and reserve must be non-negative, got {slots} and {reserve}")
    for b in bids:
        if not (0.0 <= b.pctr <= 1.0) or b.quality < 0 or b.bid < 0:
            raise AdsError(f"bid of campaign {b.campaign_id!r}: bid ≥ 0, pCTR in [0, 1] and quality ≥ 0 required")
    eligible = [b for b in bids if b.bid >= reserve and b.ecpm > 0]
    eligible.sort(key=lambda b: (-b.ecpm, -b.bid, b.campaign_id))
    ranked: list[Bid] = []
    seen: set[str] = set()
    for b in eligible:
        if b.campaign_id not in seen:
            seen.add(b.campaign_id)
            ranked.append(b)
    placements = []
    for slot, b in enumerate(ranked[:slots]):
        runner_up = ranked[slot + 1].ecpm if slot + 1 < len(ranked) else 0.0
        price = max(reserve, runner_up / (b.pctr * b.quality))
        placements.append(Placement(slot, b.campaign_id, b.item_id, min(price, b.bid), b.pctr, b.ecpm))
    return placements
