"""Differentially private releases of aggregate figures, under a privacy budget per dataset.

A release adds noise calibrated to how much one shopper can change the figure (the sensitivity):
Laplace noise of scale Δ₁/ε gives ε-DP; Gaussian noise gives (ε, δ)-DP, with σ from the analytic
Gaussian mechanism (Balle & Wang, ICML 2018), which is exact for every ε where the textbook
σ = Δ₂·sqrt(2 ln(1.25/δ))/ε holds only for ε < 1 and over-noises there. Counts bound one shopper's
influence first: each contributes at most `max_per_user` items (a seeded sample of theirs), so
Δ₁ = max_per_user and Δ₂ = sqrt(max_per_user).

The `PrivacyAccountant` keeps what every release spent in the database, per dataset, and refuses a
release that would take the total past the budget (basic composition: ε and δ add up). A refused
release publishes nothing; an accepted one is stored with its cost in the same transaction, so the
dashboard can show it again for free (post-processing) and never needs the raw counts.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
import sqlalchemy as sa
from scipy.optimize import brentq
from scipy.stats import norm

from vitrina.config import Config
from vitrina.data.schema import privacy_releases_table, privacy_spend_table
from vitrina.data.storage import Storage

__all__ = [
    "BudgetExceeded",
    "PrivacyAccountant",
    "Release",
    "gaussian_sigma",
    "private_counts",
]

MECHANISMS = ("laplace", "gaussian")


class BudgetExceeded(RuntimeError):
    """The release would spend more than the dataset's privacy budget has left."""


def gaussian_sigma(epsilon: float, delta: float, sensitivity: float = 1.0) -> float:
    """The smallest σ for which Gaussian noise gives (ε, δ)-DP at L2 sensitivity Δ (analytic)."""
    if epsilon <= 0 or not 0 < delta < 1 or sensitivity <= 0:
        raise ValueError(f"need epsilon > 0, 0 < delta < 1, sensitivity > 0; got {epsilon}, {delta}, {sensitivity}")

    def excess(sigma: float) -> float:
        a, b = sensitivity / (2 * sigma), epsilon * sigma / sensitivity
        # δ(σ) = Φ(Δ/2σ − εσ/Δ) − e^ε Φ(−Δ/2σ − εσ/Δ), computed in log space for large ε.
        return norm.cdf(a - b) - math.exp(epsilon + norm.logcdf(-a - b)) - delta

    low, high = 1e-6 * sensitivity, sensitivity
    while excess(high) > 0:
        high *= 2
    return float(brentq(excess, low, high, xtol=1e-12 * sensitivity))


@dataclass(frozen=True)
class Release:
    values: np.ndarray
    mechanism: str
    epsilon: float
    delta: float
    sensitivity: float
    noise_scale: float  # Laplace b or Gaussian σ
    spent_epsilon: float  # the dataset's total after this release
    budget_epsilon: float


class PrivacyAccountant:
    """Privacy spent per dataset (the `privacy_spend` table), against a budget."""

    def __init__(self, storage: Storage, epsilon_budget: float, delta_budget: float = 1e-5) -> None:
        if epsilon_budget <= 0 or not 0 <= delta_budget < 1:
            raise ValueError(f"a budget needs epsilon > 0 and 0 <= delta < 1, got {epsilon_budget}, {delta_budget}")
        self.storage, self.epsilon_budget, self.delta_budget = storage, epsilon_budget, delta_budget

    @classmethod
    def from_config(cls, storage: Storage, cfg: Config) -> PrivacyAccountant:
        return cls(storage, float(cfg.get("privacy.epsilon_budget")), float(cfg.get("privacy.delta_budget")))

    def spent(self, dataset: str) -> tuple[float, float]:
        with self.storage.engine.connect() as conn:
            return _totals(conn, dataset)

    def charge(
        self, dataset: str, query: str, epsilon: float, delta: float = 0.0, published: dict | None = None
    ) -> float:
        """Record a release's cost (and what it publishes: `mechanism`, `sensitivity`, `noise_scale`,
        `values` {key: value}), or raise BudgetExceeded (nothing recorded); returns the new total ε.
        Check and record happen in one write transaction, so two releases cannot both take the rest."""
        if epsilon <= 0 or delta < 0:
            raise ValueError(f"a release costs epsilon > 0 and delta >= 0, got {epsilon}, {delta}")
        with self.storage.begin() as conn:
            eps, dl = _totals(conn, dataset)
            if eps + epsilon > self.epsilon_budget + 1e-12 or dl + delta > self.delta_budget + 1e-15:
                raise BudgetExceeded(
                    f"{dataset}: {query} needs ε={epsilon:g}, δ={delta:g}; spent ε={eps:g} of {self.epsilon_budget:g},"
                    f" δ={dl:g} of {self.delta_budget:g}"
                )
            row = {"dataset": dataset, "query": query, "epsilon": epsilon, "delta": delta, "ts": time.time()}
            seq = conn.execute(sa.insert(privacy_spend_table).values(**row)).inserted_primary_key[0]
            if published is not None:
                values = {str(k): float(v) for k, v in published["values"].items()}
                conn.execute(
                    sa.insert(privacy_releases_table).values(
                        seq=seq,
                        mechanism=published["mechanism"],
                        sensitivity=float(published["sensitivity"]),
                        noise_scale=float(published["noise_scale"]),
                        released=json.dumps(values),
                    )
                )
        return eps + epsilon

    def budgets(self) -> list[dict]:
        """Spent ε and δ per dataset, with the budget: what the dashboard's privacy panel shows."""
        t = privacy_spend_table
        query = sa.select(t.c.dataset, sa.func.sum(t.c.epsilon), sa.func.sum(t.c.delta), sa.func.count()).group_by(
            t.c.dataset
        )
        with self.storage.engine.connect() as conn:
            rows = conn.execute(query.order_by(t.c.dataset)).all()
        return [
            {
                "dataset": d,
                "epsilon": float(e),
                "delta": float(dl),
                "releases": int(n),
                "epsilon_budget": self.epsilon_budget,
                "delta_budget": self.delta_budget,
            }
            for d, e, dl, n in rows
        ]

    def latest_releases(self, top: int = 10) -> list[dict]:
        """The newest published release of each (dataset, query), with its `top` largest values."""
        s, r = privacy_spend_table, privacy_releases_table
        newest = sa.select(sa.func.max(s.c.seq)).join(r, r.c.seq == s.c.seq).group_by(s.c.dataset, s.c.query)
        query = sa.select(s, r.c.mechanism, r.c.noise_scale, r.c.released).join(r, r.c.seq == s.c.seq)
        with self.storage.engine.connect() as conn:
            rows = conn.execute(query.where(s.c.seq.in_(newest)).order_by(s.c.seq.desc())).mappings().all()
        out = []
        for row in rows:
            values = pd.Series(json.loads(row["released"]), dtype=float)
            out.append(
                {
                    **{k: row[k] for k in ("dataset", "query", "epsilon", "delta", "mechanism", "noise_scale", "ts")},
                    "keys": len(values),
                    "top": list(values.sort_values(ascending=False).head(top).items()),
                }
            )
        return out


def _totals(conn: sa.Connection, dataset: str) -> tuple[float, float]:
    t = privacy_spend_table
    sums = (sa.func.coalesce(sa.func.sum(t.c.epsilon), 0.0), sa.func.coalesce(sa.func.sum(t.c.delta), 0.0))
    eps, delta = conn.execute(sa.select(*sums).where(t.c.dataset == dataset)).one()
    return float(eps), float(delta)


def private_counts(
    accountant: PrivacyAccountant,
    dataset: str,
    query: str,
    events: pd.DataFrame,
    key: str,
    epsilon: float,
    mechanism: str = "laplace",
    delta: float = 0.0,
    max_per_user: int = 20,
    keys: np.ndarray | None = None,
    seed: int | None = None,
) -> tuple[pd.Series, Release]:
    """How many distinct shoppers have each `key` value (item, category, ...), released with noise.

    `events` needs `user_id` and `key` columns. Each shopper counts once per value and for at most
    `max_per_user` values. `keys` fixes the values reported (e.g. the whole catalogue), so that which
    values appear does not itself leak; by default the values present are reported.
    """
    if mechanism not in MECHANISMS:
        raise ValueError(f"mechanism must be one of {', '.join(MECHANISMS)}, got '{mechanism}'")
    if max_per_user < 1:
        raise ValueError(f"max_per_user must be at least 1, got {max_per_user}")
    if mechanism == "gaussian" and delta <= 0:
        raise ValueError("the Gaussian mechanism needs delta > 0")
    sensitivity = float(max_per_user) if mechanism == "laplace" else math.sqrt(max_per_user)
    scale = sensitivity / epsilon if mechanism == "laplace" else gaussian_sigma(epsilon, delta, sensitivity)
    rng = np.random.default_rng(seed)
    pairs = events[["user_id", key]].drop_duplicates()
    pairs = pairs.assign(_r=rng.random(len(pairs))).sort_values(["user_id", "_r"])
    kept = pairs[pairs.groupby("user_id").cumcount() < max_per_user]
    exact = kept[key].value_counts()
    index = pd.Index(keys if keys is not None else exact.index, name=key)
    true = exact.reindex(index, fill_value=0).to_numpy(dtype=float)
    noise = rng.laplace(0.0, scale, len(true)) if mechanism == "laplace" else rng.normal(0.0, scale, len(true))
    noisy = pd.Series(true + noise, index=index, name=f"{query} (dp)")
    # Nothing leaves this function unless the accountant accepts (and stores) the release.
    published = {"mechanism": mechanism, "sensitivity": sensitivity, "noise_scale": scale, "values": noisy}
    total = accountant.charge(dataset, query, epsilon, delta if mechanism == "gaussian" else 0.0, published)
    release = Release(noisy.to_numpy(), mechanism, epsilon, delta, sensitivity, scale, total, accountant.epsilon_budget)
    return noisy, release
