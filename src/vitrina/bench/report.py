"""`vitrina bench report`: merge benchmark JSON files into README tables and a plot."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from vitrina.bench.published import published_for
from vitrina.bench.rec import RunResult, markdown_table, select_on_validation
from vitrina.plotting import pyplot, save_figure


def load_runs(paths: list[Path], watch: str = "recall@20") -> dict[tuple[str, str], list[RunResult]]:
    """Runs per (dataset, split), in file order; later files add models, seeds or candidates.

    Hyper-parameter candidates of one model and seed may come from several files (several grids):
    the selection is redone over all of them, on validation only. Ablation rows (their label names
    the setting) are kept apart: each is a row of its own.
    """
    groups: dict[tuple[str, str], list[RunResult]] = {}
    fields = RunResult.__dataclass_fields__
    for path in paths:
        payload = json.loads(Path(path).read_text())
        key = (payload["dataset"], payload.get("split", "official"))
        groups.setdefault(key, []).extend(
            RunResult(**{k: v for k, v in r.items() if k in fields}) for r in payload["results"]
        )
    for runs in groups.values():
        for label, seed in {(r.label or r.model, r.seed) for r in runs}:
            select_on_validation([r for r in runs if (r.label or r.model) == label and r.seed == seed], watch)
    return groups


def tables(groups: dict[tuple[str, str], list[RunResult]]) -> str:
    parts = []
    for (dataset, split), runs in groups.items():
        seeds = len({r.seed for r in runs})
        parts.append(f"### {dataset} ({split} split), test, mean ± std over seeds (up to {seeds})")
        parts.append(markdown_table(dataset, runs, split))
    return "\n\n".join(parts)


def plot(groups: dict[tuple[str, str], list[RunResult]], path: Path) -> Path:
    """Test Recall@20 per model and dataset (bars: mean ± std), published numbers as black ticks."""
    plt = pyplot()

    fig, axes = plt.subplots(1, len(groups), figsize=(4.2 * len(groups), 3.6), squeeze=False)
    for ax, ((dataset, split), runs) in zip(axes[0], groups.items(), strict=True):
        published = published_for(dataset, split)[0]
        models = list(dict.fromkeys(r.label or r.model for r in runs if r.selected))
        values = [[r.test["recall@20"] for r in runs if (r.label or r.model) == m and r.selected] for m in models]
        x = np.arange(len(models))
        ax.bar(x, [np.mean(v) for v in values], yerr=[np.std(v) for v in values], color="#4c78a8", capsize=3)
        for i, m in enumerate(models):
            if m in published:
                ax.plot([i - 0.35, i + 0.35], [published[m][0]] * 2, color="black", lw=2)
        ax.set_xticks(x, models, rotation=30)
        ax.set_title(f"{dataset} ({split})")
        ax.set_ylabel("test Recall@20")
    fig.suptitle("Vitrina (bars) vs published (black lines)")
    return save_figure(fig, path, dpi=110)
