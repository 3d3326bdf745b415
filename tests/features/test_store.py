"""Feature store, featurize and pooled encoders on generated catalogues with cheap encoders."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from vitrina.cli import app
from vitrina.config import Config, ConfigError
from vitrina.data.dataset import RawDataset
from vitrina.features.encoder import Encoder
from vitrina.features.featurize import ModalityFeatures, featurize, item_inputs, load_features, make_encoder
from vitrina.features.image_encoders import ColorHistogram
from vitrina.features.missing import fill_missing
from vitrina.features.pool import PooledEncoder
from vitrina.features.store import FeatureStore, content_key
from vitrina.features.text import TextPreprocessor
from vitrina.features.text_encoders import TfidfSvdEncoder

COLOURS = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (220, 220, 40), (240, 240, 240), (20, 20, 20)]


class Counting(Encoder):
    """Wraps an encoder and records every input it is asked to encode."""

    def __init__(self, inner: Encoder) -> None:
        self.inner = inner
        self.name, self.modality, self.version, self.dim = inner.name, inner.modality, inner.version, inner.dim  # type: ignore[misc]
        self.seen: list[Any] = []
        self.last_errors: dict[int, str] = {}

    def settings(self) -> dict[str, Any]:
        return self.inner.settings()

    def encode(self, inputs: Sequence[Any], batch_size: int = 64, progress: bool = False) -> np.ndarray:
        self.seen.extend(inputs)
        out = self.inner.encode(inputs, batch_size=batch_size)
        self.last_errors = dict(getattr(self.inner, "last_errors", {}))
        return out


def _photo(path: Path, colour: tuple[int, int, int], seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    pixels = np.clip(np.array(colour) + rng.normal(0, 12, (40, 30, 3)), 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, format="JPEG")
    return path


def _texts() -> list[str]:
    words = ["red dress cotton", "blue jeans denim", "green shirt linen", "black shoes leather", "white socks"]
    return [f"{w} item {i % 3}" for i, w in enumerate(words * 4)]


def test_content_key_follows_content_not_names(tmp_path: Path) -> None:
    a = _photo(tmp_path / "a.jpg", COLOURS[0])
    b = tmp_path / "b.jpg"
    b.write_bytes(a.read_bytes())
    assert content_key(a, "image") == content_key(b, "image") == content_key(a.read_bytes(), "image")
    assert content_key(tmp_path / "missing.jpg", "image") is None
    assert content_key("red dress", "text") != content_key("red dress ", "text")
    assert content_key(None, "text") == content_key("", "text")
    assert content_key(np.zeros(3, np.float32), "audio") != content_key(np.zeros(3, np.float64), "audio")
    with pytest.raises(TypeError, match="cannot key"):
        content_key(3.5, "image")


def test_second_run_encodes_nothing_and_new_items_only_themselves(tmp_path: Path) -> None:
    texts = _texts()
    enc = Counting(TfidfSvdEncoder(dim=4, min_df=1).fit(texts))
    store = FeatureStore(tmp_path / "store", chunk=3)
    first = store.encode(enc, texts)
    distinct = len(set(texts))
    assert first.n_encoded == distinct and len(enc.seen) == distinct  # duplicates encoded once
    assert first.ok.all() and np.allclose(first.vectors, enc.inner.encode(texts), atol=1e-6)

    enc.seen.clear()
    again = store.encode(enc, texts)
    assert enc.seen == [] and again.n_encoded == 0 and again.n_cached == len(texts)
    np.testing.assert_array_equal(again.vectors, first.vectors)

    more = texts + [f"new product {i}" for i in range(10)]
    grown = store.encode(enc, more)
    assert grown.n_encoded == 10 and enc.seen == more[-10:]
    # Small chunks made many shards; they were merged and nothing was lost.
    assert len(list(store.folder(enc).glob("shard-*.npz"))) <= 17
    assert store.size(enc) == distinct + 10


def test_settings_change_is_a_different_namespace(tmp_path: Path) -> None:
    texts = _texts()
    store = FeatureStore(tmp_path)
    lower = TfidfSvdEncoder(dim=4, min_df=1).fit(texts)
    cased = TfidfSvdEncoder(dim=4, min_df=1, preprocessor=TextPreprocessor(lowercase=False)).fit(texts)
    refit = TfidfSvdEncoder(dim=4, min_df=1).fit(texts[:10])
    prints = {e.fingerprint() for e in (lower, cased, refit)}
    assert len(prints) == 3
    store.encode(lower, texts)
    counting = Counting(cased)
    store.encode(counting, texts)
    assert counting.seen  # nothing borrowed from the lower-case encoder's vectors
    with pytest.raises(RuntimeError, match="unfitted"):
        TfidfSvdEncoder().fingerprint()


def test_bad_images_are_cached_failures_and_missing_files_are_not(tmp_path: Path) -> None:
    good = [_photo(tmp_path / f"{i}.jpg", c, i) for i, c in enumerate(COLOURS[:3])]
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff not really a jpeg")
    missing = tmp_path / "gone.jpg"
    enc = Counting(ColorHistogram(on_error="mask"))
    store = FeatureStore(tmp_path / "store")
    got = store.encode(enc, [good[0], corrupt, good[1], missing, good[2]])
    assert got.ok.tolist() == [True, False, True, False, True]
    assert "corrupt.jpg" in got.errors[1] and "gone.jpg" in got.errors[3]
    assert not got.vectors[[1, 3]].any()
    enc.seen.clear()
    again = store.encode(enc, [good[0], corrupt, good[1], missing, good[2]])
    assert enc.seen == [] and again.errors.keys() == got.errors.keys()
    # Content changed: the fixed photo is encoded again.
    _photo(corrupt, COLOURS[3])
    assert store.encode(enc, [corrupt]).ok.all() and enc.seen == [corrupt]


def test_encoder_error_keeps_finished_chunks(tmp_path: Path) -> None:
    photos = [_photo(tmp_path / f"{i}.jpg", c, i) for i, c in enumerate(COLOURS)]
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"garbage")
    store = FeatureStore(tmp_path / "store", chunk=2)
    enc = ColorHistogram(on_error="raise")
    with pytest.raises(ValueError, match="bad.jpg"):
        store.encode(enc, [*photos[:4], bad, photos[5]])
    assert store.size(enc) == 4  # the two chunks before the bad one were written


def test_fill_missing() -> None:
    values = np.array([[1.0, 2.0], [3.0, 4.0], [9.0, 9.0]], dtype=np.float32)
    mask = np.array([True, True, False])
    np.testing.assert_allclose(fill_missing(values, mask, "mean")[2], [2.0, 3.0])
    np.testing.assert_allclose(fill_missing(values, mask, "zero")[2], [0.0, 0.0])
    assert not fill_missing(values, np.zeros(3, bool), "mean").any()
    with pytest.raises(ValueError, match="fill must be"):
        fill_missing(values, mask, "median")
    with pytest.raises(ValueError, match="mask has shape"):
        fill_missing(values, mask[:2])


def _catalogue(root: Path) -> RawDataset:
    """Six items: one without text, one without a photo, one with a corrupt photo."""
    paths: list[list[str] | None] = []
    for i, colour in enumerate(COLOURS):
        rel = f"images/{i}.jpg"
        _photo(root / rel, colour, i)
        paths.append([rel])
    (root / "images/4.jpg").write_bytes(b"broken")
    paths[5] = None
    items = pd.DataFrame(
        {
            "item_id": [f"i{i}" for i in range(6)],
            "title": ["red dress", "green dress", "blue shirt", "yellow shirt", "white dress", None],
            "description": ["cotton", "linen", None, "cotton shirt", "cotton dress", None],
            "image_paths": paths,
        }
    )
    return RawDataset("shop", items=items, meta={"root": str(root)})


def _cfg(tmp_path: Path, **extra: object) -> Config:
    return Config.load(
        None,
        {
            "paths.cache_dir": str(tmp_path / "cache"),
            "features.store.image_encoder": "color-histogram",
            "features.text_encoder.encoder": "tfidf-svd",
            "features.text_encoder.tfidf_min_df": 1,
            "features.text.fields": ["title", "description"],
            **extra,
        },
    )


def test_item_inputs_resolve_paths_and_mark_missing(tmp_path: Path) -> None:
    raw = _catalogue(tmp_path)
    texts = item_inputs(raw, "text", ("title", "description"))
    assert texts[0] == "red dress. cotton" and texts[5] is None
    images = item_inputs(raw, "image", ("title",))
    assert images[0] == str(tmp_path / "images/0.jpg") and images[5] is None
    assert item_inputs(raw, "audio", ()) == [None] * 6
    with pytest.raises(ValueError, match="unknown modality"):
        item_inputs(raw, "smell", ())


def test_featurize_masks_fills_saves_and_reuses(tmp_path: Path) -> None:
    raw = _catalogue(tmp_path)
    cfg = _cfg(tmp_path)
    feats, reports = featurize(cfg, raw)
    assert set(feats) == {"text", "image"}  # no audio in this catalogue: skipped
    image = feats["image"]
    assert image.mask.tolist() == [True, True, True, True, False, False]
    assert "i4" in image.errors and "i5" not in image.errors  # broken photo vs no photo
    np.testing.assert_allclose(image.values[4], image.values[:4].mean(axis=0), atol=1e-6)
    text = feats["text"]
    assert text.mask.tolist() == [True] * 5 + [False]
    by = {r.modality: r for r in reports}
    assert (by["image"].present, by["image"].missing, by["image"].failed, by["image"].encoded) == (4, 1, 1, 5)

    loaded = load_features(cfg, "shop")
    np.testing.assert_array_equal(loaded["image"].values, image.values)
    assert loaded["image"].item_ids.tolist() == [f"i{i}" for i in range(6)]

    _, again = featurize(cfg, raw)
    assert all(r.encoded == 0 for r in again)

    values, mask = loaded["image"].aligned(["i2", "unknown", "i4"])
    assert mask.tolist() == [True, False, False]
    np.testing.assert_allclose(values[0], image.values[2])
    np.testing.assert_allclose(values[1], values[2], atol=1e-6)  # both filled with the same mean


def test_featurize_audio_masks_a_bad_clip(tmp_path: Path) -> None:
    import soundfile as sf

    rate = 16000
    t = np.arange(rate // 2) / rate
    for i, freq in enumerate((220.0, 440.0)):
        sf.write(tmp_path / f"clip{i}.wav", 0.5 * np.sin(2 * np.pi * freq * t), rate)
    (tmp_path / "bad.wav").write_bytes(b"RIFF not audio")
    items = pd.DataFrame({"item_id": ["a", "b", "c", "d"], "audio_path": ["clip0.wav", "bad.wav", None, "clip1.wav"]})
    raw = RawDataset("sounds", items=items, meta={"root": str(tmp_path)})
    feats, reports = featurize(_cfg(tmp_path), raw, ("audio",))
    audio = feats["audio"]
    assert audio.encoder == "mel-stats" and audio.mask.tolist() == [True, False, False, True]
    assert list(audio.errors) == ["b"] and "bad.wav" in audio.errors["b"]
    assert (reports[0].failed, reports[0].missing) == (1, 1)


def test_int8_featurize_keeps_its_calibration_when_items_are_added(tmp_path: Path) -> None:
    raw = _catalogue(tmp_path)
    cfg = _cfg(tmp_path, **{"features.store.image_encoder": "efficientnet-lite0", "features.image.precision": "int8"})
    first = raw.items.iloc[:4].reset_index(drop=True)
    small = RawDataset("shop", items=first, meta=raw.meta)
    feats, reports = featurize(cfg, small, ("image",))
    assert feats["image"].mask.all() and reports[0].encoded == 4
    record = tmp_path / "cache" / "features" / "shop" / "image-calibration.json"
    chosen = record.read_text()
    feats, reports = featurize(cfg, raw, ("image",))  # two more items, one with a broken photo
    assert reports[0].encoded == 1 and reports[0].failed == 1 and reports[0].cached == 4
    assert record.read_text() == chosen


def test_featurize_zero_fill_and_bad_settings(tmp_path: Path) -> None:
    raw = _catalogue(tmp_path)
    feats, _ = featurize(_cfg(tmp_path, **{"features.store.fill": "zero"}), raw, ("image",))
    assert set(feats) == {"image"} and not feats["image"].values[4:].any()
    with pytest.raises(ConfigError, match="fill must be"):
        featurize(_cfg(tmp_path, **{"features.store.fill": "median"}), raw)
    with pytest.raises(ConfigError, match="unknown"):
        featurize(_cfg(tmp_path, **{"features.store.modalities": ["text", "smell"]}), raw)


def test_modality_features_round_trip(tmp_path: Path) -> None:
    feats = ModalityFeatures(
        "image",
        "x",
        "fp",
        np.array(["a", "b"], dtype=object),
        np.ones((2, 3), np.float32),
        np.array([True, False]),
        "mean",
        {"b": "broken"},
    )
    back = ModalityFeatures.load(feats.save(tmp_path / "f.npz"))
    assert back.errors == {"b": "broken"} and back.item_ids.tolist() == ["a", "b"] and back.dim == 3


def test_pooled_encoder_matches_in_process_and_reports_errors(tmp_path: Path) -> None:
    photos = [str(_photo(tmp_path / f"{i}.jpg", COLOURS[i % 6], i)) for i in range(12)]
    (tmp_path / "bad.jpg").write_bytes(b"bad")
    inputs = [*photos[:5], str(tmp_path / "bad.jpg"), *photos[5:]]
    factory = functools.partial(make_encoder, "color-histogram", {"on_error": "mask"})
    pooled = PooledEncoder(factory, workers=2, min_inputs=4)
    try:
        assert pooled.fingerprint() == ColorHistogram().fingerprint()
        pooled.start(inputs[0])  # workers up before the first real call
        out = pooled.encode(inputs, batch_size=4)
        expected = ColorHistogram(on_error="mask").encode(inputs)
        np.testing.assert_allclose(out, expected, atol=1e-6)
        assert list(pooled.last_errors) == [5] and "bad.jpg" in pooled.last_errors[5]
        assert pooled.histogram  # encoder-specific API reaches the in-process copy
    finally:
        pooled.close()


def test_cli_featurize_twice_then_with_more_items(tmp_path: Path) -> None:
    folder = tmp_path / "data" / "hm"
    ids = [f"01{i:08d}" for i in range(8)]
    for i, article in enumerate(ids):
        _photo(folder / "images" / article[:3] / f"{article}.jpg", COLOURS[i % 6], i)
    pd.DataFrame(
        {
            "article_id": ids,
            "prod_name": [f"dress {i}" for i in range(8)],
            "detail_desc": [f"soft cotton dress number {i}" for i in range(8)],
            "product_group_name": "Garment Full body",
        }
    ).to_csv(folder / "articles.csv", index=False)
    pd.DataFrame({"customer_id": ["c1"], "age": [30]}).to_csv(folder / "customers.csv", index=False)
    pd.DataFrame({"article_id": [ids[0]], "co_article_id": [ids[1]], "score": [1.0]}).to_csv(
        folder / "copurchase.csv", index=False
    )
    base = [
        "--data-dir", str(tmp_path / "data"), "--cache-dir", str(tmp_path / "cache"),
        "--set", "features.store.image_encoder=color-histogram", "--set", "features.text_encoder.encoder=tfidf-svd",
        "--set", "features.text_encoder.tfidf_min_df=1",
    ]  # fmt: skip
    runner = CliRunner()
    first = runner.invoke(app, [*base, "featurize", "--dataset", "hm", "--limit", "6"])
    assert first.exit_code == 0, first.output
    assert "| image | color-histogram | 6 | 6 | 0 | 0 | 6 | 0 |" in first.output
    more = runner.invoke(app, [*base, "featurize", "--dataset", "hm", "--modalities", "image"])
    assert more.exit_code == 0, more.output
    assert "| image | color-histogram | 8 | 8 | 0 | 0 | 2 | 6 |" in more.output
    bad = runner.invoke(app, [*base, "featurize", "--dataset", "hm", "--modalities", "smell"])
    assert bad.exit_code == 2 and "smell" in bad.output
