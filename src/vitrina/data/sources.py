"""Where snapshots come from: a named dataset in the data folder, or the shop's own database.

Snapshots of named datasets are cached in the cache folder, keyed by everything that shapes them.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from vitrina.config import Config
from vitrina.data.dataset import RawDataset
from vitrina.data.datasets import DATASETS, dataset_folder, load_dataset
from vitrina.data.snapshot import FORMAT_VERSION, Snapshot


def default_split(name: str, config: Config) -> str:
    """Official split where a dataset has one, leave-last-out for sequences, else the configured one."""
    info = DATASETS.get(name)
    if info is not None and info.has_official_split:
        return "official"
    if info is not None and info.ordered:
        return "leave-last-out"
    return str(config.get("split.default"))


def _cache_key(name: str, split: str, seed: int, config: Config) -> str:
    folder = dataset_folder(name, config.data_dir)
    files = sorted((p.name, p.stat().st_size, int(p.stat().st_mtime)) for p in folder.iterdir() if p.is_file())
    shape = {
        "v": FORMAT_VERSION,
        "split": split,
        # Only the seeded splits depend on the seed.
        "seed": seed if split in ("random", "cold-item") else None,
        "ratios": config.get("split.ratios"),
        "min_user": config.get("split.min_user_interactions"),
        "files": files,
    }
    digest = hashlib.sha1(json.dumps(shape, sort_keys=True).encode()).hexdigest()[:12]
    return f"{name}-{split}-{digest}"


def dataset_snapshot(config: Config, name: str, split: str | None = None, seed: int | None = None) -> Snapshot:
    """Snapshot of a named dataset, built once and then read from the cache."""
    split = split or default_split(name, config)
    seed = config.seed if seed is None else seed
    path = Path(config.cache_dir) / "snapshots" / f"{_cache_key(name, split, seed, config)}.npz"
    if path.is_file():
        return Snapshot.load(path)
    snap = snapshot_from_raw(config, load_dataset(name, config.data_dir), split, seed)
    snap.save(path)
    return snap


def snapshot_from_raw(config: Config, raw: RawDataset, split: str, seed: int) -> Snapshot:
    ratios = tuple(float(r) for r in config.get("split.ratios"))
    return Snapshot.build(
        raw,
        split=split,
        seed=seed,
        ratios=(ratios[0], ratios[1], ratios[2]),
        min_user_interactions=int(config.get("split.min_user_interactions")),
    )


def storage_dataset(config: Config, name: str = "shop") -> RawDataset:
    """Everything the configured database holds, as frames in the schema."""
    from vitrina.data.storage import Storage

    with Storage(config.storage_url) as storage:
        return RawDataset(
            name,
            items=storage.read("items"),
            users=storage.read("users"),
            interactions=storage.read("interactions"),
            reviews=storage.read("reviews"),
        )
