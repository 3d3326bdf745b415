"""Shoppers' recent events through Redis (`[serve] redis_url`): the same answers as the database,
events visible at once, a fill that races a write does not keep a stale list, and serving goes on
when Redis goes away."""

from __future__ import annotations

import redis
from fastapi.testclient import TestClient

from vitrina.config import Config
from vitrina.serving.app import create_app
from vitrina.serving.live import Event, LiveStore
from vitrina.serving.recent import RecentCache


def _app(served, redis_url: str):
    cfg, storage, models = served
    with_redis = Config({**cfg.data, "serve": {**cfg.get("serve"), "redis_url": redis_url}})
    return create_app(with_redis, models, storage)


def test_cached_history_matches_the_database(served, redis_url: str) -> None:
    _, storage, _ = served
    cached = LiveStore(storage, RecentCache.from_url(redis_url))
    plain = LiveStore(storage)
    assert cached.history("u07") == plain.history("u07")  # a miss: filled from the database
    assert redis.Redis.from_url(redis_url).exists("vitrina:recent:u07")
    cached.record([Event("r-1", "u07", "i003", "cart")])
    assert cached.history("u07")[0] == ("i003", "cart", 1.0) == plain.history("u07")[0]
    cached.record([Event("r-1", "u07", "i003", "cart")])  # a retry: stored once, cached once
    assert cached.history("u07") == plain.history("u07")
    assert cached.history("nobody-yet") == []  # an empty history is cached too
    cached.record([Event("r-2", "nobody-yet", "i004", "view")])
    assert cached.history("nobody-yet") == [("i004", "view", 1.0)]


def test_a_fill_that_races_a_write_is_dropped(redis_url: str) -> None:
    cache = RecentCache.from_url(redis_url)
    stale = [(1, "i000", "view", 1.0)]
    assert cache.get("u08", load=lambda: stale, latest=lambda: 99) == stale  # newer event committed meanwhile
    assert not redis.Redis.from_url(redis_url).exists("vitrina:recent:u08")  # the next read refills


def test_service_with_redis_reacts_and_survives_redis_going_away(served, redis_url: str) -> None:
    with TestClient(_app(served, redis_url)) as c:
        before = c.get("/users/u09/recommendations", params={"k": 5}).json()["items"]
        drills = [h["item_id"] for h in c.get("/search", params={"q": "drill", "mode": "lexical"}).json()["hits"][:3]]
        for n, item in enumerate(drills):
            assert (
                c.post(
                    "/events", json={"user_id": "u09", "item_id": item, "type": "purchase", "event_id": f"rd-{n}"}
                ).status_code
                == 201
            )
        after = c.get("/users/u09/recommendations", params={"k": 5}).json()["items"]
        assert [i["item_id"] for i in after] != [i["item_id"] for i in before]
        assert not {i["item_id"] for i in after} & set(drills)  # seen at once, through the cache
        redis.Redis.from_url(redis_url).shutdown(nosave=True)
        assert c.get("/users/u09/recommendations", params={"k": 5}).status_code == 200
        assert c.post("/events", json={"user_id": "u09", "item_id": "i005", "type": "view"}).status_code == 201
