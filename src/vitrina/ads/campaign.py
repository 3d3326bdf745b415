"""What an advertiser buys: a campaign with budgets, a bid per click, targeting and creatives.

Every field is checked when the campaign is made, so a negative bid, an empty creative list or an
end date before the start is an `AdsError` naming the field, never a campaign that misbehaves in
the auction later.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from vitrina.checks import non_negative
from vitrina.search.filters import under

__all__ = ["MATCH_TYPES", "STATUSES", "AdsError", "Campaign", "Keyword"]

MATCH_TYPES = ("exact", "phrase", "broad")
STATUSES = ("active", "paused", "ended")


class AdsError(ValueError):
    """A campaign or ad request that cannot be accepted: the message names the field and why."""


@dataclass(frozen=True)
class Keyword:
    """A bid phrase and how a query must contain it: exact (the same words), phrase (the words in
    order, anywhere in the query) or broad (all the words, any order; stems compared)."""

    text: str
    match: str = "broad"

    def __post_init__(self) -> None:
        if self.match not in MATCH_TYPES:
            raise AdsError(
                f"keyword {self.text!r}: match type must be one of {', '.join(MATCH_TYPES)}, got {self.match!r}"
            )
        if not self.text.strip():
            raise AdsError("keyword: the text is empty")


@dataclass(frozen=True)
class Campaign:
    """One advertiser's campaign. Amounts are in the shop's currency; `bid` is the most paid per click."""

    campaign_id: str
    advertiser: str
    bid: float
    daily_budget: float
    total_budget: float
    items: tuple[str, ...]  # creatives: the advertised products (their text and photo are the ad)
    keywords: tuple[Keyword, ...] = ()
    categories: tuple[str, ...] = ()  # category paths (and everything below them)
    segments: tuple[str, ...] = ()  # audience segments; empty: everyone
    start: date | None = None
    end: date | None = None
    status: str = "active"

    def __post_init__(self) -> None:
        if not str(self.campaign_id).strip() or not str(self.advertiser).strip():
            raise AdsError("campaign_id and advertiser must be non-empty")
        for name in ("bid", "daily_budget", "total_budget"):
            object.__setattr__(self, name, non_negative(name, getattr(self, name), AdsError))
        if self.bid == 0:
            raise AdsError("bid: must be above zero")
        if self.daily_budget > self.total_budget:
            raise AdsError(f"daily_budget ({self.daily_budget}) is above total_budget ({self.total_budget})")
        if not self.items:
            raise AdsError("items: a campaign needs at least one advertised item")
        if self.status not in STATUSES:
            raise AdsError(f"status must be one of {', '.join(STATUSES)}, got {self.status!r}")
        if self.start and self.end and self.end < self.start:
            raise AdsError(f"end ({self.end}) is before start ({self.start})")

    @classmethod
    def from_dict(cls, spec: Mapping[str, Any]) -> Campaign:
        """From JSON-like data: keywords as "text" (broad) or {"text", "match"}, dates as ISO strings."""
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(spec) - known)
        if unknown:
            raise AdsError(f"unknown campaign field {unknown[0]!r}; known: {', '.join(sorted(known))}")
        missing = [
            f for f in ("campaign_id", "advertiser", "bid", "daily_budget", "total_budget", "items") if f not in spec
        ]
        if missing:
            raise AdsError(f"campaign field {missing[0]!r} is required")
        data = dict(spec)
        data["keywords"] = tuple(_keyword(k) for k in data.get("keywords", ()))
        for key in ("items", "categories", "segments"):
            value = data.get(key, ())
            data[key] = (value,) if isinstance(value, str) else tuple(str(v) for v in value)
        for key in ("start", "end"):
            if isinstance(data.get(key), str):
                try:
                    data[key] = date.fromisoformat(data[key])
                except ValueError:
                    raise AdsError(f"{key}: expected an ISO date (YYYY-MM-DD), got {data[key]!r}") from None
        return cls(**data)

    def running(self, day: date) -> bool:
        """Active, and `day` inside its dates."""
        return (
            self.status == "active"
            and (self.start is None or day >= self.start)
            and (self.end is None or day <= self.end)
        )

    def targets_category(self, path: str | None) -> bool:
        """No category targeting, or `path` is a targeted category or below one."""
        if not self.categories:
            return True
        return any(under(path, c) for c in self.categories)

    def targets_segment(self, segments: Sequence[str]) -> bool:
        return not self.segments or bool(set(self.segments) & set(segments))


def _keyword(value: Any) -> Keyword:
    if isinstance(value, Keyword):
        return value
    if isinstance(value, str):
        return Keyword(value)
    if isinstance(value, Mapping) and "text" in value:
        return Keyword(str(value["text"]), str(value.get("match", "broad")))
    raise AdsError(f"keyword: expected a string or {{'text', 'match'}}, got {value!r}")
