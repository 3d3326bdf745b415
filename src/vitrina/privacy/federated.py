"""Federated training with Flower: shoppers' interactions never leave their client.

Each client (a shop region, a partner, a device group) holds only its own shoppers' interactions.
Every round the server sends the item embeddings; each client trains BPR on its interactions for a
few local epochs, starting from the server's items and its own user embeddings from the previous
round (kept in the client's Flower context: they never travel), and sends back only the item
embeddings; the server averages them weighted by each client's interaction count (FedAvg).
Evaluation runs on the clients too: each ranks the catalogue for its own shoppers and returns only
hit sums, which the server adds up; the round kept is the best on validation. Optionally the
server clips each client's update and adds Gaussian noise (Flower's server-side fixed-clipping DP).
Runs in Flower's simulation runtime (Ray actors on this machine).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import DifferentialPrivacyServerSideFixedClipping, FedAvgM
from flwr.simulation import run_simulation
from tqdm import tqdm

from vitrina.data.idmap import IdMap
from vitrina.data.snapshot import Snapshot
from vitrina.distributed.priority import normal_priority
from vitrina.evaluation import Evaluator
from vitrina.models import create
from vitrina.models.base import EarlyStopping
from vitrina.models.bpr import xavier_rows

FOLDS = ("valid", "test")


@dataclass
class FederatedSettings:
    clients: int = 10
    max_rounds: int = 300
    local_epochs: int = 1
    # Step applied to the averaged update (FedAvgM without momentum; 1 = plain FedAvg): each client
    # moves an item only by what its own shoppers say, so the average moves items more slowly than
    # central training; a larger server step trades rounds for a lower plateau (README).
    server_learning_rate: float = 1.0
    patience: int = 10  # rounds without a better validation figure before stopping
    eval_every: int = 1
    k: int = 20
    noise_multiplier: float = 0.0  # > 0: server-side clipping + Gaussian noise on client updates
    clipping_norm: float = 1.0


@dataclass
class FederatedReport:
    clients: int
    rounds: int = 0
    best_round: int = 0
    valid: dict[str, float] = field(default_factory=dict)
    test: dict[str, float] = field(default_factory=dict)
    history: list[dict[str, float]] = field(default_factory=list)
    train_seconds: float = 0.0
    client_interactions: list[int] = field(default_factory=list)

    @property
    def bytes_per_round(self) -> float:
        """Mean bytes sent and received by the server in a training round (all clients)."""
        rows = [h["bytes_down"] + h["bytes_up"] for h in self.history]
        return float(np.mean(rows)) if rows else 0.0


def partition_users(n_users: int, clients: int, seed: int) -> list[np.ndarray]:
    """Shoppers dealt at random into `clients` groups of near-equal size (sorted indices)."""
    if not 1 <= clients <= n_users:
        raise ValueError(f"clients must be between 1 and the number of users ({n_users}), got {clients}")
    order = np.random.default_rng(seed).permutation(n_users)
    return [np.sort(part) for part in np.array_split(order, clients)]


def client_snapshot(snap: Snapshot, users: np.ndarray) -> Snapshot:
    """What one client holds: its shoppers' rows of every fold; the catalogue is public."""
    return Snapshot(
        name=f"{snap.name}/client",
        users=IdMap(snap.users.ids[users], kind="user"),
        items=snap.items,
        train=snap.train[users],
        valid=snap.valid[users],
        test=snap.test[users],
        split=snap.split,
        seed=snap.seed,
    )


def _array(record: ArrayRecord, key: str) -> np.ndarray:
    return np.ascontiguousarray(record[key].numpy(), dtype=np.float32)


def _sum_folds(replies: list[RecordDict], _weighted_by: str) -> MetricRecord:
    """Clients send hit sums and user counts; the global mean is their ratio (exactly the mean over
    all shoppers that a central evaluation gives)."""
    totals: dict[str, float] = {}
    for reply in replies:
        for key, value in reply["metrics"].items():
            totals[key] = totals.get(key, 0.0) + float(value)  # type: ignore[arg-type]
    out = {}
    for fold in FOLDS:
        users = totals.get(f"{fold}_users", 0.0)
        for key, value in totals.items():
            if key.startswith(f"{fold}_") and key.endswith("_sum"):
                out[key.removesuffix("_sum")] = value / users if users else 0.0
        out[f"{fold}_users"] = users
    return MetricRecord(out)


def _client_app(parts: list[Snapshot], params: dict[str, Any], settings: FederatedSettings, seed: int) -> ClientApp:
    app = ClientApp()
    # Each client's evaluators, built on its first evaluation and kept by the worker running it.
    evaluators: dict[tuple[int, str], Evaluator] = {}

    def client_data(context: Context) -> tuple[Snapshot, int]:
        torch.set_num_threads(1)  # one Ray actor per client already fills a core
        part = int(context.node_config["partition-id"])
        return parts[part], part

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        data, part = client_data(context)
        # A new seed every round: the same one would draw the same negatives round after round.
        rnd = int(msg.content["config"]["server-round"])  # type: ignore[arg-type]
        model = create("bpr", seed=seed + 7919 * rnd + part, **params)
        start = {"item_emb": _array(msg.content["arrays"], "item_emb")}
        if "users" in context.state:
            start["user_emb"] = _array(context.state["users"], "user_emb")
        state, loss = model.train_epochs(data, settings.local_epochs, start)
        context.state["users"] = ArrayRecord({"user_emb": Array(state["user_emb"])})
        reply = RecordDict(
            {
                "arrays": ArrayRecord({"item_emb": Array(state["item_emb"])}),
                "metrics": MetricRecord({"num-examples": int(data.train.nnz), "loss": loss}),
            }
        )
        return Message(reply, reply_to=msg)

    @app.evaluate()
    def evaluate(msg: Message, context: Context) -> Message:
        data, part = client_data(context)
        users = torch.from_numpy(_array(context.state["users"], "user_emb"))
        items = torch.from_numpy(_array(msg.content["arrays"], "item_emb"))

        def scorer(rows: np.ndarray) -> torch.Tensor:
            return users[torch.from_numpy(rows)] @ items.T

        metrics: dict[str, float] = {"num-examples": 1}
        for fold in FOLDS:
            if (part, fold) not in evaluators:
                evaluators[part, fold] = Evaluator(data.train, data.fold(fold), ks=(settings.k,))
            found = evaluators[part, fold].evaluate(scorer, full=False)
            n = found.pop("users")
            metrics[f"{fold}_users"] = n
            metrics.update({f"{fold}_{name}_sum": value * n for name, value in found.items()})
        return Message(RecordDict({"metrics": MetricRecord(metrics)}), reply_to=msg)

    return app


def run_federated(
    snap: Snapshot,
    params: dict[str, Any],
    settings: FederatedSettings,
    seed: int = 0,
    progress: bool = True,
) -> FederatedReport:
    """Train federated BPR on `snap` split over `settings.clients` clients; report per round."""
    if snap.train.nnz == 0:
        raise ValueError("no training interactions")
    partition = partition_users(snap.n_users, settings.clients, seed)
    parts = [client_snapshot(snap, users) for users in partition]
    report = FederatedReport(clients=settings.clients, client_interactions=[int(p.train.nnz) for p in parts])
    watch = f"valid_recall@{settings.k}"
    gen = torch.Generator().manual_seed(seed)
    initial = xavier_rows(snap.n_items, int(params.get("embedding_dim", 64)), gen).numpy()
    server = ServerApp()

    @server.main()
    def main(grid: Grid, context: Context) -> None:
        n = settings.clients
        strategy: FedAvgM | DifferentialPrivacyServerSideFixedClipping = FedAvgM(
            min_train_nodes=n,
            min_evaluate_nodes=n,
            min_available_nodes=n,
            evaluate_metrics_aggr_fn=_sum_folds,
            server_learning_rate=settings.server_learning_rate,
        )
        if settings.noise_multiplier > 0:
            strategy = DifferentialPrivacyServerSideFixedClipping(
                strategy, settings.noise_multiplier, settings.clipping_norm, num_sampled_clients=n
            )
        arrays = ArrayRecord({"item_emb": Array(initial)})
        stopping = EarlyStopping(settings.patience, settings.eval_every)
        start = time.perf_counter()
        bar = tqdm(range(1, settings.max_rounds + 1), desc="federated rounds", disable=not progress, leave=False)
        for rnd in bar:
            t0 = time.perf_counter()
            messages = list(strategy.configure_train(rnd, arrays, ConfigRecord(), grid))
            replies = list(grid.send_and_receive(messages))
            new_arrays, train_metrics = strategy.aggregate_train(rnd, replies)
            if new_arrays is None:
                errors = "; ".join(sorted({r.error.reason for r in replies if r.has_error()}))
                raise RuntimeError(f"round {rnd}: no client returned an update ({errors})")
            arrays = new_arrays
            row: dict[str, float] = {
                "round": rnd,
                "bytes_down": float(sum(m.content["arrays"].count_bytes() for m in messages)),
                "bytes_up": float(sum(r.content["arrays"].count_bytes() for r in replies if r.has_content())),
                "loss": float(train_metrics["loss"]) if train_metrics else float("nan"),
            }
            if rnd % settings.eval_every == 0:
                found = strategy.aggregate_evaluate(
                    rnd, list(grid.send_and_receive(strategy.configure_evaluate(rnd, arrays, ConfigRecord(), grid)))
                )
                assert found is not None, f"round {rnd}: no client evaluated"
                row.update({k: float(v) for k, v in found.items()})  # type: ignore[arg-type]
                if stopping.improved(row[watch]):
                    report.best_round = rnd
                    report.valid = {k.removeprefix("valid_"): v for k, v in row.items() if k.startswith("valid_")}
                    report.test = {k.removeprefix("test_"): v for k, v in row.items() if k.startswith("test_")}
                bar.set_postfix({watch: f"{row[watch]:.4f}", "best": report.best_round})
            row["seconds"] = time.perf_counter() - t0
            report.history.append(row)
            report.rounds = rnd
            if stopping.done:
                break
        report.train_seconds = time.perf_counter() - start

    backend = {
        "client_resources": {"num_cpus": 1, "num_gpus": 0.0},
        "init_args": {"include_dashboard": False, "log_to_driver": False},  # Ray counts the cores
    }
    with _simulation_env():
        run_simulation(server, _client_app(parts, params, settings, seed), settings.clients, backend_config=backend)
    if not report.history:
        raise RuntimeError("the federated run ended before its first round (see Flower's log above)")
    return report


@contextmanager
def _simulation_env() -> Iterator[None]:
    """While a run lasts: Flower's log at WARNING (it logs every message at INFO), and the Ray that
    Flower starts with its client workers at normal priority."""
    logger = logging.getLogger("flwr")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        with normal_priority():
            yield
    finally:
        logger.setLevel(level)
