"""DP-SGD BPR: the accountant's ε stays within the target over every step taken (also when early
stopping keeps an earlier epoch), training stops at the budget's horizon, the model saves and loads
with its spend, and under DP it still beats popularity on a small generated shop. (The utility-
versus-ε curve on real data is a benchmark: amazon-baby, README.)"""

from __future__ import annotations

import numpy as np
import pytest

from synthetic import clustered_dataset
from vitrina.data.snapshot import Snapshot
from vitrina.evaluation import Evaluator
from vitrina.models import Recommender, create

SMALL = {"embedding_dim": 16, "learning_rate": 0.01, "batch_size": 256, "epochs": 8}


@pytest.fixture(scope="module")
def snap() -> Snapshot:
    return Snapshot.build(clustered_dataset(), split="random", seed=0)


def _fit(snap: Snapshot, epsilon: float) -> Recommender:
    model = create("dpbpr", seed=0, epsilon=epsilon, **SMALL)
    return model.fit(snap, Evaluator(snap.train, snap.valid, ks=(10,)), patience=100, watch="recall@10", progress=False)


def test_privacy_is_spent_within_the_target(snap: Snapshot, tmp_path) -> None:
    for eps in (0.5, 4.0):
        model = _fit(snap, eps)
        assert model.report.epochs == SMALL["epochs"]  # the budget's horizon, not more
        assert model.spent is not None and 0.9 * eps < model.spent <= eps * 1.01  # all of it, over all steps
        assert np.isfinite(model.score(np.arange(5))).all()
    back = Recommender.load(model.save(tmp_path / "m"))
    np.testing.assert_array_equal(back.score(np.arange(5)), model.score(np.arange(5)))
    assert back.spent == pytest.approx(model.spent)


def test_bad_privacy_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="delta"):
        create("dpbpr", delta=0.0)
    with pytest.raises(ValueError, match="adam or sgd"):
        create("dpbpr", optimizer="rmsprop")


def test_sgd_path_learns_with_privacy_and_its_factors_give_the_scores(snap: Snapshot) -> None:
    """SGD on the summed loss under DP (ε 8) beats popularity on 2,000 interactions (0.12 vs 0.07;
    without privacy 0.32); [user, 1]·[item, bias] is the score."""
    params = {**SMALL, "optimizer": "sgd", "learning_rate": 0.05, "max_grad_norm": 0.5, "epochs": 20}
    model = create("dpbpr", seed=0, epsilon=8.0, **params).fit(snap, progress=False)
    users, items = model.factors()
    np.testing.assert_allclose(users[:5] @ items.T, model.score(np.arange(5)), rtol=1e-5, atol=1e-6)
    test = Evaluator(snap.train, snap.test, ks=(10,))
    pop = test.evaluate(create("pop").fit(snap, progress=False)._score_np)["recall@10"]
    assert test.evaluate(model._score_np)["recall@10"] > 1.5 * pop
