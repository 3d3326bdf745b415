"""`vitrina search build / query / check` and the bench's metric, through the command line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from shop_catalog import make_catalog
from vitrina.bench.search import graded_ndcg, scaled_catalog
from vitrina.bench.search_hm import ranking, word_error_rate
from vitrina.cli import app

runner = CliRunner()


def test_build_query_check(tmp_path: Path, shop_db_url) -> None:
    items = make_catalog()
    items["attributes"] = items["attributes"].map(json.dumps)
    items.drop(columns=["image_paths", "audio_path"]).to_csv(tmp_path / "items.csv", index=False)
    env = {"VITRINA_STORAGE__URL": shop_db_url(tmp_path / "shop.db"), "VITRINA_PATHS__OUTPUT_DIR": str(tmp_path)}
    assert runner.invoke(app, ["import", "--items", str(tmp_path / "items.csv")], env=env).exit_code == 0
    built = runner.invoke(app, ["search", "build", "--no-semantic"], env=env)
    assert built.exit_code == 0, built.output
    assert json.loads(built.output.splitlines()[-1])["modes"] == ["lexical"]
    found = runner.invoke(app, ["search", "query", "hamer", "--mode", "lexical", "--filter", "price_max=300"], env=env)
    assert found.exit_code == 0, found.output
    response = json.loads(found.output)
    assert "hammer" in response["hits"][0]["title"] and response["corrections"] == {"hamer": "hammer"}
    refused = runner.invoke(app, ["search", "query", "x", "--mode", "lexical", "--filter", "color=red"], env=env)
    assert refused.exit_code == 2 and "unknown filter 'color'" in refused.output
    assert runner.invoke(app, ["search", "check"], env=env).exit_code == 0


def test_graded_ndcg() -> None:
    grades = {"a": 3.0, "b": 2.0, "c": 1.0}
    assert graded_ndcg(["a", "b", "c"], grades) == pytest.approx(1.0)
    assert graded_ndcg(["x", "y"], grades) == 0.0
    ideal = 3 + 2 / np.log2(3) + 1 / 2
    assert graded_ndcg(["b", "x", "a"], grades) == pytest.approx((2 + 3 / 2) / ideal)


def test_scaled_catalog_repeats_real_items() -> None:
    items = make_catalog()
    vectors = np.eye(len(items), 64, dtype=np.float32)
    big, big_vectors = scaled_catalog(items, vectors, 200, seed=0)
    assert len(big) == 200 == len(big_vectors) and big["item_id"].is_unique
    copies = big.iloc[len(items) :]
    assert set(copies["category_path"]) <= set(items["category_path"])
    assert np.allclose(np.linalg.norm(big_vectors, axis=1), 1.0, atol=1e-5)


def test_word_error_rate_and_ranking() -> None:
    assert word_error_rate("Slim fit jeans", "slim-fit jeans") == (0, 3)
    assert word_error_rate("Slim fit jeans", "slim jeans") == (1, 3)
    assert word_error_rate("Slim fit jeans", "him fit the jeans") == (2, 3)
    assert word_error_rate("CA 5PACK boxer", "C.A. 5 pack boxer") == (0, 4)
    assert ranking(["a", "x", "b"], {"b", "c"}) == (0.5, 1 / 3)
    assert ranking(["x"], {"b"}) == (0.0, 0.0)
