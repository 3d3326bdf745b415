"""Behaviour logs: hand-made logs with exact answers, a generated log against plain-Python
references, and the real amazon-toys-2023 sequences (no timestamps)."""

from __future__ import annotations

import bisect
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from vitrina.config import Config, load_defaults
from vitrina.data.schema import INTERACTION_TYPES, columns
from vitrina.features.behaviour import (
    FUNNEL,
    BehaviourConfig,
    align_funnel,
    dedupe_events,
    item_aggregates,
    sessionize,
    user_aggregates,
)

D = 86_400.0
NAN = float("nan")


def log(rows: list[tuple]) -> pd.DataFrame:
    """Schema frame from (user, item, type, value, ts) rows; ts None means no timestamp."""
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "type", "value", "ts"])
    frame["ts"] = frame["ts"].astype(object).where(frame["ts"].notna(), None)
    frame["event_id"] = [f"e{i}" for i in range(len(frame))]
    frame["split"] = None
    return frame[columns("interactions")]


def assert_floats(actual: pd.Series | np.ndarray, expected: list[float]) -> None:
    np.testing.assert_allclose(np.asarray(actual, dtype=float), expected, rtol=0, atol=1e-9, equal_nan=True)


# --- de-duplication ---------------------------------------------------------------------------


def test_dedupe_exact_keeps_first_and_never_drops_untimed() -> None:
    frame = log(
        [
            ("u1", "i1", "click", 1.0, 100.0),
            ("u1", "i1", "click", 1.0, 100.0),  # exact duplicate
            ("u1", "i1", "click", 2.0, 100.0),  # other value
            ("u1", "i1", "view", 1.0, 100.0),  # other type
            ("u2", "i1", "click", 1.0, 100.0),  # other user
            ("u1", "i1", "click", 1.0, 100.0),  # exact duplicate again
            ("u1", "i1", "purchase", 1.0, None),
            ("u1", "i1", "purchase", 1.0, None),  # no ts: a second purchase, not a duplicate
        ]
    )
    result = dedupe_events(frame)
    assert list(result.events.index) == [0, 2, 3, 4, 6, 7]
    assert (result.exact, result.windowed, result.dropped) == (2, 0, 2)
    assert list(result.events.columns) == columns("interactions")
    assert result.events["event_id"].tolist() == ["e0", "e2", "e3", "e4", "e6", "e7"]


def test_dedupe_window_counts_from_the_last_kept_event() -> None:
    frame = log(
        [
            ("u1", "i1", "click", 1.0, 10.0),  # kept: 2.5 s after the kept one at 0
            ("u1", "i1", "click", 1.0, 2.0),  # dropped: 2 s after 0 (window inclusive)
            ("u1", "i1", "click", 1.0, 0.0),  # kept: first
            ("u1", "i1", "click", 1.0, 1.0),  # dropped
            ("u1", "i1", "click", 1.0, 2.5),  # kept although 0.5 s after a dropped one
            ("u1", "i1", "view", 1.0, 1.0),  # other type
            ("u2", "i1", "click", 1.0, 1.0),  # other user
            ("u1", "i2", "click", 1.0, 1.0),  # other item
            ("u1", "i1", "click", 1.0, 0.0),  # exact duplicate of row 2
            ("u1", "i1", "click", 1.0, None),  # no ts: kept
        ]
    )
    result = dedupe_events(frame, window_s=2.0)
    assert list(result.events.index) == [0, 2, 4, 5, 6, 7, 9]
    assert (result.exact, result.windowed, result.dropped) == (1, 2, 3)
    assert dedupe_events(frame, window_s=0.0).dropped == 1
    with pytest.raises(ValueError, match="window_s"):
        dedupe_events(frame, window_s=-1.0)


# --- sessions ---------------------------------------------------------------------------------


def test_sessionize_gaps_users_and_untimed_events() -> None:
    frame = log(
        [
            ("u2", "i1", "view", 1.0, 60.0),
            ("u1", "i1", "view", 1.0, 100.0),
            ("u1", "i2", "view", 1.0, 0.0),
            ("u2", "i2", "view", 1.0, 50.0),
            ("u1", "i3", "view", 1.0, None),
            ("u1", "i4", "view", 1.0, 2000.0),  # 1900 s idle > 1800: new session
            ("u1", "i5", "view", 1.0, 3800.0),  # exactly 1800 s idle: same session
            ("u1", "i6", "view", 1.0, None),
            ("u3", "i1", "view", 1.0, None),
        ]
    )
    out = sessionize(frame)
    assert list(out.columns) == [*columns("interactions"), "session_id", "session_pos"]
    assert list(out.index) == list(frame.index)
    assert out["session_id"].tolist() == [0, 1, 1, 0, 3, 2, 2, 3, 4]
    assert out["session_pos"].tolist() == [1, 1, 0, 0, 0, 0, 1, 1, 0]
    wider = sessionize(frame, gap_s=1900.0)
    assert wider["session_id"].tolist() == [0, 1, 1, 0, 2, 1, 1, 2, 3]
    assert wider["session_pos"].tolist() == [1, 1, 0, 0, 0, 2, 3, 1, 0]


def test_sessionize_ties_follow_row_order_and_empty_frames_work() -> None:
    frame = log([("u1", "b", "view", 1.0, 5.0), ("u1", "a", "view", 1.0, 5.0), ("u1", "c", "view", 1.0, 1.0)])
    assert sessionize(frame)["session_pos"].tolist() == [1, 2, 0]
    empty = sessionize(log([]))
    assert len(empty) == 0 and {"session_id", "session_pos"} <= set(empty.columns)
    with pytest.raises(ValueError, match="gap_s"):
        sessionize(frame, gap_s=-5)


# --- funnel -----------------------------------------------------------------------------------


def test_align_funnel_conversion_delays() -> None:
    frame = log(
        [
            ("u1", "i1", "view", 1.0, 0.0),
            ("u1", "i1", "click", 1.0, 5.0),
            ("u1", "i1", "purchase", 1.0, 65.0),  # 65 s after the view, 60 after the click
            ("u1", "i2", "purchase", 1.0, 100.0),  # no earlier view of i2 (the view of i1 does not count)
            ("u2", "i1", "purchase", 1.0, 70.0),  # u1's view does not count for u2
            ("u1", "i4", "view", 1.0, 300.0),
            ("u1", "i4", "cart", 1.0, 310.0),  # 10 s after the view; a cart has no time_since_cart
            ("u1", "i4", "purchase", 1.0, 400.0),
            ("u1", "i5", "view", 1.0, 0.0),
            ("u1", "i5", "purchase", 1.0, 1000.0),  # outside a 500 s window
            ("u1", "i6", "purchase", 1.0, 10.0),
            ("u1", "i6", "view", 1.0, 20.0),  # after the purchase: does not count
            ("u1", "i1", "purchase", 1.0, None),  # no ts: nothing to align
        ]
    )
    out = align_funnel(frame, window_s=500.0)
    assert list(out.index) == [2, 3, 4, 6, 7, 9, 10, 12]
    assert list(out.columns) == [*columns("interactions"), "time_since_view", "time_since_click", "time_since_cart"]
    assert_floats(out["time_since_view"], [65, NAN, NAN, 10, 100, NAN, NAN, NAN])
    assert_floats(out["time_since_click"], [60, NAN, NAN, NAN, NAN, NAN, NAN, NAN])
    assert_floats(out["time_since_cart"], [NAN, NAN, NAN, NAN, 90, NAN, NAN, NAN])
    unlimited = align_funnel(frame, window_s=None)
    assert_floats(unlimited["time_since_view"], [65, NAN, NAN, 10, 100, 1000, NAN, NAN])


def test_align_funnel_takes_the_latest_earlier_event() -> None:
    frame = log(
        [
            ("u1", "i1", "view", 1.0, 0.0),
            ("u1", "i1", "view", 1.0, 30.0),
            ("u1", "i1", "view", 1.0, 50.0),  # simultaneous with the purchase: delay 0
            ("u1", "i1", "purchase", 1.0, 50.0),
            ("u1", "i1", "purchase", 1.0, 80.0),
        ]
    )
    assert_floats(align_funnel(frame)["time_since_view"], [0, 30])


# --- aggregates -------------------------------------------------------------------------------


SMALL = [
    ("u1", "i1", "view", 1.0, 0.0),
    ("u1", "i1", "click", 1.0, 10.0),
    ("u1", "i1", "cart", 1.0, 40.0),
    ("u1", "i1", "purchase", 1.0, 100.0),
    ("u1", "i2", "view", 1.0, 5000.0),  # 4900 s idle: second session
    ("u1", "i2", "rating", 4.0, D + 10),  # next day: third session
    ("u2", "i1", "view", 1.0, 20.0),
    ("u2", "i1", "view", 1.0, 80.0),
    ("u2", "i2", "rating", 2.0, 2 * D),
    ("u3", "i3", "purchase", 1.0, None),
]


def test_user_aggregates_on_a_small_log() -> None:
    agg = user_aggregates(log(SMALL))
    assert agg.index.name == "user_id" and list(agg.index) == ["u1", "u2", "u3"]
    expected_ints = {
        "n_view": [2, 2, 0],
        "n_click": [1, 0, 0],
        "n_cart": [1, 0, 0],
        "n_purchase": [1, 0, 1],
        "n_rating": [1, 1, 0],
        "n_events": [6, 3, 1],
        "n_items": [2, 2, 1],
        "n_sessions": [3, 2, 1],
    }
    for col, values in expected_ints.items():
        assert agg[col].tolist() == values, col
    assert_floats(agg["events_per_session"], [2.0, 1.5, 1.0])
    assert_floats(agg["recency_days"], [(D - 10) / D, 0.0, NAN])
    assert_floats(agg["active_days"], [2, 2, NAN])
    assert_floats(agg["median_dwell_s"], [30, 60, NAN])  # u1: 10, 30, 60 within its first session
    later = user_aggregates(log(SMALL), now=3 * D)
    assert_floats(later["recency_days"], [(2 * D - 10) / D, 1.0, NAN])
    assert user_aggregates(log(SMALL), gap_s=10 * D)["n_sessions"].tolist() == [1, 1, 1]


def test_item_aggregates_on_a_small_log() -> None:
    agg = item_aggregates(log(SMALL))
    assert agg.index.name == "item_id" and list(agg.index) == ["i1", "i2", "i3"]
    expected_ints = {
        "n_view": [3, 1, 0],
        "n_click": [1, 0, 0],
        "n_cart": [1, 0, 0],
        "n_purchase": [1, 0, 1],
        "n_rating": [0, 2, 0],
        "n_events": [6, 3, 1],
        "n_users": [2, 2, 1],
    }
    for col, values in expected_ints.items():
        assert agg[col].tolist() == values, col
    assert_floats(agg["click_per_view"], [1 / 3, 0.0, NAN])
    assert_floats(agg["purchase_per_view"], [1 / 3, 0.0, NAN])
    assert_floats(agg["purchase_per_cart"], [1.0, NAN, NAN])
    assert_floats(agg["recency_days"], [(2 * D - 100) / D, 0.0, NAN])
    assert_floats(agg["mean_rating"], [NAN, 3.0, NAN])
    # i1: u1 10, 30, 60 (its purchase ends the session), u2 60; i2's events all end a session.
    assert_floats(agg["median_dwell_s"], [45, NAN, NAN])


def test_bad_input_gets_a_precise_error() -> None:
    frame = log(SMALL)
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['ts'\]"):
        sessionize(frame.drop(columns="ts"))
    with pytest.raises(ValueError, match=r"unknown interaction type\(s\) \['like'\]"):
        user_aggregates(frame.assign(type=["like", *frame["type"][1:]]))
    with pytest.raises(ValueError, match="'user_id' is empty in 1 row"):
        item_aggregates(frame.assign(user_id=[None, *frame["user_id"][1:]]))


def test_config_defaults_match_defaults_toml(tmp_path: Path) -> None:
    assert load_defaults()["features"]["behaviour"] == {
        "gap_s": BehaviourConfig().gap_s,
        "dedupe_window_s": BehaviourConfig().dedupe_window_s,
        "funnel_window_s": BehaviourConfig().funnel_window_s,
    }
    empty = tmp_path / "v.toml"
    empty.write_text("")
    cfg = Config.load(empty, overrides={"features.behaviour.gap_s": "600"}, environ={})
    assert BehaviourConfig.from_config(cfg) == BehaviourConfig(gap_s=600.0)


# --- a generated log against plain-Python references -------------------------------------------


def generated_log(n: int, seed: int = 0) -> pd.DataFrame:
    """Users with a few favourite items, bursts of activity, exact duplicates and near repeats."""
    rng = np.random.default_rng(seed)
    n_users, n_items = n // 20, n // 10
    user = np.sort(rng.integers(0, n_users, n))
    first = np.r_[True, user[1:] != user[:-1]]
    step = np.where(rng.random(n) < 0.1, rng.exponential(D, n), rng.exponential(300, n))
    step[first] = 1.7e9 + rng.uniform(0, 30 * D, int(first.sum()))
    total = np.cumsum(step)
    start = np.maximum.accumulate(np.where(first, np.arange(n), 0))
    ts = np.round(total - total[start] + step[start], 1)
    item = (user * 7 + rng.integers(0, 6, n)) % n_items
    kind = rng.choice(INTERACTION_TYPES, n, p=[0.5, 0.25, 0.12, 0.08, 0.05])
    value = np.where(kind == "rating", rng.integers(1, 6, n), 1).astype(float)
    frame = pd.DataFrame({"user_id": user, "item_id": item, "type": kind, "value": value, "ts": ts})
    exact = frame.sample(frac=0.02, random_state=seed)
    near = frame.sample(frac=0.03, random_state=seed + 1)
    near = near.assign(ts=near["ts"] + np.round(rng.uniform(0, 3, len(near)), 1))
    untimed = frame.sample(frac=0.01, random_state=seed + 2).assign(ts=np.nan)
    frame = pd.concat([frame, exact, near, untimed]).sample(frac=1.0, random_state=seed).reset_index(drop=True)
    frame["user_id"] = "u" + frame["user_id"].astype(str)
    frame["item_id"] = "i" + frame["item_id"].astype(str)
    frame["ts"] = frame["ts"].astype(object).where(frame["ts"].notna(), None)
    frame["event_id"] = "e" + pd.Series(range(len(frame))).astype(str)
    frame["split"] = None
    return frame[columns("interactions")]


@pytest.fixture(scope="module")
def big() -> pd.DataFrame:
    return generated_log(200_000)


@pytest.fixture(scope="module")
def big_rows(big: pd.DataFrame) -> list[tuple]:
    return rows_of(big)


def rows_of(frame: pd.DataFrame) -> list[tuple]:
    ts = [None if t is None or math.isnan(t) else t for t in frame["ts"].tolist()]
    cols = (frame[c].tolist() for c in ("user_id", "item_id", "type", "value"))
    return list(zip(*cols, ts, strict=True))


def test_generated_dedupe_matches_a_reference(big: pd.DataFrame, big_rows: list[tuple]) -> None:
    rows = big_rows
    seen: set[tuple] = set()
    exact_kept = []
    for i, row in enumerate(rows):
        if row[4] is None or row not in seen:
            exact_kept.append(i)
            seen.add(row)
    last_kept: dict[tuple, float] = {}
    kept = set()
    for i in sorted(exact_kept, key=lambda i: (rows[i][4] is None, rows[i][4] or 0.0, i)):
        u, it, k, _, t = rows[i]
        if t is None or (u, it, k) not in last_kept or t - last_kept[(u, it, k)] > 2.0:
            kept.add(i)
            if t is not None:
                last_kept[(u, it, k)] = t
    result = dedupe_events(big, window_s=2.0)
    assert result.exact == len(rows) - len(exact_kept) > 1000
    assert result.windowed == len(exact_kept) - len(kept) > 1000
    assert list(result.events.index) == sorted(kept)


def test_generated_sessions_and_funnel_match_references(big: pd.DataFrame, big_rows: list[tuple]) -> None:
    rows = big_rows
    out = sessionize(big, gap_s=1800)
    by_user: dict[str, list[int]] = {}
    for i, row in enumerate(rows):
        by_user.setdefault(row[0], []).append(i)
    expected_sid, expected_pos = np.empty(len(rows), int), np.empty(len(rows), int)
    sid = -1
    for members in by_user.values():
        timed = sorted((i for i in members if rows[i][4] is not None), key=lambda i: (rows[i][4], i))
        prev = None
        for i in timed:
            if prev is None or rows[i][4] - prev > 1800:
                sid, pos = sid + 1, 0
            expected_sid[i], expected_pos[i], prev = sid, pos, rows[i][4]
            pos += 1
        untimed = [i for i in members if rows[i][4] is None]
        if untimed:
            sid += 1
        for pos, i in enumerate(untimed):
            expected_sid[i], expected_pos[i] = sid, pos
    np.testing.assert_array_equal(out["session_id"].to_numpy(), expected_sid)
    np.testing.assert_array_equal(out["session_pos"].to_numpy(), expected_pos)

    times: dict[tuple, list[float]] = {}
    for u, it, k, _, t in rows:
        if t is not None:
            times.setdefault((u, it, k), []).append(t)
    for values in times.values():
        values.sort()
    funnel = align_funnel(big, window_s=3600.0)
    assert set(funnel["type"]) == {"cart", "purchase"}
    targets = rows_of(funnel)
    for stage in FUNNEL[:-1]:
        expected = []
        for u, it, k, _, t in targets:
            earlier = times.get((u, it, stage), [])
            j = bisect.bisect_right(earlier, t) if t is not None and FUNNEL.index(k) > FUNNEL.index(stage) else 0
            expected.append(t - earlier[j - 1] if j and t - earlier[j - 1] <= 3600.0 else NAN)
        assert_floats(funnel[f"time_since_{stage}"], expected)
        assert np.isfinite(funnel[f"time_since_{stage}"]).sum() > 1000 or stage == "cart"


def test_generated_aggregates_agree_with_groupby(big: pd.DataFrame) -> None:
    users, items = user_aggregates(big), item_aggregates(big)
    sessions = sessionize(big)
    assert users["n_events"].sum() == items["n_events"].sum() == len(big)
    pd.testing.assert_series_equal(
        users["n_items"], big.groupby("user_id", sort=False)["item_id"].nunique(), check_names=False
    )
    pd.testing.assert_series_equal(
        items["n_users"], big.groupby("item_id", sort=False)["user_id"].nunique(), check_names=False
    )
    pd.testing.assert_series_equal(
        users["n_sessions"], sessions.groupby("user_id", sort=False)["session_id"].nunique(), check_names=False
    )
    counts = big.groupby(["item_id", "type"]).size().unstack(fill_value=0).reindex(items.index)
    for kind in INTERACTION_TYPES:
        assert items[f"n_{kind}"].tolist() == counts[kind].tolist()
    ratings = big[big["type"] == "rating"].groupby("item_id")["value"].mean().reindex(items.index)
    assert_floats(items["mean_rating"], ratings.tolist())
    assert (users["recency_days"].dropna() >= 0).all() and users["active_days"].min() >= 1


# --- real data: amazon-toys-2023 has an order but no timestamps --------------------------------


def data_dir() -> Path:
    env = os.environ.get("VITRINA_DATA_DIR")
    return Path(env) if env else Path(__file__).resolve().parents[2].parent / "shared" / "data"


def test_amazon_toys_sequences_without_timestamps() -> None:
    from vitrina.data.datasets import load_dataset

    if not (data_dir() / "amazon-toys-2023").is_dir():
        pytest.skip(f"real dataset folder {data_dir() / 'amazon-toys-2023'} not found (set VITRINA_DATA_DIR)")
    inter = load_dataset("amazon-toys-2023", data_dir()).interactions
    assert inter["ts"].isna().all()
    per_user = inter.groupby("user_id", sort=False).size()

    assert dedupe_events(inter, window_s=BehaviourConfig().dedupe_window_s).dropped == 0
    sessions = sessionize(inter)
    assert sessions["session_id"].nunique() == len(per_user)
    position = inter["event_id"].str.rsplit(":", n=1).str[1].astype(int)
    assert (sessions["session_pos"] == position).all()  # one session per user, in sequence order

    users = user_aggregates(inter)
    assert (users["n_sessions"] == 1).all()
    assert users["n_purchase"].tolist() == per_user.tolist() == users["n_events"].tolist()
    assert users[["recency_days", "active_days", "median_dwell_s"]].isna().all().all()
    items = item_aggregates(inter)
    assert items["n_purchase"].sum() == len(inter)
    assert items["purchase_per_view"].isna().all()

    funnel = align_funnel(inter)
    assert len(funnel) == len(inter)
    assert funnel[["time_since_view", "time_since_click", "time_since_cart"]].isna().all().all()
