"""`vitrina demo` on a tiny catalogue in the H&M layout: imports it with demo shoppers and simulated
advertisers, builds and publishes a version, and a second run reuses all of it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from typer.testing import CliRunner

from vitrina.cli import app
from vitrina.config import Config
from vitrina.data.storage import Storage
from vitrina.serving.ads import CampaignStore
from vitrina.serving.bundle import current_version
from vitrina.serving.demo import demo_overrides

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


def test_demo_imports_builds_and_reuses(tmp_path: Path) -> None:
    _tiny_hm(tmp_path / "data" / "hm")
    env = {
        "VITRINA_PATHS__DATA_DIR": str(tmp_path / "data"),
        "VITRINA_PATHS__CACHE_DIR": str(tmp_path / "cache"),
        "VITRINA_TRAIN__MAX_EPOCHS": "5",
        "VITRINA_FEATURES__STORE__IMAGE_ENCODER": '"color-histogram"',
        "VITRINA_FEATURES__TEXT_ENCODER__WORKERS": "1",
    }
    runner = CliRunner()
    first = runner.invoke(app, ["demo", "--users", "20", "--no-serve"], env=env)
    assert first.exit_code == 0, first.output
    assert "first run only" in first.output
    cfg = Config.load(None, demo_overrides(Config.load(None, {}, environ=env)), environ=env)
    version = current_version(cfg.get("serve.dir"))
    assert version is not None
    with Storage(cfg.storage_url) as storage:
        counts = storage.counts()
        assert counts["items"] == 40 and counts["users"] == 20 and counts["interactions"] >= 20 * 4
        campaigns = CampaignStore(storage).all()
        assert campaigns and all("simulated" in c.advertiser for c in campaigns)
    again = runner.invoke(app, ["demo", "--users", "20", "--no-serve"], env=env)
    assert again.exit_code == 0 and "first run only" not in again.output
    assert current_version(cfg.get("serve.dir")) == version
