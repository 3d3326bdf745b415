"""Noise calibrated to the sensitivity, shoppers' influence clipped, and a budget that refuses."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

from vitrina.data.storage import Storage
from vitrina.privacy.dp import BudgetExceeded, PrivacyAccountant, gaussian_sigma, private_counts


def _delta(sigma: float, eps: float, sens: float = 1.0) -> float:
    a, b = sens / (2 * sigma), eps * sigma / sens
    return norm.cdf(a - b) - math.exp(eps) * norm.cdf(-a - b)


@pytest.mark.parametrize("eps", [0.1, 0.5, 1.0, 4.0, 8.0])
def test_analytic_gaussian_is_tight_and_beats_the_textbook_sigma(eps: float) -> None:
    sigma = gaussian_sigma(eps, 1e-5)
    assert _delta(sigma, eps) == pytest.approx(1e-5, rel=1e-3)
    assert _delta(sigma * 0.99, eps) > 1e-5  # the smallest such sigma
    if eps < 1:
        assert sigma < math.sqrt(2 * math.log(1.25 / 1e-5)) / eps
    assert gaussian_sigma(eps, 1e-5, sensitivity=3.0) == pytest.approx(3 * sigma, rel=1e-6)


def _events(n_users: int = 400, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = [(f"u{u}", f"i{int(i)}") for u in range(n_users) for i in rng.zipf(1.6, size=8) % 300]
    rows += [("heavy", f"i{i}") for i in range(300)]  # one shopper who touched everything
    return pd.DataFrame(rows, columns=["user_id", "item_id"])


def test_laplace_counts_clip_each_shopper_and_keep_the_head(tmp_path, shop_db_url) -> None:
    acc = PrivacyAccountant(Storage(shop_db_url(tmp_path / "dp.db")), epsilon_budget=10.0)
    acc.storage.create_schema()
    events = _events()
    keys = np.array([f"i{i}" for i in range(300)])
    counts, release = private_counts(
        acc, "shop", "popularity", events, "item_id", 1.0, max_per_user=5, keys=keys, seed=1
    )
    assert release.noise_scale == 5.0 and list(counts.index) == list(keys)
    exact = events.drop_duplicates().groupby("item_id")["user_id"].nunique().reindex(keys, fill_value=0)
    top = set(exact.nlargest(10).index)
    assert len(top & set(counts.nlargest(10).index)) >= 8
    # Clipping: alone, the heavy shopper adds to 5 of the 300 items they touched (ε so large the noise
    # is below 1e-5; a budget to match).
    big = PrivacyAccountant(acc.storage, epsilon_budget=1e7)
    heavy = events[events["user_id"] == "heavy"]
    alone, _ = private_counts(big, "heavy-only", "p", heavy, "item_id", 1e6, max_per_user=5, keys=keys, seed=1)
    assert alone.round().sum() == 5 and set(alone.round().unique()) == {0.0, 1.0}


def test_noise_has_the_calibrated_spread(tmp_path, shop_db_url) -> None:
    acc = PrivacyAccountant(Storage(shop_db_url(tmp_path / "dp.db")), epsilon_budget=100.0, delta_budget=1e-3)
    acc.storage.create_schema()
    events = pd.DataFrame({"user_id": ["a"], "item_id": ["x"]})
    keys = np.array([f"k{i}" for i in range(20000)])
    lap, _ = private_counts(acc, "d", "lap", events, "item_id", 2.0, max_per_user=4, keys=keys, seed=0)
    assert np.std(lap.to_numpy()[1:]) == pytest.approx(math.sqrt(2) * 4 / 2.0, rel=0.05)
    gau, r2 = private_counts(
        acc, "d", "gau", events, "item_id", 2.0, "gaussian", delta=1e-5, max_per_user=4, keys=keys, seed=0
    )
    assert r2.sensitivity == 2.0 and np.std(gau.to_numpy()[1:]) == pytest.approx(r2.noise_scale, rel=0.05)


def test_accountant_refuses_past_the_budget_and_records_nothing(storage: Storage) -> None:
    acc = PrivacyAccountant(storage, epsilon_budget=1.0)
    events = pd.DataFrame({"user_id": ["a", "b"], "item_id": ["x", "x"]})
    private_counts(acc, "shop", "q1", events, "item_id", 0.6)
    assert acc.spent("shop") == (pytest.approx(0.6), 0.0)
    with pytest.raises(BudgetExceeded, match="spent ε=0.6 of 1"):
        private_counts(acc, "shop", "q2", events, "item_id", 0.5)
    again = PrivacyAccountant(storage, epsilon_budget=1.0)  # the spend lives in the database
    assert again.spent("shop") == (pytest.approx(0.6), 0.0) and again.spent("other") == (0.0, 0.0)
    private_counts(again, "shop", "q3", events, "item_id", 0.4)
    with pytest.raises(ValueError, match="delta > 0"):
        private_counts(again, "other", "q", events, "item_id", 0.1, "gaussian")


def test_a_release_is_stored_with_its_cost_and_shown_again_for_free(storage: Storage) -> None:
    """What was published is kept (same transaction as the spend): re-reading it costs nothing, and a
    refused release leaves no published row."""
    acc = PrivacyAccountant(storage, epsilon_budget=1.0)
    events = pd.DataFrame({"user_id": ["a", "b", "c"], "item_id": ["x", "x", "y"]})
    private_counts(acc, "shop", "shoppers per item", events, "item_id", 0.3, seed=0)
    second, r2 = private_counts(acc, "shop", "shoppers per item", events, "item_id", 0.5, seed=1)
    with pytest.raises(BudgetExceeded):
        private_counts(acc, "shop", "shoppers per category", events, "item_id", 0.5)
    [latest] = acc.latest_releases(top=1)
    assert latest["query"] == "shoppers per item" and latest["epsilon"] == 0.5 and latest["keys"] == 2
    assert latest["mechanism"] == "laplace" and latest["noise_scale"] == r2.noise_scale
    assert latest["top"] == [(second.idxmax(), pytest.approx(second.max()))]
    assert acc.spent("shop") == (pytest.approx(0.8), 0.0)  # reading releases spends nothing
    [budget] = acc.budgets()
    assert budget == {
        "dataset": "shop",
        "epsilon": pytest.approx(0.8),
        "delta": 0.0,
        "releases": 2,
        "epsilon_budget": 1.0,
        "delta_budget": 1e-5,
    }
