"""Faults: a damaged version on disk is refused and the previous one keeps serving; the database
going away gives 503 and the service recovers when it returns; killing the importer or the server in
the middle of writing loses and duplicates nothing once the client retries."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import sqlalchemy as sa
from fastapi.testclient import TestClient

from vitrina.config import Config
from vitrina.data.storage import Storage
from vitrina.search.engine import Models
from vitrina.serving import process
from vitrina.serving.app import create_app
from vitrina.serving.build import build_version
from vitrina.serving.bundle import POINTER, current_version, version_folder
from vitrina.serving.settings import ServeSettings


def _point(serve_dir: Path, version: str) -> None:
    tmp = serve_dir / ".pointer.tmp"
    tmp.write_text(version)
    os.replace(tmp, serve_dir / POINTER)


def _damaged_copy(serve_dir: Path, good: str, name: str, damage: str) -> str:
    shutil.copytree(version_folder(serve_dir, good), version_folder(serve_dir, name))
    (version_folder(serve_dir, name) / damage).write_bytes(os.urandom(4096))
    return name


def _served_version(client: TestClient) -> str:
    return client.get("/users/u00/recommendations").json()["version"]


def test_a_damaged_version_is_refused_and_the_previous_keeps_serving(served: tuple[Config, Storage, Models]) -> None:
    cfg, storage, models = served
    serve_dir = ServeSettings.from_config(cfg).dir
    good = current_version(serve_dir)
    with TestClient(create_app(cfg, models, storage)) as c:
        state = c.app.state.vitrina
        for damage in ("bundle.npz", "search/semantic/hnsw.faiss"):
            bad = _damaged_copy(serve_dir, good, f"99999999T{damage.count('/')}-bad", damage)
            _point(serve_dir, bad)
            deadline = time.monotonic() + 30
            while state.load_error is None or bad not in state.load_error:
                assert _served_version(c) == good  # every answer meanwhile comes from the good version
                assert time.monotonic() < deadline, "the damaged version was never tried"
                time.sleep(0.05)
            assert f"still serving {good}" in c.get("/version").json()["error"]
            assert c.get("/health/ready").status_code == 200 and _served_version(c) == good
            shutil.rmtree(version_folder(serve_dir, bad))
        _point(serve_dir, good)
        assert _served_version(c) == good


def test_database_outage_gives_503_then_recovers(served: tuple[Config, Storage, Models], tmp_path: Path) -> None:
    cfg, storage, models = served
    item = str(storage.read("items")["item_id"].iloc[0])
    event = {"user_id": "u05", "item_id": item, "type": "view", "event_id": "outage-1"}
    with TestClient(create_app(cfg, models, storage)) as c:
        engine, writer = storage.engine, storage._writer
        broken = sa.create_engine(f"sqlite:///{tmp_path / 'no' / 'such' / 'dir' / 'x.db'}")
        storage.engine, storage._writer = broken, broken.execution_options(vitrina_write=True)
        try:
            down = c.get("/users/u05/recommendations")
            assert down.status_code == 503 and down.headers["retry-after"] == "5"
            assert "database is unavailable" in down.json()["detail"]
            assert c.post("/events", json=event).status_code == 503
            assert c.get("/health/ready").status_code == 503
        finally:
            storage.engine, storage._writer = engine, writer
        assert c.get("/health/ready").status_code == 200
        assert c.post("/events", json=event).status_code == 201  # the client's retry lands once
        assert c.post("/events", json=event).status_code == 200
    with storage.engine.connect() as conn:
        n = conn.execute(sa.text("SELECT count(*) FROM interactions WHERE event_id = 'outage-1'")).scalar_one()
    assert n == 1


def _count(db: Path, table: str) -> int:
    with Storage(f"sqlite:///{db}") as s, s.engine.connect() as conn:
        return int(conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one())


def test_killing_the_importer_mid_write_leaves_all_or_nothing(tmp_path: Path) -> None:
    n_items, n_events = 2_000, 60_000
    (tmp_path / "items.csv").write_text("item_id,title\n" + "".join(f"i{i},thing {i}\n" for i in range(n_items)))
    (tmp_path / "users.csv").write_text("user_id\n" + "".join(f"u{u}\n" for u in range(500)))
    rows = "".join(f"e{e},u{e % 500},i{e % n_items},view,{1.7e9 + e}\n" for e in range(n_events))
    (tmp_path / "events.csv").write_text("event_id,user_id,item_id,type,ts\n" + rows)
    db = tmp_path / "shop.db"
    env = {**os.environ, "VITRINA_STORAGE__URL": f"sqlite:///{db}", "VITRINA_PATHS__CACHE_DIR": str(tmp_path / "c")}
    cmd = [
        sys.executable,
        "-m",
        "vitrina.cli",
        "import",
        *(f"--{k}={tmp_path / k}.csv" for k in ("items", "users", "events")),
    ]
    child = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wal = Path(f"{db}-wal")
    deadline = time.monotonic() + 120
    while not (wal.exists() and wal.stat().st_size > 300_000) and child.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    child.send_signal(signal.SIGKILL)  # in the middle of the write transaction
    child.wait()
    assert _count(db, "interactions") in (0, n_events) and _count(db, "items") in (0, n_items)
    assert subprocess.run(cmd, env=env, capture_output=True).returncode == 0  # the retry
    assert subprocess.run(cmd, env=env, capture_output=True).returncode == 0  # and once more: no duplicates
    assert (_count(db, "items"), _count(db, "users"), _count(db, "interactions")) == (n_items, 500, n_events)


def _post(base: str, body: dict) -> int:
    request = urllib.request.Request(
        base + "/events", json.dumps(body).encode(), {"content-type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_killing_the_server_under_events_loses_and_duplicates_nothing(served: tuple[Config, Storage, Models]) -> None:
    """A client sends 600 events with idempotency keys and retries until each is acknowledged; the
    server is killed with SIGKILL half way and started again. Every event is stored exactly once."""
    cfg, storage, _ = served
    keys = ("paths.cache_dir", "storage.url", "serve.media_root", "features.store.image_encoder")
    overrides = {k: str(cfg.get(k)) for k in keys} | {"serve.dir": str(ServeSettings.from_config(cfg).dir)}
    port = process.free_port()
    base = f"http://127.0.0.1:{port}"
    items = storage.read("items")["item_id"].astype(str).tolist()
    events = [
        {"user_id": f"u{n % 24:02d}", "item_id": items[n % len(items)], "type": "view", "event_id": f"crash-{n}"}
        for n in range(600)
    ]
    server = process.start(overrides, 1, port, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    acknowledged: list[int] = []
    try:
        process.wait_ready(base, timeout=90)

        def send_all() -> None:
            for event in events:
                while True:
                    try:
                        status = _post(base, event)
                    except OSError:  # connection refused or reset: the server is down, retry
                        time.sleep(0.05)
                        continue
                    if status in (200, 201):
                        acknowledged.append(status)
                        break
                    time.sleep(0.05)

        client = threading.Thread(target=send_all)
        client.start()
        while len(acknowledged) < 300:
            time.sleep(0.01)
        server.send_signal(signal.SIGKILL)
        server.wait()
        server = process.start(overrides, 1, port, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client.join(timeout=180)
        assert not client.is_alive() and len(acknowledged) == len(events)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
    with storage.engine.connect() as conn:
        ids = conn.execute(sa.text("SELECT event_id FROM interactions WHERE event_id LIKE 'crash-%'")).scalars().all()
    assert len(ids) == len(set(ids)) == len(events)


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            r.read()
            return r.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_soak_events_reads_and_a_model_swap(served: tuple[Config, Storage, Models]) -> None:
    """Two writers and a reader for 20 s against a running server while a new model is trained and
    published: every acknowledged event is in the database exactly once, no read fails, the server
    ends on the new version."""
    cfg, storage, models = served
    serve_dir = ServeSettings.from_config(cfg).dir
    keys = ("paths.cache_dir", "storage.url", "serve.media_root", "features.store.image_encoder")
    overrides = {k: str(cfg.get(k)) for k in keys} | {"serve.dir": str(serve_dir)}
    port = process.free_port()
    base = f"http://127.0.0.1:{port}"
    items = storage.read("items")["item_id"].astype(str).tolist()
    before = current_version(serve_dir)
    acked: set[str] = set()
    reads: list[int] = []
    stop = threading.Event()

    def writer(name: str) -> None:
        n = 0
        while not stop.is_set():
            event = {"user_id": f"u{n % 24:02d}", "item_id": items[n % len(items)], "type": "click"}
            if _post(base, {**event, "event_id": f"soak-{name}-{n}"}) == 201:
                acked.add(f"soak-{name}-{n}")
            n += 1

    def reader() -> None:
        n = 0
        while not stop.is_set():
            reads.append(_get(f"{base}/users/u{n % 24:02d}/recommendations?k=10"))
            n += 1

    server = process.start(overrides, 1, port, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        process.wait_ready(base, timeout=90)
        threads = [threading.Thread(target=writer, args=(w,)) for w in ("a", "b")] + [threading.Thread(target=reader)]
        for t in threads:
            t.start()
        time.sleep(3)
        build_version(cfg, storage, models, progress=False)  # retrain and publish while the load runs
        time.sleep(max(0.0, 20 - 3))
        stop.set()
        for t in threads:
            t.join(timeout=30)
        after = json.loads(urllib.request.urlopen(base + "/version", timeout=10).read())["version"]
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
    with storage.engine.connect() as conn:
        stored = conn.execute(sa.text("SELECT event_id FROM interactions WHERE event_id LIKE 'soak-%'")).scalars().all()
    assert len(acked) > 50 and sorted(stored) == sorted(acked)  # exactly what was acknowledged, once each
    assert len(reads) > 50 and set(reads) == {200}, {s: reads.count(s) for s in set(reads)}
    assert after != before and after == current_version(serve_dir)
