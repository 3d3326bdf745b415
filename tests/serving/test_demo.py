"""`vitrina demo` on a tiny catalogue in the H&M layout: imports it with demo shoppers and simulated
advertisers, builds and publishes a version, and a second run reuses all of it."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import redis
from PIL import Image
from typer.testing import CliRunner

from vitrina.cli import app
from vitrina.config import Config
from vitrina.data.storage import Storage
from vitrina.serving.ads import CampaignStore
from vitrina.serving.bundle import current_version
from vitrina.serving.demo import demo_overrides
from vitrina.serving.process import free_port
from vitrina.serving.servers import PostgresServer, RedisServer, ServerUnavailable

KINDS = [("Trousers", "Garment Lower body", "Trousers"), ("Dress", "Garment Full body", "Dresses")]


def _tiny_hm(folder: Path, n: int = 40) -> None:
    rows, rng = [], np.random.default_rng(0)
    for i in range(n):
        kind, group, department = KINDS[i % 2]
        article = f"0{100000001 + i}"
        rows.append(
            {
                "article_id": article,
                "prod_name": f"{kind} {i}",
                "detail_desc": f"A {kind.lower()} in soft cotton, model {i}.",
                "index_group_name": "Ladieswear",
                "product_group_name": group,
                "product_type_name": kind,
                "department_name": department,
            }
        )
        (folder / "images" / article[:3]).mkdir(parents=True, exist_ok=True)
        colour = (200, 40, 40) if i % 2 else (40, 40, 200)
        Image.fromarray(np.full((32, 24, 3), colour, np.uint8)).save(folder / "images" / article[:3] / f"{article}.jpg")
    pd.DataFrame(rows).to_csv(folder / "articles.csv", index=False)
    pd.DataFrame({"customer_id": [f"c{u:03d}" for u in range(30)], "age": rng.integers(18, 70, 30)}).to_csv(
        folder / "customers.csv", index=False
    )
    ids = [r["article_id"] for r in rows]
    pairs = [(ids[i], ids[(i + 2) % n], 0.5) for i in range(n)] + [(ids[i], ids[(i + 4) % n], 0.2) for i in range(n)]
    pd.DataFrame(pairs, columns=["article_id", "co_article_id", "score"]).to_csv(folder / "copurchase.csv", index=False)


def _demo_env(tmp_path: Path) -> dict[str, str]:
    _tiny_hm(tmp_path / "data" / "hm")
    return {
        "VITRINA_PATHS__DATA_DIR": str(tmp_path / "data"),
        "VITRINA_PATHS__CACHE_DIR": str(tmp_path / "cache"),
        "VITRINA_TRAIN__MAX_EPOCHS": "5",
        "VITRINA_FEATURES__STORE__IMAGE_ENCODER": '"color-histogram"',
        "VITRINA_FEATURES__TEXT_ENCODER__WORKERS": "1",
    }


def test_demo_imports_builds_and_reuses(tmp_path: Path, shop_db_url) -> None:
    env = _demo_env(tmp_path)
    url = shop_db_url(tmp_path / "demo.db")
    runner = CliRunner()
    first = runner.invoke(app, ["--storage-url", url, "demo", "--users", "20", "--no-serve"], env=env)
    assert first.exit_code == 0, first.output
    assert "first run only" in first.output
    cfg = Config.load(None, demo_overrides(Config.load(None, {}, environ=env)), environ=env)
    version = current_version(cfg.get("serve.dir"))
    assert version is not None
    with Storage(url) as storage:
        counts = storage.counts()
        assert counts["items"] == 40 and counts["users"] == 20 and counts["interactions"] >= 20 * 4
        campaigns = CampaignStore(storage).all()
        assert campaigns and all("simulated" in c.advertiser for c in campaigns)
    again = runner.invoke(app, ["--storage-url", url, "demo", "--users", "20", "--no-serve"], env=env)
    assert again.exit_code == 0 and "first run only" not in again.output
    assert current_version(cfg.get("serve.dir")) == version


def test_demo_on_loopback_postgresql_and_redis_survives_a_restart(tmp_path: Path) -> None:
    """`make serve-prod`'s path: `servers up` starts both, `demo --servers` imports and builds on
    them, `servers down` stops them, and the next `up` finds the shop where it was."""
    try:
        PostgresServer(tmp_path / "probe", 0)
        RedisServer(tmp_path / "probe", 0)
    except ServerUnavailable as exc:
        pytest.skip(str(exc))
    servers_dir = tempfile.mkdtemp(prefix="vitrina-servers-")  # pytest's folders are closed to 'postgres'
    os.chmod(servers_dir, 0o755)
    env = _demo_env(tmp_path) | {
        "VITRINA_SERVERS__DIR": servers_dir,
        "VITRINA_SERVERS__POSTGRES_PORT": str(free_port()),
        "VITRINA_SERVERS__REDIS_PORT": str(free_port()),
    }
    runner = CliRunner()
    try:
        up = runner.invoke(app, ["servers", "up"], env=env)
        assert up.exit_code == 0, up.output
        urls = json.loads(up.output)
        assert urls["storage.url"].startswith("postgresql://") and urls["serve.redis_url"].startswith("redis://")
        built = runner.invoke(app, ["demo", "--servers", "--users", "20", "--no-serve"], env=env)
        assert built.exit_code == 0, built.output
        base = Config.load(None, {}, environ=env)
        assert current_version(demo_overrides(base, servers=True)["serve.dir"]) is not None
        assert redis.Redis.from_url(urls["serve.redis_url"]).ping()
        assert runner.invoke(app, ["servers", "down"], env=env).exit_code == 0
        status = json.loads(runner.invoke(app, ["servers", "status"], env=env).output)
        assert not status["postgres"]["running"] and not status["redis"]["running"]
        assert json.loads(runner.invoke(app, ["servers", "up"], env=env).output) == urls
        with Storage(urls["storage.url"]) as storage:
            assert storage.counts()["items"] == 40
    finally:
        runner.invoke(app, ["servers", "down"], env=env)
        shutil.rmtree(servers_dir, ignore_errors=True)
