"""FREEDOM: frozen content kNN graph + pruned user–item graph learns, masks, new items, save/load."""

import numpy as np
import pytest

from model_checks import assert_reloads_identically
from synthetic import clustered_dataset
from vitrina.data.snapshot import Snapshot
from vitrina.evaluation import Evaluator
from vitrina.models import Recommender, create
from vitrina.models.freedom import Freedom, modality_weights

PARAMS = {"embedding_dim": 16, "learning_rate": 0.01, "batch_size": 256, "knn_k": 5}
N_GROUPS = 4


def group_features(groups: np.ndarray, rng: np.random.Generator, dim: int = 8) -> np.ndarray:
    """A second modality that also encodes the item's group (another basis, more noise)."""
    basis = rng.normal(0, 1, (N_GROUPS, dim)).astype(np.float32)
    return basis[groups] + rng.normal(0, 0.3, (len(groups), dim)).astype(np.float32)


@pytest.fixture(scope="module")
def snap() -> Snapshot:
    raw = clustered_dataset()
    rng = np.random.default_rng(5)
    n = len(raw.items)
    text = group_features(np.arange(n) % N_GROUPS, rng)
    text[rng.choice(n, n // 5, replace=False)] = np.nan  # a fifth of the items have no text
    raw.item_features["text"] = text
    raw.item_features["image"][[3, 7]] = np.nan  # and two have no image
    return Snapshot.build(raw, split="random", seed=0)


@pytest.fixture(scope="module")
def valid(snap: Snapshot) -> Evaluator:
    return Evaluator(snap.train, snap.valid, ks=(20,))


@pytest.fixture(scope="module")
def model(snap: Snapshot, valid: Evaluator) -> Freedom:
    m = create("freedom", seed=1, **PARAMS).fit(snap, valid, patience=5, max_epochs=40, progress=False)
    assert isinstance(m, Freedom)
    return m


def test_learns_structure_beyond_popularity(snap: Snapshot, valid: Evaluator, model: Freedom) -> None:
    test = Evaluator(snap.train, snap.test, ks=(10,))
    pop = create("pop").fit(snap, progress=False)
    ours = test.evaluate(model._score_np, full=False)["recall@10"]
    assert ours > test.evaluate(pop._score_np, full=False)["recall@10"] + 0.1
    assert model.report.best_epoch >= 1 and np.isfinite(model.score(np.arange(snap.n_users))).all()


def test_item_graph_is_symmetric_normalised_and_respects_masks(snap: Snapshot, model: Freedom) -> None:
    g = model.mm_graph.toarray()
    assert np.allclose(g, g.T) and (g >= 0).all()
    assert (g > 0).sum(1).min() >= PARAMS["knn_k"] - 1  # every item has some modality here
    # With text alone, items without text have no edges at all, in either direction.
    text_only = create("freedom", seed=1, modalities=["text"], **PARAMS)
    text_only.fit(snap, max_epochs=1, progress=False)
    g = text_only.mm_graph.toarray()
    missing = ~snap.feature_masks["text"]
    assert missing.any() and not g[missing].any() and not g[:, missing].any()
    assert (g[~missing] > 0).sum(1).min() >= PARAMS["knn_k"] - 1
    assert text_only.params["modalities"] == ["text"]


def test_modality_weights() -> None:
    assert modality_weights(["image", "text"], 0.1) == pytest.approx({"image": 0.1, "text": 0.9})
    assert modality_weights(["audio", "image"], 0.2) == pytest.approx({"audio": 0.8, "image": 0.2})
    assert modality_weights(["audio", "text"], 0.1) == pytest.approx({"audio": 0.5, "text": 0.5})
    assert modality_weights(["image"], 0.1) == {"image": 1.0}


def test_save_load_gives_identical_scores(model: Freedom, tmp_path) -> None:
    assert_reloads_identically(model, tmp_path / "m")


def test_new_items_are_recommendable_without_retraining(snap: Snapshot, model: Freedom, tmp_path) -> None:
    model.save(tmp_path / "before")
    m = Recommender.load(tmp_path / "before")
    assert isinstance(m, Freedom)
    users = np.arange(snap.n_users)
    before = m.score(users)
    rng = np.random.default_rng(11)
    image = np.eye(N_GROUPS, dtype=np.float32)[[2, 2, 0]] + rng.normal(0, 0.05, (3, N_GROUPS)).astype(np.float32)
    text = np.full((3, snap.item_features["text"].shape[1]), np.nan, dtype=np.float32)  # no text: image only
    image[2] = np.nan  # the third has no content at all
    m.add_items(["new-a", "new-b", "new-c"], {"image": image, "text": text})
    after = m.score(users)
    assert after.shape == (snap.n_users, snap.n_items + 3)
    assert np.array_equal(after[:, : snap.n_items], before)  # trained items do not move
    group2 = users[users % N_GROUPS == 2]
    others = users[users % N_GROUPS != 2]
    new_a = snap.n_items
    assert (after[group2, new_a] > 0).mean() > 0.9
    assert after[group2, new_a].mean() > after[others, new_a].mean()
    assert np.all(after[:, snap.n_items + 2] == 0)  # no content, no history: nothing to score it by
    hits = [any(i == "new-a" for i, _ in m.recommend(f"u{u}", k=20)) for u in group2[:20]]
    assert np.mean(hits) >= 0.5
    m.save(tmp_path / "after")
    back = Recommender.load(tmp_path / "after")
    assert np.array_equal(back.score(users[:20]), m.score(users[:20]))


def test_without_modalities_it_is_a_pruned_lightgcn(snap: Snapshot, valid: Evaluator) -> None:
    m = create("freedom", seed=1, modalities=[], **PARAMS).fit(snap, valid, patience=3, max_epochs=20, progress=False)
    assert isinstance(m, Freedom) and m.mm_graph.nnz == 0 and not m.content
    test = Evaluator(snap.train, snap.test, ks=(10,))
    pop = create("pop").fit(snap, progress=False)
    assert test.evaluate(m._score_np, full=False)["recall@10"] > test.evaluate(pop._score_np, full=False)["recall@10"]


def test_edge_pruning_keeps_the_share_and_prefers_low_degree_edges(snap: Snapshot) -> None:
    m = create("freedom", seed=1, dropout=0.8, **PARAMS)
    m.users, m.items, m.seen = snap.users, snap.items, snap.train
    m._init_training(snap)
    counts = np.zeros(len(m.edge_weight))
    for _ in range(30):
        adj = m._pruned_adjacency()
        kept = adj.to_dense()[: snap.n_users, snap.n_users :].numpy() > 0
        assert kept.sum() == int(snap.train.nnz * 0.2)
        counts += kept[m.edge_users, m.edge_items]
    low = m.edge_weight >= np.median(m.edge_weight)
    assert counts[low].mean() > counts[~low].mean()


def test_bad_parameters_are_clear_errors(snap: Snapshot) -> None:
    with pytest.raises(ValueError, match="dropout"):
        create("freedom", dropout=1.0)
    with pytest.raises(ValueError, match="modality \\['audio'\\] is not in"):
        create("freedom", modalities=["audio"]).fit(snap, max_epochs=1, progress=False)
