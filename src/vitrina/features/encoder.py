"""The one interface every modality encoder implements, and a registry of encoders by name.

The feature store keys its cache on `name` + `version` + the input's content hash, so an encoder
must bump `version` whenever its output for the same input can change (weights, preprocessing).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from vitrina.registry import Registry

ENCODERS: Registry[Encoder] = Registry("encoder")


def register_encoder(cls: type[Encoder]) -> type[Encoder]:
    """Class decorator: make an encoder available by its `name`."""
    return ENCODERS.register(cls)


def create_encoder(name: str, **params: Any) -> Encoder:
    return ENCODERS.create(name, **params)


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero), as float32."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


class Encoder:
    """Turns a batch of inputs of one modality into L2-normalised float32 vectors [n, dim]."""

    name: ClassVar[str] = ""
    modality: ClassVar[str] = ""  # "text" | "image" | "audio"
    version: ClassVar[str] = "1"
    dim: int = 0

    def encode(self, inputs: Sequence[Any], batch_size: int = 64, progress: bool = False) -> np.ndarray:
        raise NotImplementedError

    def settings(self) -> dict[str, Any]:
        """Every setting that changes the output for the same input (JSON-serialisable).

        Speed knobs (threads, batch size, workers) stay out: they must not invalidate cached vectors.
        """
        return {}

    def fingerprint(self) -> str:
        """Short stable id of name + version + settings: the feature store's cache namespace."""
        spec = {"name": self.name, "version": self.version, "settings": self.settings()}
        blob = json.dumps(spec, sort_keys=True, default=str).encode("utf-8")
        return hashlib.sha256(blob).hexdigest()[:16]
