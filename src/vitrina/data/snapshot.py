"""The dataset snapshot handed to models: id maps, CSR matrices per fold, item feature matrices.

Models never read files; they receive a Snapshot. It is built once from a RawDataset (a loader's
output or what storage holds), can be saved to the cache and loads back bit-identically.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from vitrina.data import splits
from vitrina.data.dataset import RawDataset
from vitrina.data.idmap import IdMap
from vitrina.data.schema import INTERACTION_TYPES

FORMAT_VERSION = 1


def _ordered_union(first: pd.Series, second: pd.Series) -> list[str]:
    """Ids of `first` in order, then ids only `second` has, in order of first appearance."""
    base = first.astype(str).tolist()
    known = set(base)
    extra = pd.unique(second.astype(str)[~second.astype(str).isin(known)])
    return base + [str(x) for x in extra]


def _csr(users: np.ndarray, items: np.ndarray, shape: tuple[int, int]) -> sp.csr_matrix:
    """Binary user x item matrix; repeated pairs count once."""
    m = sp.csr_matrix((np.ones(len(users), dtype=np.float32), (users, items)), shape=shape)
    m.sum_duplicates()
    m.data[:] = 1.0
    return m


@dataclass
class Snapshot:
    name: str
    users: IdMap
    items: IdMap
    train: sp.csr_matrix
    valid: sp.csr_matrix
    test: sp.csr_matrix
    split: str
    seed: int
    item_features: dict[str, np.ndarray] = field(default_factory=dict)
    # True where an item has that modality; models mask missing rows instead of reading zeros.
    feature_masks: dict[str, np.ndarray] = field(default_factory=dict)
    # Every interaction row as (user, item, fold, order[, type]) in time/import order, for sequence models.
    log: dict[str, np.ndarray] = field(default_factory=dict)
    cold_items: dict[str, np.ndarray] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def n_users(self) -> int:
        return len(self.users)

    @property
    def n_items(self) -> int:
        return len(self.items)

    def fold(self, name: str) -> sp.csr_matrix:
        return {"train": self.train, "valid": self.valid, "test": self.test}[name]

    def stats(self) -> dict[str, Any]:
        n_obs = self.train.nnz + self.valid.nnz + self.test.nnz
        return {
            "dataset": self.name,
            "split": self.split,
            "users": self.n_users,
            "items": self.n_items,
            "train": int(self.train.nnz),
            "valid": int(self.valid.nnz),
            "test": int(self.test.nnz),
            "density": n_obs / max(1, self.n_users * self.n_items),
            "modalities": sorted(self.item_features),
        }

    @classmethod
    def build(
        cls,
        raw: RawDataset,
        split: str = "official",
        seed: int = 0,
        ratios: tuple[float, float, float] = (0.8, 0.1, 0.1),
        min_user_interactions: int = 10,
        types: tuple[str, ...] | None = None,
    ) -> Snapshot:
        """Index the raw frames, assign folds with the chosen split and build the matrices."""
        if split not in splits.SPLITS:
            raise splits.SplitError(f"unknown split '{split}'; choose one of {', '.join(splits.SPLITS)}")
        inter = raw.interactions
        if types is not None:
            inter = inter[inter["type"].isin(types)]
        if inter.empty:
            raise splits.SplitError(f"{raw.name}: no interactions to split")
        users = IdMap(_ordered_union(raw.users["user_id"], inter["user_id"]), "user")
        items = IdMap(_ordered_union(raw.items["item_id"], inter["item_id"]), "item")
        u = users.to_index(inter["user_id"].astype(str).to_numpy())
        i = items.to_index(inter["item_id"].astype(str).to_numpy())
        ts = pd.to_numeric(inter["ts"], errors="coerce").to_numpy(dtype=np.float64)
        # Sources without timestamps give an order only: row order is the time order then.
        order = np.arange(len(inter), dtype=np.float64) if np.isnan(ts).all() else ts

        cold: dict[str, np.ndarray] = {}
        if split == "official":
            folds = splits.official(inter["split"].to_numpy())
        elif split == "random":
            folds = splits.random_per_user(u, ratios, min_user_interactions, seed)
        elif split == "leave-last-out":
            folds = splits.leave_last_out(u, order)
        elif split == "temporal":
            folds = splits.temporal(ts, ratios)
        else:
            folds, cold["valid"], cold["test"] = splits.cold_item(i, len(items), ratios, seed)

        shape = (len(users), len(items))
        mats = [_csr(u[folds == f], i[folds == f], shape) for f in (splits.TRAIN, splits.VALID, splits.TEST)]
        features, masks = {}, {}
        n_known = len(raw.items)
        for mod, feats in raw.item_features.items():
            full = np.full((len(items), feats.shape[1]), np.nan, dtype=np.float32)
            full[:n_known] = feats
            masks[mod] = ~np.isnan(full).all(axis=1)
            features[mod] = np.nan_to_num(full, nan=0.0)
        log = {"user": u, "item": i, "fold": folds, "order": order}
        if "type" in inter:
            # Event types as codes into INTERACTION_TYPES (-1: none given), for typed sequence models.
            log["type"] = pd.Categorical(inter["type"], categories=INTERACTION_TYPES).codes.astype(np.int8)
        meta = {"source_meta": {k: v for k, v in raw.meta.items() if isinstance(v, str | int | float | bool)}}
        return cls(raw.name, users, items, *mats, split, seed, features, masks, log, cold, meta)

    def save(self, path: str | Path) -> Path:
        """Write the snapshot as one .npz (no pickles) plus the JSON meta inside it."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays: dict[str, np.ndarray] = {
            "users": self.users.ids.astype(str),
            "items": self.items.ids.astype(str),
        }
        for name in ("train", "valid", "test"):
            m = self.fold(name)
            arrays[f"{name}_indptr"], arrays[f"{name}_indices"] = m.indptr, m.indices
        for mod, feats in self.item_features.items():
            arrays[f"feat__{mod}"] = feats
            arrays[f"mask__{mod}"] = self.feature_masks[mod]
        for key, arr in self.log.items():
            arrays[f"log__{key}"] = arr
        for key, arr in self.cold_items.items():
            arrays[f"cold__{key}"] = arr
        header = {
            "version": FORMAT_VERSION,
            "name": self.name,
            "split": self.split,
            "seed": self.seed,
            "meta": self.meta,
        }
        arrays["header"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(tmp, **arrays)
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> Snapshot:
        with np.load(Path(path), allow_pickle=False) as z:
            header = json.loads(z["header"].tobytes().decode())
            if header.get("version") != FORMAT_VERSION:
                raise ValueError(f"{path}: snapshot format {header.get('version')} is not {FORMAT_VERSION}")
            users, items = IdMap(z["users"], "user"), IdMap(z["items"], "item")
            shape = (len(users), len(items))

            def mat(name: str) -> sp.csr_matrix:
                indices = z[f"{name}_indices"]
                data = np.ones(len(indices), dtype=np.float32)
                return sp.csr_matrix((data, indices, z[f"{name}_indptr"]), shape=shape)

            def group(prefix: str) -> dict[str, np.ndarray]:
                return {k[len(prefix) :]: z[k] for k in z.files if k.startswith(prefix)}

            return cls(
                header["name"],
                users,
                items,
                mat("train"),
                mat("valid"),
                mat("test"),
                header["split"],
                header["seed"],
                group("feat__"),
                group("mask__"),
                group("log__"),
                group("cold__"),
                header["meta"],
            )
