"""`vitrina bench federated`: federated BPR (Flower, FedAvg) against the same BPR trained centrally.

Same dataset split, same model and hyperparameters ([models.bpr]); the federated run takes its
client count, local epochs and learning rate from [privacy.federated] (a grid given with --param
is selected on validation Recall@20, like every benchmark here). Reported for each: validation
and test Recall/NDCG@20 at the round (epoch) selected on validation, rounds, wall time, and what
crossed the network: the federated run's bytes per round (measured on Flower's messages, both
directions) against the central run's one-off upload of every interaction (two int32 ids each).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from vitrina.bench.rec import grid, run_model
from vitrina.config import Config
from vitrina.data.sources import dataset_snapshot, default_split
from vitrina.plotting import pyplot, save_figure
from vitrina.privacy.federated import FederatedReport, FederatedSettings, run_federated

__all__ = ["SETTINGS", "plot", "run", "table"]

SETTINGS = frozenset(f.name for f in dataclasses.fields(FederatedSettings)) | {"learning_rate"}
MB = 1024 * 1024


def _federated_row(report: FederatedReport, settings: dict[str, Any]) -> dict[str, Any]:
    upto = report.history[: report.best_round]
    return {
        "settings": settings,
        "rounds": report.rounds,
        "best_round": report.best_round,
        "valid": report.valid,
        "test": report.test,
        "train_seconds": report.train_seconds,
        "bytes_per_round": report.bytes_per_round,
        "bytes_to_best_round": float(sum(h["bytes_down"] + h["bytes_up"] for h in upto)),
        "client_interactions": report.client_interactions,
        "history": report.history,
    }


def run(
    cfg: Config,
    dataset: str,
    seed: int,
    grids: dict[str, list[Any]] | None = None,
    progress: bool = True,
    log: Any = print,
) -> dict[str, Any]:
    base = cfg.section("privacy.federated", SETTINGS)
    split = default_split(dataset, cfg)
    snap = dataset_snapshot(cfg, dataset, split, seed)
    log(f"[federated] {dataset}: central BPR, seed {seed} ...")
    central = run_model(cfg, snap, "bpr", seed, progress=progress)
    rows = []
    for combo in grid(grids):
        chosen = {**base, **combo}
        params = {**cfg.model_params("bpr"), "learning_rate": float(chosen.pop("learning_rate"))}
        settings = FederatedSettings(**chosen)
        log(f"[federated] {settings.clients} clients, {combo or 'defaults'} ...")
        report = run_federated(snap, params, settings, seed=seed, progress=progress)
        rows.append(_federated_row(report, {**dataclasses.asdict(settings), "learning_rate": params["learning_rate"]}))
        log(
            f"[federated]   valid recall@20={report.valid['recall@20']:.4f} test recall@20="
            f"{report.test['recall@20']:.4f}, best round {report.best_round}/{report.rounds}"
        )
    best = max(rows, key=lambda r: r["valid"]["recall@20"])
    for r in rows:
        r["selected"] = r is best
    return {
        "dataset": dataset,
        "split": split,
        "seed": seed,
        "snapshot": snap.stats(),
        "central": {
            "params": central.params,
            "valid": central.valid,
            "test": central.test,
            "epochs": central.epochs,
            "best_epoch": central.best_epoch,
            "train_seconds": central.train_seconds,
            "upload_bytes": float(snap.train.nnz * 8),
        },
        "federated": rows,
    }


def table(result: dict[str, Any]) -> str:
    c = result["central"]
    lines = [
        f"## {result['dataset']} ({result['split']} split), BPR: central vs federated (Flower, FedAvg), seed "
        f"{result['seed']}",
        "",
        "| training | clients | local epochs | lr | server step | valid R@20 | test R@20 | test N@20 "
        "| rounds (best/run) | MB per round | MB to best round | train s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
        f"| central | 1 | – | {c['params']['learning_rate']:g} | – | {c['valid']['recall@20']:.4f} | "
        f"{c['test']['recall@20']:.4f} | {c['test']['ndcg@20']:.4f} | {c['best_epoch']}/{c['epochs']} epochs | – | "
        f"{c['upload_bytes'] / MB:.2f} (all interactions, once) | {c['train_seconds']:.1f} |",
    ]
    for r in result["federated"]:
        s = r["settings"]
        name = "**federated**" if r["selected"] else "federated"
        if s["noise_multiplier"] > 0:
            name += f" + DP noise {s['noise_multiplier']:g}, clip {s['clipping_norm']:g}"
        lines.append(
            f"| {name} | {s['clients']} | {s['local_epochs']} | {s['learning_rate']:g} | "
            f"{s['server_learning_rate']:g} | {r['valid']['recall@20']:.4f} "
            f"| {r['test']['recall@20']:.4f} | {r['test']['ndcg@20']:.4f} | {r['best_round']}/{r['rounds']} | "
            f"{r['bytes_per_round'] / MB:.2f} | {r['bytes_to_best_round'] / MB:.1f} | {r['train_seconds']:.1f} |"
        )
    return "\n".join(lines)


def plot(result: dict[str, Any], path: Path) -> Path:
    """Validation Recall@20 per round of each federated run, the central model's as a line."""
    plt = pyplot()

    fig, ax = plt.subplots(figsize=(7, 4))
    for r in result["federated"]:
        s = r["settings"]
        rounds = [h["round"] for h in r["history"] if "valid_recall@20" in h]
        values = [h["valid_recall@20"] for h in r["history"] if "valid_recall@20" in h]
        ax.plot(rounds, values, label=f"federated, server step {s['server_learning_rate']:g}, {s['clients']} clients")
    ax.axhline(result["central"]["valid"]["recall@20"], color="k", linestyle="--", label="central BPR (best epoch)")
    ax.set_xlabel("round")
    ax.set_ylabel("validation Recall@20")
    ax.set_title(f"{result['dataset']}: federated vs central BPR")
    ax.legend(loc="lower right")
    return save_figure(fig, path)
