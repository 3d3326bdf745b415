"""Photo, text -> photo and voice queries through the engine, on generated catalogue photos."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from vitrina.data.storage import Storage
from vitrina.features.image_encoders import ColorHistogram
from vitrina.features.speech import Transcript
from vitrina.features.text import item_text
from vitrina.features.text_tfidf import TfidfSvdEncoder
from vitrina.fusion.align import ContrastiveAligner
from vitrina.search.engine import Models, SearchEngine, SearchError, SearchSettings

RGB = {"black": (20, 20, 20), "red": (200, 30, 30), "green": (30, 160, 40), "blue": (30, 50, 200)}


def _png(path: Path, colour: tuple[int, int, int], seed: int) -> None:
    rng = np.random.default_rng(seed)
    pixels = np.clip(np.array(colour) + rng.normal(0, 12, (32, 32, 3)), 0, 255).astype(np.uint8)
    Image.fromarray(pixels).save(path)


@dataclass
class HeardText:
    """A recogniser for the engine's protocol that hears a fixed text (Whisper itself is tested in
    tests/features/test_audio.py and measured by `bench search`)."""

    text: str

    def transcribe(self, audio: bytes | str) -> Transcript:
        if isinstance(audio, bytes) and not audio.startswith(b"RIFF"):
            raise ValueError("not a WAV file")
        return Transcript(self.text, "en", (), 1.0)


@pytest.fixture
def photo_shop(storage: Storage, catalog: pd.DataFrame, tmp_path: Path) -> Storage:
    folder = tmp_path / "photos"
    folder.mkdir()
    catalog = catalog.copy()
    paths = []
    for n, (item, attrs) in enumerate(zip(catalog["item_id"], catalog["attributes"], strict=True)):
        if n % 7 == 6:  # some items have no photo
            paths.append(None)
            continue
        _png(folder / f"{item}.png", RGB[attrs["colour"]], n)
        paths.append([f"{item}.png"])
    catalog["image_paths"] = paths
    storage.write("items", catalog)
    return storage


@pytest.fixture
def models(catalog: pd.DataFrame, photo_shop: Storage, tmp_path: Path) -> Models:
    text = TfidfSvdEncoder(dim=24).fit(item_text(catalog))
    images = ColorHistogram()
    has = [p is not None for p in photo_shop.read("items")["image_paths"]]
    items = photo_shop.read("items")[has]
    image_x = images.encode([str(tmp_path / "photos" / p[0]) for p in items["image_paths"]])
    text_x = text.encode(item_text(items))
    aligner = ContrastiveAligner(
        dim=16, head="linear", lr=1e-2, batch_size=16, input_dropout=0.0, dropout=0.0, max_epochs=300, seed=0
    )
    idx = np.arange(len(items))
    aligner.fit(text_x, image_x, idx[idx % 5 > 0], idx[idx % 5 == 0])
    return Models(text, images, aligner, HeardText("claw hammer"))


@pytest.fixture
def engine(photo_shop: Storage, models: Models, tmp_path: Path) -> SearchEngine:
    return SearchEngine.build(photo_shop, models, SearchSettings(candidates=30), image_root=tmp_path / "photos")


def _colours(engine: SearchEngine, hits: list) -> list[str]:
    colour = {i: a["colour"] for i, a in zip(engine.catalog["item_id"], engine.catalog["attributes"], strict=True)}
    return [colour[h.item_id] for h in hits]


def test_photo_finds_items_of_that_colour(engine: SearchEngine, tmp_path: Path) -> None:
    _png(tmp_path / "query.png", RGB["red"], 999)
    response = engine.search(mode="image", photo=(tmp_path / "query.png").read_bytes(), page_size=5)
    assert _colours(engine, response.hits) == ["red"] * 5
    assert engine.check(engine_storage(engine))["image"] == {"extra": []}


def engine_storage(engine: SearchEngine) -> Storage:
    return Storage(engine.lexical.engine.url)


def test_text_finds_photos_through_the_aligned_space(engine: SearchEngine) -> None:
    hits = engine.search("green", "text-image", page_size=6).hits
    assert _colours(engine, hits).count("green") >= 5


def test_hybrid_fuses_text_and_photo(engine: SearchEngine, tmp_path: Path) -> None:
    _png(tmp_path / "query.png", RGB["black"], 998)
    response = engine.search("hammer", "hybrid", photo=str(tmp_path / "query.png"), page_size=3)
    black = [h for h in response.hits if "hammer" in h.title and _colours(engine, [h]) == ["black"]]
    assert black and {"lexical", "image"} <= set(black[0].ranks)
    text_only = engine.search("hammer", "hybrid", page_size=3)
    assert all("image" not in h.ranks for h in text_only.hits)


def test_voice_query_returns_its_transcript(engine: SearchEngine) -> None:
    wav = b"RIFF" + bytes(100)
    response = engine.search(mode="voice", audio=wav, page_size=3)
    assert response.transcript == "claw hammer"
    assert all("claw hammer" in h.title for h in response.hits)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mode": "image"}, "needs a photo"),
        ({"mode": "image", "photo": b"not an image at all"}, "photo cannot be used"),
        ({"mode": "image", "photo": b""}, "photo is empty"),
        ({"mode": "image", "photo": b"x" * 10_000_001}, "the limit is 10,000,000"),
        ({"mode": "voice"}, "needs an audio clip"),
        ({"mode": "voice", "audio": b"MP3?"}, "cannot be decoded"),
        ({"query": "drill", "mode": "lexical", "audio": b"RIFF"}, "needs mode 'voice'"),
        ({"query": "drill", "mode": "semantic", "photo": b"x"}, "needs mode 'image' or 'hybrid'"),
    ],
)
def test_bad_uploads_are_refused_clearly(engine: SearchEngine, kwargs: dict, message: str) -> None:
    with pytest.raises(SearchError, match=message):
        engine.search(**kwargs)


def test_photo_indexes_follow_item_changes_and_reload(
    photo_shop: Storage, engine: SearchEngine, models: Models, tmp_path: Path
) -> None:
    item = photo_shop.read("items").head(1).copy()
    item["image_paths"] = [None]  # its photo was removed
    photo_shop.write("items", item)
    engine.upsert_items(item)
    assert item["item_id"].iloc[0] not in engine.vectors["image"].index.rows
    engine.save(tmp_path / "index")
    loaded = SearchEngine.load(
        tmp_path / "index", photo_shop, Models(models.text_encoder, models.image_encoder), engine.settings
    )
    assert loaded.modes() == ("lexical", "semantic", "text-image", "image", "hybrid")
    assert loaded.search("green", "text-image").to_dict() == engine.search("green", "text-image").to_dict()
