"""The search engine end to end on a generated catalogue: modes, filters, facets, pages,
personal re-ranking, index changes, save/load and refusals of bad requests."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from vitrina.data.storage import Storage
from vitrina.features.text import item_text
from vitrina.features.text_tfidf import TfidfSvdEncoder
from vitrina.search.engine import SearchEngine, SearchError, SearchSettings
from vitrina.search.filters import FilterError


@pytest.fixture
def encoder(catalog: pd.DataFrame) -> TfidfSvdEncoder:
    return TfidfSvdEncoder(dim=24).fit(item_text(catalog))


@pytest.fixture
def engine(shop: Storage, encoder: TfidfSvdEncoder) -> SearchEngine:
    return SearchEngine.build(shop, encoder, SearchSettings(candidates=30))


def test_every_mode_finds_the_product(engine: SearchEngine) -> None:
    for mode in ("lexical", "semantic", "hybrid"):
        hits = engine.search("claw hammer", mode, page_size=3).hits
        assert all("claw hammer" in h.title for h in hits), mode
    hybrid = engine.search("claw hammer", "hybrid", page_size=1).hits[0]
    assert set(hybrid.ranks) == {"lexical", "semantic"}


def test_filters_facets_and_pages(engine: SearchEngine, catalog: pd.DataFrame) -> None:
    response = engine.search("drill", "hybrid", {"category": "Garden", "price_max": 200}, page_size=4)
    garden = set(catalog.loc[(catalog["category_path"] == "Garden") & (catalog["price"] <= 200), "item_id"])
    assert len(response.hits) == 4 and {h.item_id for h in response.hits} <= garden
    assert response.facets["category"] == {"Garden": response.total}
    assert sum(response.facets["brand"].values()) == response.total
    first = engine.search("dress", "hybrid", page=1, page_size=5)
    second = engine.search("dress", "hybrid", page=2, page_size=5)
    whole = engine.search("dress", "hybrid", page=1, page_size=10)
    assert [h.item_id for h in first.hits + second.hits] == [h.item_id for h in whole.hits]


def test_user_scores_reorder_results(engine: SearchEngine) -> None:
    plain = [h.item_id for h in engine.search("cordless drill", "hybrid", page_size=3).hits]
    favourite = plain[-1]

    def likes_last(user: str, items: Sequence[str]) -> np.ndarray | None:
        return None if user == "stranger" else np.array([10.0 if i == favourite else 0.0 for i in items])

    ranked = engine.search("cordless drill", "hybrid", page_size=3, user_id="fan", personalizer=likes_last)
    assert ranked.hits[0].item_id == favourite
    same = engine.search("cordless drill", "hybrid", page_size=3, user_id="stranger", personalizer=likes_last)
    assert [h.item_id for h in same.hits] == plain


def test_items_change_without_a_rebuild(shop: Storage, engine: SearchEngine, catalog: pd.DataFrame) -> None:
    new = catalog.head(1).copy()
    new["item_id"], new["title"], new["description"] = "new-1", "Makita cordless drill black", "Brand new drill"
    shop.write("items", new)
    assert engine.check(shop)["lexical"]["missing"] == ["new-1"]
    engine.upsert_items(new)
    assert engine.check(shop) == {
        "lexical": {"missing": [], "extra": [], "changed": []},
        "semantic": {"missing": [], "extra": []},
    }
    assert "new-1" in {h.item_id for h in engine.search("cordless drill", "semantic", page_size=5).hits}
    engine.delete_items(["new-1"])
    assert "new-1" not in {h.item_id for h in engine.search("cordless drill", "hybrid", page_size=10).hits}
    with pytest.raises(KeyError, match="unknown item id"):
        engine.delete_items(["never-was"])


def test_save_and_load_give_the_same_results(
    shop: Storage, engine: SearchEngine, encoder: TfidfSvdEncoder, tmp_path: Path
) -> None:
    engine.save(tmp_path / "index")
    loaded = SearchEngine.load(tmp_path / "index", shop, encoder, engine.settings)
    for mode in ("lexical", "semantic", "hybrid"):
        assert loaded.search("garden hose", mode).to_dict() == engine.search("garden hose", mode).to_dict()
    other = TfidfSvdEncoder(dim=8).fit(["red drill", "red hose", "blue drill"])
    with pytest.raises(ValueError, match="built with text encoder"):
        SearchEngine.load(tmp_path / "index", shop, other)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"query": "   "}, SearchError, "empty"),
        ({"query": "drill " * 200}, SearchError, "limit is 500"),
        ({"query": "drill", "mode": "telepathy"}, SearchError, "unknown search mode"),
        ({"query": "drill", "page": 0}, SearchError, "page must be"),
        ({"query": "drill", "page_size": 1000}, SearchError, "page_size must be"),
        ({"query": "drill", "filters": {"colour": "red"}}, FilterError, "unknown filter"),
    ],
)
def test_bad_requests_are_refused_clearly(engine: SearchEngine, kwargs: dict, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        engine.search(**kwargs)


def test_lexical_only_engine_explains_missing_modes(shop: Storage) -> None:
    engine = SearchEngine.build(shop)
    assert engine.modes() == ("lexical",)
    with pytest.raises(SearchError, match="built without what it needs"):
        engine.search("drill", "semantic")


def test_sponsored_results_are_auctioned_labelled_and_blended(engine: SearchEngine) -> None:
    from vitrina.ads.campaign import Campaign
    from vitrina.ads.matching import CampaignMatcher
    from vitrina.ads.server import AdServer

    spec = {"campaign_id": "c1", "advertiser": "acme", "bid": 1.0, "daily_budget": 10, "total_budget": 100}
    campaign = Campaign.from_dict({**spec, "items": ["i030"], "keywords": ["cordless drill"]})
    server = AdServer(CampaignMatcher([campaign]), lambda request, candidates: np.full(len(candidates), 0.1))
    response = engine.search("cordless drill", "hybrid", page_size=4, ads=server, ad_slots=(1,))
    assert [a.item_id for a in response.sponsored] == ["i030"]
    kinds = [kind for kind, _ in response.layout]
    assert kinds == ["organic", "sponsored", "organic", "organic", "organic"]
    assert response.to_dict()["sponsored"][0]["sponsored"] is True
    assert [e.kind for e in server.log] == ["impression"]
    assert engine.search("cordless drill", "hybrid", page=2, page_size=4, ads=server).sponsored == []


def test_recommender_personalizer_scores_known_pairs_only() -> None:
    from synthetic import clustered_dataset
    from vitrina.data.snapshot import Snapshot
    from vitrina.models import create
    from vitrina.search.engine import recommender_personalizer

    snap = Snapshot.build(clustered_dataset(), split="random", seed=0)
    model = create("itemknn", seed=1, neighbours=20).fit(snap, progress=False)
    score = recommender_personalizer(model)
    user, items = snap.users.ids[0], list(snap.items.ids[:5])
    assert score("never-seen-user", items) is None
    got = score(user, [*items, "not-in-the-model"])
    expected = model.score([0], snap.items.to_index(items))[0]
    assert np.allclose(got[:5], expected)
    assert got[5] == pytest.approx(expected.min())  # unknown items get the lowest known score
