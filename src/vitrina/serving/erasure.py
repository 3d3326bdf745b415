"""A shopper's rights over their data: export everything held about them, or remove it everywhere.

Where a shopper's data lives: the database (profile, events, reviews, the batch job's list of
recommendations, the ad log's impressions and clicks), the Redis cache of recent events, and every
published version on disk (their trained vector and id in the bundle, their segment, and the saved
model's id, seen row and user state). `forget` removes all of it: the database rows in one
transaction (ad rows keep their price for the advertiser's bill, without the shopper), the cache
entries, and each version's files, each replaced atomically; then the current version is
republished (hard links, no copying), so every worker reloads it and drops the vector from memory.
Not removed: the append-only audit log, which records the erasure itself (under the pseudonym), and
item-side parameters trained on everyone (item vectors, item-item similarities), which hold no
per-shopper row and are retrained without the shopper at the next `serve build`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

from vitrina.data.schema import ad_events_table
from vitrina.data.storage import Storage
from vitrina.models.base import Recommender
from vitrina.privacy.audit import AuditLog
from vitrina.serving.bundle import Bundle, current_version, publish, version_folder
from vitrina.serving.live import LiveStore
from vitrina.serving.precomputed import PrecomputedLists

__all__ = ["export_user", "forget_user"]


def export_user(storage: Storage, serve_dir: str | Path, user_id: str) -> dict[str, Any] | None:
    """Everything held about the shopper `user_id` (as stored: their pseudonym), or None if unknown."""
    users = storage.read("users", {"user_id": user_id})
    if not len(users):
        return None
    attributes = users.iloc[0]["attributes"]
    if storage.personal is not None:
        attributes = storage.personal.reveal(attributes, user_id)
    with storage.engine.connect() as conn:
        ads = pd.DataFrame(
            conn.execute(sa.select(ad_events_table).where(ad_events_table.c.user_id == user_id)).mappings().all()
        )
    out: dict[str, Any] = {
        "user_id": user_id,
        "profile": attributes,
        "events": _records(storage.read("interactions", {"user_id": user_id})),
        "reviews": _records(storage.read("reviews", {"user_id": user_id})),
        "ad_events": _records(ads),
        "audit": _records(AuditLog(storage).query(subject=user_id, limit=10_000)),
    }
    version = current_version(serve_dir)
    if version is not None:
        folder = version_folder(serve_dir, version)
        bundle = Bundle.load(folder)
        if user_id in bundle.users:
            out["model"] = {"version": version, "vector": bundle.user_factors[bundle.users.index(user_id)].tolist()}
        segments = _segments(folder)
        if segments and user_id in segments.get("assignment", {}):
            out["segment"] = segments["assignment"][user_id]
    return out


def forget_user(storage: Storage, serve_dir: str | Path, user_id: str, live: LiveStore | None = None) -> dict[str, Any]:
    """Remove the shopper `user_id` (their pseudonym) everywhere; returns what was removed where."""
    live = live or LiveStore(storage)
    report: dict[str, Any] = {"user_id": user_id, "database": live.delete_user(user_id), "versions": {}}
    PrecomputedLists(storage, live.cache.client if live.cache is not None else None).forget(user_id)
    if storage.dialect == "sqlite":  # move the overwritten pages out of the write-ahead log now
        with storage.engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    serve_dir = Path(serve_dir)
    versions = serve_dir / "versions"
    folders = (
        sorted(p for p in versions.iterdir() if p.is_dir() and not p.name.startswith(".")) if versions.is_dir() else []
    )
    for folder in folders:
        removed = _forget_in_version(folder, user_id)
        if removed:
            report["versions"][folder.name] = removed
    current = current_version(serve_dir)
    if current is not None and current in report["versions"]:
        # A new version with the same content: every worker reloads it, and the vector leaves memory.
        source = version_folder(serve_dir, current)
        report["republished"] = publish(
            serve_dir, lambda folder, version: _relink(source, folder, version), keep=len(folders)
        )
    return report


def _forget_in_version(folder: Path, user_id: str) -> list[str]:
    removed = []
    bundle = Bundle.load(folder)
    if user_id in bundle.users:
        keep = bundle.users.ids.astype(str) != user_id
        with np.load(folder / "bundle.npz", allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        arrays["users"], arrays["user_factors"] = arrays["users"][keep], arrays["user_factors"][keep]
        _replace(folder / "bundle.npz", lambda path: np.savez(path, **arrays))
        removed.append("vector")
    segments = _segments(folder)
    if segments and user_id in segments.get("assignment", {}):
        segments["assignment"].pop(user_id)
        _replace(folder / "segments.json", lambda path: path.write_text(json.dumps(segments)))
        removed.append("segment")
    if (folder / "model" / "model.json").exists() and Recommender.forget_saved(folder / "model", [user_id]):
        removed.append("model")
    return removed


def _relink(source: Path, folder: Path, version: str) -> None:
    """`folder` as a copy of `source` made of hard links, under the new version name."""
    for path in source.rglob("*"):
        target = folder / path.relative_to(source)
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        elif path.name != "bundle.json":
            target.parent.mkdir(parents=True, exist_ok=True)
            os.link(path, target)
    info = json.loads((source / "bundle.json").read_text())
    (folder / "bundle.json").write_text(json.dumps({**info, "version": version}, indent=2))


def _replace(path: Path, write: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp{path.suffix}")
    write(tmp)
    os.replace(tmp, path)


def _segments(folder: Path) -> dict[str, Any] | None:
    path = folder / "segments.json"
    return json.loads(path.read_text()) if path.exists() else None


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return json.loads(frame.to_json(orient="records")) if len(frame) else []
