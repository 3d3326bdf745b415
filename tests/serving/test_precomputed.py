"""Batch scoring: the stored top-K of every shopper is what a request would rank, the API answers
from it while it holds, and an event, an item change, a longer list or an erasure sends the request
back to online scoring."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator

import pytest
import redis
import sqlalchemy as sa
from fastapi.testclient import TestClient

from vitrina.config import Config
from vitrina.data.schema import precomputed_table
from vitrina.data.storage import Storage
from vitrina.distributed.batch_score import precompute
from vitrina.search.engine import Models
from vitrina.serving.app import create_app
from vitrina.serving.erasure import forget_user
from vitrina.serving.live import LiveStore
from vitrina.serving.precomputed import PrecomputedLists, history_key
from vitrina.serving.process import free_port
from vitrina.serving.recent import RecentCache
from vitrina.serving.settings import ServeSettings
from vitrina.serving.state import ServingState


@pytest.fixture(scope="module")
def lists(served: tuple[Config, Storage, Models]) -> Iterator[dict]:
    cfg, storage, _ = served
    yield precompute(cfg, storage, k=20, progress=False)


@pytest.fixture(scope="module")
def client(served: tuple[Config, Storage, Models], lists: dict) -> Iterator[TestClient]:
    cfg, storage, models = served
    with TestClient(create_app(cfg, models, storage)) as c:
        yield c


def _state(served) -> tuple[ServingState, object]:
    cfg, storage, models = served
    state = ServingState(storage, ServeSettings.from_config(cfg), models)
    state.refresh()
    return state, state.current()


def test_every_shopper_gets_the_list_a_request_would_rank(served, lists: dict) -> None:
    _, storage, _ = served
    assert lists["users"] == 24 and lists["k"] == 20 and lists["ray"] is None
    state, view = _state(served)
    store = PrecomputedLists(storage)
    assert store.has(view.bundle.version)
    for n in range(24):
        user = storage.personal.user_id(f"u{n:02d}")
        history = state.live.history(user)
        for k in (1, 10, 20):
            assert store.recommend(view, user, history, k) == view.recommend(user, history, k)  # reasons too
    user = storage.personal.user_id("u00")
    assert store.recommend(view, user, state.live.history(user), 21) is None  # longer than ranked
    assert store.recommend(view, user, [], 5) is None  # another history
    assert store.recommend(view, "nobody", [], 5) is None


def _answers(client: TestClient) -> dict[str, float]:
    found = re.findall(r'vitrina_precomputed_answers_total\{outcome="(\w+)"\} (\S+)', client.get("/metrics").text)
    return {outcome: float(n) for outcome, n in found}


def test_the_api_answers_from_the_list_until_the_shopper_acts(client: TestClient, served) -> None:
    _, storage, _ = served
    state, view = _state(served)
    user = storage.personal.user_id("u03")
    before = client.get("/users/u03/recommendations", params={"k": 10}).json()["items"]
    expected = view.recommend(user, state.live.history(user), 10)
    assert [(r["item_id"], r["reason"]) for r in before] == [(r.item_id, r.reason) for r in expected]
    assert (
        client.post("/events", json={"user_id": "u03", "item_id": before[0]["item_id"], "type": "cart"}).status_code
        == 201
    )
    assert _answers(client) == {"hit": 1.0}
    history = state.live.history(user)
    assert PrecomputedLists(storage).recommend(view, user, history, 10) is None  # the list no longer holds
    after = client.get("/users/u03/recommendations", params={"k": 10}).json()["items"]
    assert before[0]["item_id"] not in {r["item_id"] for r in after}  # the event counts at once
    assert [r["item_id"] for r in after] == [r.item_id for r in view.recommend(user, history, 10)]
    assert _answers(client) == {"hit": 1.0, "miss": 1.0}
    client.get("/users/u03/recommendations", params={"k": 10, "category": "Tools"})  # filtered: online, not counted
    assert _answers(client) == {"hit": 1.0, "miss": 1.0}


def test_an_item_change_retires_every_list(client: TestClient, served) -> None:
    _, storage, _ = served
    state, view = _state(served)
    user = storage.personal.user_id("u05")
    assert PrecomputedLists(storage).recommend(view, user, state.live.history(user), 5) is not None
    item = {"item_id": "pc-1", "title": "Makita cordless drill", "category_path": "Tools", "price": 99.0}
    assert client.post("/items", json=item).status_code == 201
    state.refresh()
    changed = state.current()
    assert changed.seq > view.seq
    assert PrecomputedLists(storage).recommend(changed, user, state.live.history(user), 5) is None


def test_forgetting_a_shopper_removes_their_list(client: TestClient, served) -> None:
    _, storage, _ = served
    user = storage.personal.user_id("u07")
    t = precomputed_table
    count = sa.select(sa.func.count()).select_from(t).where(t.c.user_id == user)
    with storage.engine.connect() as conn:
        assert conn.execute(count).scalar_one() == 1
    assert client.delete("/users/u07").status_code == 200
    with storage.engine.connect() as conn:
        assert conn.execute(count).scalar_one() == 0


def test_history_key_is_the_same_in_every_process_and_tells_histories_apart() -> None:
    h = [("i1", "view", 1.0), ("i2", "cart", 1.0)]
    code = f"from vitrina.serving.precomputed import history_key; print(history_key({h!r}))"
    other = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "PYTHONHASHSEED": "7"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert other.stdout.strip() == history_key(h)  # workers are separate processes
    assert history_key(h) != history_key(h[::-1]) and history_key(h) != history_key([("i1", "view", 2.0), h[1]])
    assert history_key([]) != history_key(h[:1])


def _stored(storage: Storage) -> list[tuple]:
    t = precomputed_table
    with storage.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.select(t).order_by(t.c.user_id))]


def test_ray_workers_store_the_same_lists(served, ray_local: None) -> None:
    """Two Ray workers, chunks of 5 shoppers: row for row what this process stores."""
    cfg, storage, _ = served
    local = precompute(cfg, storage, k=15, chunk_size=5, progress=False)
    expected = _stored(storage)
    on_ray = cfg.with_overrides({"distributed.ray_address": "local", "distributed.workers": 2})
    report = precompute(on_ray, storage, k=15, chunk_size=5, progress=False)
    assert report["ray"] == "local" and report["users"] == local["users"] == len(expected) > 20
    assert _stored(storage) == expected


def test_lists_are_copied_to_redis_read_from_it_first_and_erased_there_too(served, redis_url: str) -> None:
    cfg, storage, _ = served
    client = redis.Redis.from_url(redis_url)
    report = precompute(cfg.with_overrides({"serve.redis_url": redis_url}), storage, k=10, progress=False)
    state, view = _state(served)
    key = f"vitrina:lists:{view.bundle.version}"
    assert client.hlen(key) == report["users"] > 20
    user = storage.personal.user_id("u11")
    history = state.live.history(user)
    t = precomputed_table
    with storage.begin() as conn:  # gone from the table: only Redis can answer now
        conn.execute(t.delete().where(t.c.user_id == user))
    assert PrecomputedLists(storage).recommend(view, user, history, 5) is None
    cached = PrecomputedLists(storage, client).recommend(view, user, history, 5)
    assert cached == view.recommend(user, history, 5)
    other = storage.personal.user_id("u12")
    dead = redis.Redis(port=free_port(), socket_timeout=0.5)  # Redis not answering: the table answers
    assert PrecomputedLists(storage, dead).recommend(view, other, state.live.history(other), 5) is not None
    forget_user(storage, ServeSettings.from_config(cfg).dir, user, LiveStore(storage, RecentCache(client)))
    assert client.hget(key, user) is None and client.hlen(key) == report["users"] - 1
