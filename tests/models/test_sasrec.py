"""The sequential model learns order (what comes next), uses content through masks, and saves and
loads with identical scores."""

from __future__ import annotations

import tempfile

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

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


def _typed_walks(n_users: int = 300, seed: int = 1) -> RawDataset:
    """Ring walks whose event types follow a chain: a view is followed by a cart 30% of the time, a
    cart by a purchase 80% of the time; so whether a shopper buys next depends on what they just did."""
    raw = _walks(n_users, seed)
    rng = np.random.default_rng(seed)
    nxt = {
        "view": (("view", "cart"), (0.7, 0.3)),
        "cart": (("purchase", "view"), (0.8, 0.2)),
        "purchase": (("view",), (1.0,)),
    }
    types, last = [], {}
    for user in raw.interactions["user_id"]:
        options, p = nxt[last.get(user, "view")]
        last[user] = str(rng.choice(options, p=p))
        types.append(last[user])
    raw.interactions["type"] = types
    return raw


def test_purchase_propensity_reads_the_last_event_types(tmp_path) -> None:
    from sklearn.metrics import roc_auc_score

    from vitrina.data.schema import INTERACTION_TYPES
    from vitrina.data.splits import TRAIN, VALID

    snap = Snapshot.build(_typed_walks(), split="leave-last-out", seed=0)
    model = _fit(snap, epochs=15, modalities=[])
    assert model.typed
    log = snap.log
    at_valid = log["fold"] == VALID
    users, bought = log["user"][at_valid], log["type"][at_valid] == INTERACTION_TYPES.index("purchase")
    p = model.purchase_propensity(users)
    assert ((p > 0) & (p < 1)).all()
    # Baseline: each shopper's own purchase rate so far.
    train = log["fold"] == TRAIN
    rate = np.bincount(
        log["user"][train], weights=log["type"][train] == INTERACTION_TYPES.index("purchase"), minlength=snap.n_users
    )
    rate = rate / np.maximum(np.bincount(log["user"][train], minlength=snap.n_users), 1)
    ours, base = roc_auc_score(bought, p), roc_auc_score(bought, rate[users])
    assert ours > 0.85 and ours > base + 0.2, (ours, base)
    back = Recommender.load(model.save(tmp_path / "typed"))
    np.testing.assert_allclose(back.purchase_propensity(users), p, rtol=1e-5, atol=1e-6)
    # A new cart moves the propensity up; events without a type keep the model working.
    u = np.array([0])
    cart = sp.csr_matrix(([1.0], ([0], [5])), shape=snap.train.shape)
    back.observe(cart, types=np.array([INTERACTION_TYPES.index("cart")]))
    assert back.purchase_propensity(u)[0] > 0.5
    back.observe(cart)
    assert np.isfinite(back.score(u)).all()
    with pytest.raises(ValueError, match="without typed events"):
        _fit(snap, epochs=1, modalities=[], propensity_weight=0.0).purchase_propensity(u)


def test_forget_saved_drops_the_sequence(snap: Snapshot, tmp_path) -> None:
    model = _fit(snap, epochs=2, modalities=[])
    folder = model.save(tmp_path / "m")
    gone = str(snap.users.ids[4])
    assert Recommender.forget_saved(folder, [gone]) == 1
    back = Recommender.load(folder)
    assert gone not in back.users and len(back.seq_indptr) == len(back.users) + 1
    assert len(back.seq_items) == len(model.seq_items) - (model.seq_indptr[5] - model.seq_indptr[4])
    keep = [u for u in range(10) if u != 4]
    np.testing.assert_allclose(back.score(np.arange(9)), model.score(np.array(keep)), rtol=1e-5, atol=1e-5)
