"""The ad server: budgets, pacing, frequency caps, click charging, logging and blending."""

from __future__ import annotations

from datetime import date

import numpy as np
import pytest

from vitrina.ads.campaign import AdsError, Campaign
from vitrina.ads.matching import AdRequest, CampaignMatcher
from vitrina.ads.server import AdServer, blend

DAY = date(2026, 5, 4)


def _server(campaigns: list[Campaign], day_fraction: float = 1.0, cap: int = 3) -> AdServer:
    matcher = CampaignMatcher(campaigns)
    return AdServer(
        matcher,
        predict_ctr=lambda request, candidates: np.full(len(candidates), 0.1),
        reserve=0.1,
        frequency_cap=cap,
        day_fraction=lambda: day_fraction,
    )


def _campaign(cid: str, bid: float, daily: float, total: float = 100.0) -> Campaign:
    return Campaign(cid, "acme", bid, daily, total, items=(f"{cid}-item",), keywords=())


def test_second_price_charges_and_budgets_stop_a_campaign() -> None:
    server = _server([_campaign("a", 1.0, daily=1.0), _campaign("b", 0.6, daily=5.0)])
    ads = server.serve(AdRequest(DAY, user_id="u1"), slots=1)
    assert [(a.campaign_id, a.sponsored) for a in ads] == [("a", True)]
    assert server.click(ads[0].impression_id) == pytest.approx(0.6)  # b's eCPM / a's pCTR
    with pytest.raises(AdsError, match="unknown impression"):
        server.click(ads[0].impression_id)  # one charge per impression
    server.click(server.serve(AdRequest(DAY, user_id="u2"), slots=1)[0].impression_id)
    assert server.spent("a", DAY) == pytest.approx(1.0)  # the second click was capped at the budget left
    assert [a.campaign_id for a in server.serve(AdRequest(DAY, user_id="u3"), slots=1)] == ["b"]
    assert [e.kind for e in server.log] == ["impression", "click", "impression", "click", "impression"]


def test_frequency_cap_per_user_and_day() -> None:
    server = _server([_campaign("a", 1.0, daily=50.0)], cap=2)
    shown = [len(server.serve(AdRequest(DAY, user_id="u1"), slots=1)) for _ in range(4)]
    assert shown == [1, 1, 0, 0]
    assert len(server.serve(AdRequest(DAY, user_id="u2"), slots=1)) == 1
    assert len(server.serve(AdRequest(date(2026, 5, 5), user_id="u1"), slots=1)) == 1


def test_pacing_holds_back_a_campaign_ahead_of_the_clock() -> None:
    early = _server([_campaign("a", 1.0, daily=10.0)], day_fraction=0.05)
    for n in range(200):
        for ad in early.serve(AdRequest(DAY, user_id=f"u{n}"), slots=1):
            early.click(ad.impression_id)
    # Each click costs the 0.1 reserve, so unpaced the 200 clicks would spend the whole 10.0; 5% into
    # the day with a 0.1 slack, throttling starts at 15% of the budget and is total at 25%.
    assert 0.15 * 10.0 <= early.spent("a", DAY) <= 0.25 * 10.0 + 0.1
    late = _server([_campaign("a", 1.0, daily=10.0)], day_fraction=1.0)
    for n in range(200):
        for ad in late.serve(AdRequest(DAY, user_id=f"u{n}"), slots=1):
            late.click(ad.impression_id)
    assert late.spent("a", DAY) == pytest.approx(10.0)


def test_blend_labels_ads_and_keeps_every_organic_result() -> None:
    server = _server([_campaign("a", 1.0, daily=5.0), _campaign("b", 0.5, daily=5.0)])
    ads = server.serve(AdRequest(DAY), slots=2)
    page = blend(["r1", "r2", "r3"], ads, slots=[0, 2])
    assert [kind for kind, _ in page] == ["sponsored", "organic", "sponsored", "organic", "organic"]
    assert [hit for kind, hit in page if kind == "organic"] == ["r1", "r2", "r3"]
    assert blend(["r1"], ads, slots=[5, 9])[1:] == [("sponsored", ads[0]), ("sponsored", ads[1])]


def test_settings_come_from_the_config() -> None:
    from vitrina.config import Config

    cfg = Config.load(overrides={"ads.reserve": "0.2", "ads.frequency_cap": "1"})
    server = AdServer.from_config(cfg, CampaignMatcher([]), lambda r, c: np.zeros(len(c)), pacing_slack=0.5)
    assert (server.reserve, server.frequency_cap, server.pacing_slack) == (0.2, 1, 0.5)


def test_events_are_written_to_the_database(storage) -> None:
    from vitrina.ads.event_log import StorageAdLog

    log = StorageAdLog(storage)
    server = _server([_campaign("a", 1.0, daily=5.0)])
    server.sink = log
    ads = server.serve(AdRequest(DAY, user_id="u1"), slots=1)
    server.click(ads[0].impression_id)
    rows = log.read()
    assert rows["kind"].tolist() == ["impression", "click"]
    assert rows["campaign_id"].tolist() == ["a", "a"] and rows["day"].tolist() == ["2026-05-04"] * 2
    assert rows["price"].iloc[1] == pytest.approx(server.spent("a", DAY))
