"""What one serving version is made of, written by the training job and read by every worker.

A version is a folder `<serve dir>/versions/<version>/` holding the model's user and item vectors
(with their id maps), which items have each modality, a joint low-dimensional content vector per item
(the space a user's recent items are averaged in, and new items are placed in without retraining),
item popularity, "bought together" pairs, and the search indexes. `publish` writes the folder
completely, then points `<serve dir>/CURRENT` at it with one atomic rename: a worker that reads the
pointer sees either the old version or the new one, never half of one.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from vitrina.data.idmap import IdMap
from vitrina.features.encoder import l2_normalize

__all__ = ["Bundle", "ContentSpace", "current_version", "publish", "version_folder"]

POINTER = "CURRENT"


@dataclass
class ContentSpace:
    """Maps per-modality item vectors to one L2-normalised joint vector: each modality normalised
    and weighted, missing ones left out, then a PCA fitted on the catalogue. Kept so that an item
    added later lands in the same space as the catalogue it joins."""

    modalities: tuple[str, ...]
    weights: np.ndarray  # per modality
    dims: tuple[int, ...]
    mean: np.ndarray
    components: np.ndarray  # [sum(dims), joint dim]

    @classmethod
    def fit(
        cls,
        vectors: Mapping[str, np.ndarray],
        present: Mapping[str, np.ndarray],
        dim: int = 128,
        weights: Mapping[str, float] | None = None,
    ) -> ContentSpace:
        modalities = tuple(sorted(vectors))
        if not modalities:
            raise ValueError("a content space needs at least one modality")
        w = np.array([float((weights or {}).get(m, 1.0)) for m in modalities], dtype=np.float32)
        dims = tuple(int(vectors[m].shape[1]) for m in modalities)
        space = cls(modalities, w, dims, np.zeros(sum(dims), np.float32), np.zeros((sum(dims), 0), np.float32))
        x = space._stack(vectors, present)
        space.mean = x.mean(axis=0).astype(np.float32)
        centred = x - space.mean
        # Eigenvectors of the covariance: cheap for a few thousand input dimensions.
        cov = centred.T @ centred / max(1, len(x) - 1)
        values, vecs = np.linalg.eigh(cov.astype(np.float64))
        keep = np.argsort(values)[::-1][: min(dim, len(values))]
        space.components = vecs[:, keep].astype(np.float32)
        return space

    def _stack(self, vectors: Mapping[str, np.ndarray], present: Mapping[str, np.ndarray]) -> np.ndarray:
        parts = []
        n = len(next(iter(vectors.values())))
        for m, weight, d in zip(self.modalities, self.weights, self.dims, strict=True):
            v = vectors.get(m)
            if v is None:
                parts.append(np.zeros((n, d), np.float32))
                continue
            if v.shape[1] != d:
                raise ValueError(f"{m} vectors have {v.shape[1]} dimensions, the content space {d}")
            mask = np.asarray(present.get(m, np.ones(n, bool)), dtype=bool)
            parts.append(l2_normalize(v) * (np.sqrt(weight) * mask[:, None]))
        return np.concatenate(parts, axis=1)

    def project(self, vectors: Mapping[str, np.ndarray], present: Mapping[str, np.ndarray]) -> np.ndarray:
        """Joint vectors (L2-normalised) of items given each modality's vectors and presence masks."""
        return l2_normalize((self._stack(vectors, present) - self.mean) @ self.components)

    def state(self) -> dict[str, np.ndarray]:
        return {
            "space_modalities": np.array(self.modalities, dtype=str),
            "space_weights": self.weights,
            "space_dims": np.array(self.dims, dtype=np.int64),
            "space_mean": self.mean,
            "space_components": self.components,
        }

    @classmethod
    def from_state(cls, z: Mapping[str, np.ndarray]) -> ContentSpace:
        return cls(
            tuple(str(m) for m in z["space_modalities"]),
            z["space_weights"],
            tuple(int(d) for d in z["space_dims"]),
            z["space_mean"],
            z["space_components"],
        )


@dataclass
class Bundle:
    """One serving version. Item rows follow `items`; users are those with trained vectors."""

    version: str
    items: IdMap
    users: IdMap
    user_factors: np.ndarray  # [users, d]; empty (d = 0) without a collaborative model
    item_factors: np.ndarray  # [items, d]; zero rows for items the model never saw
    has_factors: np.ndarray  # bool [items]
    present: dict[str, np.ndarray]  # modality -> bool [items] (the per-modality vectors stay in the build)
    space: ContentSpace
    joint: np.ndarray  # [items, j] L2-normalised
    popularity: np.ndarray  # float [items]
    together: sp.csr_matrix  # [items, items] "bought together" weights
    info: dict[str, Any] = field(default_factory=dict)
    # Mean P(positive) of each item's reviews by the sentiment model; NaN: no reviews (or no model).
    sentiment: np.ndarray | None = None

    def save(self, folder: str | Path) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        arrays: dict[str, np.ndarray] = {
            "items": self.items.ids.astype(str),
            "users": self.users.ids.astype(str),
            "user_factors": self.user_factors,
            "item_factors": self.item_factors,
            "has_factors": self.has_factors,
            "joint": self.joint,
            "popularity": self.popularity,
            "together_indptr": self.together.indptr,
            "together_indices": self.together.indices,
            "together_data": self.together.data,
            **({"sentiment": self.sentiment} if self.sentiment is not None else {}),
            **self.space.state(),
        }
        for m in self.present:
            arrays[f"present_{m}"] = self.present[m]
        np.savez(folder / "bundle.npz", **arrays)
        info = {**self.info, "version": self.version, "modalities": sorted(self.present)}
        (folder / "bundle.json").write_text(json.dumps(info, indent=2, default=float))
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> Bundle:
        folder = Path(folder)
        try:
            info = json.loads((folder / "bundle.json").read_text())
            with np.load(folder / "bundle.npz", allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        except (OSError, ValueError, KeyError) as exc:
            raise ValueError(f"serving version {folder} cannot be read: {exc}") from exc
        n = len(arrays["items"])
        together = sp.csr_matrix(
            (arrays["together_data"], arrays["together_indices"], arrays["together_indptr"]), shape=(n, n)
        )
        modalities = info.get("modalities", [])
        return cls(
            version=str(info["version"]),
            items=IdMap(arrays["items"], "item"),
            users=IdMap(arrays["users"], "user"),
            user_factors=arrays["user_factors"],
            item_factors=arrays["item_factors"],
            has_factors=arrays["has_factors"],
            present={m: arrays[f"present_{m}"] for m in modalities},
            space=ContentSpace.from_state(arrays),
            joint=arrays["joint"],
            popularity=arrays["popularity"],
            together=together,
            info=info,
            sentiment=arrays.get("sentiment"),
        )


def new_version() -> str:
    """Sortable and unique per publish: UTC time to the microsecond plus the process id."""
    now = time.time()
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime(now)) + f"{int(now % 1 * 1e6):06d}-{os.getpid()}"


def version_folder(serve_dir: str | Path, version: str) -> Path:
    return Path(serve_dir) / "versions" / version


def publish(serve_dir: str | Path, build: Callable[[Path, str], None], keep: int = 3) -> str:
    """Write a new version with `build(folder, version)` (which fills the folder), then switch CURRENT to it
    atomically; older versions beyond `keep` are removed (a worker still reading one has it in
    memory already). Returns the version."""
    serve_dir = Path(serve_dir)
    version = new_version()
    final = version_folder(serve_dir, version)
    staging = final.with_name(f".{version}.tmp")
    staging.mkdir(parents=True)
    try:
        build(staging, version)
        os.replace(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    pointer = serve_dir / POINTER
    tmp = serve_dir / f".{POINTER}.{os.getpid()}.tmp"
    tmp.write_text(version)
    os.replace(tmp, pointer)
    versions = sorted(p for p in (serve_dir / "versions").iterdir() if p.is_dir() and not p.name.startswith("."))
    for old in versions[:-keep] if keep > 0 else []:
        if old.name != version:
            shutil.rmtree(old, ignore_errors=True)
    return version


def current_version(serve_dir: str | Path) -> str | None:
    """The version CURRENT points at, or None before the first publish."""
    try:
        return (Path(serve_dir) / POINTER).read_text().strip() or None
    except FileNotFoundError:
        return None
