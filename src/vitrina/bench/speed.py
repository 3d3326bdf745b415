"""`vitrina bench speed`: wall-clock of full-ranking evaluation and of training epochs."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vitrina.config import Config
from vitrina.data.snapshot import Snapshot
from vitrina.evaluation import Evaluator
from vitrina.models import create


def _median_seconds(fn: Any, repeats: int) -> tuple[float, list[float]]:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times)), times


def measure(config: Config, snap: Snapshot, models: list[str], repeats: int = 3) -> list[dict[str, Any]]:
    """Evaluation of every user over every item (top-50, all metrics), then epochs per model."""
    rows: list[dict[str, Any]] = []
    gen = torch.Generator().manual_seed(0)
    users = torch.randn(snap.n_users, 64, generator=gen)
    items = torch.randn(snap.n_items, 64, generator=gen)
    evaluator = Evaluator(
        snap.train, snap.test, ks=tuple(config.get("eval.ks")), batch_users=int(config.get("eval.batch_users"))
    )
    evaluator.evaluate(lambda u: users[torch.from_numpy(u)] @ items.T)  # warm-up (compiles kernels)
    median, times = _median_seconds(lambda: evaluator.evaluate(lambda u: users[torch.from_numpy(u)] @ items.T), repeats)
    rows.append(
        {
            "task": "full evaluation, top-50, all metrics",
            "users": int(len(evaluator.users)),
            "items": snap.n_items,
            "median_s": median,
            "runs_s": times,
        }
    )
    for name in models:
        model = create(
            name,
            seed=config.seed,
            **{k: v for k, v in config.model_params(name).items() if k not in ("max_epochs", "patience", "eval_every")},
        )
        # Without a validation evaluator, fit runs exactly `repeats` epochs and times each one.
        model.fit(snap, None, max_epochs=repeats, progress=False)
        times = [row["seconds"] for row in model.report.history]
        median = float(np.median(times))
        rows.append(
            {
                "task": f"{name} training epoch",
                "users": snap.n_users,
                "items": snap.n_items,
                "median_s": median,
                "runs_s": times,
            }
        )
    return rows


def table(dataset: str, rows: list[dict[str, Any]]) -> str:
    lines = [
        f"## speed on {dataset} (torch threads: {torch.get_num_threads()})",
        "",
        "| task | users | items | median s | runs s |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        runs = ", ".join(f"{t:.2f}" for t in r["runs_s"])
        lines.append(f"| {r['task']} | {r['users']} | {r['items']} | {r['median_s']:.3f} | {runs} |")
    return "\n".join(lines)


def write_json(path: Path, dataset: str, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"dataset": dataset, "threads": torch.get_num_threads(), "results": rows}, indent=1))
