"""Encoder speed as `vitrina bench featurize` reports it: inputs per second of wall-clock time."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any

from vitrina.features.encoder import Encoder
from vitrina.features.pool import PooledEncoder


def measure_throughput(encoder: Encoder, inputs: Sequence[Any], batch_size: int) -> float:
    """Inputs per second encoding all of `inputs`, after one untimed warm-up batch.

    The warm-up pays for lazy initialisation (thread pools, first-call allocations, a pooled
    encoder's worker processes) so the figure reflects steady-state speed. Wall-clock, so other load
    on the machine lowers it.
    """
    inputs = list(inputs)
    if not inputs:
        raise ValueError(f"measuring {encoder.name} throughput needs at least one input")
    if isinstance(encoder, PooledEncoder):
        encoder.start(inputs[0])
    encoder.encode(inputs[:batch_size], batch_size=batch_size)
    start = time.perf_counter()
    encoder.encode(inputs, batch_size=batch_size)
    return len(inputs) / (time.perf_counter() - start)


def measure_text_throughput(encoder: Encoder, texts: Sequence[str | None], batch_size: int) -> float:
    """Texts per second (see `measure_throughput`)."""
    return measure_throughput(encoder, texts, batch_size)


def measure_image_throughput(encoder: Encoder, paths: Sequence[str | os.PathLike[str]], batch_size: int) -> float:
    """Images per second, decoding and preprocessing included (see `measure_throughput`)."""
    return measure_throughput(encoder, paths, batch_size)
