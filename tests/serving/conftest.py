"""A small generated shop served end to end: catalogue, shoppers with histories by category, a
trained BPR, the search index, published as a version in a temporary folder."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from shop_catalog import make_catalog
from vitrina.config import Config
from vitrina.data.importer import validate
from vitrina.data.storage import Storage
from vitrina.features.text_encoders import text_encoder_from_config
from vitrina.search.engine import Models
from vitrina.serving.build import build_version


def shoppers(catalog: pd.DataFrame, n_users: int = 24, seed: int = 0) -> pd.DataFrame:
    """Each shopper browses one top-level category: views, clicks, a cart and a purchase."""
    rng = np.random.default_rng(seed)
    tops = catalog["category_path"].str.split(" > ").str[0]
    groups = {t: catalog.loc[tops == t, "item_id"].tolist() for t in sorted(tops.unique())}
    rows = []
    for u in range(n_users):
        pool = groups[sorted(groups)[u % len(groups)]]
        picked = rng.choice(pool, size=min(8, len(pool)), replace=False)
        for n, item in enumerate(picked):
            kind = "purchase" if n == 7 else "cart" if n == 6 else "click" if n % 2 else "view"
            rows.append({"user_id": f"u{u:02d}", "item_id": item, "type": kind, "ts": 1_700_000_000.0 + 60 * (u * 10 + n)})
    events = pd.DataFrame(rows)
    events["event_id"] = [f"e{i}" for i in range(len(events))]
    return events


def serve_config(tmp: Path) -> Config:
    return Config.load(
        None,
        {
            "paths.cache_dir": str(tmp / "cache"),
            "storage.url": f"sqlite:///{tmp / 'shop.db'}",
            "features.store.modalities": ["text"],
            "features.text_encoder.workers": 1,
            "serve.model": "bpr",
            "serve.refresh_s": 0.0,
            "train.max_epochs": 30,
            "train.patience": 10,
            "train.seed": 0,
        },
    )


@pytest.fixture(scope="module")
def shop_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("shop")


@pytest.fixture(scope="module")
def served(shop_dir: Path) -> Iterator[tuple[Config, Storage, Models]]:
    """The shop in a database with one published version."""
    cfg = serve_config(shop_dir)
    storage = Storage(cfg.storage_url)
    storage.create_schema()
    catalog = make_catalog()
    events = shoppers(catalog)
    users = pd.DataFrame({"user_id": sorted(events["user_id"].unique()), "attributes": None})
    storage.write_many({"items": catalog, "users": users, "interactions": validate(events, "interactions")})
    models = Models(text_encoder=text_encoder_from_config(cfg))
    build_version(cfg, storage, models, progress=False)
    yield cfg, storage, models
    storage.close()
