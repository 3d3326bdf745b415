"""The load benchmark's parts that need no server: wrk's report, the private copy it runs on, demo shoppers."""

from __future__ import annotations

import pandas as pd

from vitrina.bench.serve import parse_wrk, private_copy
from vitrina.data.storage import Storage
from vitrina.serving.bundle import current_version
from vitrina.serving.demo import demo_events
from vitrina.serving.live import Event, LiveStore
from vitrina.serving.settings import ServeSettings

WRK = """Running 5s test @ http://127.0.0.1:8000
  2 threads and 50 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     3.10ms    4.20ms  80.00ms   95.00%
  Latency Distribution
     50%    2.28ms
     75%    3.00ms
     90%    5.50ms
     99%   14.28ms
  2345 requests in 5.01s, 1.20MB read
  Non-2xx or 3xx responses: 3
Requests/sec:    468.07
Transfer/sec:    245.00KB
VITRINA_ACKS created=2300 duplicate=0 other=3
"""


def test_parse_wrk() -> None:
    out = parse_wrk(WRK)
    assert out["p50_ms"] == 2.28 and out["p99_ms"] == 14.28 and out["p90_ms"] == 5.5
    assert out["requests"] == 2345 and abs(out["seconds"] - 5.01) < 1e-9
    assert out["rps"] == 468.07 and out["errors"] == 3


def test_demo_shoppers_walk_the_copurchase_graph() -> None:
    pairs = pd.DataFrame(
        {
            "article_id": ["a", "a", "b", "c", "d"],
            "co_article_id": ["b", "c", "a", "a", "e"],
            "score": [0.5, 0.1, 0.5, 0.1, 1.0],
        }
    )
    events = demo_events(pairs, ["u1", "u2", "u3"], seed=1)
    assert set(events["user_id"]) == {"u1", "u2", "u3"}
    assert events["event_id"].is_unique and set(events["type"]) <= {"view", "click", "cart", "purchase"}
    assert events.groupby("user_id").size().between(4, 16).all()
    again = demo_events(pairs, ["u1", "u2", "u3"], seed=1)
    pd.testing.assert_frame_equal(events, again)


def test_the_benchmark_runs_on_a_private_copy(served, tmp_path) -> None:
    cfg, storage, _ = served
    settings = ServeSettings.from_config(cfg)
    before = storage.counts()
    overrides = private_copy(cfg, settings, tmp_path / "work")
    copy = Storage(overrides["storage.url"])
    assert copy.counts() == before
    LiveStore(copy).record([Event("bench-1", "u00", "i000", "view")])
    assert copy.counts()["interactions"] == before["interactions"] + 1
    assert storage.counts() == before  # the shop's own database is untouched
    assert current_version(overrides["serve.dir"]) == current_version(settings.dir)
    copy.close()
