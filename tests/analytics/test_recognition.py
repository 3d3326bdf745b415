"""Product recognition: the classifier head, the product-disjoint split and the metrics, on
generated clustered features."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import f1_score

from vitrina.analytics.metrics import classification_report, confusion_matrix, top_k_accuracy
from vitrina.analytics.recognition import ProductRecognizer, product_split, rare_classes
from vitrina.data.splits import TEST, TRAIN, VALID, SplitError


def clustered(n: int = 300, n_classes: int = 4, dim: int = 16, noise: float = 0.3, seed: int = 0):
    """Features around one centre per class."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 1, (n_classes, dim))
    y = rng.integers(0, n_classes, n)
    x = centres[y] + rng.normal(0, noise, (n, dim))
    return x.astype(np.float32), np.array([f"class-{c}" for c in y], dtype=object)


FAST = {"hidden": 32, "dropout": 0.1, "epochs": 30, "lr": 1e-2, "batch_size": 64}


@pytest.mark.parametrize("hidden", [0, 32])
def test_recognizer_learns_clusters_and_ranks_top_k(hidden: int) -> None:
    x, y = clustered()
    model = ProductRecognizer(**(FAST | {"hidden": hidden})).fit(x[:200], y[:200])
    assert list(model.classes_) == ["class-0", "class-1", "class-2", "class-3"]
    assert (model.predict(x[200:]) == y[200:]).mean() > 0.95
    proba = model.predict_proba(x[200:])
    assert proba.shape == (100, 4) and np.allclose(proba.sum(1), 1.0, atol=1e-5)
    top = model.top_k(x[200:203], k=3)
    assert len(top) == 3 and all(len(row) == 3 for row in top)
    for row, p in zip(top, proba[:3], strict=True):
        probs = [prob for _, prob in row]
        assert probs == sorted(probs, reverse=True)
        assert row[0][0] == model.classes_[p.argmax()] and row[0][1] == pytest.approx(p.max())
    assert len(model.top_k(x[:1], k=10)[0]) == 4  # k beyond the classes returns them all


def test_early_stopping_keeps_the_best_validation_epoch() -> None:
    x, y = clustered()
    model = ProductRecognizer(**FAST, patience=3).fit(x[:200], y[:200], x[200:250], y[200:250])
    assert model.dim_ == 16 and 1 <= model.best_epoch_ <= len(model.history_) <= 30
    assert model.history_[model.best_epoch_ - 1] == max(model.history_)
    assert len(model.history_) < 30 or model.best_epoch_ > 27  # stopped 3 epochs after the best
    assert (model.predict(x[250:]) == y[250:]).mean() > 0.95


def test_training_is_seeded_and_leaves_global_rng_alone() -> None:
    import torch

    x, y = clustered()
    torch.manual_seed(123)
    expected = torch.rand(1)
    torch.manual_seed(123)
    a = ProductRecognizer(**FAST, seed=5).fit(x, y).predict_proba(x)
    assert torch.rand(1) == expected
    b = ProductRecognizer(**FAST, seed=5).fit(x, y).predict_proba(x)
    assert np.array_equal(a, b)


def test_class_weights_favour_a_rare_class() -> None:
    rng = np.random.default_rng(1)
    x = np.r_[rng.normal(0, 1, (300, 2)), rng.normal(1.0, 1, (15, 2))].astype(np.float32)
    y = np.array(["common"] * 300 + ["rare"] * 15, dtype=object)
    params = FAST | {"hidden": 0, "label_smoothing": 0.0}
    plain = (ProductRecognizer(**params).fit(x, y).predict(x) == "rare").sum()
    balanced = (ProductRecognizer(**params, class_weight=1.0).fit(x, y).predict(x) == "rare").sum()
    assert balanced > plain


def test_save_load_round_trip(tmp_path: Path) -> None:
    x, y = clustered()
    model = ProductRecognizer(**FAST).fit(x[:200], y[:200], x[200:], y[200:])
    path = model.save(tmp_path / "sub" / "recognizer.npz")
    with np.load(path, allow_pickle=False) as z:  # plain arrays and JSON, nothing pickled
        assert "meta" in z.files and "mean" in z.files
    again = ProductRecognizer.load(path)
    assert list(again.classes_) == list(model.classes_)
    assert again.params() == model.params() and again.best_epoch_ == model.best_epoch_
    assert np.allclose(again.predict_proba(x), model.predict_proba(x), atol=1e-6)
    assert again.top_k(x[:2], 2) == model.top_k(x[:2], 2)
    assert not list(tmp_path.glob("sub/.*tmp"))


def test_bad_inputs_are_named() -> None:
    x, y = clustered(n=40)
    with pytest.raises(ValueError, match="40 rows but labels has 39"):
        ProductRecognizer(**FAST).fit(x, y[:-1])
    with pytest.raises(ValueError, match="at least two classes"):
        ProductRecognizer(**FAST).fit(x, ["one"] * 40)
    bad = x.copy()
    bad[3, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        ProductRecognizer(**FAST).fit(bad, y)
    with pytest.raises(ValueError, match=r"must be an \[n, d\] feature array"):
        ProductRecognizer(**FAST).fit(x[:, 0], y)
    with pytest.raises(ValueError, match="both X_valid and y_valid"):
        ProductRecognizer(**FAST).fit(x, y, X_valid=x)
    with pytest.raises(ValueError, match="X_valid must be"):
        ProductRecognizer(**FAST).fit(x, y, x[:, :8], y)
    with pytest.raises(RuntimeError, match="not fitted"):
        ProductRecognizer().predict(x)
    with pytest.raises(ValueError, match="dropout"):
        ProductRecognizer(dropout=1.0)
    model = ProductRecognizer(**FAST).fit(x, y)
    with pytest.raises(ValueError, match="8 features per row, the recognizer was fitted on 16"):
        model.predict(x[:, :8])
    with pytest.raises(ValueError, match="k must be"):
        model.top_k(x, 0)


# --- split ----------------------------------------------------------------------------------------


def test_product_split_keeps_every_product_in_one_fold_and_stratifies() -> None:
    rng = np.random.default_rng(0)
    # 200 products in 3 classes of different sizes, 1-4 colour variants each.
    product_class = rng.choice(["dress", "top", "shoe"], 200, p=[0.6, 0.3, 0.1])
    groups = np.repeat(np.arange(200), rng.integers(1, 5, 200))
    labels = product_class[groups]
    folds = product_split(labels, groups, (0.7, 0.15, 0.15), seed=3)
    assert folds.shape == labels.shape and set(folds.tolist()) == {TRAIN, VALID, TEST}
    for g in np.unique(groups):
        assert len(set(folds[groups == g].tolist())) == 1
    for c in ("dress", "top", "shoe"):
        products = {f: len(set(groups[(labels == c) & (folds == f)].tolist())) for f in (TRAIN, VALID, TEST)}
        total = sum(products.values())
        assert abs(products[TEST] - 0.15 * total) <= 1 and abs(products[VALID] - 0.15 * total) <= 1
    assert np.array_equal(folds, product_split(labels, groups, (0.7, 0.15, 0.15), seed=3))
    assert not np.array_equal(folds, product_split(labels, groups, (0.7, 0.15, 0.15), seed=4))


def test_product_split_uses_the_majority_label_of_mixed_products() -> None:
    labels = ["a", "a", "b"] + ["a"] * 10 + ["b"] * 10
    groups = ["p", "p", "p"] + [f"q{i}" for i in range(10)] + [f"r{i}" for i in range(10)]
    folds = product_split(labels, groups, (0.5, 0.25, 0.25), seed=0)
    assert len(set(folds[:3].tolist())) == 1


def test_product_split_rejects_bad_arguments() -> None:
    with pytest.raises(SplitError, match="3 labels but 2 groups"):
        product_split(["a", "b", "c"], ["p", "q"])
    with pytest.raises(SplitError, match="summing to 1"):
        product_split(["a"], ["p"], (0.7, 0.2, 0.2))


def test_rare_classes_count_products_not_items() -> None:
    labels = ["a"] * 5 + ["b", "b", "c"]
    groups = ["p1", "p1", "p1", "p2", "p3", "q1", "q2", "r1"]
    assert rare_classes(labels, groups, 3) == {"b", "c"}
    assert rare_classes(labels, groups, 2) == {"c"}


# --- metrics --------------------------------------------------------------------------------------


def test_metrics_by_hand() -> None:
    classes = ["cat", "dog", "fox"]
    y_true = ["cat", "cat", "cat", "dog", "dog", "fox"]
    y_pred = ["cat", "cat", "dog", "dog", "cat", "dog"]
    counts = confusion_matrix(y_true, y_pred, classes)
    assert counts.tolist() == [[2, 1, 0], [1, 1, 0], [0, 1, 0]]
    report = classification_report(y_true, y_pred, classes)
    assert report["accuracy"] == pytest.approx(3 / 6)
    # cat: P 2/3 R 2/3 F1 2/3; dog: P 1/3 R 1/2 F1 0.4; fox: never predicted, F1 0.
    assert report["per_class"]["cat"]["f1"] == pytest.approx(2 / 3)
    assert report["per_class"]["dog"] == pytest.approx({"precision": 1 / 3, "recall": 0.5, "f1": 0.4, "support": 2})
    assert report["macro_f1"] == pytest.approx((2 / 3 + 0.4 + 0.0) / 3)
    assert report["macro_f1"] == pytest.approx(f1_score(y_true, y_pred, average="macro"))
    # A class neither present nor predicted does not drag the macro average down.
    assert classification_report(y_true, y_pred, [*classes, "owl"])["macro_f1"] == report["macro_f1"]


def test_top_k_accuracy_by_hand() -> None:
    proba = np.array([[0.5, 0.3, 0.2], [0.1, 0.2, 0.7], [0.2, 0.5, 0.3]])
    # Top-2 per row: {a, b}, {c, b}, {b, c}.
    assert top_k_accuracy(["a", "b", "c"], proba, ["a", "b", "c"], 1) == pytest.approx(1 / 3)
    assert top_k_accuracy(["a", "b", "c"], proba, ["a", "b", "c"], 2) == pytest.approx(1.0)
    assert top_k_accuracy(["a", "a", "a"], proba, ["a", "b", "c"], 2) == pytest.approx(1 / 3)
    assert top_k_accuracy(["a", "a", "zzz"], proba, ["a", "b", "c"], 3) == pytest.approx(2 / 3)


def test_metrics_reject_unknown_labels_and_length_mismatch() -> None:
    with pytest.raises(ValueError, match="'owl' missing from the class list"):
        confusion_matrix(["cat", "owl"], ["cat", "cat"], ["cat", "dog"])
    with pytest.raises(ValueError, match="2 labels but y_pred has 1"):
        classification_report(["cat", "dog"], ["cat"], ["cat", "dog"])
    with pytest.raises(ValueError, match="proba must be"):
        top_k_accuracy(["a"], np.zeros((1, 2)), ["a", "b", "c"], 1)
