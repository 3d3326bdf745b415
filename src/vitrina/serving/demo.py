"""The demo shop: the real H&M catalogue (photos, text, co-purchase pairs) with demo shoppers whose
histories are random walks on the real co-purchase graph. The shoppers are generated; the shop
front says so."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from vitrina.config import Config
from vitrina.data.dataset import RawDataset
from vitrina.data.importer import validate
from vitrina.data.storage import Storage
from vitrina.privacy.personal import open_storage
from vitrina.serving.ads import CampaignStore

__all__ = ["demo_campaigns", "demo_events", "demo_overrides", "prepare"]

# Event types of a demo visit and how often each occurs.
_TYPES = np.array(["view", "click", "cart", "purchase"])
_TYPE_P = np.array([0.5, 0.25, 0.15, 0.10])


def demo_overrides(cfg: Config, servers: bool = False) -> dict[str, Any]:
    """Where the demo keeps its database and versions (apart from a shop's own). On the loopback
    servers the database is PostgreSQL's (set by the caller) and the versions are kept apart from
    the SQLite demo's: a version's ids belong to the database it was built from."""
    root = cfg.cache_dir / "demo"
    return {
        "storage.url": f"sqlite:///{root / 'shop.db'}",
        "serve.dir": str(root / ("serve-servers" if servers else "serve")),
        "serve.media_root": str((cfg.data_dir / "hm").resolve()),
        "train.eval_every": 5,
    }


def demo_events(copurchase: pd.DataFrame, customers: list[str], seed: int = 0) -> pd.DataFrame:
    """One visit per shopper: a random walk over co-purchase pairs (next item drawn in proportion
    to the pair's score), 4 to 16 steps, restarting elsewhere with probability 0.15 per step; each
    visited item gets one event (view, click, cart or purchase)."""
    rng = np.random.default_rng(seed)
    a = copurchase["article_id"].astype(str).to_numpy()
    b = copurchase["co_article_id"].astype(str).to_numpy()
    items = np.unique(np.concatenate([a, b]))
    index = {x: i for i, x in enumerate(items)}
    order = np.argsort([index[x] for x in a], kind="stable")
    src = np.array([index[x] for x in a])[order]
    dst = np.array([index[x] for x in b])[order]
    weight = copurchase["score"].to_numpy(np.float64)[order]
    starts = np.searchsorted(src, np.arange(len(items) + 1))
    degree = np.diff(starts)
    start_p = degree / degree.sum()
    rows = []
    t0 = 1_700_000_000.0
    for u, user in enumerate(customers):
        current = rng.choice(len(items), p=start_p)
        for step in range(int(rng.integers(4, 17))):
            kind = rng.choice(_TYPES, p=_TYPE_P)
            rows.append((f"demo-{u}-{step}", user, items[current], kind, t0 + u * 3600 + step * 60))
            lo, hi = starts[current], starts[current + 1]
            if hi == lo or rng.random() < 0.15:
                current = rng.choice(len(items), p=start_p)
            else:
                w = weight[lo:hi]
                current = dst[lo + rng.choice(hi - lo, p=w / w.sum())]
    return pd.DataFrame(rows, columns=["event_id", "user_id", "item_id", "type", "ts"])


def demo_campaigns(items: pd.DataFrame, n: int = 30, seed: int = 0) -> list[dict[str, Any]]:
    """Simulated advertisers: H&M departments each promoting three of their own articles, keyword
    targeted on those articles' product types, with random CPC bids and budgets."""
    rng = np.random.default_rng(seed)
    departments = items["attributes"].map(lambda a: (a or {}).get("department_name"))
    kinds = items["category_path"].fillna("").str.split(" > ").str[-1].str.lower()
    names = [d for d in departments.value_counts().index if isinstance(d, str)][:n]
    specs = []
    for k, name in enumerate(names):
        rows = np.flatnonzero((departments == name).to_numpy())
        picked = rng.choice(rows, size=min(3, len(rows)), replace=False)
        daily = float(np.round(rng.uniform(20, 80), 2))
        specs.append(
            {
                "campaign_id": f"demo-{k:02d}",
                "advertiser": f"{name} (simulated advertiser)",
                "bid": float(np.round(rng.uniform(0.2, 1.2), 2)),
                "daily_budget": daily,
                "total_budget": daily * 10,
                "items": items["item_id"].iloc[picked].astype(str).tolist(),
                "keywords": sorted({kinds.iloc[i] for i in picked if kinds.iloc[i]}),
            }
        )
    return specs


def _stamp(raw: RawDataset, n_users: int, seed: int, personal: bool) -> str:
    h = hashlib.sha256()
    h.update(json.dumps(["demo-3", len(raw.items), len(raw.users), n_users, seed, personal]).encode())
    h.update("".join(raw.items["item_id"].astype(str)).encode())
    return h.hexdigest()[:16]


def prepare(cfg: Config, n_users: int = 1000, progress: bool = True) -> tuple[Storage, pd.DataFrame, bool]:
    """Import the hm catalogue and the demo shoppers unless the database already holds this exact
    demo. Returns the storage, the co-purchase pairs (item_id, other_id, score) and whether
    anything was imported."""
    from vitrina.data.datasets import load_dataset

    raw = load_dataset("hm", cfg.data_dir)
    pairs = raw.extras["copurchase"].rename(columns={"article_id": "item_id", "co_article_id": "other_id"})
    storage = open_storage(cfg)
    storage.create_schema()
    stamp_file = Path(cfg.get("serve.dir")).parent / "demo.json"
    stamp = _stamp(raw, n_users, cfg.seed, storage.personal.pseudonymize)
    if stamp_file.exists() and json.loads(stamp_file.read_text()).get("stamp") == stamp:
        return storage, pairs, False
    rng = np.random.default_rng(cfg.seed)
    chosen = sorted(rng.choice(raw.users["user_id"].astype(str).to_numpy(), size=n_users, replace=False))
    users = raw.users[raw.users["user_id"].isin(chosen)].reset_index(drop=True)
    users["attributes"] = [
        {**(a or {}), "demo": "history drawn from the real H&M co-purchase graph"} for a in users["attributes"]
    ]
    events = validate(
        demo_events(pairs.rename(columns={"item_id": "article_id", "other_id": "co_article_id"}), chosen, cfg.seed),
        "interactions",
        "demo shoppers",
    )
    storage.delete_all()
    storage.write_many(
        {"items": raw.items, "users": users, "interactions": events}, sources={"interactions": "demo shoppers"}
    )
    CampaignStore(storage).put(demo_campaigns(raw.items, seed=cfg.seed))
    stamp_file.parent.mkdir(parents=True, exist_ok=True)
    stamp_file.write_text(json.dumps({"stamp": stamp, "users": n_users, "events": len(events)}))
    return storage, pairs, True
