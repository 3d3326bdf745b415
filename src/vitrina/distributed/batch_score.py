"""Batch scoring: every shopper's top-K ranked ahead for the serving workers (`vitrina serve
precompute`), in this process by default or spread over Ray workers with `[distributed] ray_address`.

The ranking is the workers' own (`View.rank` on the view they would build, from the histories they
would read), so a stored list is what a request would have computed; Ray receives the view once
(object store, shared by every task on a node) and chunks of shoppers.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterator
from typing import Any

from tqdm import tqdm

from vitrina.config import Config
from vitrina.data.storage import Storage
from vitrina.serving.bundle import current_version
from vitrina.serving.precomputed import PrecomputedLists, batched, rank_users
from vitrina.serving.recent import redis_client
from vitrina.serving.settings import ServeSettings
from vitrina.serving.state import ServingState

__all__ = ["precompute"]


def precompute(
    cfg: Config, storage: Storage, k: int | None = None, chunk_size: int = 500, progress: bool = True
) -> dict[str, Any]:
    """Rank the current version's top-k for every shopper with events or a trained vector and
    replace the stored lists with them; returns what was done and how fast."""
    settings = ServeSettings.from_config(cfg)
    version = current_version(settings.dir)
    if version is None:
        raise ValueError("no version has been published: run `vitrina serve build` first")
    k = int(k or settings.precompute_k)
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    address = str(cfg.get("distributed.ray_address", "") or "")
    workers = int(cfg.get("distributed.workers")) if address else 1
    started = time.perf_counter()
    state = ServingState(storage, settings)
    view = state.load_view(version, search=False)
    histories = state.live.histories()
    users = sorted(set(histories) | set(view.bundle.users.ids.astype(str).tolist()))
    # (shoppers, their histories) per chunk: the arguments of one `rank_users` call.
    jobs = [(chunk, [histories.get(u, []) for u in chunk]) for chunk in batched(users, chunk_size)]
    loaded = time.perf_counter()
    bar = tqdm(total=len(users), desc="rank users", unit="user", disable=not progress)

    def ranked() -> Iterator[dict[str, Any]]:
        if not address:
            for chunk, chunk_histories in jobs:
                yield from rank_users(view, chunk, chunk_histories, k)
                bar.update(len(chunk))
            return
        yield from _rank_on_ray(view, jobs, k, address, workers, bar)

    redis = redis_client(settings.redis_url) if settings.redis_url else None
    stored = PrecomputedLists(storage, redis).replace(ranked())
    bar.close()
    done = time.perf_counter()
    return {
        "version": version,
        "users": stored,
        "k": k,
        "items": len(view),
        "ray": address or None,
        "workers": workers,
        "load_seconds": round(loaded - started, 3),
        "rank_and_write_seconds": round(done - loaded, 3),
        "users_per_second": round(stored / max(done - loaded, 1e-9), 1),
    }


def _rank_on_ray(
    view: Any, jobs: list[tuple[list[str], list]], k: int, address: str, workers: int, bar: tqdm
) -> Iterator[dict[str, Any]]:
    """The chunks ranked by Ray tasks (one CPU each), at most `workers` at a time, yielded in order."""
    import ray

    from vitrina.distributed.ray_encoder import ensure_ray

    ensure_ray(address)
    view_ref = ray.put(view)
    task = ray.remote(num_cpus=1)(rank_users)
    in_flight: deque[tuple[int, Any]] = deque()

    def oldest() -> list[dict[str, Any]]:
        size, ref = in_flight.popleft()
        rows = ray.get(ref)
        bar.update(size)
        return rows

    for chunk, chunk_histories in jobs:
        if len(in_flight) == workers:
            yield from oldest()
        in_flight.append((len(chunk), task.remote(view_ref, chunk, chunk_histories, k)))
    while in_flight:
        yield from oldest()
