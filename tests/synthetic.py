"""Small generated datasets with known structure, for fast unit tests."""

from __future__ import annotations

import numpy as np
import pandas as pd

from vitrina.data.dataset import RawDataset


def clustered_dataset(
    n_users: int = 200, n_items: int = 120, n_groups: int = 4, per_user: int = 12, seed: int = 0
) -> RawDataset:
    """Users in groups that mostly buy their group's items (plus some noise and a popular head).

    Personalised models should clearly beat popularity here; that is what tests check.
    """
    rng = np.random.default_rng(seed)
    item_group = np.arange(n_items) % n_groups
    rows = []
    for u in range(n_users):
        g = u % n_groups
        own = np.flatnonzero(item_group == g)
        n_own = int(per_user * 0.8)
        chosen = set(rng.choice(own, n_own, replace=False).tolist())
        while len(chosen) < per_user:
            chosen.add(int(rng.integers(0, n_items)))
        for pos, i in enumerate(rng.permutation(sorted(chosen))):
            rows.append((f"u{u}", f"i{i}", float(1_600_000_000 + u * 1000 + pos * 10)))
    inter = pd.DataFrame(rows, columns=["user_id", "item_id", "ts"])
    inter["type"] = "purchase"
    items = pd.DataFrame({"item_id": [f"i{i}" for i in range(n_items)], "title": [f"item {i}" for i in range(n_items)]})
    users = pd.DataFrame({"user_id": [f"u{u}" for u in range(n_users)]})
    features = np.eye(n_groups, dtype=np.float32)[item_group] + rng.normal(0, 0.1, (n_items, n_groups)).astype(
        np.float32
    )
    return RawDataset("synthetic", items=items, users=users, interactions=inter, item_features={"image": features})


def two_modality_dataset(seed: int = 0, feature_seed: int | None = None, n_groups: int = 4) -> RawDataset:
    """The clustered data with a second, noisier "text" modality (group signal + 4 noise columns);
    every 7th item has no photo and items 3, 14, 25, ... no text (NaN rows), so masks are exercised."""
    raw = clustered_dataset(n_groups=n_groups, seed=seed)
    rng = np.random.default_rng(seed if feature_seed is None else feature_seed)
    image = raw.item_features["image"].copy()
    groups = np.arange(len(image)) % n_groups
    text = np.eye(n_groups, dtype=np.float32)[groups] + rng.normal(0, 0.3, (len(image), n_groups))
    text = np.hstack([text, rng.normal(0, 1, (len(image), 4))]).astype(np.float32)
    image[::7] = np.nan
    text[3::11] = np.nan
    raw.item_features = {"image": image, "text": text}
    return raw
