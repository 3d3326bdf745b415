"""Behaviour logs as features: de-duplication, sessions, the funnel aligned in time, aggregates.

Every function takes an interactions frame in schema columns (`vitrina.data.schema`; only
user_id, item_id, type, value and ts are read) and is vectorised (numpy sorts and bincounts,
`pandas.merge_asof`), so a million events take seconds, not a loop per event.

Timestamps are optional in the schema (`ts` is None when a source gives only an order). Events
without one follow the same rules everywhere here: they are never de-duplicated (without a time,
two equal rows are two events, e.g. the same item bought twice); each user's untimed events form
one session of their own, in row order; they take part in no time alignment; every time derived
from them (delays, recency, dwell) is NaN.

Dwell: the logs carry no explicit dwell time, so "dwell" here is the time from an event to the
same user's next event in the same session (NaN for a session's last event): how long the user
stayed with what the event showed before doing something else.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from vitrina.data.schema import INTERACTION_TYPES, columns

if TYPE_CHECKING:
    from vitrina.config import Config

DAY_S = 86_400.0
DEFAULT_GAP_S = 1800.0
DEFAULT_DEDUPE_WINDOW_S = 1.0
DEFAULT_FUNNEL_WINDOW_S = 7 * DAY_S

FUNNEL: tuple[str, ...] = ("view", "click", "cart", "purchase")
_TYPES = pd.Index(INTERACTION_TYPES)
_READ = ("user_id", "item_id", "type", "value", "ts")


@dataclass(frozen=True)
class BehaviourConfig:
    """The behaviour-log settings; defaults equal `[features.behaviour]` in defaults.toml."""

    gap_s: float = DEFAULT_GAP_S
    dedupe_window_s: float = DEFAULT_DEDUPE_WINDOW_S
    funnel_window_s: float = DEFAULT_FUNNEL_WINDOW_S

    @classmethod
    def from_config(cls, cfg: Config) -> BehaviourConfig:
        section = cfg.get("features.behaviour", {}) or {}
        return cls(**{f.name: float(section[f.name]) for f in fields(cls) if f.name in section})


@dataclass(frozen=True)
class DedupeResult:
    """The kept events plus how many rows each rule dropped, so callers can report data quality."""

    events: pd.DataFrame
    exact: int
    windowed: int

    @property
    def dropped(self) -> int:
        return self.exact + self.windowed


@dataclass(frozen=True)
class _Log:
    """The columns the functions read, as numpy arrays; ids as codes numbered by first appearance."""

    user: np.ndarray
    users: pd.Index
    item: np.ndarray
    items: pd.Index
    kind: np.ndarray  # index into INTERACTION_TYPES
    value: np.ndarray
    ts: np.ndarray  # float64, NaN when the event has no timestamp

    @property
    def timed(self) -> np.ndarray:
        return ~np.isnan(self.ts)


def _float_column(frame: pd.DataFrame, name: str) -> np.ndarray:
    try:
        return frame[name].to_numpy(dtype=np.float64, na_value=np.nan)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"interactions column '{name}' must be numeric (None for missing): {exc}") from exc


def _log(frame: pd.DataFrame) -> _Log:
    missing = [c for c in _READ if c not in frame.columns]
    if missing:
        raise ValueError(f"interactions frame lacks column(s) {missing}; schema columns are {columns('interactions')}")
    user, users = pd.factorize(frame["user_id"])
    item, items = pd.factorize(frame["item_id"])
    for name, codes in (("user_id", user), ("item_id", item)):
        if (codes < 0).any():
            raise ValueError(f"interactions column '{name}' is empty in {int((codes < 0).sum())} row(s)")
    kind = _TYPES.get_indexer(frame["type"])
    if (kind < 0).any():
        bad = sorted({str(t) for t in frame["type"].to_numpy()[kind < 0]})
        raise ValueError(f"unknown interaction type(s) {bad}; known types are {list(INTERACTION_TYPES)}")
    return _Log(
        user=user.astype(np.int64),
        users=users,
        item=item.astype(np.int64),
        items=items,
        kind=kind.astype(np.int64),
        value=_float_column(frame, "value"),
        ts=_float_column(frame, "ts"),
    )


def _check_seconds(name: str, value: float) -> None:
    if not value >= 0:
        raise ValueError(f"{name} must be a non-negative number of seconds, got {value!r}")


# --- de-duplication ---------------------------------------------------------------------------


def _first_beyond(group: np.ndarray, t: np.ndarray, window_s: float) -> np.ndarray:
    """For arrays sorted by (group, t): index of the first element of the same group with
    t > t[i] + window_s, else len(t). One merged sort instead of a search per group."""
    n = len(t)
    is_query = np.repeat([False, True], n)
    merged = np.lexsort((is_query, np.concatenate([t, t + window_s]), np.concatenate([group, group])))
    q = is_query[merged]
    data_before = np.cumsum(~q)  # at a query: the sorted index of the first element after it
    nxt = np.empty(n, dtype=np.int64)
    nxt[merged[q] - n] = data_before[q]
    inside = nxt < n
    inside[inside] = group[nxt[inside]] == group[inside]
    return np.where(inside, nxt, n)


def _kept_chain(group: np.ndarray, nxt: np.ndarray) -> np.ndarray:
    """Mark each group's first element and every element reached from it through `nxt`.

    Pointer doubling: after round r every chain element within 2**r steps of its group's first
    is marked, so log2(longest chain) vectorised rounds replace the sequential walk.
    """
    n = len(nxt)
    keep = np.zeros(n + 1, dtype=bool)  # slot n: "past the group's end"
    keep[:n] = np.r_[True, group[1:] != group[:-1]][:n]
    jump = np.append(nxt, n)
    while (jump[:n] < n).any():
        keep[jump[:n][keep[:n]]] = True
        jump = jump[jump]
    return keep[:n]


def dedupe_events(frame: pd.DataFrame, window_s: float = 0.0) -> DedupeResult:
    """Drop repeated events that would count one action twice; keep the first of each.

    Exact duplicates: the same user, item, type, value and ts. With `window_s > 0`, also every
    repeat of the same (user, item, type) within `window_s` seconds (inclusive) of the previous
    *kept* one, e.g. a double click; a steady stream of repeats therefore keeps one event per
    window rather than collapsing into one. Events without ts are never dropped. Returns the
    kept rows with the input's columns, index and order, plus the count each rule dropped.
    """
    _check_seconds("window_s", window_s)
    log = _log(frame)
    timed = log.timed
    keys = pd.DataFrame({"u": log.user, "i": log.item, "k": log.kind, "v": log.value, "t": log.ts})
    keep = ~(keys.duplicated().to_numpy() & timed)
    n_exact = int((~keep).sum())
    n_window = 0
    if window_s > 0:
        rows = np.flatnonzero(keep & timed)
        group = (log.user[rows] * len(log.items) + log.item[rows]) * len(INTERACTION_TYPES) + log.kind[rows]
        order = np.lexsort((rows, log.ts[rows], group))
        g, t = group[order], log.ts[rows][order]
        repeat = ~_kept_chain(g, _first_beyond(g, t, window_s))
        keep[rows[order][repeat]] = False
        n_window = int(repeat.sum())
    return DedupeResult(events=frame[keep], exact=n_exact, windowed=n_window)


# --- sessions ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Sessions:
    """Per-row session facts, in the frame's row order."""

    session: np.ndarray  # global dense id, a user's sessions consecutive and in time order
    pos: np.ndarray
    dwell: np.ndarray  # seconds to the same user's next event in the session, else NaN
    user_of_session: np.ndarray


def _sessions(log: _Log, gap_s: float) -> _Sessions:
    _check_seconds("gap_s", gap_s)
    n = len(log.ts)
    untimed = ~log.timed
    # Users in order of first appearance; timed events by time, then untimed ones; ties by row.
    order = np.lexsort((np.arange(n), log.ts, untimed, log.user))
    u, t, un = log.user[order], log.ts[order], untimed[order]
    step = np.diff(t)  # NaN next to an untimed event, so only the flags below split those
    new = np.ones(n, dtype=bool)
    new[1:] = (u[1:] != u[:-1]) | (un[1:] != un[:-1]) | (step > gap_s)
    sid = np.cumsum(new) - 1
    starts = np.flatnonzero(new)
    dwell = np.full(n, np.nan)
    dwell[:-1] = np.where(new[1:], np.nan, step)
    session, pos, dwell_rows = np.empty(n, np.int64), np.empty(n, np.int64), np.empty(n)
    session[order] = sid
    pos[order] = np.arange(n) - starts[sid]
    dwell_rows[order] = dwell
    return _Sessions(session=session, pos=pos, dwell=dwell_rows, user_of_session=u[starts])


def sessionize(frame: pd.DataFrame, gap_s: float = DEFAULT_GAP_S) -> pd.DataFrame:
    """Add `session_id` and `session_pos`: a new session starts after more than `gap_s` idle seconds.

    `session_id` is a dense int over the whole frame (0 .. n_sessions-1), so it identifies a
    session on its own; each user's sessions get consecutive ids in time order, users in order of
    first appearance. `session_pos` is the 0-based place in the session (ties in ts: row order).
    A user's events without ts form one extra session, in row order, after their timed ones.
    Rows keep the input's order and index; sort by (session_id, session_pos) for session order.
    """
    s = _sessions(_log(frame), gap_s)
    return frame.assign(session_id=s.session, session_pos=s.pos)


# --- funnel -----------------------------------------------------------------------------------


def align_funnel(frame: pd.DataFrame, window_s: float | None = DEFAULT_FUNNEL_WINDOW_S) -> pd.DataFrame:
    """Align view → click → cart → purchase in time: conversion delays per cart and purchase.

    Returns the cart and purchase rows (input columns, index and order) with
    `time_since_view`, `time_since_click` and `time_since_cart`: seconds since the latest earlier
    (or simultaneous) event of that funnel stage by the same user on the same item, at most
    `window_s` seconds before (None: no limit); NaN when there is none, for stages that do not
    precede the row's own (time_since_cart of a cart) and for rows without ts.
    """
    if window_s is not None:
        _check_seconds("window_s", window_s)
    log = _log(frame)
    pair = log.user * len(log.items) + log.item
    stage = np.full(len(log.ts), -1)
    for k, name in enumerate(FUNNEL):
        stage[log.kind == INTERACTION_TYPES.index(name)] = k
    targets = np.flatnonzero(stage >= FUNNEL.index("cart"))
    out = frame.iloc[targets].copy()
    timed = log.timed
    for k, name in enumerate(FUNNEL[:-1]):
        delay = np.full(len(targets), np.nan)
        later = np.flatnonzero((stage[targets] > k) & timed[targets])
        src = np.flatnonzero((stage == k) & timed)
        if len(later) and len(src):
            rows = targets[later]
            left = pd.DataFrame({"ts": log.ts[rows], "pair": pair[rows], "at": later}).sort_values("ts", kind="stable")
            right = pd.DataFrame({"ts": log.ts[src], "pair": pair[src], "seen": log.ts[src]}).sort_values("ts")
            hit = pd.merge_asof(left, right, on="ts", by="pair", direction="backward", tolerance=window_s)
            delay[hit["at"].to_numpy()] = (hit["ts"] - hit["seen"]).to_numpy()
        out[f"time_since_{name}"] = delay
    return out


# --- aggregates -------------------------------------------------------------------------------


def _distinct(codes: np.ndarray, other: np.ndarray, n: int) -> np.ndarray:
    """Per code, the number of distinct `other` values (non-negative ints) seen with it."""
    if not len(codes):
        return np.zeros(n, dtype=np.int64)
    width = int(other.max()) + 1
    return np.bincount(np.unique(codes * width + other) // width, minlength=n)


def _per_code(values: np.ndarray, codes: np.ndarray, n: int, how: str) -> np.ndarray:
    """Per code, `how` ("max", "median", "mean") over the non-NaN values; NaN when there are none."""
    return pd.Series(values).groupby(codes).agg(how).reindex(range(n)).to_numpy(dtype=np.float64)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return np.divide(num, den, out=np.full(len(num), np.nan), where=den > 0)


def _type_counts(log: _Log, codes: np.ndarray, n: int) -> dict[str, np.ndarray]:
    width = len(INTERACTION_TYPES)
    table = np.bincount(codes * width + log.kind, minlength=n * width).reshape(n, width)
    out = {f"n_{name}": table[:, k] for k, name in enumerate(INTERACTION_TYPES)}
    out["n_events"] = table.sum(axis=1)
    return out


def _recency_days(log: _Log, codes: np.ndarray, n: int, now: float | None) -> np.ndarray:
    if now is None:
        now = float(np.nanmax(log.ts)) if log.timed.any() else np.nan
    return (now - _per_code(log.ts, codes, n, "max")) / DAY_S


def user_aggregates(frame: pd.DataFrame, now: float | None = None, gap_s: float = DEFAULT_GAP_S) -> pd.DataFrame:
    """Per-user behaviour features, index `user_id` (order of first appearance).

    Columns: n_<type> for each interaction type and n_events; n_items (distinct items);
    n_sessions (as `sessionize(frame, gap_s)`); events_per_session (mean); recency_days (days
    from the last event to `now`, unix seconds, default the log's latest ts); active_days
    (distinct UTC calendar days with an event); median_dwell_s (median time to the user's next
    event within a session, see the module note). Time columns are NaN for users without ts.
    """
    log = _log(frame)
    n = len(log.users)
    s = _sessions(log, gap_s)
    out = _type_counts(log, log.user, n)
    out["n_items"] = _distinct(log.user, log.item, n)
    out["n_sessions"] = np.bincount(s.user_of_session, minlength=n)
    out["events_per_session"] = _ratio(out["n_events"], out["n_sessions"])
    out["recency_days"] = _recency_days(log, log.user, n, now)
    timed = log.timed
    day = np.floor(log.ts[timed] / DAY_S).astype(np.int64)
    active = _distinct(log.user[timed], day - (day.min() if len(day) else 0), n).astype(np.float64)
    active[np.bincount(log.user[timed], minlength=n) == 0] = np.nan
    out["active_days"] = active
    out["median_dwell_s"] = _per_code(s.dwell, log.user, n, "median")
    return pd.DataFrame(out, index=log.users.rename("user_id"))


def item_aggregates(frame: pd.DataFrame, now: float | None = None, gap_s: float = DEFAULT_GAP_S) -> pd.DataFrame:
    """Per-item behaviour features, index `item_id` (order of first appearance).

    Columns: n_<type> for each interaction type and n_events; n_users (distinct users);
    conversion rates as event-count ratios (NaN when the denominator is 0; they can exceed 1
    when one view leads to several clicks): click_per_view, purchase_per_view, purchase_per_cart;
    recency_days (days from the item's last event to `now`, default the log's latest ts);
    mean_rating (mean value of its rating events); median_dwell_s (median time from an event on
    the item to the same user's next event in the session, see the module note).
    """
    log = _log(frame)
    n = len(log.items)
    s = _sessions(log, gap_s)
    out = _type_counts(log, log.item, n)
    out["n_users"] = _distinct(log.item, log.user, n)
    out["click_per_view"] = _ratio(out["n_click"], out["n_view"])
    out["purchase_per_view"] = _ratio(out["n_purchase"], out["n_view"])
    out["purchase_per_cart"] = _ratio(out["n_purchase"], out["n_cart"])
    out["recency_days"] = _recency_days(log, log.item, n, now)
    rating = np.where(log.kind == INTERACTION_TYPES.index("rating"), log.value, np.nan)
    out["mean_rating"] = _per_code(rating, log.item, n, "mean")
    out["median_dwell_s"] = _per_code(s.dwell, log.item, n, "median")
    return pd.DataFrame(out, index=log.items.rename("item_id"))
