"""`vitrina bench recognize`: product category from photos on held-out products.

Items are split by product (`--group-by`, H&M's `product_code`: every colour variant of a product
shares it), so test items are products the classifier never saw in any colour. Labels H&M writes
as "Unknown" count as missing; classes with fewer than `min_products` products are dropped (both
reported). Two classifiers are fitted on the same split, each with its grid selected on validation
accuracy, and tested once: the baseline linear probe on the pooled features `vitrina featurize`
stores (centre crop), and an MLP head on four views of the photo side by side: the centre crop, the
whole photo, its top and its bottom square (`vitrina.analytics.photo_views`).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vitrina.analytics.metrics import classification_report, confusion_matrix, top_k_accuracy
from vitrina.analytics.photo_views import VIEWS, view_features
from vitrina.analytics.recognition import ProductRecognizer, product_split, rare_classes
from vitrina.bench.rec import grid
from vitrina.config import Config
from vitrina.data.dataset import RawDataset
from vitrina.data.datasets import load_dataset
from vitrina.data.splits import FOLD_NAMES, TEST, TRAIN, VALID
from vitrina.features.featurize import feature_store, features_dir, item_inputs, modality_encoder
from vitrina.features.image_encoders import EfficientNetLite0
from vitrina.plotting import pyplot, save_figure

MISSING_LABELS = ("", "Unknown")  # H&M's word for a product type or group nobody filled in
# Hyper-parameter grids, selected on validation accuracy; `--param probe.key=...` / `head.key=...` replace one.
PROBE_GRID: dict[str, list[Any]] = {"hidden": [0], "dropout": [0.0], "label_smoothing": [0.0], "lr": [1e-3, 3e-4]}
HEAD_GRID: dict[str, list[Any]] = {
    "hidden": [512, 1024],
    "dropout": [0.6],
    "label_smoothing": [0.1],
    "lr": [3e-4, 1e-3],
}
TOP_K = 5


def target_labels(raw: RawDataset, target: str) -> np.ndarray:
    """Each item's value of `target`: a level of the category path (named by the dataset's
    `meta["text_columns"]["category_path"]`) or an attribute column."""
    levels = [c.strip() for c in str(raw.meta.get("text_columns", {}).get("category_path", "")).split(">")]
    if target in levels:
        depth = levels.index(target)
        paths = raw.items["category_path"].fillna("").astype(str)
        parts = [[p.strip() for p in path.split(">")] for path in paths]
        return np.array([p[depth] if len(p) == len(levels) else "" for p in parts], dtype=object)
    attrs = raw.items["attributes"] if "attributes" in raw.items.columns else None
    if attrs is not None and any(isinstance(a, dict) and target in a for a in attrs):
        return np.array([str(a.get(target) or "") if isinstance(a, dict) else "" for a in attrs], dtype=object)
    known = sorted({k for a in (attrs if attrs is not None else []) if isinstance(a, dict) for k in a})
    raise ValueError(
        f"{raw.name} has no column '{target}'; category levels: {', '.join(c for c in levels if c) or 'none'}; "
        f"attributes: {', '.join(known) or 'none'}"
    )


@dataclass
class Task:
    """The items that take part (with a photo, a label and a common enough class) and their folds."""

    item_ids: np.ndarray
    labels: np.ndarray
    groups: np.ndarray
    folds: np.ndarray
    photos: list[Any]
    counts: dict[str, Any]


def prepare(raw: RawDataset, target: str, group_by: str, min_products: int, seed: int) -> Task:
    """Drop items without a photo or a label and classes with fewer than `min_products` groups,
    then split by group (`group_by` column; "item_id": every item alone; an item with no value is
    its own group)."""
    item_ids = raw.items["item_id"].astype(str).to_numpy(dtype=object)
    labels = target_labels(raw, target)
    groups = item_ids if group_by == "item_id" else target_labels(raw, group_by)
    groups = np.where(groups == "", item_ids, groups)
    photos = item_inputs(raw, "image", ())
    has_photo = np.array([p is not None for p in photos])
    labelled = np.array([str(v).strip() not in MISSING_LABELS for v in labels])
    usable = has_photo & labelled
    rare = rare_classes(labels[usable], groups[usable], min_products)
    keep = usable & np.array([v not in rare for v in labels])
    rows = np.flatnonzero(keep)
    folds = product_split(labels[rows], groups[rows], seed=seed)
    counts = {
        "items": len(labels),
        "no_photo": int((~has_photo).sum()),
        "missing_label": int((has_photo & ~labelled).sum()),
        "rare_class_items": int((usable & ~keep).sum()),
        "rare_classes": sorted(rare),
    }
    return Task(
        item_ids[rows],
        labels[rows],
        groups[rows],
        folds,
        [photos[i] for i in rows],
        counts,
    )


def encode_views(
    cfg: Config, dataset: str, photos: list[Any], progress: bool
) -> tuple[np.ndarray, np.ndarray, dict[int, str], str]:
    """[n, 4, dim] features of the photo views in `VIEWS` order (cached in the feature store),
    which photos failed, and the encoder's fingerprint. The encoder is the one `vitrina featurize`
    builds for `dataset` (an int8 one with the same calibration photos), so centre views are shared."""
    record = features_dir(cfg, dataset) / "image-calibration.json"
    encoder = modality_encoder(cfg, "image", photos, calibration_record=record)
    if not isinstance(encoder, EfficientNetLite0):
        raise ValueError(f"photo views need the efficientnet-lite0 image encoder, not '{encoder.name}'")
    values, ok, errors = view_features(encoder, feature_store(cfg), photos, VIEWS, progress=progress)
    return values, ok, errors, encoder.fingerprint()


def probe_inputs(views: np.ndarray) -> np.ndarray:
    """The baseline's input: the centre crop only (what `vitrina featurize` stores)."""
    return views[:, VIEWS.index("centre")]


def head_inputs(views: np.ndarray) -> np.ndarray:
    """[n, 4 * dim]: every view side by side."""
    return views.reshape(len(views), -1)


def _evaluate(model: ProductRecognizer, X: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    proba = model.predict_proba(X)
    classes = [str(c) for c in model.classes_]
    seen = {c: i for i, c in enumerate(classes)}
    # A class that only occurs in held-out folds (a product whose items carry several labels) is
    # kept in the class list so its items count as errors.
    all_classes = classes + sorted({str(v) for v in y} - seen.keys())
    pred = model.classes_[proba.argmax(1)]
    report = classification_report(y, pred, all_classes)
    report[f"top{TOP_K}_accuracy"] = top_k_accuracy(y, proba, classes, TOP_K)
    report["predicted"] = [str(p) for p in pred]
    report["classes"] = all_classes
    return report


def _select(
    name: str,
    grid_values: dict[str, list[Any]],
    X: np.ndarray,
    y: np.ndarray,
    folds: np.ndarray,
    seed: int,
    log: Any,
) -> dict[str, Any]:
    """Fit every grid point on train (early stopping on valid), keep the best valid accuracy, test it once."""
    train, valid, test = (folds == TRAIN), (folds == VALID), (folds == TEST)
    candidates, best, best_model = [], None, None
    for params in grid(grid_values):
        start = time.perf_counter()
        model = ProductRecognizer(seed=seed, **params).fit(X[train], y[train], X[valid], y[valid])
        seconds = time.perf_counter() - start
        v = _evaluate(model, X[valid], y[valid])
        row = {
            "params": model.params(),
            "valid_accuracy": v["accuracy"],
            "valid_macro_f1": v["macro_f1"],
            "best_epoch": model.best_epoch_,
            "train_seconds": round(seconds, 1),
        }
        candidates.append(row)
        scores = f"valid accuracy {v['accuracy']:.4f} macro-F1 {v['macro_f1']:.4f}"
        log(f"[recognize] {name} {params}: {scores} (epoch {model.best_epoch_}, {seconds:.0f} s)")
        if best is None or v["accuracy"] > best[0]["accuracy"]:
            best, best_model = (v, row), model
    assert best is not None and best_model is not None
    valid_report, row = best
    test_report = _evaluate(best_model, X[test], y[test])
    return {
        "params": row["params"],
        "best_epoch": row["best_epoch"],
        "valid": _summary(valid_report),
        "test": _summary(test_report),
        "candidates": candidates,
        "model": best_model,
        "test_report": test_report,
    }


def _summary(report: dict[str, Any]) -> dict[str, float]:
    return {k: report[k] for k in ("accuracy", "macro_f1", f"top{TOP_K}_accuracy", "n")}


def run(
    cfg: Config,
    dataset: str = "hm",
    target: str = "product_group_name",
    group_by: str = "product_code",
    min_products: int = 10,
    seed: int = 0,
    probe_grid: dict[str, list[Any]] | None = None,
    head_grid: dict[str, list[Any]] | None = None,
    progress: bool = True,
    log: Any = print,
) -> tuple[dict[str, Any], ProductRecognizer]:
    """The whole benchmark: the JSON payload and the selected recognizer (fitted on train)."""
    probe_grid, head_grid = probe_grid or PROBE_GRID, head_grid or HEAD_GRID
    known = set(ProductRecognizer().params()) - {"seed"}
    for name, values in (("probe", probe_grid), ("head", head_grid)):
        if set(values) - known:
            raise ValueError(
                f"unknown {name} setting(s) {sorted(set(values) - known)}; known: {', '.join(sorted(known))}"
            )
    raw = load_dataset(dataset, cfg.data_dir)
    task = prepare(raw, target, group_by, min_products, seed)
    views, ok, errors, fingerprint = encode_views(cfg, dataset, task.photos, progress)
    failed = int((~ok).sum())
    y, folds = task.labels[ok], task.folds[ok]
    views = views[ok]
    probe = _select("linear probe", probe_grid, probe_inputs(views), y, folds, seed, log)
    head = _select("mlp head", head_grid, head_inputs(views), y, folds, seed, log)
    n_products = {name: len(set(task.groups[ok][folds == code])) for code, name in enumerate(FOLD_NAMES)}
    payload = {
        "dataset": dataset,
        "target": target,
        "accuracy": head["test"]["accuracy"],
        "macro_f1": head["test"]["macro_f1"],
        f"top{TOP_K}_accuracy": head["test"][f"top{TOP_K}_accuracy"],
        "valid": head["valid"],
        "n_classes": len(head["model"].classes_),
        **{f"n_{name}": int((folds == code).sum()) for code, name in enumerate(FOLD_NAMES)},
        **{f"n_{name}_products": n for name, n in n_products.items()},
        "split": {
            "rule": (
                f"items grouped by '{group_by}'; groups stratified by their majority label and cut 70/15/15 "
                f"(seed {seed}); labels {list(MISSING_LABELS)} count as missing; classes with fewer than "
                f"{min_products} products dropped; items without a decodable photo excluded"
            ),
            "group_by": group_by,
            "ratios": [0.7, 0.15, 0.15],
            "seed": seed,
            "min_products": min_products,
            **task.counts,
            "photo_failed": failed,
            "photo_errors": {str(task.item_ids[i]): why for i, why in sorted(errors.items())[:20]},
        },
        "encoder": {"name": "efficientnet-lite0", "fingerprint": fingerprint},
        "model": {
            "name": "mlp head on 4 photo views (centre, whole, top, bottom)",
            "views": list(VIEWS),
            **{k: head[k] for k in ("params", "best_epoch", "valid", "test", "candidates")},
        },
        "baseline": {
            "name": "linear probe on the centre-crop features",
            **{k: probe[k] for k in ("params", "best_epoch", "valid", "test", "candidates")},
        },
        "per_class": head["test_report"]["per_class"],
        "confusion": {
            "classes": head["test_report"]["classes"],
            "counts": confusion_matrix(
                y[folds == TEST], head["test_report"]["predicted"], head["test_report"]["classes"]
            ).tolist(),
        },
        "selected_on": "valid accuracy",
    }
    return payload, head["model"]


def table(result: dict[str, Any]) -> str:
    k = f"top{TOP_K}_accuracy"
    lines = [
        f"## {result['dataset']} {result['target']}: {result['n_classes']} classes, held-out products "
        f"(train/valid/test items {result['n_train']}/{result['n_valid']}/{result['n_test']})",
        "",
        f"| classifier | valid acc | valid macro-F1 | test acc | test macro-F1 | test top-{TOP_K} |",
        "|---|---|---|---|---|---|",
    ]
    for key in ("baseline", "model"):
        r = result[key]
        lines.append(
            f"| {r['name']} | {r['valid']['accuracy']:.4f} | {r['valid']['macro_f1']:.4f} | "
            f"{r['test']['accuracy']:.4f} | {r['test']['macro_f1']:.4f} | {r['test'][k]:.4f} |"
        )
    return "\n".join(lines)


def plot_confusion(result: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Test confusion matrix, each row divided by its class's support (recall on the diagonal)."""
    plt = pyplot()

    classes = result["confusion"]["classes"]
    counts = np.asarray(result["confusion"]["counts"], dtype=np.float64)
    rates = counts / np.maximum(counts.sum(1, keepdims=True), 1)
    side = max(5.0, 0.2 * len(classes) + 3.0)
    fig, ax = plt.subplots(figsize=(side + 1.0, side))
    image = ax.imshow(rates, cmap="Blues", vmin=0.0, vmax=1.0)
    ax.set_xticks(range(len(classes)), classes, rotation=90, fontsize=7 if len(classes) > 20 else 9)
    ax.set_yticks(range(len(classes)), classes, fontsize=7 if len(classes) > 20 else 9)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if len(classes) <= 15:  # few enough cells to print each count
        for (i, j), n in np.ndenumerate(counts):
            if n:
                ax.text(
                    j,
                    i,
                    f"{n:.0f}",
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if rates[i, j] > 0.5 else "black",
                )
    ax.set_title(
        f"{result['dataset']} {result['target']}, test set (held-out products)\n"
        f"accuracy {result['accuracy']:.3f}, macro-F1 {result['macro_f1']:.3f}, {int(counts.sum())} items",
        fontsize=10,
    )
    fig.colorbar(image, ax=ax, fraction=0.04, label="share of the true class")
    return save_figure(fig, path, dpi=110)


def write_json(path: str | os.PathLike[str], result: dict[str, Any]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return path
