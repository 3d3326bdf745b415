"""Property-based tests (hypothesis) of the importer and the other parsers of outside input: whatever
arrives, the answer is the data or a precise `DataError` (or the parser's own error type), never a
crash; what is valid survives a round trip through every file format."""

from __future__ import annotations

import json
import math
import tomllib
from pathlib import Path

import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vitrina.config import parse_scalar
from vitrina.data.errors import DataError
from vitrina.data.importer import read_records, validate
from vitrina.data.schema import INTERACTION_TYPES
from vitrina.features.image_io import ImageError, load_image
from vitrina.search.filters import FilterError, Filters

SETTINGS = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
# Ids as shops write them: printable text without surrounding spaces (the importer strips those).
IDS = (
    st.text(st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")), min_size=1, max_size=40)
    .map(str.strip)
    .filter(bool)
)
EVENTS = st.lists(
    st.fixed_dictionaries(
        {
            "event_id": IDS,
            "user_id": IDS,
            "item_id": IDS,
            "type": st.sampled_from([t for t in INTERACTION_TYPES if t != "rating"]),
            "value": st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False),
            "ts": st.floats(0, 4e9, allow_nan=False),
        }
    ),
    min_size=1,
    max_size=20,
    unique_by=lambda e: e["event_id"],
)
ANY_CELL = st.one_of(
    st.none(),
    st.text(max_size=30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(10**20), 10**20),
    st.booleans(),
    st.lists(st.integers(), max_size=3),
)


def _write(frame: pd.DataFrame, path: Path) -> None:
    if path.suffix == ".jsonl":
        path.write_text(
            "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in frame.to_dict("records")), encoding="utf-8"
        )
    else:
        frame.to_csv(path, sep="\t" if path.suffix == ".tsv" else ",", index=False, float_format="%.17g")


@SETTINGS
@given(events=EVENTS, suffix=st.sampled_from([".csv", ".tsv", ".jsonl"]))
def test_valid_events_survive_every_format(events: list[dict], suffix: str, tmp_path: Path) -> None:
    frame = pd.DataFrame(events)
    path = tmp_path / f"events{suffix}"
    if suffix == ".tsv" and frame[["event_id", "user_id", "item_id"]].map(lambda v: "\t" in v or '"' in v).any().any():
        return  # TSV has no quoting: such ids need CSV or JSONL
    _write(frame, path)
    back = validate(read_records(path, "interactions"), "interactions", path.name)
    assert back["event_id"].tolist() == frame["event_id"].tolist()
    assert (
        back["user_id"].tolist() == frame["user_id"].tolist() and back["item_id"].tolist() == frame["item_id"].tolist()
    )
    assert back["type"].tolist() == frame["type"].tolist()
    assert all(
        math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-9) for a, b in zip(back["value"], frame["value"], strict=True)
    )
    assert all(math.isclose(a, b, rel_tol=1e-12) for a, b in zip(back["ts"], frame["ts"], strict=True))


@SETTINGS
@given(
    rows=st.lists(
        st.dictionaries(st.sampled_from(["user_id", "item_id", "type", "value", "ts", "x"]), ANY_CELL), max_size=8
    )
)
def test_any_cells_give_data_or_a_precise_error(rows: list[dict]) -> None:
    frame = pd.DataFrame(rows, dtype=object)
    try:
        out = validate(frame, "interactions", "fuzz")
    except DataError as exc:
        assert exc.problems and all(p.source == "fuzz" for p in exc.problems)
        return
    assert out["type"].isin(INTERACTION_TYPES).all()
    assert all(math.isfinite(v) for v in out["value"])
    assert out["user_id"].map(lambda v: isinstance(v, str) and v == v.strip() and v != "").all()


@SETTINGS
@given(data=st.binary(max_size=400), suffix=st.sampled_from([".csv", ".tsv", ".jsonl"]))
def test_arbitrary_bytes_in_a_file_never_crash(data: bytes, suffix: str, tmp_path: Path) -> None:
    path = tmp_path / f"items{suffix}"
    path.write_bytes(data)
    try:  # anything but a DataError (undecodable bytes included) fails the test
        validate(read_records(path, "items"), "items", path.name)
    except DataError as exc:
        assert exc.problems


@SETTINGS
@given(user=IDS, item=IDS, ts=st.integers(0, 4_000_000_000))
def test_derived_keys_ignore_spelling(user: str, item: str, ts: int) -> None:
    iso = pd.Timestamp(ts, unit="s", tz="UTC").isoformat()
    one = validate(
        pd.DataFrame([{"user_id": user, "item_id": item, "type": "VIEW", "ts": ts, "value": "1"}]), "interactions"
    )
    two = validate(
        pd.DataFrame([{"user_id": user, "item_id": item, "type": "view", "ts": iso, "value": 1.0}]), "interactions"
    )
    assert one["event_id"].iloc[0] == two["event_id"].iloc[0]


@SETTINGS
@given(
    spec=st.dictionaries(
        st.sampled_from(["category", "brand", "price_min", "price_max", "attributes.colour", "nope"]), ANY_CELL
    )
)
def test_search_filters_parse_or_refuse(spec: dict) -> None:
    try:
        filters = Filters.parse(spec)
    except FilterError:
        return
    assert filters.price_min is None or filters.price_min >= 0
    assert filters.price_max is None or filters.price_max >= 0


@SETTINGS
@given(data=st.binary(max_size=2000))
def test_image_decoder_refuses_garbage_cleanly(data: bytes) -> None:
    try:
        image = load_image(data)
    except ImageError:
        return
    assert image.mode == "RGB"


@SETTINGS
@given(text=st.text(max_size=40))
def test_config_scalars_parse_as_toml_or_stay_text(text: str) -> None:
    try:
        expected = tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        expected = text
    assert parse_scalar(text) == expected
