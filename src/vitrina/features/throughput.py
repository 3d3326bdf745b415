"""Encoder speed as `vitrina bench featurize` reports it: texts or images per second of wall-clock time."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence

from vitrina.features.encoder import Encoder


def measure_text_throughput(encoder: Encoder, texts: Sequence[str | None], batch_size: int) -> float:
    """Texts per second encoding all of `texts`, after one untimed warm-up batch.

    The warm-up pays for lazy initialisation (thread pools, first-call allocations) so the figure
    reflects steady-state speed. Wall-clock, so other load on the machine lowers it.
    """
    texts = list(texts)
    if not texts:
        raise ValueError("measure_text_throughput needs at least one text")
    encoder.encode(texts[:batch_size], batch_size=batch_size)
    start = time.perf_counter()
    encoder.encode(texts, batch_size=batch_size)
    return len(texts) / (time.perf_counter() - start)


def measure_image_throughput(encoder: Encoder, paths: Sequence[str | os.PathLike[str]], batch_size: int) -> float:
    """Images per second encoding all of `paths`, decoding and preprocessing included, after one
    untimed warm-up batch (same reasoning as for texts). Wall-clock, so other load lowers it."""
    paths = list(paths)
    if not paths:
        raise ValueError("measure_image_throughput needs at least one image path")
    encoder.encode(paths[:batch_size], batch_size=batch_size)
    start = time.perf_counter()
    encoder.encode(paths, batch_size=batch_size)
    return len(paths) / (time.perf_counter() - start)
