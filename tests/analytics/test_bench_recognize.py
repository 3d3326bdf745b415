"""`vitrina bench recognize` on a tiny generated H&M folder: labels, the product split, errors, and
the command end to end with the real EfficientNet-Lite0 on drawn product photos."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from hm_folder import COLOURS as COLOURS_BY_NAME
from hm_folder import SHAPES, garment_photo, write_hm_folder
from vitrina.analytics.recognition import ProductRecognizer
from vitrina.bench import recognize
from vitrina.cli import app
from vitrina.data.datasets import load_dataset

runner = CliRunner()
COLOURS = list(COLOURS_BY_NAME.values())


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 products per product group, each in two colours; plus an 'Unknown' item, a group with a
    single product (rare) and an item whose photo is missing."""
    root = tmp_path_factory.mktemp("data")
    folder = root / "hm"
    rows = []
    code = 100000
    for group, shape in SHAPES.items():
        for product in range(12):
            code += 1
            for variant, colour in enumerate(COLOURS):
                rows.append((f"0{code}{variant:03d}", str(code), group, shape, colour, product))
    code += 1
    rows.append((f"0{code}000", str(code), "Unknown", "top", COLOURS[0], 0))
    code += 1
    rows.append((f"0{code}000", str(code), "Bags", "shoe", COLOURS[1], 1))
    code += 1
    rows.append((f"0{code}000", str(code), "Shoes", None, COLOURS[1], 2))
    photos = {a: garment_photo(shape, colour, seed) for a, _, _, shape, colour, seed in rows if shape is not None}
    articles = pd.DataFrame(
        {
            "article_id": [r[0] for r in rows],
            "product_code": [r[1] for r in rows],
            "prod_name": [f"{r[2]} {r[1]}" for r in rows],
            "product_type_name": [SHAPES.get(r[2], r[2]) for r in rows],
            "product_group_name": [r[2] for r in rows],
            "index_group_name": "Ladieswear",
            "colour_group_name": ["Red" if r[4] == COLOURS[0] else "Blue" for r in rows],
            "detail_desc": "A product.",
        }
    )
    write_hm_folder(folder, articles, photos)
    return root


@pytest.fixture()
def env(data_dir: Path, tmp_path: Path, shop_db_url) -> dict[str, str]:
    return {
        "VITRINA_PATHS__DATA_DIR": str(data_dir),
        "VITRINA_PATHS__CACHE_DIR": str(tmp_path / "cache"),
        "VITRINA_PATHS__OUTPUT_DIR": str(tmp_path / "out"),
        "VITRINA_STORAGE__URL": shop_db_url(tmp_path / "shop.db"),
    }


def test_target_labels_from_category_levels_and_attributes(data_dir: Path) -> None:
    raw = load_dataset("hm", data_dir)
    groups = recognize.target_labels(raw, "product_group_name")
    assert groups[0] == "Garment Upper body" and groups[-3] == "Unknown"
    assert recognize.target_labels(raw, "product_type_name")[0] == "top"
    assert set(recognize.target_labels(raw, "colour_group_name")) == {"Red", "Blue"}
    with pytest.raises(ValueError, match=r"no column 'colour'.*product_group_name.*colour_group_name"):
        recognize.target_labels(raw, "colour")


def test_prepare_drops_and_reports_then_splits_by_product(data_dir: Path) -> None:
    raw = load_dataset("hm", data_dir)
    task = recognize.prepare(raw, "product_group_name", "product_code", min_products=2, seed=0)
    assert task.counts == {
        "items": 75,
        "no_photo": 1,
        "missing_label": 1,
        "rare_class_items": 1,
        "rare_classes": ["Bags"],
    }
    assert len(task.labels) == 72 and set(task.labels) == set(SHAPES)
    for product in set(task.groups):
        assert len(set(task.folds[task.groups == product].tolist())) == 1
    assert np.bincount(task.folds).tolist() == [2 * 3 * 8, 2 * 3 * 2, 2 * 3 * 2]  # 12 products: 8/2/2
    alone = recognize.prepare(raw, "product_group_name", "item_id", min_products=2, seed=0)
    assert len(set(alone.groups)) == len(alone.groups) == 72  # colour variants may now share a fold
    with pytest.raises(ValueError, match="no column 'sku'"):
        recognize.prepare(raw, "product_group_name", "sku", 2, 0)


def test_help_and_bad_arguments(env: dict[str, str]) -> None:
    result = runner.invoke(app, ["bench", "recognize", "--help"], env=env)
    assert result.exit_code == 0 and "--target" in result.output and "--group-by" in result.output
    result = runner.invoke(app, ["bench", "recognize", "--target", "price_band"], env=env)
    assert result.exit_code == 2 and "no column 'price_band'" in result.output
    result = runner.invoke(app, ["bench", "recognize", "-p", "head.depth=3"], env=env)
    assert result.exit_code == 2 and "unknown head setting(s) ['depth']" in result.output
    result = runner.invoke(app, ["bench", "recognize", "-p", "tree.depth=3"], env=env)
    assert result.exit_code == 2 and "probe.key=... or head.key=..." in result.output


def test_bench_recognize_end_to_end(env: dict[str, str], tmp_path: Path) -> None:
    out = tmp_path / "results" / "recognize.json"
    args = ["bench", "recognize", "--min-products", "2", "--out", str(out), "--save", str(tmp_path / "rec.npz")]
    args += ["-p", "probe.epochs=20", "-p", "probe.lr=0.001", "-p", "head.hidden=32", "-p", "head.epochs=20"]
    result = runner.invoke(app, args, env=env)
    assert result.exit_code == 0, result.output
    assert "| linear probe" in result.output and "| mlp head" in result.output
    payload = json.loads(out.read_text())
    assert {"accuracy", "macro_f1", "top5_accuracy", "valid", "baseline", "model", "split"} <= set(payload)
    assert 0.0 <= payload["accuracy"] <= 1.0 and 0.0 <= payload["macro_f1"] <= 1.0
    assert (payload["n_train"], payload["n_valid"], payload["n_test"]) == (48, 12, 12)
    assert payload["n_classes"] == 3 and payload["split"]["rare_classes"] == ["Bags"]
    assert payload["split"]["group_by"] == "product_code" and payload["split"]["no_photo"] == 1
    assert len(payload["baseline"]["candidates"]) == 1 and len(payload["model"]["candidates"]) == 2
    assert np.asarray(payload["confusion"]["counts"]).sum() == 12
    assert out.with_suffix(".png").stat().st_size > 1000
    model = ProductRecognizer.load(tmp_path / "rec.npz")
    assert set(model.classes_) == set(SHAPES) and model.dim_ == 4 * 1280
    # A second run reads every view from the feature store and gives the same numbers.
    again = runner.invoke(app, [*args, "--out", str(tmp_path / "again.json")], env=env)
    assert again.exit_code == 0, again.output
    assert json.loads((tmp_path / "again.json").read_text())["accuracy"] == payload["accuracy"]
