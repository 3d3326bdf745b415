"""The HNSW vector index: filtered search, single-item changes without a rebuild, save/load."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vitrina.search.vector import VectorIndex


@pytest.fixture
def data() -> tuple[list[str], np.ndarray]:
    rng = np.random.default_rng(0)
    return [f"v{i}" for i in range(2000)], rng.normal(size=(2000, 32)).astype(np.float32)


def _exact(vectors: np.ndarray, query: np.ndarray, k: int, mask: np.ndarray | None = None) -> list[int]:
    v = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    scores = v @ (query / np.linalg.norm(query))
    if mask is not None:
        scores[~mask] = -np.inf
    return np.argsort(-scores)[:k].tolist()


@pytest.mark.parametrize("exact_below", [0, 10_000], ids=["hnsw", "exact"])
def test_search_matches_brute_force(data: tuple[list[str], np.ndarray], exact_below: int) -> None:
    ids, vectors = data
    index = VectorIndex(32, exact_below=exact_below, ef_search=128)
    index.add(ids, vectors)
    queries = vectors[:50] + 0.3 * np.random.default_rng(1).normal(size=(50, 32)).astype(np.float32)
    found = index.search(queries, 10)
    overlap = [
        len({ids[r] for r in _exact(vectors, q, 10)} & {i for i, _ in hits}) / 10
        for q, hits in zip(queries, found, strict=True)
    ]
    assert np.mean(overlap) >= 0.95


@pytest.mark.parametrize("exact_below", [0, 10_000], ids=["hnsw", "exact"])
def test_filters_are_applied_inside_the_search(data: tuple[list[str], np.ndarray], exact_below: int) -> None:
    ids, vectors = data
    index = VectorIndex(32, exact_below=exact_below, ef_search=128)
    index.add(ids, vectors)
    allowed = np.zeros(len(ids), dtype=bool)
    allowed[::4] = True
    hits = index.search(vectors[1:2], 10, allowed)[0]  # v1 itself is not allowed
    assert len(hits) == 10
    assert all(int(i[1:]) % 4 == 0 for i, _ in hits)
    expected = {ids[r] for r in _exact(vectors, vectors[1], 10, allowed)}
    assert len(expected & {i for i, _ in hits}) >= 9


def test_add_update_delete_compact_and_reload(data: tuple[list[str], np.ndarray], tmp_path: Path) -> None:
    ids, vectors = data
    index = VectorIndex(32, exact_below=0)
    index.add(ids[:100], vectors[:100])
    index.delete(["v0"])
    assert "v0" not in {i for i, _ in index.search(vectors[0:1], 5)[0]}
    index.add(["v1"], vectors[5:6])  # an update: v1 now sits where v5 is
    top = {i for i, _ in index.search(vectors[5:6], 2)[0]}
    assert top == {"v1", "v5"}
    assert len(index) == 99 and index.tombstones == 2
    with pytest.raises(KeyError, match="unknown item id 'nope'"):
        index.delete(["nope"])
    with pytest.raises(ValueError, match="NaN"):
        index.add(["bad"], np.full((1, 32), np.nan, dtype=np.float32))
    loaded = VectorIndex.load(index.save(tmp_path / "vectors"))
    assert loaded.search(vectors[5:6], 3) == index.search(vectors[5:6], 3)
    loaded.compact()
    assert loaded.tombstones == 0 and len(loaded) == 99
    assert {i for i, _ in loaded.search(vectors[5:6], 2)[0]} == {"v1", "v5"}


def test_a_mapped_index_searches_alike_and_copies_itself_on_the_first_change(
    data: tuple[list[str], np.ndarray], tmp_path: Path
) -> None:
    ids, vectors = data
    index = VectorIndex(32, exact_below=0)
    index.add(ids, vectors)
    folder = index.save(tmp_path / "vectors")
    saved = (folder / "hnsw.faiss").read_bytes()
    mapped = VectorIndex.load(folder, mmap=True)
    assert mapped.mapped_from == folder / "hnsw.faiss"
    assert mapped.search(vectors[:4], 10) == index.search(vectors[:4], 10)
    assert np.array_equal(mapped.vectors, index.vectors) and np.array_equal(mapped.vector("v7"), index.vector("v7"))
    mapped.delete(["v3"])  # a tombstone: the mapping stays
    assert mapped.mapped_from is not None and "v3" not in {i for i, _ in mapped.search(vectors[3:4], 5)[0]}
    mapped.add(["new"], vectors[9:10] + 0.01)  # a write: faiss would abort on mapped storage
    assert mapped.mapped_from is None and len(mapped) == len(ids)
    assert "new" in {i for i, _ in mapped.search(vectors[9:10], 2)[0]}
    assert (folder / "hnsw.faiss").read_bytes() == saved  # the version's file is untouched
