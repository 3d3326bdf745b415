"""Featurization on Ray Data (a local Ray instance, 2 CPUs): the same vectors, masks and failures as
the local run, written to the same feature store, and a second run encodes nothing."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from features.test_store import _catalogue, _cfg
from vitrina.distributed.ray_encoder import RayDataEncoder
from vitrina.features.featurize import featurize, modality_encoder


def test_ray_featurize_matches_the_local_run(ray_local: None, tmp_path: Path) -> None:
    raw = _catalogue(tmp_path)
    local, _ = featurize(_cfg(tmp_path / "local"), raw)
    cfg = _cfg(tmp_path / "ray", **{"distributed.ray_address": "local", "distributed.workers": 2})
    assert isinstance(modality_encoder(cfg, "image", [None]), RayDataEncoder)
    on_ray, reports = featurize(cfg, raw)
    for modality in ("text", "image"):
        np.testing.assert_allclose(on_ray[modality].values, local[modality].values, atol=1e-6)
        assert on_ray[modality].mask.tolist() == local[modality].mask.tolist()
        assert on_ray[modality].errors.keys() == local[modality].errors.keys()
    assert {r.modality: r.encoded for r in reports} == {"text": 5, "image": 5}
    _, again = featurize(cfg, raw)  # the vectors the Ray workers computed are in the store
    assert all(r.encoded == 0 and r.cached == r.present + r.failed for r in again)


def test_ray_encoder_streams_every_input_once(ray_local: None, tmp_path: Path) -> None:
    texts = [f"item {i} red dress cotton" if i % 7 else f"blue shirt {i}" for i in range(300)]
    cfg = _cfg(tmp_path, **{"distributed.ray_address": "local", "distributed.workers": 2})
    encoder = modality_encoder(cfg, "text", texts)
    assert isinstance(encoder, RayDataEncoder)
    rows = np.concatenate([r for r, _, _ in encoder.encode_stream(texts, batch_size=32)])
    assert sorted(rows.tolist()) == list(range(300))
    np.testing.assert_allclose(encoder.encode(texts, batch_size=32), encoder.local.encode(texts), atol=1e-6)
