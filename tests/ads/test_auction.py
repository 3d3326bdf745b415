"""Campaign validation, keyword matching and the second-price auction on hand-checked cases."""

from __future__ import annotations

from datetime import date

import numpy as np
import pytest

from vitrina.ads.auction import Bid, run_auction
from vitrina.ads.campaign import AdsError, Campaign, Keyword
from vitrina.ads.matching import AdRequest, CampaignMatcher, keyword_matches
from vitrina.features.text import TextPreprocessor

WORDS = TextPreprocessor()


def _campaign(**over: object) -> Campaign:
    spec = {"campaign_id": "c1", "advertiser": "acme", "bid": 0.5, "daily_budget": 10, "total_budget": 100}
    return Campaign.from_dict({**spec, "items": ["i1"], **over})


@pytest.mark.parametrize(
    ("over", "message"),
    [
        ({"bid": -1}, "bid: must be a non-negative"),
        ({"bid": 0}, "bid: must be above zero"),
        ({"daily_budget": -5}, "daily_budget: must be a non-negative"),
        ({"daily_budget": 200}, "above total_budget"),
        ({"items": []}, "at least one advertised item"),
        ({"start": "2026-02-01", "end": "2026-01-01"}, "before start"),
        ({"start": "tomorrow"}, "ISO date"),
        ({"keywords": [{"text": "drill", "match": "fuzzy"}]}, "match type"),
        ({"status": "deleted"}, "status must be"),
        ({"colour": "red"}, "unknown campaign field 'colour'"),
    ],
)
def test_bad_campaigns_are_refused_with_the_field(over: dict, message: str) -> None:
    with pytest.raises(AdsError, match=message):
        _campaign(**over)


@pytest.mark.parametrize(
    ("keyword", "query", "hit"),
    [
        (Keyword("cordless drill", "exact"), "Cordless drill", True),
        (Keyword("cordless drill", "exact"), "cordless drill set", False),
        (Keyword("cordless drill", "phrase"), "best cordless drill for wood", True),
        (Keyword("cordless drill", "phrase"), "drill cordless", False),
        (Keyword("cordless drill", "broad"), "drills that are cordless", True),
        (Keyword("cordless drill", "broad"), "corded drill", False),
    ],
)
def test_keyword_match_types(keyword: Keyword, query: str, hit: bool) -> None:
    assert keyword_matches(keyword, WORDS.tokens(query)) is hit


def test_gsp_prices_ranks_by_ecpm_and_respects_reserve() -> None:
    bids = [
        Bid("a", "i1", bid=1.0, pctr=0.05),  # eCPM 0.050
        Bid("b", "i2", bid=2.0, pctr=0.02),  # eCPM 0.040
        Bid("c", "i3", bid=0.5, pctr=0.06),  # eCPM 0.030
        Bid("a", "i4", bid=1.0, pctr=0.04),  # same campaign as the winner: skipped
        Bid("d", "i5", bid=0.05, pctr=0.9),  # below the reserve
    ]
    won = run_auction(bids, slots=2, reserve=0.1)
    assert [(p.campaign_id, p.slot) for p in won] == [("a", 0), ("b", 1)]
    assert won[0].price == pytest.approx(0.040 / 0.05)  # the next eCPM over its own pCTR
    assert won[1].price == pytest.approx(0.030 / 0.02)
    assert all(p.price <= b.bid for p, b in zip(won, bids, strict=False))
    last = run_auction(bids[:1], slots=3, reserve=0.1)
    assert last[0].price == pytest.approx(0.1)  # alone: pays the reserve
    with pytest.raises(AdsError, match="pCTR in"):
        run_auction([Bid("x", "i", 1.0, 1.5)], slots=1)


def test_matcher_applies_keywords_semantics_visuals_and_targeting() -> None:
    day = date(2026, 3, 1)
    drill = _campaign(campaign_id="drill", items=["d1"], keywords=["cordless drill"], categories=["Tools"])
    hose = _campaign(campaign_id="hose", items=["h1"], segments=["gardeners"])
    old = _campaign(campaign_id="old", items=["o1"], end="2026-01-01", keywords=["drill"])
    vec = {"d1": np.array([1.0, 0.0]), "h1": np.array([0.0, 1.0]), "o1": np.array([1.0, 0.0])}
    matcher = CampaignMatcher(
        [drill, hose, old], text_vectors=vec, image_vectors=vec, item_categories={"d1": "Tools > Power", "h1": "Garden"}
    )
    found = matcher.match(AdRequest(day, query="cordless drills", query_vector=np.array([1.0, 0.0])))
    assert [(c.campaign_id, how) for c, _, how, _ in found] == [("drill", "keyword")]  # old ended; hose: segment
    gardener = AdRequest(day, segments=("gardeners",), query="watering", query_vector=np.array([0.0, 1.0]))
    assert [(c.campaign_id, how) for c, _, how, _ in matcher.match(gardener)] == [("hose", "semantic")]
    viewing = AdRequest(day, viewed_item="x", viewed_image=np.array([0.96, 0.28]), segments=("gardeners",))
    assert [(c.campaign_id, how) for c, _, how, _ in matcher.match(viewing)] == [("drill", "visual")]
