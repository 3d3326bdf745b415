"""Train/valid/test splits over interaction rows. Every split is seeded and deterministic.

A split assigns each interaction row a fold: TRAIN, VALID or TEST. Inputs are dense user/item
indices and an order key (timestamps, or import order when a source has no timestamps).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

TRAIN, VALID, TEST = 0, 1, 2
FOLD_NAMES = ("train", "valid", "test")
SPLITS = ("official", "random", "leave-last-out", "temporal", "cold-item")


class SplitError(ValueError):
    """The data cannot be split the way that was asked."""


def official(labels: Sequence[object]) -> np.ndarray:
    """The dataset's own fold column (e.g. the MMRec or DiffMM split)."""
    arr = np.asarray(labels, dtype=object)
    if len(arr) and any(v is None or (isinstance(v, float) and np.isnan(v)) for v in arr):
        raise SplitError("the official split needs a 'split' label on every interaction")
    folds = np.full(len(arr), -1, dtype=np.int8)
    for code, name in enumerate(FOLD_NAMES):
        folds[arr == name] = code
    if (folds < 0).any():
        raise SplitError(f"unknown split label {arr[np.flatnonzero(folds < 0)[0]]!r}")
    return folds


def _rank_within_user(users: np.ndarray, key: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Order rows by (user, key); return that order, each row's rank in its user, and user sizes."""
    order = np.lexsort((key, users))
    sorted_users = users[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_users)) + 1]
    sizes = np.diff(np.r_[starts, len(users)])
    rank = np.arange(len(users)) - np.repeat(starts, sizes)
    return order, rank, np.repeat(sizes, sizes)


def random_per_user(
    users: np.ndarray,
    ratios: Sequence[float] = (0.8, 0.1, 0.1),
    min_user_interactions: int = 10,
    seed: int = 0,
) -> np.ndarray:
    """Per-user random split by ratios; users below the threshold get n-2 / 1 / 1 (the MMRec rule).

    Users with two interactions keep one for training and one for test; a single interaction is
    kept for training only, since it cannot be both learnt and evaluated.
    """
    users = np.asarray(users)
    rng = np.random.default_rng(seed)
    order, rank, size = _rank_within_user(users, rng.random(len(users)))
    _, r_valid, r_test = ratios
    n_test = np.where(size >= min_user_interactions, np.maximum(1, np.round(size * r_test)), 1)
    n_valid = np.where(size >= min_user_interactions, np.maximum(1, np.round(size * r_valid)), 1)
    n_test = np.where(size >= 2, n_test, 0)
    n_valid = np.where(size >= 3, n_valid, 0)
    folds_sorted = np.full(len(users), TRAIN, dtype=np.int8)
    folds_sorted[rank >= size - n_test - n_valid] = VALID
    folds_sorted[rank >= size - n_test] = TEST
    folds = np.empty_like(folds_sorted)
    folds[order] = folds_sorted
    return folds


def leave_last_out(users: np.ndarray, order_key: np.ndarray) -> np.ndarray:
    """Last interaction of each user is test, the one before valid, the rest train (sequences).

    Ties in the order key keep the rows' given order (stable), so import order breaks them.
    """
    users = np.asarray(users)
    key = np.asarray(order_key, dtype=np.float64)
    # lexsort is stable: equal keys keep row order.
    order, rank, size = _rank_within_user(users, key)
    folds_sorted = np.full(len(users), TRAIN, dtype=np.int8)
    folds_sorted[(rank == size - 2) & (size >= 3)] = VALID
    folds_sorted[(rank == size - 1) & (size >= 2)] = TEST
    folds = np.empty_like(folds_sorted)
    folds[order] = folds_sorted
    return folds


def temporal(timestamps: np.ndarray, ratios: Sequence[float] = (0.8, 0.1, 0.1)) -> np.ndarray:
    """Global time split: the earliest share of events trains, later ones validate, the latest test."""
    ts = np.asarray(timestamps, dtype=np.float64)
    if len(ts) and np.isnan(ts).any():
        raise SplitError("the temporal split needs a timestamp on every interaction")
    order = np.argsort(ts, kind="stable")
    n = len(ts)
    cut_train = int(round(n * ratios[0]))
    cut_valid = int(round(n * (ratios[0] + ratios[1])))
    folds = np.full(n, TRAIN, dtype=np.int8)
    folds[order[cut_train:cut_valid]] = VALID
    folds[order[cut_valid:]] = TEST
    return folds


def cold_item(
    items: np.ndarray, n_items: int, ratios: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hold whole items out of training: every interaction of a valid/test item goes to that fold.

    Returns the folds and the held-out valid and test item indices. Only items that have
    interactions are drawn, so the held-out folds are never empty by construction.
    """
    items = np.asarray(items)
    present = np.unique(items)
    rng = np.random.default_rng(seed)
    shuffled = rng.permutation(present)
    n_valid = max(1, int(round(len(present) * ratios[1])))
    n_test = max(1, int(round(len(present) * ratios[2])))
    if n_valid + n_test >= len(present):
        raise SplitError(f"too few items ({len(present)}) for a cold-item split")
    valid_items = np.sort(shuffled[:n_valid])
    test_items = np.sort(shuffled[n_valid : n_valid + n_test])
    item_fold = np.full(n_items, TRAIN, dtype=np.int8)
    item_fold[valid_items] = VALID
    item_fold[test_items] = TEST
    return item_fold[items], valid_items, test_items
