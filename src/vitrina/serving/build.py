"""The training job of serving: database -> snapshot -> features -> model -> bundle + search indexes
-> a published version. Runs outside the request path (`vitrina serve build`, or the demo); workers
pick the new version up on their next refresh."""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from vitrina.analytics.segments import describe, plot_segments, segment_users
from vitrina.analytics.sentiment import SentimentModel
from vitrina.config import Config
from vitrina.data.dataset import RawDataset
from vitrina.data.idmap import IdMap
from vitrina.data.storage import Storage
from vitrina.features.encoder import l2_normalize
from vitrina.features.featurize import ModalityFeatures
from vitrina.models import Recommender
from vitrina.serving.bundle import Bundle, ContentSpace, publish
from vitrina.serving.live import LiveStore
from vitrina.serving.settings import ServeSettings

__all__ = ["build_bundle", "build_version", "item_sentiment", "together_matrix"]

log = logging.getLogger("vitrina.serving")
# Fewer trained users than this: no segments (k-means on a handful of vectors says nothing).
MIN_SEGMENT_USERS = 100
# How much one event of each type says about a shopper's taste (popularity and profiles).
TYPE_WEIGHTS: dict[str, float] = {"view": 1.0, "click": 1.5, "cart": 2.5, "purchase": 4.0, "rating": 2.0}


def together_matrix(items: IdMap, pairs: pd.DataFrame | None, interactions: pd.DataFrame) -> sp.csr_matrix:
    """Item × item "bought together" weights: the given pairs (item_id, other_id, score) when the
    shop has them, else how many shoppers carted or bought both."""
    n = len(items)
    if pairs is not None and len(pairs):
        known = pairs["item_id"].isin(items.ids) & pairs["other_id"].isin(items.ids)
        p = pairs[known]
        rows, cols = items.to_index(p["item_id"].astype(str)), items.to_index(p["other_id"].astype(str))
        return sp.csr_matrix((p["score"].to_numpy(np.float32), (rows, cols)), shape=(n, n))
    bought = interactions[interactions["type"].isin(["cart", "purchase"]) & interactions["item_id"].isin(items.ids)]
    if not len(bought):
        return sp.csr_matrix((n, n), dtype=np.float32)
    users = IdMap(pd.unique(bought["user_id"].astype(str)), "user")
    b = sp.csr_matrix(
        (
            np.ones(len(bought), np.float32),
            (users.to_index(bought["user_id"].astype(str)), items.to_index(bought["item_id"].astype(str))),
        ),
        shape=(len(users), n),
    )
    b.data[:] = 1.0  # repeated purchases count once per shopper
    co = (b.T @ b).tocsr()
    co.setdiag(0)
    co.eliminate_zeros()
    return co.astype(np.float32)


def popularity(items: IdMap, interactions: pd.DataFrame) -> np.ndarray:
    """Type-weighted event counts per item (the fallback ranking and a tie-breaker)."""
    known = interactions[interactions["item_id"].isin(items.ids)]
    weights = known["type"].map(TYPE_WEIGHTS).fillna(1.0).to_numpy(np.float64)
    return np.bincount(items.to_index(known["item_id"].astype(str)), weights=weights, minlength=len(items))


def item_sentiment(items: IdMap, reviews: pd.DataFrame, model: SentimentModel) -> np.ndarray:
    """Mean P(positive) of each item's reviews, NaN for items without one."""
    known = reviews[reviews["item_id"].isin(items.ids) & reviews["text"].notna()]
    out = np.full(len(items), np.nan, dtype=np.float32)
    if len(known):
        p = model.predict_proba(known["text"].astype(str).tolist())
        rows = items.to_index(known["item_id"].astype(str))
        sums = np.bincount(rows, weights=p, minlength=len(items))
        counts = np.bincount(rows, minlength=len(items))
        has = counts > 0
        out[has] = (sums[has] / counts[has]).astype(np.float32)
    return out


def build_bundle(
    version: str,
    catalogue: pd.DataFrame,
    interactions: pd.DataFrame,
    features: Mapping[str, ModalityFeatures],
    model: Recommender | None,
    settings: ServeSettings,
    pairs: pd.DataFrame | None = None,
    info: dict[str, Any] | None = None,
) -> Bundle:
    """Everything a worker scores with, lined up with the catalogue's item order."""
    items = IdMap(catalogue["item_id"].astype(str), "item")
    content, present = {}, {}
    for m, feats in sorted(features.items()):
        values, mask = feats.aligned(items.ids)
        if mask.any():
            content[m], present[m] = l2_normalize(values), mask
    if not content:
        raise ValueError("no item features: run `vitrina featurize` or give the items text or photos")
    space = ContentSpace.fit(content, present, dim=settings.joint_dim, weights=settings.modality_weights)
    if model is not None:
        users_f, items_f = model.factors()
        assert model.items is not None and model.users is not None
        rows = items.lookup(model.items.ids)
        item_factors = np.zeros((len(items), items_f.shape[1]), np.float32)
        item_factors[rows[rows >= 0]] = items_f[rows >= 0]
        has = np.zeros(len(items), bool)
        has[rows[rows >= 0]] = True
        users, user_factors = model.users, users_f.astype(np.float32)
    else:
        item_factors, has = np.zeros((len(items), 0), np.float32), np.zeros(len(items), bool)
        users, user_factors = IdMap([], "user"), np.zeros((0, 0), np.float32)
    return Bundle(
        version=version,
        items=items,
        users=users,
        user_factors=user_factors,
        item_factors=item_factors,
        has_factors=has,
        present=present,
        space=space,
        joint=space.project(content, present),
        popularity=popularity(items, interactions).astype(np.float32),
        together=together_matrix(items, pairs, interactions),
        info=dict(info or {}),
    )


def build_version(
    cfg: Config,
    storage: Storage,
    engine_models: Any,
    pairs: pd.DataFrame | None = None,
    progress: bool = True,
) -> str:
    """Train the configured model on what the database holds, featurize the catalogue (through the
    feature store: only new content is encoded), build the bundle and the search indexes, and
    publish them as the new current version. Returns the version."""
    from vitrina.bench.rec import run_model
    from vitrina.data.sources import snapshot_from_raw
    from vitrina.features.featurize import featurize
    from vitrina.search.engine import SearchEngine, SearchSettings

    settings = ServeSettings.from_config(cfg)
    search_settings = SearchSettings.from_config(cfg)
    # Changes logged from here on are re-applied by the workers on top of this version.
    feed_seq = LiveStore(storage).last_seq()
    raw = RawDataset(
        "shop",
        items=storage.read("items"),
        users=storage.read("users"),
        interactions=storage.read("interactions"),
        reviews=storage.read("reviews"),
        meta={"root": str(settings.media_root)} if settings.media_root else {},
    )
    if not len(raw.items):
        raise ValueError("the database has no items: import a catalogue first")
    features, _ = featurize(cfg, raw, progress=progress)

    def build(folder: Path, version: str) -> None:
        info: dict[str, Any] = {
            "built": time.time(),
            "items": len(raw.items),
            "events": len(raw.interactions),
            "feed_seq": feed_seq,
        }
        model = None
        if settings.model and len(raw.interactions):
            snap = snapshot_from_raw(cfg, raw, settings.split, cfg.seed)
            result = run_model(cfg, snap, settings.model, cfg.seed, progress=progress, save_dir=folder / "model")
            model = Recommender.load(folder / "model")
            info["model"] = {
                **{k: v for k, v in dataclasses.asdict(result).items() if k != "history"},
                "split": settings.split,
            }
            (folder / "history.json").write_text(json.dumps(result.history, default=float))
        bundle = build_bundle(version, raw.items, raw.interactions, features, model, settings, pairs, info)
        if settings.sentiment_model is not None and len(raw.reviews):
            bundle.sentiment = item_sentiment(bundle.items, raw.reviews, SentimentModel.load(settings.sentiment_model))
        bundle.save(folder)
        seg = None
        if len(bundle.users) >= MIN_SEGMENT_USERS:
            # Segments of the trained users: ad targeting and the dashboard read them from here.
            try:
                seg = segment_users(bundle.user_factors, seed=cfg.seed)
            except ValueError as exc:  # no structure to cut: the version simply has no segments
                log.warning("no segments: %s", exc)
        if seg is not None:
            seg = describe(seg, bundle.users.ids, raw.interactions, raw.items)
            (folder / "segments.json").write_text(json.dumps(seg.to_dict(bundle.users.ids), default=float))
            plot_segments(bundle.user_factors, seg, folder / "segments.png", "Shoppers by segment (user vectors, PCA)")
        text, image = features.get("text"), features.get("image")
        engine = SearchEngine.build(
            storage,
            engine_models,
            search_settings,
            text_vectors=(lambda cat: text.aligned(cat["item_id"].astype(str))[0]) if text is not None else None,
            image_vectors=(lambda cat: image.aligned(cat["item_id"].astype(str))) if image is not None else None,
            image_root=settings.media_root,
        )
        engine.save(folder / "search")

    return publish(settings.dir, build, keep=settings.keep_versions)
