"""ContrastiveAligner and the cross-modal recall on synthetic paired features (image = rotated text + noise)."""

from math import comb
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from vitrina.bench.align import random_baseline
from vitrina.cli import app
from vitrina.features.encoder import l2_normalize
from vitrina.fusion import ContrastiveAligner, cross_modal_recall, duplicate_groups, recall_at_k

FAST = {"dim": 16, "hidden": 64, "batch_size": 128, "max_epochs": 40, "patience": 5}


def paired(n: int = 600, d: int = 24, noise: float = 0.4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Text features and image features that are a random rotation of them plus noise and junk dims."""
    rng = np.random.default_rng(seed)
    text = rng.normal(size=(n, d)).astype(np.float32)
    rotation, _ = np.linalg.qr(rng.normal(size=(d, d)))
    image = np.concatenate([text @ rotation + noise * rng.normal(size=(n, d)), rng.normal(size=(n, 8))], axis=1)
    return text, image.astype(np.float32)


def folds(n: int = 600) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    order = np.random.default_rng(1).permutation(n)
    return order[: int(0.7 * n)], order[int(0.7 * n) : int(0.8 * n)], order[int(0.8 * n) :]


@pytest.mark.parametrize(
    "settings",
    [
        {"head": "linear"},
        {"head": "mlp", "hard_negatives": 5.0, "noise": 0.1},
        {"head": "mlp", "temperature": 0.05, "class_weight": 0.5},
    ],
)
def test_alignment_finds_the_pair_far_above_random(settings: dict) -> None:
    text, image = paired()
    train, valid, test = folds()
    aligner = ContrastiveAligner(**FAST, **settings)
    labels = (text[:, 0] > 0).astype(np.int64)
    report = aligner.fit(text, image, train, valid, labels=labels, text_views=[text + 0.05], image_views=[image - 0.05])
    got = cross_modal_recall(aligner.embed_text(text[test]), aligner.embed_image(image[test]))
    assert got["text_to_image"]["recall@10"] > 0.8 and got["image_to_text"]["recall@10"] > 0.8  # random: 10/120
    assert report.best_epoch >= 1 and report.valid["text_to_image"]["recall@10"] > 0.8
    if "temperature" in settings:
        assert aligner.temperature == pytest.approx(0.05)
    emb = aligner.embed_text(text[:5])
    assert emb.shape == (5, 16) and np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)


def test_save_load_gives_identical_embeddings_and_fit_is_seeded(tmp_path: Path) -> None:
    text, image = paired(n=300)
    train, valid, _ = folds(300)
    labels = np.arange(300) % 3
    aligner = ContrastiveAligner(**FAST | {"max_epochs": 5}, class_weight=0.5, seed=3)
    aligner.fit(text, image, train, valid, labels=labels)
    loaded = ContrastiveAligner.load(aligner.save(tmp_path / "aligner"))
    assert np.array_equal(loaded.embed_text(text), aligner.embed_text(text))
    assert np.array_equal(loaded.embed_image(image), aligner.embed_image(image))
    assert loaded.report.best_epoch == aligner.report.best_epoch and loaded.params == aligner.params
    again = ContrastiveAligner(**FAST | {"max_epochs": 5}, class_weight=0.5, seed=3)
    again.fit(text, image, train, valid, labels=labels)
    assert np.array_equal(again.embed_image(image), aligner.embed_image(image))


def test_bad_inputs_get_clear_errors(tmp_path: Path) -> None:
    text, image = paired(n=100)
    train, valid = np.arange(70), np.arange(70, 90)
    aligner = ContrastiveAligner(**FAST)
    with pytest.raises(RuntimeError, match="fit"):
        aligner.embed_text(text)
    with pytest.raises(ValueError, match="100 rows but image features have 99"):
        aligner.fit(text, image[:99], train, valid)
    bad = text.copy()
    bad[7, 3] = np.nan
    with pytest.raises(ValueError, match="NaN or inf .*row 7"):
        aligner.fit(bad, image, train, valid)
    with pytest.raises(ValueError, match="share rows"):
        aligner.fit(text, image, train, np.arange(60, 80))
    with pytest.raises(ValueError, match="outside 0..99"):
        aligner.fit(text, image, train, np.array([95, 100]))
    with pytest.raises(ValueError, match="2-D"):
        aligner.fit(text[0], image, train, valid)
    with pytest.raises(ValueError, match="head"):
        ContrastiveAligner(head="transformer")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not hold a saved"):
        (tmp_path / "aligner.json").write_text('{"model": "bpr"}')
        ContrastiveAligner.load(tmp_path)
    aligner.fit(text, image, train, valid)
    with pytest.raises(ValueError, match="24 columns but the aligner was fitted on 32"):
        aligner.embed_image(text)


def test_recall_breaks_ties_at_random_in_expectation() -> None:
    # Constant scores: 2 relevant of 10 candidates, hit@3 = 1 - C(8,3)/C(10,3).
    zeros = np.zeros((4, 2), np.float32)
    got = recall_at_k(zeros, np.zeros((10, 2), np.float32), np.zeros(4), np.r_[0, 0, np.arange(1, 9)], ks=(3,))
    assert got["recall@3"] == pytest.approx(1 - comb(8, 3) / comb(10, 3))
    # Perfect scores but two candidates identical: strict recall@1 is a coin flip.
    cands = np.eye(3, dtype=np.float32)[[0, 0, 1]]
    assert recall_at_k(cands[:1], cands, np.array([0]), np.array([0, 1, 2]), ks=(1,))["recall@1"] == 0.5
    with pytest.raises(ValueError, match="relevant candidate"):
        recall_at_k(zeros, zeros, np.arange(4), np.arange(4) + 10)


def test_identical_texts_count_as_matches() -> None:
    # Items 2k and 2k+1 share one text (colour variants); each photo is distinct.
    rng = np.random.default_rng(0)
    text = l2_normalize(np.repeat(rng.normal(size=(50, 8)), 2, axis=0))
    image = l2_normalize(text + 0.01 * rng.normal(size=text.shape))
    groups = duplicate_groups(text)
    assert len(np.unique(groups)) == 50 and (groups[0::2] == groups[1::2]).all()
    grouped, strict = cross_modal_recall(text, image, groups), cross_modal_recall(text, image)
    assert grouped["text_to_image"]["recall@1"] == 1.0 and grouped["image_to_text"]["recall@1"] == 1.0
    assert strict["image_to_text"]["recall@1"] == pytest.approx(0.5)  # the twin text ties
    # The random baseline of the benchmark: with pairs of identical texts, 1 - C(98,10)/C(100,10).
    rand = random_baseline(text, np.arange(100))
    assert random_baseline(text, np.arange(50, 100))["strict"]["text_to_image"]["recall@10"] == pytest.approx(10 / 50)
    assert rand["text_to_image"]["recall@10"] == pytest.approx(1 - comb(98, 10) / comb(100, 10))
    assert rand["image_to_text"]["recall@10"] == pytest.approx(10 / 50)
    assert rand["strict"]["text_to_image"]["recall@10"] == pytest.approx(10 / 100)


def test_cli_bench_align_has_help() -> None:
    result = CliRunner().invoke(app, ["bench", "align", "--help"])
    assert result.exit_code == 0 and "Recall@1/5/10" in result.output
