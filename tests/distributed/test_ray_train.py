"""Data-parallel training on Ray Train (2 workers, gloo) gives the single-process model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from synthetic import clustered_dataset
from vitrina.data.snapshot import Snapshot
from vitrina.distributed.train import fit_on_ray
from vitrina.evaluation import Evaluator
from vitrina.models import create

PARAMS = {"embedding_dim": 16, "learning_rate": 0.01, "batch_size": 255, "n_layers": 2}
TRAINER = {"max_epochs": 12, "patience": 4, "eval_every": 1}


def test_two_workers_train_the_single_process_lightgcn(ray_local: None, tmp_path: Path) -> None:
    """Odd batch size (255): the slices differ in size and the weighting still gives the full
    batch's update; early stopping, history and the checkpointed model match."""
    snap = Snapshot.build(clustered_dataset(), split="random", seed=0)
    valid = Evaluator(snap.train, snap.valid, ks=(20,))
    alone = create("lightgcn", seed=3, **PARAMS).fit(snap, valid, progress=False, **TRAINER)
    spread = fit_on_ray(snap, "lightgcn", PARAMS, 3, TRAINER, valid, workers=2, storage=tmp_path)
    assert all(h["workers"] == 2 for h in spread.report.history)  # each epoch was split in two
    assert spread.report.best_epoch == alone.report.best_epoch
    assert [h["loss"] for h in spread.report.history] == pytest.approx(
        [h["loss"] for h in alone.report.history], rel=1e-4
    )
    users = np.arange(snap.n_users)
    np.testing.assert_allclose(spread.score(users), alone.score(users), rtol=1e-3, atol=1e-4)
    assert spread.users == alone.users and spread.items == alone.items


def test_models_outside_the_bpr_family_are_refused(tmp_path: Path) -> None:
    snap = Snapshot.build(clustered_dataset(), split="random", seed=0)
    with pytest.raises(ValueError, match="BPR family"):
        fit_on_ray(snap, "sasrec", {}, 0, TRAINER, Evaluator(snap.train, snap.valid), storage=tmp_path)
