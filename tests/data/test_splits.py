"""Every split: deterministic for a seed, the documented proportions and rules."""

import numpy as np
import pytest

from synthetic import clustered_dataset
from vitrina.data import splits
from vitrina.data.snapshot import Snapshot


def test_official_split_reads_labels_and_rejects_unknown() -> None:
    folds = splits.official(["train", "valid", "test", "train"])
    assert folds.tolist() == [0, 1, 2, 0]
    with pytest.raises(splits.SplitError, match="unknown split label 'dev'"):
        splits.official(["train", "dev"])
    with pytest.raises(splits.SplitError, match="needs a 'split' label"):
        splits.official(["train", None])


def test_random_split_mmrec_rule_and_determinism() -> None:
    sizes = {0: 20, 1: 9, 2: 3, 3: 2, 4: 1}
    users = np.concatenate([np.full(n, u) for u, n in sizes.items()])
    a = splits.random_per_user(users, seed=7)
    assert np.array_equal(a, splits.random_per_user(users, seed=7))
    assert not np.array_equal(a, splits.random_per_user(users, seed=8))
    count = {u: np.bincount(a[users == u], minlength=3).tolist() for u in sizes}
    assert count[0] == [16, 2, 2]  # 8:1:1
    assert count[1] == [7, 1, 1]  # fewer than 10: n-2 / 1 / 1
    assert count[2] == [1, 1, 1]
    assert count[3] == [1, 0, 1]
    assert count[4] == [1, 0, 0]


def test_leave_last_out_uses_order_and_keeps_ties_stable() -> None:
    users = np.array([0, 0, 0, 0, 1, 1, 2])
    order = np.array([4.0, 1.0, 3.0, 2.0, 5.0, 5.0, 1.0])
    folds = splits.leave_last_out(users, order)
    # user 0 by time: rows 1, 3, 2, 0 -> row 2 valid, row 0 test.
    assert folds.tolist() == [2, 0, 1, 0, 0, 2, 0]


def test_temporal_split_is_global_by_time() -> None:
    ts = np.array([5.0, 1.0, 9.0, 3.0, 7.0, 2.0, 8.0, 4.0, 6.0, 10.0])
    folds = splits.temporal(ts, (0.8, 0.1, 0.1))
    assert folds[ts == 10.0].tolist() == [2] and folds[ts == 9.0].tolist() == [1]
    assert (folds[ts <= 8.0] == 0).all()
    with pytest.raises(splits.SplitError, match="timestamp"):
        splits.temporal(np.array([1.0, np.nan]))


def test_cold_item_split_never_trains_on_held_out_items() -> None:
    snap = Snapshot.build(clustered_dataset(), split="cold-item", seed=3)
    train_items = set(snap.train.indices.tolist())
    assert not train_items & set(snap.cold_items["test"].tolist())
    assert not train_items & set(snap.cold_items["valid"].tolist())
    assert set(snap.test.indices.tolist()) <= set(snap.cold_items["test"].tolist())
    again = Snapshot.build(clustered_dataset(), split="cold-item", seed=3)
    assert np.array_equal(again.cold_items["test"], snap.cold_items["test"])
