"""An encoder whose batches run on Ray Data: one encoder instance per Ray worker, any cluster.

`RayDataEncoder` wraps a picklable factory (as `PooledEncoder` does for local processes): every
`map_batches` actor builds its own encoder once and encodes the batches it is given; the results
stream back to the caller in chunks, so the feature store writes each chunk as it arrives and a
stopped run keeps what it finished. `address` None or "local" starts (or joins) a local Ray
instance; a cluster address ("ray://head:10001" or "auto") runs the same code on the cluster.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from vitrina.distributed.priority import normal_priority
from vitrina.features.encoder import Encoder, l2_normalize

__all__ = ["RayDataEncoder", "ensure_ray"]


def ensure_ray(address: str | None, num_cpus: int | None = None) -> None:
    """Connect to the cluster at `address`, or start a local instance (`address` None, empty or
    "local"), unless this process already has one."""
    import ray

    if ray.is_initialized():
        return
    cluster = address if address and address != "local" else None
    with normal_priority():
        ray.init(
            address=cluster,
            num_cpus=None if cluster else num_cpus,
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
        )


class _EncodeBatches:
    """The map_batches worker: builds its encoder once, then encodes every batch it receives."""

    def __init__(self, factory: Callable[[], Encoder]) -> None:
        self.encoder = factory()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        inputs = list(batch["input"])
        vectors = self.encoder.encode(inputs, batch_size=len(inputs))
        failed = dict(getattr(self.encoder, "last_errors", {}) or {})
        errors = np.array([failed.get(i, "") for i in range(len(inputs))], dtype=object)
        return {"row": batch["row"], "vector": np.asarray(vectors, dtype=np.float32), "error": errors}


class RayDataEncoder(Encoder):
    """`factory`'s encoder, run over Ray Data with `workers` actors (one CPU each)."""

    def __init__(
        self, factory: Callable[[], Encoder], workers: int = 2, address: str | None = None, chunk: int = 512
    ) -> None:
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        self.local = factory()  # answers name, dim and settings, so the cache namespace is the plain encoder's
        self.factory, self.workers, self.address, self.chunk = factory, workers, address, chunk
        self.name = self.local.name  # type: ignore[misc]
        self.modality = self.local.modality  # type: ignore[misc]
        self.version = self.local.version  # type: ignore[misc]
        self.dim = self.local.dim
        self.last_errors: dict[int, str] = {}

    def settings(self) -> dict[str, Any]:
        return self.local.settings()

    def encode_stream(
        self, inputs: Sequence[Any], batch_size: int = 64
    ) -> Iterator[tuple[np.ndarray, np.ndarray, dict[int, str]]]:
        """(input positions, their vectors, errors by position within the chunk), chunk by chunk as
        the workers finish them (in any order)."""
        import ray.data

        ensure_ray(self.address, num_cpus=self.workers)
        items = [{"row": i, "input": x} for i, x in enumerate(inputs)]
        ds = ray.data.from_items(items).map_batches(
            _EncodeBatches,
            fn_constructor_args=(self.factory,),
            batch_size=batch_size,
            concurrency=self.workers,
            num_cpus=1,
            batch_format="numpy",
        )
        for out in ds.iter_batches(batch_size=self.chunk, batch_format="numpy"):
            rows = np.asarray(out["row"], dtype=np.int64)
            errors = {j: str(e) for j, e in enumerate(out["error"]) if e}
            yield rows, np.asarray(out["vector"], dtype=np.float32), errors

    def encode(self, inputs: Sequence[Any], batch_size: int = 64, progress: bool = False) -> np.ndarray:
        out = np.zeros((len(inputs), self.dim), dtype=np.float32)
        self.last_errors = {}
        for rows, vectors, errors in self.encode_stream(inputs, batch_size):
            out[rows] = vectors
            self.last_errors.update({int(rows[j]): e for j, e in errors.items()})
        return l2_normalize(out)
