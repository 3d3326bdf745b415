"""LGMRec-style model: learns, masks, cross-modal contrast, cold items, new items, save/load."""

import numpy as np
import pytest
import torch

from model_checks import assert_reloads_identically
from synthetic import two_modality_dataset
from vitrina.data.snapshot import Snapshot
from vitrina.evaluation import Evaluator
from vitrina.models import Recommender, create
from vitrina.models.lgmrec import LGMRec

PARAMS = {"embedding_dim": 16, "learning_rate": 0.01, "batch_size": 256, "cold_k": 5}
N_GROUPS = 4


@pytest.fixture(scope="module")
def snap() -> Snapshot:
    return Snapshot.build(two_modality_dataset(), split="random", seed=0)


@pytest.fixture(scope="module")
def model(snap: Snapshot) -> LGMRec:
    valid = Evaluator(snap.train, snap.valid, ks=(20,))
    m = create("lgmrec", seed=1, **PARAMS).fit(snap, valid, patience=5, max_epochs=40, progress=False)
    assert isinstance(m, LGMRec)
    return m


def test_learns_structure_beyond_popularity(snap: Snapshot, model: LGMRec) -> None:
    test = Evaluator(snap.train, snap.test, ks=(10,))
    pop = create("pop").fit(snap, progress=False)
    ours = test.evaluate(model._score_np, full=False)["recall@10"]
    assert ours > test.evaluate(pop._score_np, full=False)["recall@10"] + 0.1
    assert np.isfinite(model.score(np.arange(snap.n_users))).all()


def test_missing_modalities_are_masked_not_zeros(snap: Snapshot, model: LGMRec) -> None:
    """An item without a photo belongs to no image hyperedge and adds nothing to its users' means."""
    x, mask = model.content["image"].tensor()
    assert (~mask).any()
    with torch.no_grad():
        dep_u, dep_i = model._dependencies("image", x, mask)
    assert torch.all(dep_i[~mask] == 0) and torch.allclose(dep_i[mask].sum(1), torch.ones(int(mask.sum())))
    has_photo_items = (model.modality_counts["image"] > 0).float().squeeze(1)  # users with a photographed item
    assert torch.allclose(dep_u.sum(1), has_photo_items)
    # Scoring is deterministic (no Gumbel noise or link dropout outside training).
    assert np.array_equal(model.score(np.arange(10)), model.score(np.arange(10)))


def test_cross_modal_contrast_pulls_the_two_hypergraph_views_together(snap: Snapshot) -> None:
    valid = Evaluator(snap.train, snap.valid, ks=(20,))
    params = {**PARAMS, "keep_rate": 1.0}
    fits = {w: create("lgmrec", seed=3, cl_weight=w, **params) for w in (0.0, 1.0)}
    agreement = {}
    for w, m in fits.items():
        m.fit(snap, valid, patience=100, max_epochs=15, progress=False)
        with torch.no_grad():  # the cross-modal InfoNCE over every user and item: lower = more aligned
            agreement[w] = -float(m._contrast(m._views()[2], torch.arange(snap.n_users), torch.arange(snap.n_items)))
    assert agreement[1.0] > agreement[0.0] + 0.1, agreement


def test_save_load_gives_identical_scores(model: LGMRec, tmp_path) -> None:
    assert_reloads_identically(model, tmp_path / "m")


def test_new_items_are_recommendable_without_retraining(snap: Snapshot, model: LGMRec, tmp_path) -> None:
    model.save(tmp_path / "before")
    m = Recommender.load(tmp_path / "before")
    users = np.arange(snap.n_users)
    before = m.score(users)
    group = 2
    donor = np.flatnonzero([int(i[1:]) % N_GROUPS == group for i in snap.items.to_list()])[0]
    image = snap.item_features["image"][[donor, donor]].copy()
    text = snap.item_features["text"][[donor, donor]].copy()
    image[1] = np.nan  # the second has text only
    m.add_items(["new-a", "new-b"], {"image": image, "text": text})
    after = m.score(users)
    assert after.shape == (snap.n_users, snap.n_items + 2)
    assert np.allclose(after[:, : snap.n_items], before, atol=1e-5)  # trained items keep their scores
    own = np.array([int(u[1:]) % N_GROUPS == group for u in snap.users.to_list()])
    for col in (snap.n_items, snap.n_items + 1):
        assert after[own, col].mean() > after[~own, col].mean()
    hits = [any(i == "new-a" for i, _ in m.recommend(u, k=30)) for u in np.array(snap.users.to_list())[own][:20]]
    assert np.mean(hits) >= 0.5
    m.save(tmp_path / "after")
    back = Recommender.load(tmp_path / "after")
    assert np.array_equal(back.score(users[:20]), m.score(users[:20]))


def test_bad_parameters_are_clear_errors(snap: Snapshot) -> None:
    with pytest.raises(ValueError, match="keep_rate"):
        create("lgmrec", keep_rate=0.0)
    with pytest.raises(ValueError, match="needs at least one modality"):
        create("lgmrec", modalities=[]).fit(snap, max_epochs=1, progress=False)
