"""The sequential model learns order (what comes next), uses content through masks, and saves and
loads with identical scores."""

from __future__ import annotations

import tempfile

import numpy as np
import pandas as pd
import pytest

from vitrina.data.dataset import RawDataset
from vitrina.data.snapshot import Snapshot
from vitrina.evaluation import Evaluator
from vitrina.models import Recommender, create

N_ITEMS = 60
SMALL = {"embedding_dim": 16, "n_layers": 1, "n_heads": 1, "max_len": 10, "negatives": 32, "learning_rate": 0.01}


def _walks(n_users: int = 300, seed: int = 0) -> RawDataset:
    """Each user walks forward around a ring of items (i -> i+1 -> i+2 ...) from a random start:
    the next item is fully determined by the last one, not by which items a user has."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        start = int(rng.integers(N_ITEMS))
        for step in range(8):
            rows.append((f"u{u}", f"i{(start + step) % N_ITEMS}", float(step)))
    inter = pd.DataFrame(rows, columns=["user_id", "item_id", "ts"])
    inter["type"], inter["value"] = "view", 1.0
    inter["event_id"] = [f"e{i}" for i in range(len(inter))]
    items = pd.DataFrame({"item_id": [f"i{i}" for i in range(N_ITEMS)]})
    # Content: a one-hot of the item's position modulo 6, for a third of the items only (masks).
    feats = np.full((N_ITEMS, 6), np.nan, dtype=np.float32)
    has = np.arange(N_ITEMS) % 3 == 0
    feats[has] = np.eye(6, dtype=np.float32)[np.arange(N_ITEMS)[has] % 6]
    users = pd.DataFrame({"user_id": sorted(inter["user_id"].unique())})
    return RawDataset("walks", items=items, users=users, interactions=inter, item_features={"text": feats})


@pytest.fixture(scope="module")
def snap() -> Snapshot:
    return Snapshot.build(_walks(), split="leave-last-out", seed=0)


def _fit(snap: Snapshot, epochs: int = 40, **params: object) -> Recommender:
    valid = Evaluator(snap.train, snap.valid, ks=(5,))
    model = create("sasrec", seed=0, **{**SMALL, **params})
    return model.fit(snap, valid, patience=10, max_epochs=epochs, watch="recall@5", progress=False)


def test_learns_what_comes_next_where_counts_cannot(snap: Snapshot) -> None:
    valid = Evaluator(snap.train, snap.valid, ks=(5,))
    sasrec = valid.evaluate(_fit(snap, modalities=[])._score_np, full=False)["recall@5"]
    pop = valid.evaluate(create("pop").fit(snap, progress=False)._score_np, full=False)["recall@5"]
    assert sasrec > 0.6 and sasrec > pop + 0.4, (sasrec, pop)


def test_content_with_masks_and_save_load(snap: Snapshot) -> None:
    model = _fit(snap, epochs=3)
    assert set(model.content) == {"text"} and model.content["text"].mask.sum() == N_ITEMS // 3
    users = np.arange(10)
    with tempfile.TemporaryDirectory() as tmp:
        back = Recommender.load(model.save(tmp))
    np.testing.assert_allclose(back.score(users), model.score(users), rtol=1e-5, atol=1e-5)
    top = model.recommend(str(snap.users.ids[0]), k=5)
    assert len(top) == 5


def test_observing_new_events_moves_the_prediction_on(snap: Snapshot) -> None:
    model = _fit(snap, modalities=[])
    strict = Evaluator(snap.train, snap.test, ks=(5,)).evaluate(model._score_np, full=False)["recall@5"]
    model.observe(snap.valid)  # the validation item joins each sequence, no retraining
    assert len(model.seq_items) == snap.train.nnz + snap.valid.nnz
    online = Evaluator((snap.train + snap.valid).tocsr(), snap.test, ks=(5,)).evaluate(model._score_np, full=False)
    assert online["recall@5"] > strict + 0.2, (online, strict)
