"""Feature store: encoder outputs cached on disk by input content, so nothing is encoded twice.

Layout: `<root>/<encoder name>/<fingerprint>/` holds `meta.json` (name, version, settings, dim) and
shards `shard-*.npz`, each with the 16-byte BLAKE2 digests of the inputs' content, their vectors, and
which of them failed (with the reason). The fingerprint (`Encoder.fingerprint`) changes with the
encoder's version and every output-changing setting, so a different model, preprocessing or fitted
state never reads another's vectors. The key is the content, not a name: an edited description or a
replaced photo is encoded again, a renamed file is not, and identical texts are encoded once.

New vectors are written as a new shard every `chunk` inputs, so an interrupted run keeps what it
finished; shards are merged once there are many. Writers hold an exclusive `flock` on the folder.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from vitrina.features.encoder import Encoder

__all__ = ["CachedEncoding", "FeatureStore", "content_key"]

DIGEST_BYTES = 16
_MAX_SHARDS = 16


def content_key(item: Any, modality: str) -> bytes | None:
    """Digest of what an encoder would read for `item`; None when it cannot be read (missing file).

    Text is hashed as UTF-8 (None counts as ""); for images and audio a path means the file's
    bytes, and arrays or PIL images are hashed with their shape and type.
    """
    h = hashlib.blake2b(digest_size=DIGEST_BYTES)
    h.update(modality.encode() + b"\0")
    if modality == "text":
        h.update(b"" if item is None else str(item).encode("utf-8"))
    elif isinstance(item, bytes):
        h.update(item)
    elif isinstance(item, str | os.PathLike):
        try:
            with open(item, "rb") as f:
                h.update(f.read())
        except OSError:
            return None
    elif isinstance(item, np.ndarray):
        h.update(f"{item.dtype.str}{item.shape}".encode())
        h.update(np.ascontiguousarray(item).tobytes())
    elif isinstance(item, Image.Image):
        h.update(f"{item.mode}{item.size}".encode())
        h.update(item.tobytes())
    else:
        raise TypeError(f"cannot key a {type(item).__name__} input for the {modality} feature store")
    return h.digest()


@dataclasses.dataclass
class CachedEncoding:
    """Vectors for every input, in input order. Rows of failed inputs are zero and `ok` is False."""

    vectors: np.ndarray
    ok: np.ndarray
    errors: dict[int, str]
    n_encoded: int  # distinct inputs encoded by this call
    n_cached: int  # inputs answered from the cache

    @property
    def n_failed(self) -> int:
        return int((~self.ok).sum())


class FeatureStore:
    """Content-addressed cache of encoder outputs under `root` (usually `<cache_dir>/features/store`)."""

    def __init__(self, root: str | os.PathLike[str], chunk: int = 512) -> None:
        if chunk < 1:
            raise ValueError(f"chunk must be at least 1, got {chunk}")
        self.root = Path(root)
        self.chunk = chunk

    def folder(self, encoder: Encoder) -> Path:
        return self.root / encoder.name / encoder.fingerprint()

    def encode(
        self, encoder: Encoder, inputs: Sequence[Any], batch_size: int = 64, progress: bool = False
    ) -> CachedEncoding:
        """Vectors for `inputs`, encoding only content the store has not seen with this encoder.

        Unreadable inputs (a missing file) fail without being cached; inputs the encoder rejects
        (with `on_error="mask"`, e.g. a corrupt image) are cached as failures, so they are not retried
        until their content changes. With `on_error="raise"` the encoder's error propagates, and the
        chunks finished before it stay cached.
        """
        folder = self.folder(encoder)
        keys = [content_key(item, encoder.modality) for item in inputs]
        vectors = np.zeros((len(inputs), encoder.dim), dtype=np.float32)
        ok = np.zeros(len(inputs), dtype=bool)
        errors: dict[int, str] = {}
        for i, key in enumerate(keys):
            if key is None:
                errors[i] = f"cannot read {inputs[i]}"

        cache = self._read(folder)
        todo: dict[bytes, int] = {}  # first input index per distinct unseen key
        for i, key in enumerate(keys):
            if key is not None and key not in cache and key not in todo:
                todo[key] = i
        n_cached = sum(1 for key in keys if key is not None and key in cache)

        pending = list(todo.items())
        with tqdm(
            total=len(pending), desc=f"encode {encoder.name}", unit=encoder.modality, disable=not progress
        ) as bar:
            for part, out, failed in self._encode_chunks(encoder, pending, inputs, batch_size):
                self._write(folder, encoder, [k for k, _ in part], out, failed)
                for row, (key, _) in enumerate(part):
                    cache[key] = (out[row], failed.get(row))
                bar.update(len(part))

        for i, key in enumerate(keys):
            if key is None:
                continue
            vector, error = cache[key]
            if error is None:
                vectors[i] = vector
                ok[i] = True
            else:
                errors[i] = error
        return CachedEncoding(vectors, ok, errors, n_encoded=len(todo), n_cached=n_cached)

    def _encode_chunks(
        self, encoder: Encoder, pending: list[tuple[bytes, int]], inputs: Sequence[Any], batch_size: int
    ) -> Iterator[tuple[list[tuple[bytes, int]], np.ndarray, dict[int, str]]]:
        """(the pending entries of a chunk, their vectors, errors by position in the chunk). A
        distributed encoder (`encode_stream`, e.g. on Ray Data) gets everything at once and returns
        chunks as its workers finish them; any other encoder is called chunk by chunk."""
        if not pending:
            return
        stream = getattr(encoder, "encode_stream", None)
        if stream is None:
            for start in range(0, len(pending), self.chunk):
                part = pending[start : start + self.chunk]
                out = encoder.encode([inputs[i] for _, i in part], batch_size=batch_size)
                yield part, out, dict(getattr(encoder, "last_errors", {}) or {})
            return
        for rows, vectors, errors in stream([inputs[i] for _, i in pending], batch_size=batch_size):
            yield [pending[r] for r in rows], vectors, errors

    def size(self, encoder: Encoder) -> int:
        """Distinct inputs cached for this encoder and settings."""
        return len(self._read(self.folder(encoder)))

    @contextmanager
    def _locked(self, folder: Path) -> Iterator[None]:
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / ".lock", "a+b") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    @staticmethod
    def _shards(folder: Path) -> list[Path]:
        return sorted(folder.glob("shard-*.npz"))

    def _read(self, folder: Path) -> dict[bytes, tuple[np.ndarray, str | None]]:
        """Digest -> (vector, error or None) over all shards; taken under the lock so a merge
        running in another process cannot remove a shard half-way through."""
        if not folder.is_dir():
            return {}
        found: dict[bytes, tuple[np.ndarray, str | None]] = {}
        with self._locked(folder):
            for path in self._shards(folder):
                keys, vectors, errors = _load_shard(path)
                for key, vector, error in zip(keys, vectors, errors, strict=True):
                    found[key] = (vector, error or None)
        return found

    def _write(
        self, folder: Path, encoder: Encoder, keys: list[bytes], vectors: np.ndarray, failed: dict[int, str]
    ) -> None:
        with self._locked(folder):
            meta = folder / "meta.json"
            if not meta.is_file():
                spec = {"name": encoder.name, "version": encoder.version, "settings": encoder.settings()}
                _atomic_write_bytes(meta, json.dumps(spec | {"dim": encoder.dim}, indent=2, default=str).encode())
            errors = [failed.get(row, "") for row in range(len(keys))]
            _save_shard(folder / f"shard-{time.time_ns():020d}-{os.getpid()}.npz", keys, vectors, errors)
            shards = self._shards(folder)
            if len(shards) > _MAX_SHARDS:
                merged = [_load_shard(p) for p in shards]
                _save_shard(
                    folder / f"shard-{time.time_ns():020d}-{os.getpid()}-merged.npz",
                    [k for m in merged for k in m[0]],
                    np.concatenate([m[1] for m in merged]),
                    [e for m in merged for e in m[2]],
                )
                for path in shards:
                    path.unlink()


def _save_shard(path: Path, keys: list[bytes], vectors: np.ndarray, errors: list[str]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        np.savez(
            f,
            keys=np.frombuffer(b"".join(keys), dtype=f"S{DIGEST_BYTES}") if keys else np.zeros(0, f"S{DIGEST_BYTES}"),
            vectors=np.asarray(vectors, dtype=np.float32),
            errors=np.array(errors, dtype=str),
        )
    os.replace(tmp, path)


def _load_shard(path: Path) -> tuple[list[bytes], np.ndarray, list[str]]:
    with np.load(path, allow_pickle=False) as z:
        raw = z["keys"]
        keys = [raw.tobytes()[i * DIGEST_BYTES : (i + 1) * DIGEST_BYTES] for i in range(len(raw))]
        return keys, z["vectors"], [str(e) for e in z["errors"]]


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
