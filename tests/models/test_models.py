"""Every registered model: learns real structure, saves and loads back, recommends shop ids."""

import numpy as np
import pytest
import torch

from model_checks import assert_reloads_identically
from synthetic import clustered_dataset
from vitrina.data.idmap import UnknownIdError
from vitrina.data.snapshot import Snapshot
from vitrina.evaluation import Evaluator
from vitrina.models import REGISTRY, Recommender, create
from vitrina.models.content import MultimodalRecommender

FAST = {
    "pop": {},
    "itemknn": {"neighbours": 30},
    "als": {"factors": 16, "regularization": 0.05},
    "bpr": {"embedding_dim": 16, "learning_rate": 0.01, "batch_size": 256},
    "lightgcn": {"embedding_dim": 16, "learning_rate": 0.01, "batch_size": 256, "n_layers": 2},
    # Without privacy here (epsilon 0: the same code path as DP-SGD minus opacus); DP in test_dpbpr.py.
    "dpbpr": {"epsilon": 0.0, "epochs": 60, "embedding_dim": 16, "learning_rate": 0.05, "batch_size": 256},
}


@pytest.fixture(scope="module")
def snap() -> Snapshot:
    return Snapshot.build(clustered_dataset(), split="random", seed=0)


@pytest.fixture(scope="module")
def fitted(snap: Snapshot) -> dict[str, Recommender]:
    valid = Evaluator(snap.train, snap.valid, ks=(20,))
    return {
        name: create(name, seed=1, **params).fit(snap, valid, patience=5, max_epochs=60, progress=False)
        for name, params in FAST.items()
    }


def test_every_registered_model_is_covered() -> None:
    """ID models are checked here; content-aware ones in test_multimodal.py and their own files."""
    assert set(FAST) <= set(REGISTRY)
    assert all(issubclass(REGISTRY[n], MultimodalRecommender) for n in set(REGISTRY) - set(FAST))


@pytest.mark.parametrize("name", [n for n in FAST if n != "pop"])
def test_personalised_models_beat_popularity(name: str, snap: Snapshot, fitted: dict) -> None:
    test = Evaluator(snap.train, snap.test, ks=(10,))
    pop = test.evaluate(fitted["pop"]._score_np, full=False)["recall@10"]
    ours = test.evaluate(fitted[name]._score_np, full=False)["recall@10"]
    assert ours > pop + 0.1, (name, ours, pop)


@pytest.mark.parametrize("name", list(FAST))
def test_save_load_gives_identical_scores(name: str, fitted: dict, tmp_path) -> None:
    model = fitted[name]
    back = assert_reloads_identically(model, tmp_path / name, n_users=20)
    assert back.report.best_epoch == model.report.best_epoch


def test_recommend_speaks_shop_ids_and_excludes_seen(snap: Snapshot, fitted: dict) -> None:
    model = fitted["bpr"]
    seen = set(snap.items.to_ids(snap.train[snap.users.index("u5")].indices).tolist())
    recs = model.recommend("u5", k=10)
    assert len(recs) == 10 and all(item.startswith("i") for item, _ in recs)
    assert not seen & {item for item, _ in recs}
    scores = [s for _, s in recs]
    assert scores == sorted(scores, reverse=True)
    with_seen = {item for item, _ in model.recommend("u5", k=snap.n_items, exclude_seen=False)}
    assert seen <= with_seen
    with pytest.raises(UnknownIdError, match="unknown user 'nobody'"):
        model.recommend("nobody")


def test_score_subset_of_items(fitted: dict) -> None:
    model = fitted["lightgcn"]
    full = model.score([0, 1])
    assert np.array_equal(model.score([0, 1], [5, 2]), full[:, [5, 2]])


def test_early_stopping_restores_the_best_validation_epoch(snap: Snapshot, fitted: dict) -> None:
    model = fitted["bpr"]
    report = model.report
    curve = [row["valid_recall@20"] for row in report.history]
    assert report.best_epoch == int(np.argmax(curve)) + 1
    assert report.epochs - report.best_epoch <= 5 or report.epochs == 60
    valid = Evaluator(snap.train, snap.valid, ks=(20,))
    assert valid.evaluate(model._score_np, full=False)["recall@20"] == pytest.approx(max(curve))


def test_unknown_model_name_lists_known_ones() -> None:
    with pytest.raises(ValueError, match="known: als, bpr"):
        create("nope")


def test_scoring_before_fit_is_a_clear_error() -> None:
    with pytest.raises(RuntimeError, match="call fit"):
        create("bpr").score([0])


def test_lightgcn_observes_new_events_without_retraining(snap: Snapshot, fitted: dict, tmp_path) -> None:
    """The validation events join the propagation graph: scores move, what was seen is excluded,
    a saved model keeps the grown graph, and the trained layer-0 embeddings are untouched."""
    model = fitted["lightgcn"]
    before = model.score(np.arange(snap.n_users))
    emb = model.user_emb.detach().clone()
    grown = Recommender.load(model.save(tmp_path / "copy"))  # the fixture's model stays as trained
    grown.observe(snap.valid)
    assert grown.seen.nnz == (snap.train + snap.valid).nnz
    assert torch.equal(grown.user_emb.detach(), emb)
    after = grown.score(np.arange(snap.n_users))
    moved = np.abs(after - before).max(axis=1) > 1e-4
    has_valid = np.diff(snap.valid.indptr) > 0
    assert moved[has_valid].all()
    u = int(np.flatnonzero(has_valid)[0])
    new_items = set(snap.items.to_ids(snap.valid[u].indices).tolist())
    assert not new_items & {i for i, _ in grown.recommend(str(snap.users.ids[u]), k=snap.n_items - 1)}
    assert_reloads_identically(grown, tmp_path / "grown", n_users=20)
    with pytest.raises(ValueError, match="events are"):
        grown.observe(snap.valid[:5])


def test_itemknn_observes_new_events(snap: Snapshot, fitted: dict, tmp_path) -> None:
    model = Recommender.load(fitted["itemknn"].save(tmp_path / "copy"))
    model.observe(snap.valid)
    u = int(np.flatnonzero(np.diff(snap.valid.indptr))[0])
    expected = (snap.train[u] + snap.valid[u]) @ model.sim
    np.testing.assert_allclose(model.score(np.array([u]))[0], expected.toarray()[0], rtol=1e-5)


def test_als_observe_solves_the_user_step_again(snap: Snapshot, fitted: dict, tmp_path) -> None:
    """A grown history gives the user the factors ALS's closed-form user step would (confidence
    alpha on the observed items, the item factors as trained); users without new events keep theirs."""
    model = Recommender.load(fitted["als"].save(tmp_path / "copy"))
    before = model.user_factors.clone()
    model.observe(snap.valid)
    y = model.item_factors.double().numpy()
    has_valid = np.diff(snap.valid.indptr) > 0
    u = int(np.flatnonzero(has_valid)[0])
    items = (snap.train[u] + snap.valid[u]).indices
    a = y.T @ y + model.regularization * np.eye(y.shape[1]) + (model.alpha - 1) * y[items].T @ y[items]
    expected = np.linalg.solve(a, model.alpha * y[items].sum(0))
    np.testing.assert_allclose(model.user_factors[u].numpy(), expected, rtol=1e-3, atol=1e-4)
    assert torch.equal(model.user_factors[~torch.from_numpy(has_valid)], before[~torch.from_numpy(has_valid)])
    new_items = set(snap.items.to_ids(snap.valid[u].indices).tolist())
    assert not new_items & {i for i, _ in model.recommend(str(snap.users.ids[u]), k=snap.n_items - 1)}
    assert_reloads_identically(model, tmp_path / "grown", n_users=20)


@pytest.mark.parametrize("name", list(FAST))
def test_forget_saved_removes_a_shopper(name: str, fitted: dict, tmp_path) -> None:
    """An erasure request on a saved model: the shopper's id, seen row and vector go; the others
    keep their lists (models whose user vectors are independent keep identical scores)."""
    model = fitted[name]
    folder = model.save(tmp_path / name)
    assert Recommender.forget_saved(folder, ["u3", "not-a-user"]) == 1
    assert Recommender.forget_saved(folder, ["u3"]) == 0  # idempotent
    back = Recommender.load(folder)
    assert "u3" not in back.users and len(back.users) == len(model.users) - 1
    with pytest.raises(UnknownIdError):
        back.recommend("u3")
    assert back.seen.shape == (len(back.users), model.seen.shape[1])
    others = ["u0", "u5", "u7"]
    for u in others:
        np.testing.assert_array_equal(back.seen[back.users.index(u)].indices, model.seen[model.users.index(u)].indices)
    if name in ("bpr", "als", "pop"):  # user vectors do not depend on one another
        idx_old = model.users.to_index(np.array(others))
        idx_new = back.users.to_index(np.array(others))
        np.testing.assert_allclose(back.score(idx_new), model.score(idx_old), rtol=1e-6)


def test_bpr_with_sparse_updates_learns_and_touches_only_the_batch(snap: Snapshot, fitted: dict, tmp_path) -> None:
    """Lazy Adam on sparse gradients: as good as dense BPR here, rows outside a batch left alone,
    and refused where it would be wrong (propagating models)."""
    params = {**FAST["bpr"], "sparse_updates": True}
    model = create("bpr", seed=1, **params).fit(
        snap, Evaluator(snap.train, snap.valid, ks=(20,)), patience=5, max_epochs=60, progress=False
    )
    test = Evaluator(snap.train, snap.test, ks=(10,))
    sparse = test.evaluate(model._score_np, full=False)["recall@10"]
    dense = test.evaluate(fitted["bpr"]._score_np, full=False)["recall@10"]
    assert sparse > dense - 0.05, (sparse, dense)
    one = create("bpr", seed=1, **{**params, "batch_size": 4})
    one._init_training(snap)
    before = one.item_emb.detach().clone()
    u, i, j = (torch.tensor(x) for x in ([0, 1], [2, 3], [4, 5]))
    one.optimizer.zero_grad()
    one._batch_loss(u, i, j).backward()
    assert one.item_emb.grad.is_sparse
    one.optimizer.step()
    moved = (one.item_emb.detach() != before).any(dim=1).nonzero().flatten().tolist()
    assert moved == [2, 3, 4, 5]
    assert_reloads_identically(model, tmp_path / "sparse", n_users=20)
    with pytest.raises(ValueError, match="sparse_updates"):
        create("lightgcn", sparse_updates=True)
