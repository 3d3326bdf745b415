"""The scaling benchmark's generator: a real-shaped dataset scaled down to a subset or up with clones,
histories resampled from real ones onto copies of their items, about 10 events per item."""

from __future__ import annotations

import numpy as np
import pandas as pd

from vitrina.bench.scale import scale_up
from vitrina.data.dataset import RawDataset


def _base(n_items: int = 50, n_users: int = 40, seed: int = 0) -> tuple[RawDataset, np.ndarray]:
    rng = np.random.default_rng(seed)
    items = pd.DataFrame(
        {"item_id": [f"a{i}" for i in range(n_items)], "title": [f"toy robot model {i} kit" for i in range(n_items)]}
    )
    rows = []
    for u in range(n_users):
        for item in rng.choice(n_items, size=int(rng.integers(2, 9)), replace=False):
            rows.append((f"c{u}", f"a{item}"))
    inter = pd.DataFrame(rows, columns=["user_id", "item_id"])
    users = pd.DataFrame({"user_id": sorted(inter["user_id"].unique())})
    vectors = rng.normal(size=(n_items, 16)).astype(np.float32)
    return RawDataset("toys", items, users, inter), vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_scaling_up_clones_items_and_resamples_real_histories() -> None:
    base, vectors = _base()
    raw, out = scale_up(base, vectors, 400, events_per_item=10.0, seed=1)
    assert len(raw.items) == 400 and raw.items["item_id"].is_unique and out.shape == (400, 16)
    assert raw.meta["clones"] == 350
    assert list(raw.items["title"][:50]) == list(base.items["title"])  # the real items come first, as they are
    clone_titles = raw.items["title"][50:]
    assert clone_titles.str.split().str.len().ge(5).all() and not clone_titles.isin(base.items["title"]).any()
    assert np.allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    assert np.allclose(out[:50], vectors, atol=1e-6)
    # A clone sits close to its original: cosine above 0.9 to some real item, far above chance.
    assert (out[50:] @ vectors.T).max(axis=1).min() > 0.9
    events = raw.interactions
    assert 3600 <= len(events) <= 4000 and set(events["item_id"]) <= set(raw.items["item_id"])
    lengths = events.groupby("user_id").size()
    assert lengths.min() >= 2 and lengths.max() <= 8  # histories keep the real lengths
    assert events.groupby("user_id")["ts"].apply(lambda t: t.is_monotonic_increasing).all()


def test_scaling_down_keeps_a_subset_and_histories_within_it() -> None:
    base, vectors = _base()
    raw, out = scale_up(base, vectors, 20, events_per_item=5.0, seed=2)
    assert len(raw.items) == 20 and raw.meta["clones"] == 0
    assert set(raw.items["title"]) <= set(base.items["title"])
    assert len(raw.interactions) <= 100 and set(raw.interactions["item_id"]) <= set(raw.items["item_id"])
    assert np.allclose(out, vectors[[int(t.split()[3]) for t in raw.items["title"]]], atol=1e-6)
