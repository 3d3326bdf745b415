"""The shop front and the dashboard render from the served version (TestClient; the browser test
in test_browser.py drives them in Chromium)."""

from __future__ import annotations

import io
from collections.abc import Iterator

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from vitrina.analytics.sentiment import SentimentModel
from vitrina.config import Config
from vitrina.privacy.dp import PrivacyAccountant, private_counts
from vitrina.serving.app import create_app
from vitrina.serving.web import COOKIE


@pytest.fixture(scope="module")
def web(served) -> Iterator[TestClient]:
    cfg, storage, models = served
    with TestClient(create_app(cfg, models, storage)) as c:
        yield c


def test_home_shows_popular_then_personal(web: TestClient) -> None:
    anonymous = web.get("/")
    assert anonymous.status_code == 200 and "Popular now" in anonymous.text
    assert "generated, as random walks" in anonymous.text  # the demo note says what is synthetic
    web.cookies.set(COOKIE, "u00")
    personal = web.get("/")
    web.cookies.clear()
    assert "Recommended for you" in personal.text and 'data-user="u00"' in personal.text


def test_search_page_has_results_and_facets(web: TestClient) -> None:
    page = web.get("/shop/search", params={"q": "drill"})
    assert page.status_code == 200
    assert "cordless drill" in page.text and "Tools &gt; Power Tools (" in page.text
    narrowed = web.get("/shop/search", params={"q": "drill", "category": "Garden"})
    assert "cordless drill" not in narrowed.text


def test_photo_search_page_finds_items_of_that_look(web: TestClient) -> None:
    pixels = np.zeros((48, 36, 3), np.uint8)
    pixels[:] = (240, 200, 40)  # the backdrop of the first category (Clothing, see conftest)
    pixels[14:34, 8:28] = (200, 30, 30)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    page = web.post("/shop/search/photo", files={"photo": ("red.png", buf.getvalue(), "image/png")})
    assert page.status_code == 200
    first = page.text.split('class="card"')[1]
    assert "red" in first and "Clothing" in first
    refused = web.post("/shop/search/photo", files={"photo": ("x.txt", b"text", "text/plain")})
    assert refused.status_code == 415


def test_product_page_sections(web: TestClient) -> None:
    page = web.get("/product/i024")
    assert page.status_code == 200
    for part in ("Similar by look", "Similar by description", 'data-event="cart"', 'data-view-item="i024"'):
        assert part in page.text
    assert web.get("/product/nope").status_code == 404


def test_dashboard_and_plots(web: TestClient) -> None:
    page = web.get("/admin")
    assert page.status_code == 200
    for part in ("Data quality", "Serving model", "Live requests", 'id="map-plot"'):
        assert part in page.text
    for name in ("map", "curve"):
        png = web.get(f"/admin/plot/{name}.png")
        assert png.status_code == 200 and png.content[:8] == b"\x89PNG\r\n\x1a\n"
    assert web.get("/admin/plot/nothing.png").status_code == 404


def test_dashboard_shows_privacy_budget_and_published_releases(web: TestClient, served) -> None:
    """The privacy panel reads what releases published and what they spent; it never counts itself."""
    cfg, storage, _ = served
    accountant = PrivacyAccountant.from_config(storage, cfg)
    assert "No differentially private release yet" in web.get("/admin").text
    events = storage.read("interactions")[["user_id", "item_id"]]
    counts, _ = private_counts(accountant, "shop", "shoppers per item", events, "item_id", 0.5, seed=3)
    page = web.get("/admin").text
    assert 'id="privacy-budget"' in page and "<td>shop</td><td>0.5</td><td>10</td>" in page
    assert "shoppers per item (shop): laplace, ε = 0.5" in page
    assert f"<td>{counts.idxmax()}</td><td>{counts.max():.1f}</td>" in page
    assert accountant.spent("shop") == (0.5, 0.0)  # showing the dashboard spent nothing


def test_sponsored_results_are_marked(web: TestClient) -> None:
    spec = {
        "campaign_id": "c1",
        "advertiser": "Garden Co",
        "bid": 1,
        "daily_budget": 9,
        "total_budget": 9,
        "items": ["i030"],
    }
    assert web.post("/campaigns", json={**spec, "keywords": ["hose"]}).status_code == 201
    page = web.get("/shop/search", params={"q": "hose"}).text
    first = page.split('class="card"')[1]
    assert 'data-impression="imp-' in first and "Sponsored" in first


def test_product_page_reads_review_sentiment(served, tmp_path) -> None:
    cfg, storage, models = served
    texts = ["很好用，非常满意", "质量太差，很失望", "great, love it", "terrible, broke"] * 10
    labels = np.array([1, 0, 1, 0] * 10)
    model = SentimentModel()
    model.word.fit(texts, labels)
    model.char.fit(texts, labels)
    path = model.save(tmp_path / "sentiment.pkl")
    with_model = Config({**cfg.data, "serve": {**cfg.get("serve"), "sentiment_model": str(path)}})
    with TestClient(create_app(with_model, models, storage)) as c:
        for text in ("非常满意，很好用", "great, love it", "质量太差"):
            assert c.post("/reviews", json={"item_id": "i030", "text": text}).status_code == 201
        page = c.get("/product/i030").text
    assert "Reviews: 3" in page and "67% read as positive by the sentiment model" in page
