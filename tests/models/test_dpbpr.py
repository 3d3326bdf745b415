"""DP-SGD BPR: the accountant's ε stays within the target over every step taken (also when early
stopping keeps an earlier epoch), training stops at the budget's horizon, and the model saves and
loads with its spend. (Utility against ε needs real data: 2,000 generated interactions are too few for
DP-SGD; the amazon-baby curve is a benchmark.)"""

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
