"""An access request returns everything held about a shopper; an erasure request removes it from
the database, every published version and the running service, and nothing with the shopper's
pseudonym or raw id is left on disk (the append-only audit log of the erasure excepted)."""

from __future__ import annotations

import time
from pathlib import Path

import sqlalchemy as sa
from fastapi.testclient import TestClient

from vitrina.config import Config
from vitrina.data.schema import ad_events_table
from vitrina.data.storage import Storage
from vitrina.search.engine import Models
from vitrina.serving.app import create_app
from vitrina.serving.build import build_version
from vitrina.serving.bundle import Bundle, current_version, version_folder
from vitrina.serving.settings import ServeSettings

RAW = "erin.shopper.4711"


def _files_mentioning(root: Path, needles: list[str], skip: str) -> list[str]:
    """Files under `root` holding any needle as UTF-8 or as numpy's UTF-32 strings."""
    patterns = [p for n in needles for p in (n.encode(), n.encode("utf-32-le"))]
    found = []
    for path in root.rglob("*"):
        if path.is_file() and skip not in path.parts:
            data = path.read_bytes()
            if any(p in data for p in patterns):
                found.append(str(path.relative_to(root)))
    return found


def test_export_then_forget_everywhere(served: tuple[Config, Storage, Models], shop_dir: Path) -> None:
    cfg, storage, models = served
    pid = storage.personal.user_id(RAW)
    serve_dir = ServeSettings.from_config(cfg).dir
    items = storage.read("items")["item_id"].astype(str).tolist()
    with TestClient(create_app(cfg, models, storage)) as c:
        user = {"user_id": RAW, "attributes": {"email": "erin@example.com", "address": "1 Main St"}}
        assert c.post("/users", json=user).status_code == 201
        for n, item in enumerate(items[:8]):
            event = {"user_id": RAW, "item_id": item, "type": "purchase" if n == 7 else "view", "ts": 1.8e9 + n}
            assert c.post("/events", json=event).status_code == 201
        assert c.post("/reviews", json={"user_id": RAW, "item_id": items[0], "text": "great"}).status_code == 201
        with storage.begin() as conn:
            row = {"event_id": "imp1:impression", "kind": "impression", "impression_id": "imp1", "campaign_id": "c1"}
            row |= {"item_id": items[3], "user_id": pid, "day": "2026-11-24", "slot": 0, "pctr": 0.1, "price": 0.5}
            conn.execute(sa.insert(ad_events_table).values(**row, how="feed", ts=time.time()))
        build_version(cfg, storage, models, progress=False)  # the shopper now has a trained vector
        version = current_version(serve_dir)
        assert pid in Bundle.load(version_folder(serve_dir, version)).users

        export = c.get(f"/users/{RAW}/export").json()
        assert export["profile"]["email"] == "erin@example.com" and len(export["events"]) == 8
        assert len(export["reviews"]) == 1 and len(export["ad_events"]) == 1 and len(export["model"]["vector"]) > 0
        assert any(a["target"].endswith("/export") for a in c.get(f"/users/{RAW}/export").json()["audit"])

        gone = c.delete(f"/users/{RAW}")
        assert gone.status_code == 200 and version in gone.json()["removed_from_versions"]
        assert current_version(serve_dir) != version  # republished: workers reload it
        assert c.get(f"/users/{RAW}/recommendations").status_code == 404
        assert c.get(f"/users/{RAW}/export").status_code == 404
        assert c.delete(f"/users/{RAW}").status_code == 404

    with storage.engine.connect() as conn:
        ad = conn.execute(sa.select(ad_events_table).where(ad_events_table.c.impression_id == "imp1")).mappings().one()
    assert ad["user_id"] is None and ad["price"] == 0.5  # the advertiser's bill stays, without the shopper
    left = _files_mentioning(shop_dir, [pid, RAW], skip="secrets")
    # The audit log (append-only, in the database file) keeps the record of the erasure itself.
    with storage.engine.connect() as conn:
        audited = conn.execute(sa.text("SELECT count(*) FROM audit_log WHERE subject = :p"), {"p": pid}).scalar_one()
    assert audited >= 3
    assert all(name.startswith("shop.db") for name in left), left  # the audit log's rows, checked next
    with storage.engine.connect() as conn:
        for table in ("users", "interactions", "reviews", "ad_events", "item_changes"):
            dump = " ".join(map(str, conn.execute(sa.text(f"SELECT * FROM {table}"))))
            assert pid not in dump and RAW not in dump, table
