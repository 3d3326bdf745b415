"""Federated BPR over Flower: only item embeddings travel, client-side evaluation adds up to the
central figure, and the federated model learns."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from flwr.app import MetricRecord, RecordDict

from synthetic import clustered_dataset
from vitrina.data.snapshot import Snapshot
from vitrina.evaluation import Evaluator
from vitrina.models import create
from vitrina.privacy.federated import (
    FederatedSettings,
    _sum_folds,
    client_snapshot,
    partition_users,
    run_federated,
)

PARAMS = {"embedding_dim": 16, "learning_rate": 0.01, "batch_size": 256}


@pytest.fixture(scope="module")
def snap() -> Snapshot:
    return Snapshot.build(clustered_dataset(), split="random", seed=0)


def test_partition_covers_every_shopper_once() -> None:
    parts = partition_users(103, 4, seed=3)
    assert sorted(np.concatenate(parts).tolist()) == list(range(103))
    assert {len(p) for p in parts} <= {25, 26}
    with pytest.raises(ValueError, match="clients must be between 1"):
        partition_users(3, 4, seed=0)


def test_client_sums_give_the_central_mean(snap: Snapshot) -> None:
    """Each client evaluates only its shoppers; the server's ratio of sums is the central mean."""
    rng = np.random.default_rng(0)
    users, items = (
        torch.from_numpy(rng.normal(size=(snap.n_users, 8)).astype(np.float32)),
        torch.from_numpy(rng.normal(size=(snap.n_items, 8)).astype(np.float32)),
    )
    replies = []
    for part in partition_users(snap.n_users, 3, seed=1):
        local = client_snapshot(snap, part)
        assert local.train.nnz == snap.train[part].nnz and local.items == snap.items
        mine = users[torch.from_numpy(part)]
        metrics: dict[str, float] = {"num-examples": 1}
        for fold in ("valid", "test"):
            found = Evaluator(local.train, local.fold(fold), ks=(20,)).evaluate(
                lambda r, mine=mine: mine[torch.from_numpy(r)] @ items.T, full=False
            )
            n = found.pop("users")
            metrics[f"{fold}_users"] = n
            metrics.update({f"{fold}_{k}_sum": v * n for k, v in found.items()})
        replies.append(RecordDict({"metrics": MetricRecord(metrics)}))
    total = _sum_folds(replies, "num-examples")
    central = Evaluator(snap.train, snap.test, ks=(20,)).evaluate(lambda r: users[torch.from_numpy(r)] @ items.T)
    assert total["test_recall@20"] == pytest.approx(central["recall@20"], rel=1e-6)
    assert total["test_ndcg@20"] == pytest.approx(central["ndcg@20"], rel=1e-5)
    assert total["test_users"] == central["users"]


def test_train_epochs_starts_from_the_given_parameters(snap: Snapshot) -> None:
    start = {"item_emb": np.full((snap.n_items, 16), 0.01, dtype=np.float32)}
    state, _ = create("bpr", seed=0, **PARAMS).train_epochs(snap, 0, start)
    np.testing.assert_array_equal(state["item_emb"], start["item_emb"])
    state, loss = create("bpr", seed=0, **PARAMS).train_epochs(snap, 2, start)
    assert np.isfinite(loss) and not np.array_equal(state["item_emb"], start["item_emb"])
    with pytest.raises(TypeError, match="not trained in epochs"):
        create("pop").train_epochs(snap, 1, {})


def test_federated_training_learns_and_sends_only_item_embeddings(snap: Snapshot) -> None:
    settings = FederatedSettings(clients=3, max_rounds=12, patience=12, local_epochs=2)
    report = run_federated(snap, PARAMS, settings, seed=1, progress=False)
    assert report.rounds == 12 and sum(report.client_interactions) == snap.train.nnz
    item_bytes = snap.n_items * PARAMS["embedding_dim"] * 4
    for row in report.history:  # each client gets and returns the item matrix (+ its header), nothing else
        assert row["bytes_down"] == row["bytes_up"]
        assert 3 * item_bytes <= row["bytes_up"] < 3 * (item_bytes + 1024)
    assert (
        report.test["users"]
        == Evaluator(snap.train, snap.test, ks=(20,)).evaluate(lambda r: torch.zeros(len(r), snap.n_items))["users"]
    )
    pop = create("pop").fit(snap, progress=False)
    pop_recall = Evaluator(snap.train, snap.test, ks=(20,)).evaluate(pop._score_np)["recall@20"]
    assert report.test["recall@20"] > pop_recall + 0.05
    assert report.valid["recall@20"] == max(r["valid_recall@20"] for r in report.history)
