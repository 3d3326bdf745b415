"""Benchmark splits as `interactions.tsv` (`userID itemID split`): amazon-baby, amazon-sports, tiktok.

Ids are dense 0-based integers kept as strings; the items and users frames are ordered so that id k
is row k, because downstream code maps row order to dense indices and the published numbers depend
on the ids. Every row is one positive interaction with the official train/valid/test label.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from vitrina.data.dataset import RawDataset
from vitrina.data.datasets._common import (
    base_meta,
    check_columns,
    check_dense,
    check_known,
    const,
    ids,
    numeric_order,
    read_table,
    records,
    require,
    text,
)
from vitrina.data.schema import SPLIT_LABELS


def _interactions(folder: Path, dataset: str, kind: str) -> pd.DataFrame:
    path = folder / "interactions.tsv"
    raw = read_table(path, dataset, sep="\t")
    check_columns(raw, ("userID", "itemID", "split"), path, dataset)
    bad = ~raw["split"].isin(SPLIT_LABELS)
    if bad.any():
        labels = raw["split"][bad].unique()[:5].tolist()
        raise ValueError(f"{dataset}: unknown split labels {labels} in {path}; expected {SPLIT_LABELS}")
    frame = pd.DataFrame(
        {
            "event_id": ids(raw["userID"] + ":" + raw["itemID"]),
            "user_id": ids(raw["userID"]),
            "item_id": ids(raw["itemID"]),
            "type": const(kind, len(raw)),
            "value": np.ones(len(raw)),
            "split": ids(raw["split"]),
        }
    )
    if frame["event_id"].duplicated().any():
        raise ValueError(f"{dataset}: repeated (user, item) pairs in {path}")
    return frame


def _users_from_interactions(inter: pd.DataFrame, dataset: str) -> pd.DataFrame:
    distinct = pd.Series(inter["user_id"].unique())
    users = pd.DataFrame({"user_id": ids(distinct.iloc[numeric_order(distinct)])})
    check_dense(users["user_id"], dataset, "user")
    return users


def _items_sorted(raw: pd.DataFrame, dataset: str) -> pd.DataFrame:
    raw = raw.iloc[numeric_order(raw["itemID"])].reset_index(drop=True)
    check_dense(raw["itemID"], dataset, "item")
    return raw


def _meta(folder: Path, description: str) -> dict:
    return base_meta(folder, description, "interactions.tsv (userID itemID split)", official_split=True)


def load_amazon_baby(folder: str | Path) -> RawDataset:
    folder, name = Path(folder), "amazon-baby"
    inter = _interactions(folder, name, "purchase")

    path = folder / "items.tsv"
    raw = read_table(path, name, sep="\t")
    check_columns(raw, ("itemID", "asin", "image_url"), path, name)
    raw = _items_sorted(raw, name)
    items = pd.DataFrame({"item_id": ids(raw["itemID"]), "attributes": records(raw[["asin", "image_url"]])})

    path = folder / "users.tsv"
    rawu = read_table(path, name, sep="\t")
    check_columns(rawu, ("userID", "reviewer_id"), path, name)
    rawu = rawu.iloc[numeric_order(rawu["userID"])].reset_index(drop=True)
    check_dense(rawu["userID"], name, "user")
    users = pd.DataFrame({"user_id": ids(rawu["userID"]), "attributes": records(rawu[["reviewer_id"]])})

    check_known(inter["item_id"], items["item_id"], name, "item")
    check_known(inter["user_id"], users["user_id"], name, "user")
    meta = _meta(folder, "Amazon 2014 Baby 5-core, the exact MMRec split (a review counts as a purchase)")
    meta["text_columns"] = {}
    return RawDataset(name=name, items=items, users=users, interactions=inter, meta=meta)


def load_amazon_sports(folder: str | Path) -> RawDataset:
    folder, name = Path(folder), "amazon-sports"
    inter = _interactions(folder, name, "purchase")

    path = folder / "items.tsv"
    raw = read_table(path, name, sep="\t")
    check_columns(raw, ("itemID", "asin", "title", "keywords_generated"), path, name)
    raw = _items_sorted(raw, name)
    items = pd.DataFrame(
        {
            "item_id": ids(raw["itemID"]),
            "title": text(raw["title"].str.strip()),
            "attributes": records(raw[["asin", "keywords_generated"]]),
        }
    )
    check_known(inter["item_id"], items["item_id"], name, "item")
    meta = _meta(folder, "Amazon 2014 Sports and Outdoors 5-core, the exact MMRec split")
    meta["text_columns"] = {
        "title": "the real Amazon product title (Amazon 2023 metadata); None where unknown",
        "attributes.keywords_generated": (
            "short keyword strings a language model generated from the product metadata "
            "(every item; not written by a person)"
        ),
    }
    meta["n_titles"] = int(items["title"].notna().sum())
    return RawDataset(
        name=name, items=items, users=_users_from_interactions(inter, name), interactions=inter, meta=meta
    )


def load_tiktok(folder: str | Path) -> RawDataset:
    folder, name = Path(folder), "tiktok"
    inter = _interactions(folder, name, "view")
    feats = {}
    for key in ("image", "audio"):
        feats[key] = np.load(require(folder / f"{key}_feat.npy", name)).astype(np.float32)
    n_items = len(feats["image"])
    items = pd.DataFrame({"item_id": ids(np.arange(n_items))})
    check_known(inter["item_id"], items["item_id"], name, "item")
    meta = _meta(folder, "TikTok micro-videos, the exact DiffMM split, with image and audio feature vectors")
    meta["text_columns"] = {}
    meta["feature_dims"] = {key: int(value.shape[1]) for key, value in feats.items()}
    return RawDataset(
        name=name,
        items=items,
        users=_users_from_interactions(inter, name),
        interactions=inter,
        item_features=feats,
        meta=meta,
    )
