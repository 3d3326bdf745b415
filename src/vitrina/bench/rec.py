"""`vitrina bench rec`: train and evaluate models over seeds, next to the published numbers."""

from __future__ import annotations

import contextlib
import json
import resource
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vitrina.bench.published import published_for
from vitrina.config import Config, parse_scalar
from vitrina.data.snapshot import Snapshot
from vitrina.evaluation import Evaluator
from vitrina.models import create

# Settings of the training loop that may appear in a model's config table next to its parameters.
TRAINER_KEYS = ("max_epochs", "patience", "eval_every")
TABLE_METRICS = ("recall@10", "recall@20", "ndcg@10", "ndcg@20")


def reset_peak_rss() -> None:
    """Start a new peak-memory window (Linux: writing 5 to clear_refs resets VmHWM), so each run's
    peak is its own rather than the whole benchmark's; elsewhere the process peak stays."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def peak_rss_mb() -> float:
    """Peak resident memory since the last `reset_peak_rss` (Linux VmHWM), else of the process."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def modality_list(value: Any) -> list[str] | None:
    """A `modalities` parameter as given on the command line: "image+audio", "none" (ID only) or a list."""
    if value is None or isinstance(value, list):
        return value
    text = str(value).strip()
    return [] if text in ("", "none") else [m.strip() for m in text.split("+") if m.strip()]


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
    # Table row name: the model, or the model and its setting in an ablation (every setting shown).
    label: str = ""
    seconds_per_epoch: float = 0.0
    # Models with `observe` only (sequential, graph, item-kNN, ALS): test metrics with the validation
    # interactions added to each user's history at test time (no retraining), the usual protocol of
    # next-item evaluation.
    test_with_valid_history: dict[str, float] = field(default_factory=dict)


def run_model(
    config: Config,
    snap: Snapshot,
    model_name: str,
    seed: int,
    overrides: dict[str, Any] | None = None,
    progress: bool = True,
    save_dir: Path | None = None,
    ray_address: str | None = None,
) -> RunResult:
    """Fit one model with early stopping on validation, then evaluate its best epoch on test.
    `ray_address` ("local" or a cluster's) trains it data-parallel on Ray Train instead."""
    params = {**config.model_params(model_name), **(overrides or {})}
    if "modalities" in params:
        params["modalities"] = modality_list(params["modalities"])
    trainer = {
        "max_epochs": int(config.get("train.max_epochs")),
        "patience": int(config.get("train.patience")),
        "eval_every": int(config.get("train.eval_every")),
    }
    trainer.update({k: int(params.pop(k)) for k in TRAINER_KEYS if k in params})
    ks = tuple(config.get("eval.ks"))
    batch = int(config.get("eval.batch_users"))
    watch = str(config.get("eval.watch"))
    # Cold-item split: each fold's users rank only that fold's held-out items (the cold-start protocol).
    valid_items, test_items = snap.cold_items.get("valid"), snap.cold_items.get("test")
    valid_eval = Evaluator(
        snap.train, snap.valid, ks=(int(watch.split("@")[1]),), batch_users=batch, candidates=valid_items
    )
    vectors = np.hstack([snap.item_features[m] for m in sorted(snap.item_features)]) if snap.item_features else None
    test_eval = Evaluator(snap.train, snap.test, ks=ks, batch_users=batch, item_vectors=vectors, candidates=test_items)
    reset_peak_rss()
    if ray_address:
        from vitrina.distributed.train import fit_on_ray

        workers = int(config.get("distributed.workers", 2))
        storage = config.cache_dir / "ray-train"
        model = fit_on_ray(snap, model_name, params, seed, trainer, valid_eval, workers, ray_address, storage, watch)
    else:
        model = create(model_name, seed=seed, **params)
        model.fit(snap, valid_eval, watch=watch, progress=progress, **trainer)
    t0 = time.perf_counter()
    test = test_eval.evaluate(model._score_np)
    eval_seconds = time.perf_counter() - t0
    if save_dir is not None:
        model.save(save_dir)
    online: dict[str, float] = {}
    if hasattr(model, "observe") and snap.valid.nnz and test_items is None:
        model.observe(snap.valid)  # after saving: the saved model is the one trained and validated
        seen = (snap.train + snap.valid).tocsr()
        online = Evaluator(seen, snap.test, ks=ks, batch_users=batch).evaluate(model._score_np)
    history = model.report.history
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
        label=model_name,
        # One-shot models (no epochs) report their whole fit.
        seconds_per_epoch=float(np.mean([h["seconds"] for h in history])) if history else model.report.train_seconds,
        test_with_valid_history=online,
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


def _positive_mean(values: list[float]) -> str:
    """Mean of a cost column; "–" where it was not recorded (files from before it existed)."""
    return f"{np.mean(values):.2f}" if all(v > 0 for v in values) else "–"


def markdown_table(dataset: str, results: list[RunResult], split: str = "official") -> str:
    """Mean ± std over seeds per model (or ablation row), next to the published Recall@20 / NDCG@20."""
    published, source = published_for(dataset, split)
    head = ["model", "seeds", *TABLE_METRICS, "published R@20 / N@20", "epochs", "train s", "s/epoch", "eval s"]
    head.append("peak MB")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name in dict.fromkeys(r.label or r.model for r in results):
        runs = [r for r in results if (r.label or r.model) == name and r.selected]
        if not runs:
            continue
        pub = published.get(name)
        row = [
            name,
            str(len(runs)),
            *[_mean_std([r.test[m] for r in runs]) for m in TABLE_METRICS],
            f"{pub[0]:.4f} / {pub[1]:.4f}" if pub else "–",
            f"{np.mean([r.best_epoch for r in runs]):.0f}/{np.mean([r.epochs for r in runs]):.0f}",
            f"{np.mean([r.train_seconds for r in runs]):.1f}",
            _positive_mean([r.seconds_per_epoch for r in runs]),
            f"{np.mean([r.eval_seconds for r in runs]):.2f}",
            f"{max(r.peak_rss_mb for r in runs):.0f}",
        ]
        lines.append("| " + " | ".join(row) + " |")
    if source:
        lines.append(f"\nPublished: {source}. epochs = best/run.")
    return "\n".join(lines)


def write_json(path: Path, dataset: str, split: str, results: list[RunResult], snap_stats: dict[str, Any]) -> None:
    published, source = published_for(dataset, split)
    payload = {
        "dataset": dataset,
        "split": split,
        "snapshot": snap_stats,
        "published": {m: {"recall@20": v[0], "ndcg@20": v[1]} for m, v in published.items()},
        "published_source": source,
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
                "label": r.label,
                "seconds_per_epoch": r.seconds_per_epoch,
                "history": r.history,
                **({"test_with_valid_history": r.test_with_valid_history} if r.test_with_valid_history else {}),
            }
            for r in results
        ],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=1, default=float))
