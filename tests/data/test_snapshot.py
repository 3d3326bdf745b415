"""Snapshot building, id maps and the save/load round trip."""

import numpy as np
import pandas as pd
import pytest

from synthetic import clustered_dataset
from vitrina.data.dataset import RawDataset
from vitrina.data.idmap import IdMap, UnknownIdError
from vitrina.data.snapshot import Snapshot


def test_idmap_round_trip_and_unknown_ids_named() -> None:
    m = IdMap(["a", "b", "c"], "item")
    assert m.to_index(["c", "a"]).tolist() == [2, 0]
    assert m.to_ids([1]).tolist() == ["b"]
    with pytest.raises(UnknownIdError, match="unknown item.*zz"):
        m.to_index(["a", "zz"])
    with pytest.raises(ValueError, match="duplicate"):
        IdMap(["a", "a"])


def test_folds_partition_interactions_and_features_align() -> None:
    raw = clustered_dataset()
    snap = Snapshot.build(raw, split="random", seed=1)
    assert snap.train.nnz + snap.valid.nnz + snap.test.nnz == len(raw.interactions)
    assert snap.train.multiply(snap.test).nnz == 0
    assert snap.items.to_list() == raw.items["item_id"].tolist()
    assert np.allclose(snap.item_features["image"], raw.item_features["image"])
    assert snap.feature_masks["image"].all()


def test_ids_missing_from_the_catalogue_are_appended() -> None:
    raw = RawDataset(
        "t",
        items=pd.DataFrame({"item_id": ["x", "y"]}),
        interactions=pd.DataFrame(
            {
                "user_id": ["u1", "u2", "u1"],
                "item_id": ["y", "z", "x"],
                "type": "click",
                "split": ["train", "train", "test"],
            }
        ),
    )
    snap = Snapshot.build(raw, split="official")
    assert snap.items.to_list() == ["x", "y", "z"]
    assert snap.users.to_list() == ["u1", "u2"]
    assert snap.test[0, 0] == 1 and snap.train[1, 2] == 1


def test_save_load_is_identical(tmp_path) -> None:
    snap = Snapshot.build(clustered_dataset(), split="cold-item", seed=2)
    path = snap.save(tmp_path / "s.npz")
    back = Snapshot.load(path)
    assert back.users == snap.users and back.items == snap.items
    for fold in ("train", "valid", "test"):
        assert (back.fold(fold) != snap.fold(fold)).nnz == 0
    assert np.array_equal(back.item_features["image"], snap.item_features["image"])
    assert np.array_equal(back.cold_items["test"], snap.cold_items["test"])
    assert np.array_equal(back.log["order"], snap.log["order"])
    assert back.stats() == snap.stats()
