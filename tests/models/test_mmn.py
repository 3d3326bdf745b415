"""The two-tower multimodal network: every fusion and loss learns, masks, save/load, new items, alignment."""

from __future__ import annotations

import tempfile

import numpy as np
import pytest
import torch

from synthetic import two_modality_dataset
from vitrina.data.snapshot import Snapshot
from vitrina.evaluation import Evaluator
from vitrina.models import Recommender, create
from vitrina.models.mmn import FUSIONS, LOSSES, MMN

N_GROUPS = 4
SMALL = {"embedding_dim": 16, "hidden": 32, "learning_rate": 0.01, "batch_size": 256}
COMBOS = [(f, loss) for f in FUSIONS for loss in LOSSES]


def _fit(snap: Snapshot, **params: object) -> Recommender:
    valid = Evaluator(snap.train, snap.valid, ks=(20,))
    return create("mmn", seed=1, **{**SMALL, **params}).fit(snap, valid, patience=3, max_epochs=30, progress=False)


def _copy(model: Recommender) -> MMN:
    """A loaded copy, so tests that add items leave the shared fitted models alone."""
    with tempfile.TemporaryDirectory() as tmp:
        back = Recommender.load(model.save(tmp))
    assert isinstance(back, MMN)
    return back


@pytest.fixture(scope="module")
def snap() -> Snapshot:
    return Snapshot.build(two_modality_dataset(feature_seed=1), split="random", seed=0)


@pytest.fixture(scope="module")
def fitted(snap: Snapshot) -> dict[tuple[str, str], Recommender]:
    return {(fusion, loss): _fit(snap, fusion=fusion, loss=loss) for fusion, loss in COMBOS}


@pytest.mark.parametrize("combo", COMBOS, ids=[f"{f}-{loss}" for f, loss in COMBOS])
def test_every_fusion_and_loss_beats_popularity(combo: tuple[str, str], snap: Snapshot, fitted: dict) -> None:
    test = Evaluator(snap.train, snap.test, ks=(10,))
    pop = test.evaluate(create("pop").fit(snap, progress=False)._score_np, full=False)["recall@10"]
    ours = test.evaluate(fitted[combo]._score_np, full=False)["recall@10"]
    assert ours > pop + 0.1, (combo, ours, pop)


@pytest.mark.parametrize("fusion", FUSIONS)
def test_items_missing_a_modality_get_finite_scores(fusion: str, snap: Snapshot, fitted: dict) -> None:
    model = fitted[(fusion, "bpr")]
    assert not snap.feature_masks["image"][::7].any() and not snap.feature_masks["text"][3::11].any()
    scores = model.score(np.arange(snap.n_users))
    assert np.isfinite(scores).all()
    # An item with no modality at all and no history: nothing to score it by, but still no NaN.
    back = _copy(model)
    dims = {m: x.dim for m, x in back.content.items()}
    back.add_items(["blank"], {m: np.full((1, d), np.nan) for m, d in dims.items()})
    assert np.isfinite(back.score(np.arange(snap.n_users))).all()


@pytest.mark.parametrize("combo", COMBOS, ids=[f"{f}-{loss}" for f, loss in COMBOS])
def test_save_load_gives_identical_scores(combo: tuple[str, str], fitted: dict, tmp_path) -> None:
    model = fitted[combo]
    back = Recommender.load(model.save(tmp_path / "mmn"))
    assert isinstance(back, MMN) and back.params == model.params
    users = np.arange(40)
    assert np.array_equal(back.score(users), model.score(users))
    assert back.recommend("u3", k=5) == model.recommend("u3", k=5)
    assert back.report.best_epoch == model.report.best_epoch


@pytest.mark.parametrize("fusion", FUSIONS)
def test_new_item_is_recommended_to_its_cluster_through_content(fusion: str, fitted: dict) -> None:
    model = _copy(fitted[(fusion, "bpr")])
    n_items = len(model.items)
    before = model.score(np.arange(40))
    group = 2
    image = np.eye(N_GROUPS, dtype=np.float32)[[group]]
    text = np.hstack([image, np.zeros((1, 4), dtype=np.float32)])
    model.add_items(["new"], {"image": image, "text": text})
    assert len(model.items) == n_items + 1 and model.net.item_emb.shape[0] == n_items + 1
    users = np.arange(200)
    scores = model.score(users)
    assert np.array_equal(scores[:40, :n_items], before)  # old items do not move
    in_group = users % N_GROUPS == group
    assert scores[in_group, -1].mean() > scores[~in_group, -1].mean()
    top = [[i for i, _ in model.recommend(f"u{u}", k=20)] for u in users[in_group][:20]]
    assert np.mean(["new" in t for t in top]) >= 0.8


def test_alignment_loss_pulls_modalities_of_an_item_together(snap: Snapshot) -> None:
    aligned, plain = (_fit(snap, fusion="late", align_weight=w) for w in (1.0, 0.0))
    assert np.isfinite([row["loss"] for row in aligned.report.history]).all()
    feats, mask, no_ids = aligned._inputs()
    with torch.no_grad():
        losses = {}
        for name, model in (("aligned", aligned), ("plain", plain)):
            model.net.eval()
            _, h = model.net.items(feats, mask, no_ids * 0, None)
            assert h is not None
            losses[name] = model._align_loss(h, mask).item()
        assert losses["aligned"] < losses["plain"]
        # Only items that have both modalities take part; fewer than two such items: no term.
        lonely = mask.clone()
        lonely[1:, 1] = False
        assert plain._align_loss(h, lonely).item() == 0.0


def test_id_only_user_tower_and_id_only_items(snap: Snapshot) -> None:
    test = Evaluator(snap.train, snap.test, ks=(10,))
    pop = test.evaluate(create("pop").fit(snap, progress=False)._score_np, full=False)["recall@10"]
    for params in ({"user_history": False}, {"modalities": []}):
        model = _fit(snap, **params)
        assert test.evaluate(model._score_np, full=False)["recall@10"] > pop + 0.1, params
    assert not model.content  # modalities=[]: ID embeddings only


def test_bad_settings_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="fusion must be one of early, attention, late"):
        create("mmn", fusion="sum")
    with pytest.raises(ValueError, match="loss must be"):
        create("mmn", loss="mse")
    with pytest.raises(ValueError, match="temperature"):
        create("mmn", align_temperature=0.0)
