"""A small generated shop served end to end: catalogue, shoppers with histories by category, a
trained BPR, the search index, published as a version in a temporary folder."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from shop_catalog import make_catalog
from vitrina.config import Config
from vitrina.data.importer import validate
from vitrina.data.storage import Storage
from vitrina.features.image_encoders import ColorHistogram
from vitrina.features.text_encoders import text_encoder_from_config
from vitrina.privacy.personal import open_storage
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
            rows.append(
                {"user_id": f"u{u:02d}", "item_id": item, "type": kind, "ts": 1_700_000_000.0 + 60 * (u * 10 + n)}
            )
    events = pd.DataFrame(rows)
    events["event_id"] = [f"e{i}" for i in range(len(events))]
    return events


COLOURS = {"black": (20, 20, 20), "red": (200, 30, 30), "green": (30, 160, 60), "blue": (30, 60, 200)}
# Backdrop per top-level category, so that photos of a kind look alike, as real product shots do.
BACKDROPS = [(240, 200, 40), (150, 60, 170), (60, 200, 210), (240, 140, 40)]


def write_photos(catalog: pd.DataFrame, media: Path) -> pd.DataFrame:
    """A photo per item: its category's backdrop with the product, a square in its colour."""
    (media / "photos").mkdir(parents=True, exist_ok=True)
    tops = sorted(catalog["category_path"].str.split(" > ").str[0].unique())
    paths = []
    for item_id, path, attributes in zip(
        catalog["item_id"], catalog["category_path"], catalog["attributes"], strict=True
    ):
        pixels = np.zeros((48, 36, 3), np.uint8)
        pixels[:] = BACKDROPS[tops.index(path.split(" > ")[0]) % len(BACKDROPS)]
        pixels[14:34, 8:28] = COLOURS[attributes["colour"]]
        Image.fromarray(pixels).save(media / "photos" / f"{item_id}.png")
        paths.append([f"photos/{item_id}.png"])
    return catalog.assign(image_paths=paths)


def serve_config(tmp: Path, storage_url: str) -> Config:
    return Config.load(
        None,
        {
            "paths.cache_dir": str(tmp / "cache"),
            "storage.url": storage_url,
            "features.store.modalities": ["text", "image"],
            "features.store.image_encoder": "color-histogram",
            "serve.media_root": str(tmp / "media"),
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
def served(shop_dir: Path, shop_db_url) -> Iterator[tuple[Config, Storage, Models]]:
    """The shop in a database with one published version."""
    cfg = serve_config(shop_dir, shop_db_url(shop_dir / "shop.db"))
    secrets = shop_dir / "cache" / "secrets"  # a fixed pseudonym key: the same shopper order every run
    secrets.mkdir(parents=True, exist_ok=True)
    (secrets / "pseudonym.key").write_bytes(bytes(range(32)))
    storage = open_storage(cfg)  # as the service opens it: shoppers stored under pseudonyms
    storage.create_schema()
    catalog = write_photos(make_catalog(), shop_dir / "media")
    events = shoppers(catalog)
    users = pd.DataFrame({"user_id": sorted(events["user_id"].unique()), "attributes": None})
    storage.write_many({"items": catalog, "users": users, "interactions": validate(events, "interactions")})
    models = Models(text_encoder=text_encoder_from_config(cfg), image_encoder=ColorHistogram())
    build_version(cfg, storage, models, progress=False)
    yield cfg, storage, models
    storage.close()
