"""Two uvicorn workers share their state through the database: an item posted to one is served by
both, and /metrics adds up both workers' requests."""

from __future__ import annotations

import json
import re
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from vitrina.serving import process


def _call(url: str, body: dict | None = None) -> tuple[int, dict]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, headers={"content-type": "application/json"} if data else {})
    with urllib.request.urlopen(req, timeout=30) as r:  # a new connection per call: either worker may answer
        return r.status, json.loads(r.read())


@pytest.mark.parametrize("recent", ["database", "redis"])
def test_two_workers_share_items_and_metrics(
    served, shop_dir: Path, recent: str, request: pytest.FixtureRequest
) -> None:
    """Also the server deployment's shape: with Redis holding recent events (and, in the PostgreSQL
    pass, PostgreSQL as the store), an event posted to either worker changes both workers' answer."""
    cfg, _, _ = served
    port = process.free_port()
    keys = ("paths.cache_dir", "storage.url", "serve.media_root", "features.store.image_encoder")
    overrides = {k: str(cfg.get(k)) for k in keys} | {"serve.dir": str(cfg.cache_dir / "serve"), "serve.refresh_s": 0.0}
    if recent == "redis":
        overrides["serve.redis_url"] = request.getfixturevalue("redis_url")
    server = process.start(overrides, 2, port, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        process.wait_ready(base, timeout=90)
        item = {"item_id": "w-1", "title": "Bosch cordless lawn mower", "category_path": "Garden", "price": 300.0}
        assert _call(base + "/items", item)[0] == 201
        answers = [_call(base + "/items/w-1/similar?k=3") for _ in range(12)]
        assert all(status == 200 and body["items"] for status, body in answers)
        # A worker counts a request once its response has gone out: the last one may land a moment
        # after the client has read it.
        deadline, counted = time.monotonic() + 10, 0.0
        while counted < 12 and time.monotonic() < deadline:
            metrics = urllib.request.urlopen(base + "/metrics", timeout=30).read().decode()
            found = re.search(
                r'vitrina_requests_total\{method="GET",route="/items/\{item_id\}/similar",status="200"\} (\S+)', metrics
            )
            counted = float(found.group(1)) if found else 0.0
        assert counted == 12
        user = f"w-{recent}"
        assert _call(base + "/events", {"user_id": user, "item_id": "w-1", "type": "cart"})[0] == 201
        answers = [_call(base + f"/users/{user}/recommendations?k=5")[1]["items"] for _ in range(8)]
        # Whichever worker answers, the one event is the whole profile: every item rests on it.
        assert all(a == answers[0] and a and all(r["because"] == "w-1" for r in a) for a in answers)
    finally:
        server.terminate()
        server.wait(timeout=30)
