"""A dataset as frames in the schema: what loaders and the importer produce."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from vitrina.data.schema import columns


def empty_frame(kind: str) -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=object) for c in columns(kind)})


@dataclass
class RawDataset:
    """Frames in schema columns plus per-item feature matrices that came precomputed with the data.

    `item_features[name]` is a float32 array whose row i belongs to `items.item_id[i]`.
    """

    name: str
    items: pd.DataFrame = field(default_factory=lambda: empty_frame("items"))
    users: pd.DataFrame = field(default_factory=lambda: empty_frame("users"))
    interactions: pd.DataFrame = field(default_factory=lambda: empty_frame("interactions"))
    reviews: pd.DataFrame = field(default_factory=lambda: empty_frame("reviews"))
    item_features: dict[str, np.ndarray] = field(default_factory=dict)
    # Extra tables a dataset has beyond the schema (e.g. search judgments, co-purchase pairs).
    extras: dict[str, pd.DataFrame] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for kind in ("items", "users", "interactions", "reviews"):
            frame = getattr(self, kind)
            missing = [c for c in columns(kind) if c not in frame.columns]
            for col in missing:
                frame[col] = None
            setattr(self, kind, frame[columns(kind)])
        for name, feats in self.item_features.items():
            if len(feats) != len(self.items):
                raise ValueError(f"{self.name}: feature '{name}' has {len(feats)} rows for {len(self.items)} items")

    def summary(self) -> dict[str, int]:
        return {
            "items": len(self.items),
            "users": len(self.users),
            "interactions": len(self.interactions),
            "reviews": len(self.reviews),
        }
