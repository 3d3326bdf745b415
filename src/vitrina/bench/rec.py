"""`vitrina bench rec`: train and evaluate models over seeds, next to the published numbers."""

from __future__ import annotations

import json
import resource
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vitrina.bench.published import PUBLISHED, SOURCES
from vitrina.config import Config, parse_scalar
from vitrina.data.snapshot import Snapshot
from vitrina.evaluation import Evaluator
from vitrina.models import create

# Settings of the training loop that may appear in a model's config table next to its parameters.
TRAINER_KEYS = ("max_epochs", "patience", "eval_every")
TABLE_METRICS = ("recall@10", "recall@20", "ndcg@10", "ndcg@20")


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def parse_params(pairs: list[str]) -> dict[str, dict[str, list[Any]]]:
    """`model.key=v1,v2,...` strings into {model: {key: [values]}}, values parsed as TOML scalars."""
    out: dict[str, dict[str, list[Any]]] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        model, dot, name = key.partition(".")
        if not sep or not dot or not value:
            raise ValueError(f"--param expects model.key=value[,value...], got '{pair}'")
        out.setdefault(model, {})[name] = [parse_scalar(v.strip()) for v in value.split(",")]
    return out


def grid(values: dict[str, list[Any]] | None) -> list[dict[str, Any]]:
    """Every combination of the listed values (one empty combination when nothing is listed)."""
    combos: list[dict[str, Any]] = [{}]
    for key, options in (values or {}).items():
        combos = [{**c, key: v} for c in combos for v in options]
    return combos


@dataclass
class RunResult:
    model: str
    seed: int
    valid: dict[str, float]
    test: dict[str, float]
    epochs: int
    best_epoch: int
    train_seconds: float
    eval_seconds: float
    peak_rss_mb: float
    params: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, float]] = field(default_factory=list)
    # False for grid candidates that lost on validation; tables show selected runs only.
    selected: bool = True


def run_model(
    config: Config,
    snap: Snapshot,
    model_name: str,
    seed: int,
    overrides: dict[str, Any] | None = None,
    progress: bool = True,
    save_dir: Path | None = None,
) -> RunResult:
    """Fit one model with early stopping on validation, then evaluate its best epoch on test."""
    params = {**config.model_params(model_name), **(overrides or {})}
    trainer = {
        "max_epochs": int(config.get("train.max_epochs")),
        "patience": int(config.get("train.patience")),
        "eval_every": int(config.get("train.eval_every")),
    }
    trainer.update({k: int(params.pop(k)) for k in TRAINER_KEYS if k in params})
    ks = tuple(config.get("eval.ks"))
    batch = int(config.get("eval.batch_users"))
    watch = str(config.get("eval.watch"))
    valid_eval = Evaluator(snap.train, snap.valid, ks=(int(watch.split("@")[1]),), batch_users=batch)
    vectors = np.hstack([snap.item_features[m] for m in sorted(snap.item_features)]) if snap.item_features else None
    test_eval = Evaluator(snap.train, snap.test, ks=ks, batch_users=batch, item_vectors=vectors)
    model = create(model_name, seed=seed, **params)
    model.fit(snap, valid_eval, watch=watch, progress=progress, **trainer)
    t0 = time.perf_counter()
    test = test_eval.evaluate(model._score_np)
    eval_seconds = time.perf_counter() - t0
    if save_dir is not None:
        model.save(save_dir)
    return RunResult(
        model=model_name,
        seed=seed,
        valid=model.report.best_valid,
        test=test,
        epochs=model.report.epochs,
        best_epoch=model.report.best_epoch,
        train_seconds=model.report.train_seconds,
        eval_seconds=eval_seconds,
        peak_rss_mb=peak_rss_mb(),
        params=model.params,
        history=model.report.history,
    )


def select_on_validation(runs: list[RunResult], watch: str) -> RunResult:
    """Mark the run with the best validation metric as selected (test metrics play no part)."""
    best = max(runs, key=lambda r: r.valid.get(watch, float("-inf")))
    for r in runs:
        r.selected = r is best
    return best


def _mean_std(values: list[float]) -> str:
    arr = np.asarray(values, dtype=float)
    return f"{arr.mean():.4f} ± {arr.std(ddof=1) if len(arr) > 1 else 0.0:.4f}"


def markdown_table(dataset: str, results: list[RunResult]) -> str:
    """Mean ± std over seeds per model, next to the published Recall@20 / NDCG@20."""
    published = PUBLISHED.get(dataset, {})
    head = ["model", "seeds", *TABLE_METRICS, "published R@20 / N@20", "epochs", "train s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name in dict.fromkeys(r.model for r in results):
        runs = [r for r in results if r.model == name and r.selected]
        pub = published.get(name)
        row = [
            name,
            str(len(runs)),
            *[_mean_std([r.test[m] for r in runs]) for m in TABLE_METRICS],
            f"{pub[0]:.4f} / {pub[1]:.4f}" if pub else "–",
            f"{np.mean([r.best_epoch for r in runs]):.0f}/{np.mean([r.epochs for r in runs]):.0f}",
            f"{np.mean([r.train_seconds for r in runs]):.1f}",
        ]
        lines.append("| " + " | ".join(row) + " |")
    if dataset in SOURCES:
        lines.append(f"\nPublished: {SOURCES[dataset]}. epochs = best/run.")
    return "\n".join(lines)


def write_json(path: Path, dataset: str, split: str, results: list[RunResult], snap_stats: dict[str, Any]) -> None:
    payload = {
        "dataset": dataset,
        "split": split,
        "snapshot": snap_stats,
        "published": {m: {"recall@20": v[0], "ndcg@20": v[1]} for m, v in PUBLISHED.get(dataset, {}).items()},
        "published_source": SOURCES.get(dataset),
        "results": [
            {
                "model": r.model,
                "seed": r.seed,
                "params": r.params,
                "valid": r.valid,
                "test": r.test,
                "epochs": r.epochs,
                "best_epoch": r.best_epoch,
                "train_seconds": r.train_seconds,
                "eval_seconds": r.eval_seconds,
                "peak_rss_mb": r.peak_rss_mb,
                "selected": r.selected,
                "history": r.history,
            }
            for r in results
        ],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=1, default=float))
