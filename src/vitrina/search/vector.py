"""Approximate nearest neighbours over item vectors: faiss HNSW with filters inside the search.

Vectors are L2-normalised, so inner product is cosine. Items change one at a time without a
rebuild: a new item is appended to the graph, a deleted or updated one leaves a tombstone that
every search excludes (an updated item is appended again under the same id). `compact()` rebuilds
once tombstones pile up.

Filters are an allowed-row mask handed to faiss (`IDSelectorBitmap`), so HNSW walks the graph
and only returns rows that pass. When few rows pass (a narrow category), a graph walk would
wander far to find k of them: below `exact_below` allowed rows the search is exact instead,
which is then both faster and complete.

Several serving workers load the same saved index: `load(..., mmap=True)` maps the stored vectors
from the file instead of reading them, so the workers share one copy in the page cache (only the
graph's links are per worker). A mapped index is read-only to faiss; the first change re-reads it
into the worker's own memory (versions' files are never rewritten in place, so the mapping stays valid).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import faiss
import numpy as np

from vitrina.features.encoder import l2_normalize

__all__ = ["VectorIndex"]


class VectorIndex:
    """item id -> vector, searchable by inner product; rows are append-only, ids are not."""

    def __init__(
        self, dim: int, m: int = 32, ef_construction: int = 100, ef_search: int = 64, exact_below: int = 10_000
    ) -> None:
        if dim < 1:
            raise ValueError(f"dim must be positive, got {dim}")
        self.dim, self.m = dim, m
        self.ef_construction, self.ef_search, self.exact_below = ef_construction, ef_search, exact_below
        self.index = self._new_index()
        self.row_ids: list[str] = []
        self.alive = np.zeros(0, dtype=bool)
        self.rows: dict[str, int] = {}
        self.mapped_from: Path | None = None  # the file the vectors are memory-mapped from, if they are

    def _new_index(self) -> faiss.IndexHNSWFlat:
        index = faiss.IndexHNSWFlat(self.dim, self.m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = self.ef_construction
        return index

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def vectors(self) -> np.ndarray:
        """Every row's stored vector: a view of faiss's own copy (no second copy to keep in step;
        take it again after an add, which may move faiss's buffer)."""
        n = self.index.ntotal
        if not n:
            return np.zeros((0, self.dim), dtype=np.float32)
        flat = faiss.downcast_index(self.index.storage)
        return faiss.rev_swig_ptr(flat.get_xb(), n * self.dim).reshape(n, self.dim)

    def vector(self, item_id: str) -> np.ndarray:
        return self.vectors[self.rows[item_id]]

    def add(self, ids: Sequence[str], vectors: np.ndarray) -> None:
        """Insert items; an id already present is replaced (tombstone + append)."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self.dim or len(vectors) != len(ids):
            raise ValueError(f"expected {len(ids)} vectors of dim {self.dim}, got shape {vectors.shape}")
        if len(set(ids)) != len(ids):
            raise ValueError("duplicate ids in one add()")
        if not np.isfinite(vectors).all():
            raise ValueError("vectors contain NaN or infinity")
        self.delete([i for i in ids if i in self.rows])
        if self.mapped_from is not None:  # faiss aborts the process on a write to mapped storage
            self.index, self.mapped_from = faiss.read_index(str(self.mapped_from)), None
        vectors = l2_normalize(vectors)
        start = len(self.row_ids)
        self.index.add(vectors)
        self.row_ids.extend(str(i) for i in ids)
        self.alive = np.concatenate([self.alive, np.ones(len(ids), dtype=bool)])
        self.rows.update({str(i): start + n for n, i in enumerate(ids)})

    def delete(self, ids: Sequence[str]) -> None:
        """Remove items (unknown ids are an error naming the first)."""
        unknown = [i for i in ids if i not in self.rows]
        if unknown:
            raise KeyError(f"unknown item id {unknown[0]!r} ({len(unknown)} unknown)")
        for i in ids:
            self.alive[self.rows.pop(i)] = False

    @property
    def tombstones(self) -> int:
        return len(self.row_ids) - len(self.rows)

    def compact(self) -> None:
        """Rebuild the graph from the live rows only."""
        live = np.flatnonzero(self.alive)
        # Fancy indexing copies: the rows outlive the old index and its buffer.
        ids, vectors = [self.row_ids[r] for r in live], self.vectors[live]
        self.index, self.row_ids, self.mapped_from = self._new_index(), [], None
        self.alive, self.rows = np.zeros(0, dtype=bool), {}
        if len(ids):
            self.add(ids, vectors)

    def search(self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None) -> list[list[tuple[str, float]]]:
        """Top-k (item id, cosine) per query row; `allowed` is a boolean mask over rows
        (`row_ids` order)."""
        queries = l2_normalize(np.atleast_2d(np.asarray(queries, dtype=np.float32)))
        mask = self.alive if allowed is None else self.alive & allowed
        n_allowed = int(mask.sum())
        k = min(k, n_allowed)
        if k < 1:
            return [[] for _ in range(len(queries))]
        if n_allowed <= self.exact_below:
            rows = np.flatnonzero(mask)
            scores = queries @ self.vectors[rows].T
            top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
            top_scores = np.take_along_axis(scores, top, axis=1)
            order = np.argsort(-top_scores, axis=1, kind="stable")
            found, found_rows = np.take_along_axis(top_scores, order, 1), rows[np.take_along_axis(top, order, 1)]
        else:
            params = faiss.SearchParametersHNSW()
            params.efSearch = max(self.ef_search, k)
            bitmap = None
            if n_allowed < len(mask):
                bitmap = np.packbits(mask, bitorder="little")
                params.sel = faiss.IDSelectorBitmap(len(mask), faiss.swig_ptr(bitmap))
            found, found_rows = self.index.search(queries, k, params=params)
            del bitmap  # faiss only borrowed it for the search
        return [
            [(self.row_ids[r], float(s)) for r, s in zip(row, score, strict=True) if r >= 0]
            for row, score in zip(found_rows, found, strict=True)
        ]

    def save(self, folder: str | Path) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        faiss.write_index(self.index, str(folder / "hnsw.faiss"))
        np.savez(folder / "rows.npz", ids=np.array(self.row_ids, dtype=str), alive=self.alive)
        settings = {"dim": self.dim, "m": self.m, "ef_construction": self.ef_construction}
        settings |= {"ef_search": self.ef_search, "exact_below": self.exact_below}
        (folder / "index.json").write_text(json.dumps(settings))
        return folder

    @classmethod
    def load(cls, folder: str | Path, mmap: bool = False) -> VectorIndex:
        """`mmap`: map the vectors from the file (shared by every process that maps it) instead of
        reading them into this process."""
        folder = Path(folder)
        index = cls(**json.loads((folder / "index.json").read_text()))
        path = folder / "hnsw.faiss"
        if mmap:
            index.index = faiss.read_index(str(path), faiss.IO_FLAG_MMAP_IFC | faiss.IO_FLAG_READ_ONLY)
            index.mapped_from = path
        else:
            index.index = faiss.read_index(str(path))
        with np.load(folder / "rows.npz", allow_pickle=False) as z:
            index.alive, index.row_ids = z["alive"], z["ids"].tolist()
        index.rows = {index.row_ids[r]: int(r) for r in np.flatnonzero(index.alive)}
        return index
