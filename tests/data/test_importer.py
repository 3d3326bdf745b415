"""The importer on small generated files: parsing, precise errors, and all-or-nothing imports."""

from __future__ import annotations

import gzip
import json
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from vitrina.data.errors import DataError
from vitrina.data.importer import derive_key, import_files, read_records, validate
from vitrina.data.storage import Storage

ITEMS_CSV = """item_id,title,price,image_paths,attributes,color,material
i1,Linen shirt,39.50,img/a.jpg|img/b.jpg,"{""fit"": ""slim""}",blue,linen
i2,"Mug, large",4,"[""img/m.jpg""]",,white,
i3,Poster,0,,,,
"""
USERS_CSV = "user_id\nu1\nu2\nu3\n"
EVENTS_CSV = """user_id,item_id,type,value,ts
u1,i1,view,,1700000000
u1,i2,click,1,2023-11-14T22:13:21Z
u2,i1,purchase,2.5,2023-11-14 22:13:22+00:00
u3,i3,rating,4,2023-11-15
u2,i2,cart,1.0,1700000100.5
"""
REVIEWS_JSONL = """{"user_id": "u1", "item_id": "i1", "rating": 5, "text": "Lovely shirt", "ts": 1700000000}
{"review_id": "r-2", "item_id": "i2", "text": "Chipped on arrival", "label": 0}
"""


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def shop(tmp_path: Path) -> dict[str, Path]:
    """A small, valid set of a shop's files."""
    return {
        "items": write(tmp_path, "items.csv", ITEMS_CSV),
        "users": write(tmp_path, "users.csv", USERS_CSV),
        "interactions": write(tmp_path, "events.csv", EVENTS_CSV),
        "reviews": write(tmp_path, "reviews.jsonl", REVIEWS_JSONL),
    }


def snapshot(storage: Storage) -> dict[str, list[dict[str, Any]]]:
    """Everything stored, comparable with ==."""
    out = {}
    for kind in ("items", "users", "interactions", "reviews"):
        rows = storage.read(kind).to_dict("records")
        out[kind] = [{k: None if isinstance(v, float) and math.isnan(v) else v for k, v in r.items()} for r in rows]
    return out


# -- importing into storage ------------------------------------------------------------------------


def test_import_all_kinds(storage: Storage, shop: dict[str, Path]) -> None:
    added = import_files(storage, **shop)

    assert added == {"items": 3, "users": 3, "interactions": 5, "reviews": 2}
    items = storage.read("items").set_index("item_id")
    assert items.loc["i1", "image_paths"] == ["img/a.jpg", "img/b.jpg"]
    assert items.loc["i2", "image_paths"] == ["img/m.jpg"]
    assert items.loc["i2", "title"] == "Mug, large"
    assert items.loc["i2", "price"] == 4.0
    assert items.loc["i1", "attributes"] == {"color": "blue", "material": "linen", "fit": "slim"}
    assert items.loc["i2", "attributes"] == {"color": "white"}
    assert items.loc["i3", "attributes"] is None
    events = storage.read("interactions")
    assert events["ts"].tolist() == [1700000000.0, 1700000001.0, 1700000002.0, 1700006400.0, 1700000100.5]
    assert events["value"].tolist() == [1.0, 1.0, 2.5, 4.0, 1.0]
    assert events["event_id"].str.len().eq(32).all()
    reviews = storage.read("reviews")
    assert reviews["review_id"].iloc[1] == "r-2"
    assert reviews["rating"].iloc[0] == 5.0 and math.isnan(reviews["rating"].iloc[1])
    assert reviews["user_id"].iloc[1] is None


def test_reimport_adds_nothing(storage: Storage, shop: dict[str, Path]) -> None:
    import_files(storage, **shop)
    before = snapshot(storage)

    again = import_files(storage, **shop)

    assert again == {"items": 0, "users": 0, "interactions": 0, "reviews": 0}
    assert snapshot(storage) == before


def test_reimport_of_items_updates_them(storage: Storage, shop: dict[str, Path], tmp_path: Path) -> None:
    import_files(storage, **shop)
    update = write(tmp_path, "items_update.csv", "item_id,title,price\ni1,Linen shirt (new),29\ni4,Bag,12\n")

    assert import_files(storage, items=update)["items"] == 1
    items = storage.read("items").set_index("item_id")
    assert len(items) == 4
    assert (items.loc["i1", "title"], items.loc["i1", "price"]) == ("Linen shirt (new)", 29.0)


BAD_ROWS = {
    "bad type": (
        "u2,i1,buy,1,1700000003",
        "type",
        "buy",
        "'buy' is not one of view, click, cart, purchase, rating",
    ),
    "bad float": ("u2,i1,view,lots,1700000003", "value", "lots", "'lots' is not a number"),
    "missing user": (",i1,view,1,1700000003", "user_id", "", "required but empty"),
    "bad time": ("u2,i1,view,1,yesterday", "ts", "yesterday", "neither unix seconds nor an ISO-8601"),
    "unknown item": ("u2,i404,view,1,1700000003", "item_id", "i404", "'i404' is not a known item"),
}


@pytest.mark.parametrize("case", list(BAD_ROWS))
def test_bad_row_in_the_middle_names_file_line_field_and_writes_nothing(
    storage: Storage, shop: dict[str, Path], tmp_path: Path, case: str
) -> None:
    import_files(storage, items=shop["items"], users=shop["users"])
    before = snapshot(storage)
    row, field, value, reason = BAD_ROWS[case]
    lines = EVENTS_CSV.splitlines()
    lines.insert(3, row)  # header is line 1, so the bad row is line 4 of 7
    events = write(tmp_path, "events.csv", "\n".join(lines) + "\n")
    new_item = write(tmp_path, "more_items.csv", "item_id,title\ni9,Would be added\n")

    with pytest.raises(DataError) as caught:
        import_files(storage, items=new_item, interactions=events)

    err = caught.value
    assert (err.source, err.line, err.field, err.value) == ("events.csv", 4, field, value)
    assert str(err).startswith(f"events.csv, line 4, field '{field}': ")
    assert reason in str(err)
    assert snapshot(storage) == before


def test_all_problems_of_a_file_are_reported_together(tmp_path: Path) -> None:
    text = "user_id,item_id,type,value\nu1,i1,view,1\nu1,i1,buy,1\nu1,,view,x\nu2,i2,click,\n"
    path = write(tmp_path, "events.csv", text)

    with pytest.raises(DataError) as caught:
        validate(read_records(path, "interactions"), "interactions", path.name)

    err = caught.value
    assert err.total == 3
    assert (err.line, err.field) == (3, "type")
    assert [(p.line, p.field) for p in err.problems] == [(3, "type"), (4, "item_id"), (4, "value")]
    message = str(err)
    assert message.startswith("3 problems in the input data:")
    assert "events.csv, line 4, field 'value': 'x' is not a number" in message


def test_many_problems_are_capped(tmp_path: Path) -> None:
    rows = "".join(f"u{i},i1,jump\n" for i in range(50))
    path = write(tmp_path, "events.csv", "user_id,item_id,type\n" + rows)

    with pytest.raises(DataError) as caught:
        validate(read_records(path, "interactions"), "interactions", path.name)

    assert caught.value.total == 50
    assert len(caught.value.problems) == 20
    assert "... and 30 more" in str(caught.value)


def test_problems_across_files_are_reported_together(storage: Storage, tmp_path: Path) -> None:
    items = write(tmp_path, "items.csv", "item_id,price\ni1,-3\n")
    users = write(tmp_path, "users.jsonl", '{"user_id": "u1"}\n{oops\n')

    with pytest.raises(DataError) as caught:
        import_files(storage, items=items, users=users)

    assert [(p.source, p.line, p.field) for p in caught.value.problems] == [
        ("items.csv", 2, "price"),
        ("users.jsonl", 2, None),
    ]
    assert "'-3' is outside the allowed range (>= 0)" in str(caught.value)
    assert storage.counts()["items"] == 0


def test_referential_error_names_events_file(storage: Storage, shop: dict[str, Path]) -> None:
    """A user in the events but in neither the database nor the users file."""
    with pytest.raises(DataError) as caught:
        import_files(storage, items=shop["items"], interactions=shop["interactions"])

    err = caught.value
    assert (err.source, err.line, err.field, err.value) == ("events.csv", 2, "user_id", "u1")
    assert "events.csv, line 2, field 'user_id': 'u1' is not a known user" in str(err)
    assert storage.counts() == {"items": 0, "users": 0, "interactions": 0, "reviews": 0}


def test_events_may_name_users_and_items_stored_earlier(storage: Storage, shop: dict[str, Path]) -> None:
    import_files(storage, items=shop["items"], users=shop["users"])
    assert import_files(storage, interactions=shop["interactions"])["interactions"] == 5


def test_parquet_round_trip(storage: Storage, shop: dict[str, Path], tmp_path: Path) -> None:
    import_files(storage, items=shop["items"], users=shop["users"])
    events = pd.DataFrame(
        {
            "user_id": ["u1", "u2", "u3"],
            "item_id": ["i1", "i2", "i3"],
            "type": ["view", "purchase", "rating"],
            "value": [1.0, 1.0, 3.5],
            "ts": pd.to_datetime(["2024-01-01T00:00:00Z", "2024-01-02T00:00:00Z", "2024-01-03T00:00:00Z"]),
            "split": ["train", "train", "test"],
        }
    )
    events_path = tmp_path / "events.parquet"
    events.to_parquet(events_path, index=False)
    items = pd.DataFrame({"item_id": ["i5"], "title": ["Lamp"], "image_paths": [["a.jpg", "b.jpg"]], "watts": [40]})
    items_path = tmp_path / "items.parquet"
    items.to_parquet(items_path, index=False)

    added = import_files(storage, items=items_path, interactions=events_path)

    assert added["interactions"] == 3 and added["items"] == 1
    stored = storage.read("interactions")
    jan1 = datetime(2024, 1, 1, tzinfo=UTC).timestamp()
    assert stored["ts"].tolist() == [jan1, jan1 + 86400, jan1 + 2 * 86400]
    assert stored["split"].tolist() == ["train", "train", "test"]
    lamp = storage.read("items", where={"item_id": "i5"}).iloc[0]
    assert lamp["image_paths"] == ["a.jpg", "b.jpg"]
    assert lamp["attributes"] == {"watts": 40}
    assert import_files(storage, items=items_path, interactions=events_path)["interactions"] == 0


def test_parquet_errors_name_the_row(tmp_path: Path) -> None:
    path = tmp_path / "events.parquet"
    pd.DataFrame({"user_id": ["u1", "u2"], "item_id": ["i1", "i2"], "type": ["view", "like"]}).to_parquet(path)

    with pytest.raises(DataError, match=r"events.parquet, row 2, field 'type': 'like' is not one of"):
        validate(read_records(path, "interactions"), "interactions", path.name)


# -- reading files ---------------------------------------------------------------------------------


def test_malformed_jsonl_line_is_named(tmp_path: Path) -> None:
    text = '{"user_id": "u1"}\n\n{"user_id": "u2"\n[1, 2]\n'
    path = write(tmp_path, "users.jsonl", text)

    with pytest.raises(DataError) as caught:
        read_records(path, "users")

    assert [(p.line, p.field) for p in caught.value.problems] == [(3, None), (4, None)]
    assert "users.jsonl, line 3: is not valid JSON" in str(caught.value)
    assert "users.jsonl, line 4: is a JSON list, not an object" in str(caught.value)


def test_ragged_csv_rows_are_named(tmp_path: Path) -> None:
    path = write(tmp_path, "events.csv", "user_id,item_id,type\nu1,i1,view\nu1,i2\nu1,i3,view,extra\n")

    with pytest.raises(DataError) as caught:
        read_records(path, "interactions")

    assert [p.line for p in caught.value.problems] == [3, 4]
    assert "events.csv, line 3: has 2 fields but the header has 3" in str(caught.value)


def test_line_numbers_follow_the_file_across_quoted_newlines_and_blank_lines(tmp_path: Path) -> None:
    text = 'item_id,description,price\ni1,"two\nlines",1\n\ni2,plain,-1\n'
    path = write(tmp_path, "items.csv", text)

    frame = read_records(path, "items")
    with pytest.raises(DataError) as caught:
        validate(frame, "items", path.name)

    assert frame.index.tolist() == [2, 5]
    assert frame["description"].tolist() == ["two\nlines", "plain"]
    assert (caught.value.line, caught.value.field) == (5, "price")


def test_iso_and_unix_timestamps(tmp_path: Path) -> None:
    spellings = [
        "1700000000",
        "1700000000.25",
        "2023-11-14T22:13:20Z",
        "2023-11-15T00:13:20+02:00",
        "2023-11-14 22:13:20",  # naive: read as UTC
        "2023-11-14",
        "",
    ]
    rows = "".join(f"u,i{n},view,{ts}\n" for n, ts in enumerate(spellings))
    path = write(tmp_path, "events.csv", "user_id,item_id,type,ts\n" + rows)

    out = validate(read_records(path, "interactions"), "interactions", path.name)

    midnight = datetime(2023, 11, 14, tzinfo=UTC).timestamp()
    ts = out["ts"].tolist()
    assert ts[:6] == [1700000000.0, 1700000000.25, 1700000000.0, 1700000000.0, 1700000000.0, midnight]
    assert math.isnan(ts[6])


def test_same_event_spelled_differently_collapses(tmp_path: Path) -> None:
    text = "user_id,item_id,type,value,ts\nu,i,view,1,1700000000\nu,i,view,,2023-11-14T22:13:20Z\nu,i,view,2,1\n"
    path = write(tmp_path, "events.csv", text)

    out = validate(read_records(path, "interactions"), "interactions", path.name)

    assert out.index.tolist() == [2, 4]


def test_milliseconds_are_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "events.csv", "user_id,item_id,type,ts\nu,i,view,1700000000000\n")

    with pytest.raises(DataError, match=r"line 2, field 'ts': '1700000000000' is too large for unix seconds"):
        validate(read_records(path, "interactions"), "interactions", path.name)


def test_tsv_and_gzip(tmp_path: Path) -> None:
    tsv = write(tmp_path, "users.tsv", "user_id\tsegment\nu1\tvip\nu2\t\n")
    gz = tmp_path / "events.jsonl.gz"
    with gzip.open(gz, "wt", encoding="utf-8") as handle:
        handle.write(json.dumps({"user_id": "u1", "item_id": "i1", "type": "VIEW"}) + "\n")

    users = validate(read_records(tsv, "users"), "users", tsv.name)
    events = validate(read_records(gz, "interactions"), "interactions", gz.name)

    assert users["attributes"].tolist() == [{"segment": "vip"}, None]
    assert events["type"].tolist() == ["view"]
    assert events["value"].tolist() == [1.0]


def test_missing_file_and_unknown_suffix(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"events\.csv: file not found"):
        read_records(tmp_path / "events.csv", "interactions")
    xlsx = write(tmp_path, "events.xlsx", "")
    with pytest.raises(DataError, match=r"events.xlsx: unknown file type .xlsx; use .csv, .tsv, .jsonl or .parquet"):
        read_records(xlsx, "interactions")
    with pytest.raises(ValueError, match="unknown record kind"):
        read_records(xlsx, "orders")


def test_empty_csv_and_bad_header(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="file is empty"):
        read_records(write(tmp_path, "items.csv", ""), "items")
    with pytest.raises(DataError, match="line 1, field 'title': column appears twice"):
        read_records(write(tmp_path, "items2.csv", "item_id,title,title\ni1,a,b\n"), "items")
    header_only = read_records(write(tmp_path, "items3.csv", "item_id,title\n"), "items")
    assert validate(header_only, "items", "items3.csv").empty


# -- validating fields -----------------------------------------------------------------------------


def test_required_column_missing(tmp_path: Path) -> None:
    path = write(tmp_path, "events.csv", "user_id,item,type\nu1,i1,view\n")

    with pytest.raises(DataError, match=r"events.csv, field 'item_id': required column is missing"):
        validate(read_records(path, "interactions"), "interactions", path.name)


def test_ranges_and_json_fields() -> None:
    items = pd.DataFrame(
        {
            "item_id": ["a", "b", "c", "d"],
            "price": ["1", "-0.5", "inf", "2"],
            "image_paths": ["[1", "x.jpg", "a.jpg | b.jpg", None],
            "attributes": [None, "[1]", '{"k": 1}', "{bad"],
        }
    )
    reviews = pd.DataFrame({"text": ["ok", "too good"], "rating": [5, 6], "label": [1, 0.5]})
    events = pd.DataFrame({"user_id": ["u"], "item_id": ["i"], "type": ["rating"], "value": [7]})

    with pytest.raises(DataError) as caught:
        validate(items, "items", "catalog")
    found = {(p.line, p.field) for p in caught.value.problems}
    assert found == {
        (1, "image_paths"),
        (2, "price"),
        (3, "price"),
        (2, "attributes"),
        (4, "attributes"),
    }
    assert caught.value.problems[0].unit == "row"
    assert str(caught.value.problems[0]).startswith("catalog, row 1, field 'image_paths'")
    with pytest.raises(DataError, match=r"row 2, field 'rating': 6 is outside the allowed range 0..5"):
        validate(reviews, "reviews", "reviews")
    with pytest.raises(DataError, match=r"field 'value': 7.0 is outside the rating range 0..5"):
        validate(events, "interactions", "events")


def test_long_ids_are_refused() -> None:
    items = pd.DataFrame({"item_id": ["x" * 129]})
    with pytest.raises(DataError, match="longer than 128 characters"):
        validate(items, "items", "items")


def test_derived_keys_are_stable_across_spellings(tmp_path: Path) -> None:
    csv_path = write(tmp_path, "a.csv", "user_id,item_id,type,value,ts\nu1,i1,view,1,2023-11-14T22:13:20Z\n")
    jsonl_path = write(tmp_path, "b.jsonl", '{"user_id":"u1","item_id":"i1","type":"view","ts":1700000000}\n')

    a = validate(read_records(csv_path, "interactions"), "interactions", "a.csv")
    b = validate(read_records(jsonl_path, "interactions"), "interactions", "b.jsonl")

    assert a["event_id"].tolist() == b["event_id"].tolist()
    assert a["event_id"].iloc[0] == derive_key(["u1", "i1", "view", 1.0, 1700000000.0, None])


def test_duplicate_keys_in_a_file_keep_the_first(tmp_path: Path) -> None:
    text = "event_id,user_id,item_id,type\ne1,u1,i1,view\ne1,u1,i2,click\ne2,u1,i1,view\n"
    path = write(tmp_path, "events.csv", text)

    out = validate(read_records(path, "interactions"), "interactions", path.name)

    assert out["event_id"].tolist() == ["e1", "e2"]
    assert out["item_id"].tolist() == ["i1", "i1"]
    assert out.index.tolist() == [2, 4]


def test_numeric_ids_from_jsonl_become_text(tmp_path: Path) -> None:
    path = write(tmp_path, "users.jsonl", '{"user_id": 42, "attributes": {"age": 30}}\n{"user_id": 7.0}\n')

    out = validate(read_records(path, "users"), "users", path.name)

    assert out["user_id"].tolist() == ["42", "7"]
    assert out["attributes"].tolist() == [{"age": 30}, None]
