"""What every content-aware model promises: masks, save/load, cold items, new items, new users."""

from __future__ import annotations

import numpy as np
import pytest

from synthetic import two_modality_dataset
from vitrina.data.snapshot import Snapshot
from vitrina.evaluation import Evaluator
from vitrina.models import Recommender, create
from vitrina.models.content import MultimodalRecommender

FAST = {
    "vbpr": {"embedding_dim": 16, "learning_rate": 0.01, "batch_size": 256},
    "content-knn": {"neighbours": 30},
}
N_GROUPS = 4


@pytest.fixture(scope="module")
def snap() -> Snapshot:
    return Snapshot.build(two_modality_dataset(), split="random", seed=0)


@pytest.fixture(scope="module")
def fitted(snap: Snapshot) -> dict[str, Recommender]:
    valid = Evaluator(snap.train, snap.valid, ks=(20,))
    return {
        name: create(name, seed=1, **params).fit(snap, valid, patience=5, max_epochs=60, progress=False)
        for name, params in FAST.items()
    }


def test_masks_come_from_missing_rows(snap: Snapshot) -> None:
    assert not snap.feature_masks["image"][::7].any() and snap.feature_masks["image"][1:7].all()
    assert not snap.feature_masks["text"][3::11].any()


@pytest.mark.parametrize("name", list(FAST))
def test_learns_from_content_and_scores_items_missing_a_modality(name: str, snap: Snapshot, fitted: dict) -> None:
    test = Evaluator(snap.train, snap.test, ks=(10,))
    pop = test.evaluate(create("pop").fit(snap, progress=False)._score_np, full=False)["recall@10"]
    assert test.evaluate(fitted[name]._score_np, full=False)["recall@10"] > pop + 0.1
    scores = fitted[name].score(np.arange(snap.n_users))
    assert np.isfinite(scores).all()


@pytest.mark.parametrize("name", list(FAST))
def test_save_load_identical_then_new_items(name: str, fitted: dict, tmp_path) -> None:
    model = fitted[name]
    back = Recommender.load(model.save(tmp_path / name))
    assert isinstance(back, MultimodalRecommender) and back.params == model.params
    users = np.arange(30)
    assert np.array_equal(back.score(users), model.score(users))
    assert back.recommend("u5", k=5) == model.recommend("u5", k=5)
    # A new item of group 2 (content only, no photo), added to the loaded model without retraining.
    n_items = len(back.items)
    text = np.zeros((1, back.content["text"].dim), dtype=np.float32)
    text[0, 2] = 1.0
    back.add_items(["new-2"], {"image": np.full((1, back.content["image"].dim), np.nan), "text": text})
    assert len(back.items) == n_items + 1 and back.seen.shape[1] == n_items + 1
    scores = back.score(np.arange(200))[:, -1]
    group = np.arange(200) % N_GROUPS
    assert scores[group == 2].mean() > scores[group != 2].mean()
    if name != "content-knn":  # kNN lists of old items may now hold the new item; elsewhere nothing moves
        assert np.array_equal(back.score(users)[:, :n_items], model.score(users))


def test_add_items_rejects_bad_input(fitted: dict) -> None:
    model = create("content-knn", neighbours=5)
    with pytest.raises(RuntimeError, match="fit"):
        model.add_items(["x"], {})
    model = fitted["content-knn"]
    dims = {m: x.dim for m, x in model.content.items()}
    with pytest.raises(ValueError, match="already known"):
        model.add_items(["i0"], {m: np.zeros((1, d)) for m, d in dims.items()})
    with pytest.raises(ValueError, match="missing"):
        model.add_items(["new"], {"image": np.zeros((1, dims["image"]))})
    with pytest.raises(ValueError, match="must be"):
        model.add_items(["new"], {"image": np.zeros((1, 2)), "text": np.zeros((1, dims["text"]))})
    with pytest.raises(ValueError, match="inside a row"):
        bad = np.zeros((1, dims["image"]))
        bad[0, 0] = np.nan
        model.add_items(["new"], {"image": bad, "text": np.zeros((1, dims["text"]))})
    assert "new" not in model.items  # nothing half-added


def test_unknown_or_no_modality_is_a_clear_error(snap: Snapshot) -> None:
    with pytest.raises(ValueError, match="'audio'.*not in"):
        create("vbpr", modalities=["audio"]).fit(snap, progress=False, max_epochs=1)
    with pytest.raises(ValueError, match="at least one modality"):
        create("content-knn", modalities=[]).fit(snap, progress=False)


@pytest.mark.parametrize("name", list(FAST))
def test_session_and_onboarding_for_new_users(name: str, fitted: dict, snap: Snapshot) -> None:
    model = fitted[name]
    session = ["i1", "i5", "i9"]  # group 1
    recs = model.recommend_session(session, k=10)
    assert not {i for i, _ in recs} & set(session)
    assert sum(int(i[1:]) % N_GROUPS == 1 for i, _ in recs) >= 7
    onboarding = [i for i, _ in model.recommend_session([], k=5)]
    popularity = np.asarray(snap.train.sum(axis=0)).ravel()
    assert popularity[snap.items.to_index(onboarding)].tolist() == sorted(popularity, reverse=True)[:5]


def test_cold_items_content_models_score_them_id_models_cannot() -> None:
    cold = Snapshot.build(two_modality_dataset(), split="cold-item", seed=0)
    test = Evaluator(cold.train, cold.test, ks=(10,), candidates=cold.cold_items["test"])
    ranked = {}
    for name, params in {**FAST, "bpr": FAST["vbpr"]}.items():
        model = create(name, seed=1, **params).fit(cold, max_epochs=30, progress=False)
        ranked[name] = test.evaluate(model._score_np, full=False)["recall@10"]
    n_cold = len(cold.cold_items["test"])
    assert ranked["content-knn"] > 0.5 and ranked["vbpr"] > 0.5, ranked
    assert ranked["bpr"] < 2 * 10 / n_cold + 0.15, ranked  # about random among the cold items


@pytest.mark.parametrize("name", list(FAST))
def test_forget_saved_removes_a_shopper(name: str, fitted: dict, tmp_path) -> None:
    model = fitted[name]
    folder = model.save(tmp_path / name)
    gone = str(model.users.ids[2])
    assert Recommender.forget_saved(folder, [gone]) == 1
    back = Recommender.load(folder)
    assert gone not in back.users and len(back.users) == len(model.users) - 1
    assert np.isfinite(back.score(np.arange(5))).all()
