"""Catalogue -> per-modality item features through the feature store: what `vitrina featurize` runs.

For each configured modality (text, image, audio) every item gets a vector, or is marked missing
(no text, no photo, a photo that fails to decode) and given the configured fill. Results are saved
per dataset and modality as `<cache_dir>/features/<dataset>/<modality>.npz` with the item ids, so
models and search read arrays aligned to their own id maps.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from vitrina.config import Config, ConfigError
from vitrina.data.dataset import RawDataset
from vitrina.data.snapshot import Snapshot
from vitrina.features import audio_encoders, image_encoders, text_encoders
from vitrina.features.encoder import Encoder, create_encoder
from vitrina.features.image_io import ImageError, load_image
from vitrina.features.missing import FILLS, fill_missing
from vitrina.features.pool import PooledEncoder, default_workers
from vitrina.features.store import FeatureStore
from vitrina.features.text import TextPreprocessor, item_text

__all__ = [
    "MODALITIES",
    "ModalityFeatures",
    "features_dir",
    "featurize",
    "item_inputs",
    "load_features",
    "make_encoder",
    "modality_encoder",
]

MODALITIES = ("text", "image", "audio")
_SETTINGS = {"modalities", "image_encoder", "audio_encoder", "fill", "chunk"}


@dataclasses.dataclass
class ModalityFeatures:
    """One modality's vectors for a catalogue: row i belongs to `item_ids[i]`.

    `mask[i]` is False where the item has no usable input; its row then holds the `fill`.
    """

    modality: str
    encoder: str
    fingerprint: str
    item_ids: np.ndarray
    values: np.ndarray
    mask: np.ndarray
    fill: str
    errors: dict[str, str] = dataclasses.field(default_factory=dict)  # item id -> why it is missing

    @property
    def dim(self) -> int:
        return int(self.values.shape[1])

    def aligned(self, item_ids: np.ndarray | list[str]) -> tuple[np.ndarray, np.ndarray]:
        """(values, mask) in the order of `item_ids`; ids this catalogue lacks get the fill, mask False."""
        position = {item: row for row, item in enumerate(self.item_ids.tolist())}
        rows = np.array([position.get(str(item), -1) for item in item_ids], dtype=np.int64)
        found = rows >= 0
        values = np.zeros((len(rows), self.dim), dtype=np.float32)
        values[found] = self.values[rows[found]]
        mask = np.zeros(len(rows), dtype=bool)
        mask[found] = self.mask[rows[found]]
        return fill_missing(values, mask, self.fill), mask

    def save(self, path: str | os.PathLike[str]) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {
            "modality": self.modality,
            "encoder": self.encoder,
            "fingerprint": self.fingerprint,
            "fill": self.fill,
            "errors": self.errors,
        }
        tmp = path.with_name(f".{path.name}.tmp")
        with open(tmp, "wb") as f:
            np.savez(f, item_ids=self.item_ids.astype(str), values=self.values, mask=self.mask, meta=json.dumps(meta))
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> ModalityFeatures:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            return cls(
                meta["modality"],
                meta["encoder"],
                meta["fingerprint"],
                z["item_ids"].astype(object),
                z["values"],
                z["mask"],
                meta["fill"],
                meta["errors"],
            )


def feature_store(cfg: Config) -> FeatureStore:
    """The shared feature store under the cache folder, chunked as `[features.store]` says."""
    return FeatureStore(Path(cfg.cache_dir) / "features" / "store", chunk=int(cfg.get("features.store.chunk", 512)))


def features_dir(cfg: Config, dataset: str) -> Path:
    return Path(cfg.cache_dir) / "features" / dataset


def load_features(cfg: Config, dataset: str) -> dict[str, ModalityFeatures]:
    """Every modality `featurize` saved for `dataset` (empty when it has not run)."""
    folder = features_dir(cfg, dataset)
    return {p.stem: ModalityFeatures.load(p) for p in sorted(folder.glob("*.npz"))} if folder.is_dir() else {}


def _resolve(path: Any, root: Path | None) -> str | None:
    if path is None or (isinstance(path, float) and np.isnan(path)) or str(path) == "":
        return None
    p = Path(str(path))
    return str(p if p.is_absolute() or root is None else root / p)


def item_inputs(raw: RawDataset, modality: str, fields: tuple[str, ...]) -> list[Any]:
    """What the encoder reads per item, None where the item has none (row order of `raw.items`).

    Text: the configured fields joined (empty -> None). Image: the first photo; audio: the clip;
    relative paths are taken from `raw.meta["root"]`.
    """
    items = raw.items
    root = Path(raw.meta["root"]) if raw.meta.get("root") else None
    if modality == "text":
        return [t or None for t in item_text(items, fields)]
    if modality == "image":
        firsts = [paths[0] if isinstance(paths, list | tuple) and paths else None for paths in items["image_paths"]]
        return [_resolve(p, root) for p in firsts]
    if modality == "audio":
        return [_resolve(p, root) for p in items["audio_path"]]
    raise ValueError(f"unknown modality '{modality}'; choose from {', '.join(MODALITIES)}")


def dataset_text_fields(cfg: Config, dataset: str) -> tuple[str, ...]:
    """The item fields that make a dataset's item text: its own `features.text.datasets` entry or
    the general `features.text.fields`."""
    own = cfg.get("features.text.datasets", {}) or {}
    return tuple(own[dataset]) if dataset in own else TextPreprocessor.from_config(cfg).fields


def make_encoder(name: str, params: dict[str, Any]) -> Encoder:
    """`create_encoder` after importing every encoder module: the picklable factory of worker processes."""
    assert text_encoders and image_encoders and audio_encoders  # imported for their registrations
    return create_encoder(name, **params)


def _store_settings(cfg: Config) -> dict[str, Any]:
    section = cfg.section("features.store", _SETTINGS)
    fill = section.get("fill", "mean")
    if fill not in FILLS:
        raise ConfigError(f"features.store.fill must be one of {', '.join(FILLS)}, got '{fill}'")
    unknown = [m for m in section.get("modalities", MODALITIES) if m not in MODALITIES]
    if unknown:
        raise ConfigError(f"features.store.modalities: unknown {unknown}; choose from {', '.join(MODALITIES)}")
    return section


def _decodes(photo: Any) -> bool:
    try:
        load_image(photo)
    except ImageError:
        return False
    return True


def _calibration_images(catalogue: list[Any], record: Path | None) -> list[Any]:
    """Photos that calibrate an int8 image encoder: evenly spaced over the catalogue, and with a
    `record` file, chosen once and reused while they exist, so new items do not change the
    calibration (and with it every cached vector)."""
    photos = [p for p in catalogue if p is not None]
    if record is not None and record.is_file():
        kept = json.loads(record.read_text(encoding="utf-8"))
        if kept and all(Path(p).is_file() for p in kept):
            return list(kept)
    step = max(1, len(photos) // image_encoders.CALIBRATION_SIZE)
    chosen = [p for p in photos[::step][: image_encoders.CALIBRATION_SIZE] if _decodes(p)]
    if record is not None and chosen:
        record.parent.mkdir(parents=True, exist_ok=True)
        record.write_text(json.dumps([str(p) for p in chosen], indent=1), encoding="utf-8")
    return chosen


def modality_encoder(
    cfg: Config, modality: str, catalogue: list[Any], name: str | None = None, calibration_record: Path | None = None
) -> Encoder:
    """The configured encoder of one modality (or the one called `name`), ready to run on this
    `catalogue` (the modality's inputs, None for missing): a tfidf-svd text encoder is fitted on its
    texts, an int8 image encoder calibrated on its photos (see `_calibration_images`). Text
    encoders with pretrained weights run in one process per core. With `[distributed] ray_address`
    set, every encoder runs on Ray Data instead, one instance per Ray worker."""
    factory = _encoder_factory(cfg, modality, catalogue, name, calibration_record)
    pretrained_text = modality == "text" and factory.func is make_encoder
    # Worker copies run one thread each: two single-threaded copies beat one with two threads.
    single = (
        functools.partial(make_encoder, factory.keywords["name"], factory.keywords["params"] | {"threads": 1})
        if pretrained_text
        else factory
    )
    address = str(cfg.get("distributed.ray_address", "") or "")
    if address:
        from vitrina.distributed.ray_encoder import RayDataEncoder

        workers = int(cfg.get("distributed.workers", 2))
        return RayDataEncoder(single, workers, address)
    if pretrained_text:
        workers = int(cfg.get("features.text_encoder.workers", 0)) or default_workers()
        if workers > 1:
            return PooledEncoder(single, workers)
    return factory()


def _fitted(encoder: Encoder) -> Encoder:
    """A factory's product that is already built (a fitted encoder shipped to workers as it is)."""
    return encoder


def _encoder_factory(
    cfg: Config, modality: str, catalogue: list[Any], name: str | None, calibration_record: Path | None
) -> functools.partial[Encoder]:
    """A picklable callable that builds the encoder: what worker processes and Ray actors run."""
    settings = _store_settings(cfg)
    if modality == "text":
        name, params = text_encoders.text_encoder_params(cfg, name)
        if name == text_encoders.TfidfSvdEncoder.name:
            fitted = make_encoder(name, params).fit([t for t in catalogue if t])  # type: ignore[attr-defined]
            return functools.partial(_fitted, fitted)
        return functools.partial(make_encoder, name=name, params=params)
    if modality == "image":
        name = name or str(settings.get("image_encoder", "efficientnet-lite0"))
        if name == image_encoders.EfficientNetLite0.name:
            extra: dict[str, Any] = {}
            if cfg.get("features.image.precision", "fp32") == "int8":
                extra["calibration"] = _calibration_images(catalogue, calibration_record)
            return functools.partial(image_encoders.EfficientNetLite0.from_config, cfg, on_error="mask", **extra)
        return functools.partial(make_encoder, name=name, params={"on_error": "mask"})
    if modality == "audio":
        name = name or str(settings.get("audio_encoder", "mel-stats"))
        audio = dict(cfg.get("features.audio", {}) or {})
        if name == audio_encoders.MelStatsEncoder.name:
            keys = ("sample_rate", "n_fft", "hop", "n_mels", "window", "max_seconds")
            params = {k: audio[k] for k in keys if k in audio} | {"on_error": "mask"}
            return functools.partial(make_encoder, name=name, params=params)
        params = {"max_seconds": audio.get("max_seconds", 600.0), "on_error": "mask"}
        return functools.partial(make_encoder, name=name, params=params)
    raise ValueError(f"unknown modality '{modality}'; choose from {', '.join(MODALITIES)}")


@dataclasses.dataclass
class FeaturizeReport:
    """What one modality's run did, for the CLI table."""

    modality: str
    encoder: str
    items: int
    present: int
    missing: int
    failed: int
    encoded: int
    cached: int
    seconds: float
    path: str


def featurize(
    cfg: Config,
    raw: RawDataset,
    modalities: tuple[str, ...] | None = None,
    progress: bool = False,
) -> tuple[dict[str, ModalityFeatures], list[FeaturizeReport]]:
    """Encode every item of `raw` for each modality it has inputs for, through the feature store.

    Modalities with no input at all in this catalogue are skipped (not written as all-missing).
    """
    settings = _store_settings(cfg)
    modalities = modalities or tuple(settings.get("modalities", MODALITIES))
    store = feature_store(cfg)
    fields = dataset_text_fields(cfg, raw.name)
    fill = str(settings.get("fill", "mean"))
    item_ids = raw.items["item_id"].astype(str).to_numpy(dtype=object)
    results: dict[str, ModalityFeatures] = {}
    reports: list[FeaturizeReport] = []
    for modality in modalities:
        inputs = item_inputs(raw, modality, fields)
        present = [i for i, x in enumerate(inputs) if x is not None]
        if not present:
            continue
        start = time.perf_counter()
        record = features_dir(cfg, raw.name) / "image-calibration.json"
        encoder = modality_encoder(cfg, modality, inputs, calibration_record=record)
        batch = int(cfg.get("features.image.batch_size", 64)) if modality == "image" else 64
        if modality == "text":
            batch = int(cfg.get("features.text_encoder.batch_size", 128))
        got = store.encode(encoder, [inputs[i] for i in present], batch_size=batch, progress=progress)
        values = np.zeros((len(inputs), encoder.dim), dtype=np.float32)
        mask = np.zeros(len(inputs), dtype=bool)
        rows = np.asarray(present, dtype=np.int64)
        values[rows] = got.vectors
        mask[rows] = got.ok
        errors = {str(item_ids[present[j]]): reason for j, reason in got.errors.items()}
        feats = ModalityFeatures(
            modality,
            encoder.name,
            encoder.fingerprint(),
            item_ids,
            fill_missing(values, mask, fill),
            mask,
            fill,
            errors,
        )
        path = feats.save(features_dir(cfg, raw.name) / f"{modality}.npz")
        if isinstance(encoder, PooledEncoder):
            encoder.close()
        results[modality] = feats
        reports.append(
            FeaturizeReport(
                modality,
                encoder.name,
                len(inputs),
                int(mask.sum()),
                len(inputs) - len(present),
                got.n_failed,
                got.n_encoded,
                got.n_cached,
                time.perf_counter() - start,
                str(path),
            )
        )
    return results, reports


def with_item_features(
    cfg: Config, snap: Snapshot, raw: RawDataset, modalities: tuple[str, ...] | None = None, progress: bool = False
) -> Snapshot:
    """`snap` plus the modalities `featurize` computes from `raw`'s catalogue (through the feature
    store, so only new content is encoded), lined up with the snapshot's item ids, masks included.
    Features that came with the data (e.g. TikTok's vectors) are kept as they are."""
    computed, _ = featurize(cfg, raw, modalities, progress)
    features, masks = dict(snap.item_features), dict(snap.feature_masks)
    for modality, feats in computed.items():
        if modality not in features:
            features[modality], masks[modality] = feats.aligned(snap.items.ids)
    return dataclasses.replace(snap, item_features=features, feature_masks=masks)
