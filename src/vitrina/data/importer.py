"""The generic importer for a shop's own files: read, check every field, then store all or nothing.

A shop exports its catalogue, users, events and reviews as CSV, TSV, JSON Lines or Parquet (text
formats optionally .gz/.bz2/.xz compressed). Nothing is stored until every given file has been read
and validated; every refusal names the file, the line a person sees in an editor, the field and
the value, and up to `MAX_PROBLEMS` refusals are reported together so a file can be fixed in one go.
"""

from __future__ import annotations

import bz2
import csv
import gzip
import hashlib
import json
import logging
import lzma
import math
import numbers
from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from vitrina.data.errors import (
    LINE_INDEX,
    MAX_PROBLEMS,
    ROW_INDEX,
    DataError,
    Problem,
    ProblemLog,
    row_locations,
)
from vitrina.data.schema import FIELDS, KEYS, TABLES, Field, columns

if TYPE_CHECKING:
    from vitrina.data.storage import Storage

log = logging.getLogger(__name__)

KINDS: tuple[str, ...] = ("items", "users", "interactions", "reviews")
FORMATS: dict[str, str] = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
}
COMPRESSIONS: dict[str, Callable[..., IO[str]]] = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}

# Value ranges a shop's data must respect (inclusive; None = unbounded).
RATING_RANGE: tuple[float, float] = (0.0, 5.0)
RANGES: dict[tuple[str, str], tuple[float | None, float | None]] = {
    ("items", "price"): (0.0, None),
    ("reviews", "rating"): RATING_RANGE,
    ("reviews", "label"): (0.0, 1.0),
}
# Parts of a row that identify it when the file gives no key (see `derive_key`).
KEY_PARTS: dict[str, tuple[str, ...]] = {
    "interactions": ("user_id", "item_id", "type", "value", "ts", "split"),
    "reviews": ("user_id", "item_id", "ts", "text"),
}
DEFAULT_VALUE = 1.0
# Timestamps this large are milliseconds (or worse), not seconds: year 5138 in seconds.
_MAX_TS_SECONDS = 1e11
_DERIVED_KEY_LENGTH = 32


class _Invalid(Exception):
    """A value refused by a converter; the message completes "<source>, line N, field 'f': ..."."""


# -- reading ---------------------------------------------------------------------------------------


def detect_format(path: str | Path) -> tuple[str, str | None]:
    """(format, compression suffix) of a file from its name, e.g. ("csv", ".gz") for events.csv.gz."""
    path = Path(path)
    suffixes = [s.lower() for s in path.suffixes]
    compression = suffixes.pop() if suffixes and suffixes[-1] in COMPRESSIONS else None
    fmt = FORMATS.get(suffixes[-1]) if suffixes else None
    if fmt is None or (fmt == "parquet" and compression):
        shown = "".join(path.suffixes) or "(none)"
        raise DataError(
            Problem(
                path.name,
                None,
                None,
                shown,
                f"unknown file type {shown}; use .csv, .tsv, .jsonl or .parquet "
                "(text formats may be compressed as .gz, .bz2 or .xz)",
            )
        )
    return fmt, compression


def read_records(path: str | Path, kind: str) -> pd.DataFrame:
    """Read one file of `kind` records into an all-object frame, without checking the values.

    The index holds where each row came from (named "line": the line in the file, the CSV header
    being line 1; named "row" for Parquet: the 1-based row), so `validate` can point at it.
    Missing files, unknown suffixes, malformed JSON lines and ragged CSV rows raise `DataError`.
    """
    _check_kind(kind)
    path = Path(path)
    if not path.is_file():
        raise DataError(Problem(path.name, None, None, str(path), f"file not found: {path}"))
    fmt, compression = detect_format(path)
    if fmt == "parquet":
        return _read_parquet(path)
    opener = COMPRESSIONS[compression] if compression else open
    with opener(path, "rt", encoding="utf-8-sig", newline="") as handle:
        if fmt == "jsonl":
            return _read_jsonl(handle, path.name)
        return _read_delimited(handle, path.name, "\t" if fmt == "tsv" else ",")


def _check_kind(kind: str) -> None:
    if kind not in FIELDS:
        raise ValueError(f"unknown record kind '{kind}'; expected one of {list(KINDS)}")


def _object_frame(data: dict[str, list[Any]], index: list[int], unit: str) -> pd.DataFrame:
    # Object columns keep each value exactly as read (no float-ification of ids, no str dtype).
    idx = pd.Index(index, name=unit, dtype="int64")
    return pd.DataFrame({name: pd.Series(values, index=idx, dtype=object) for name, values in data.items()})


def _read_delimited(handle: IO[str], source: str, delimiter: str) -> pd.DataFrame:
    # csv.reader rather than pandas: it reports the physical line of every record (quoted fields
    # may span lines) and lets short rows be refused instead of silently padded.
    csv.field_size_limit(max(csv.field_size_limit(), 1 << 30))
    reader = csv.reader(handle, delimiter=delimiter)
    problems = ProblemLog()
    rows: list[list[str]] = []
    lines: list[int] = []
    header: list[str] | None = None
    header_line = 0
    previous = 0
    try:
        for row in reader:
            start, previous = previous + 1, reader.line_num
            if not row:
                continue  # blank line
            if header is None:
                header, header_line = [name.strip() for name in row], start
                _check_header(header, source, header_line)
                continue
            if len(row) != len(header):
                problems.add(
                    Problem(source, start, None, None, f"has {len(row)} fields but the header has {len(header)}")
                )
                continue
            rows.append(row)
            lines.append(start)
    except (csv.Error, UnicodeDecodeError) as exc:
        problems.add(Problem(source, previous + 1, None, None, f"cannot be read: {exc}"))
    problems.raise_if_any()
    if header is None:
        raise DataError(Problem(source, None, None, None, "file is empty; expected a header line"))
    data = {name: [row[i] for row in rows] for i, name in enumerate(header)}
    return _object_frame(data, lines, LINE_INDEX)


def _check_header(header: list[str], source: str, line: int) -> None:
    problems = ProblemLog()
    seen: set[str] = set()
    for position, name in enumerate(header, start=1):
        if not name:
            problems.add(Problem(source, line, None, name, f"header column {position} has no name"))
        elif name in seen:
            problems.add(Problem(source, line, name, name, "column appears twice in the header"))
        seen.add(name)
    problems.raise_if_any()


def _read_jsonl(handle: IO[str], source: str) -> pd.DataFrame:
    problems = ProblemLog()
    records: list[dict[str, Any]] = []
    lines: list[int] = []
    number = 0
    try:
        for number, text in enumerate(handle, start=1):
            if not text.strip():
                continue
            try:
                record = json.loads(text)
            except json.JSONDecodeError as exc:
                shown = text.strip()[:60]
                problems.add(Problem(source, number, None, shown, f"is not valid JSON ({exc.msg}, column {exc.colno})"))
                continue
            if not isinstance(record, dict):
                problems.add(Problem(source, number, None, record, f"is a JSON {type(record).__name__}, not an object"))
                continue
            records.append(record)
            lines.append(number)
    except UnicodeDecodeError as exc:
        problems.add(Problem(source, number + 1, None, None, f"cannot be read: {exc}"))
    problems.raise_if_any()
    names = list(dict.fromkeys(name for record in records for name in record))
    data = {name: [record.get(name) for record in records] for name in names}
    return _object_frame(data, lines, LINE_INDEX)


def _read_parquet(path: Path) -> pd.DataFrame:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as exc:
        raise DataError(Problem(path.name, None, None, None, f"cannot be read as Parquet: {exc}")) from exc
    # to_pylist gives plain Python values (lists, dicts, datetimes) rather than numpy wrappers.
    data = {name: table.column(name).to_pylist() for name in table.column_names}
    return _object_frame(data, list(range(1, table.num_rows + 1)), ROW_INDEX)


# -- converting single values ----------------------------------------------------------------------


def _missing(value: Any) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    if isinstance(value, float):
        return math.isnan(value)
    return isinstance(value, str) and not value.strip()


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _describe(value: Any) -> str:
    return {list: "a list", dict: "an object", bool: "true/false"}.get(type(value), type(value).__name__)


def _to_str(value: Any) -> str:
    if isinstance(value, str):
        return value.strip()
    value = _plain(value)
    if isinstance(value, bool) or not isinstance(value, numbers.Number | str):
        raise _Invalid(f"{value!r} is {_describe(value)}, expected text")
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # an id that passed through a float column
    return str(value)


def _to_float(value: Any) -> float:
    value = _plain(value)
    if isinstance(value, bool):
        raise _Invalid(f"{value!r} is not a number")
    try:
        number = float(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError):
        raise _Invalid(f"{value!r} is not a number") from None
    if not math.isfinite(number):
        raise _Invalid(f"{value!r} is not a finite number")
    return number


def _to_ts(value: Any) -> float:
    """Unix seconds from a number, a numeric string or an ISO-8601 date/datetime (naive = UTC)."""
    value = _plain(value)
    if isinstance(value, datetime | date):
        moment = value if isinstance(value, datetime) else datetime(value.year, value.month, value.day)
    elif isinstance(value, str) and not _looks_numeric(value.strip()):
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError:
            raise _Invalid(f"{value!r} is neither unix seconds nor an ISO-8601 datetime") from None
    else:
        try:
            seconds = _to_float(value)
        except _Invalid:
            raise _Invalid(f"{value!r} is neither unix seconds nor an ISO-8601 datetime") from None
        if abs(seconds) >= _MAX_TS_SECONDS:
            raise _Invalid(f"{value!r} is too large for unix seconds (milliseconds?)")
        return seconds
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _looks_numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _to_enum(value: Any, choices: tuple[str, ...]) -> str:
    text = _to_str(value).lower()
    if text not in choices:
        raise _Invalid(f"{value!r} is not one of {', '.join(choices)}")
    return text


def _to_list(value: Any) -> list[Any] | None:
    """A list from a JSON array, a list/array value, or a `|`-separated string."""
    value = _plain(value)
    if isinstance(value, list | tuple | np.ndarray):
        return [_plain(v) for v in value]
    if not isinstance(value, str):
        raise _Invalid(f"{value!r} is {_describe(value)}, expected a list")
    text = value.strip()
    if text.startswith("["):
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError as exc:
            raise _Invalid(f"{_short(text)} is not a valid JSON array ({exc.msg})") from None
        if not isinstance(parsed, list):
            raise _Invalid(f"{_short(text)} is not a JSON array")
        return parsed
    parts = [part.strip() for part in text.split("|")]
    return [part for part in parts if part] or None


def _to_dict(value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if not isinstance(value, str):
        raise _Invalid(f"{value!r} is {_describe(value)}, expected a JSON object")
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as exc:
        raise _Invalid(f"{_short(value)} is not a valid JSON object ({exc.msg})") from None
    if not isinstance(parsed, dict):
        raise _Invalid(f"{_short(value)} is not a JSON object")
    return parsed


def _short(text: str, limit: int = 60) -> str:
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")


def _converter(field: Field) -> Callable[[Any], Any]:
    if field.name == "ts":
        return _to_ts
    if field.kind == "float":
        return _to_float
    if field.kind == "enum":
        return lambda value: _to_enum(value, field.choices)
    if field.kind == "json_list":
        return _to_list
    if field.kind == "json_dict":
        return _to_dict
    return _to_str


# -- validating frames -----------------------------------------------------------------------------


def derive_key(parts: Iterable[Any]) -> str:
    """A stable row id: sha1 of the row's identifying values, truncated to 32 hex characters.

    Normalised values go in (1 and "1.0" are both 1.0; an ISO time and its unix seconds agree), so
    the same event gets the same id however the file spelled it, and re-imports are idempotent.
    """
    text = json.dumps(list(parts), ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:_DERIVED_KEY_LENGTH]


def validate(frame: pd.DataFrame, kind: str, source: str = "<frame>") -> pd.DataFrame:
    """Check and normalise every field of `frame` per the schema; returns a frame in schema columns.

    Rules: required fields present and non-empty; `float` fields parse as finite numbers, with
    price >= 0, review rating within 0..5 (also an interaction's value when its type is "rating")
    and review label within 0..1; `enum` values (case-insensitive) among the allowed choices;
    interaction `value` defaults to 1.0; list fields take a JSON array or a `|`-separated string;
    object fields take a JSON object; `ts` takes unix seconds or ISO-8601 (naive times are UTC) and
    becomes float seconds; text longer than its database column is refused. Columns outside the
    schema go into `attributes` for items and users (so a shop's extra columns are kept) and are
    dropped, with a log message, for interactions and reviews. A missing `event_id`/`review_id` is
    derived from the row (`derive_key`); rows repeating a key already seen are dropped (first wins),
    so without `ts` repeated identical events collapse into one unless they carry an `event_id`.

    The returned frame keeps the row locations of `frame` (see `read_records`) as its index. Raises
    `DataError` listing up to `MAX_PROBLEMS` problems, earliest first.
    """
    _check_kind(kind)
    fields = FIELDS[kind]
    lines, unit = row_locations(frame)
    frame = frame.rename(columns=lambda name: str(name).strip())
    problems = ProblemLog()
    for name in frame.columns[frame.columns.duplicated()].unique():
        problems.add(Problem(source, None, name, name, "column appears twice"))
    for field in fields:
        if field.required and field.name not in frame.columns:
            have = ", ".join(map(str, frame.columns)) or "none"
            problems.add(Problem(source, None, field.name, None, f"required column is missing (columns: {have})"))
    problems.raise_if_any()

    n = len(frame)
    values: dict[str, list[Any]] = {}
    for field in fields:
        raw = frame[field.name].tolist() if field.name in frame.columns else [None] * n
        values[field.name] = _convert_column(raw, field, kind, source, lines, unit, problems)
    _check_event_ratings(values, kind, source, lines, unit, problems)
    problems.raise_if_any()

    extras = [name for name in frame.columns if name not in {f.name for f in fields}]
    if extras:
        if "attributes" in values:
            values["attributes"] = _fold_extras(values["attributes"], frame[extras])
        else:
            log.info("%s: ignoring columns outside the %s schema: %s", source, kind, ", ".join(extras))
    if kind == "interactions":
        values["value"] = [DEFAULT_VALUE if v is None else v for v in values["value"]]
    key = KEYS[kind]
    if kind in KEY_PARTS:
        parts = [values[name] for name in KEY_PARTS[kind]]
        values[key] = [
            k if k is not None else derive_key(row)
            for k, row in zip(values[key], zip(*parts, strict=True), strict=True)
        ]
    return _build_frame(values, kind, lines, unit)


def _convert_column(
    raw: list[Any],
    field: Field,
    kind: str,
    source: str,
    lines: list[int],
    unit: str,
    problems: ProblemLog,
) -> list[Any]:
    convert = _converter(field)
    low, high = RANGES.get((kind, field.name), (None, None))
    length = getattr(TABLES[kind].c[field.name].type, "length", None)
    is_key = field.name == KEYS[kind]
    out: list[Any] = []
    bad = 0
    for i, value in enumerate(raw):
        try:
            if _missing(value):
                if field.required:
                    raise _Invalid("required but empty")
                out.append(None)
                continue
            converted = convert(value)
            if converted is not None:
                if (low is not None and converted < low) or (high is not None and converted > high):
                    raise _Invalid(f"{value!r} is outside {_range_text(low, high)}")
                if length is not None and len(converted) > length:
                    what = "ids" if is_key or field.name.endswith("_id") else "values"
                    raise _Invalid(f"{_short(converted)} is longer than {length} characters, the limit for {what}")
            out.append(converted)
        except _Invalid as exc:
            bad += 1
            if bad <= MAX_PROBLEMS:
                problems.add(Problem(source, lines[i], field.name, value, str(exc), unit))
            out.append(None)
    problems.note(max(0, bad - MAX_PROBLEMS))
    return out


def _range_text(low: float | None, high: float | None) -> str:
    if high is None:
        return f"the allowed range (>= {low:g})"
    if low is None:
        return f"the allowed range (<= {high:g})"
    return f"the allowed range {low:g}..{high:g}"


def _check_event_ratings(
    values: dict[str, list[Any]], kind: str, source: str, lines: list[int], unit: str, problems: ProblemLog
) -> None:
    if kind != "interactions":
        return
    low, high = RATING_RANGE
    bad = [
        i
        for i, (kind_, value) in enumerate(zip(values["type"], values["value"], strict=True))
        if kind_ == "rating" and value is not None and not low <= value <= high
    ]
    for i in bad[:MAX_PROBLEMS]:
        reason = f"{values['value'][i]!r} is outside the rating range {low:g}..{high:g}"
        problems.add(Problem(source, lines[i], "value", values["value"][i], reason, unit))
    problems.note(max(0, len(bad) - MAX_PROBLEMS))


def _fold_extras(attributes: list[dict[str, Any] | None], extras: pd.DataFrame) -> list[dict[str, Any] | None]:
    """Merge a shop's extra columns into `attributes`; an explicit attribute wins over a column."""
    names = list(extras.columns)
    merged: list[dict[str, Any] | None] = []
    for given, row in zip(attributes, extras.itertuples(index=False, name=None), strict=True):
        found = {name: _extra_value(v) for name, v in zip(names, row, strict=True) if not _missing(v)}
        if found:
            merged.append({**found, **(given or {})})
        else:
            merged.append(given)
    return merged


def _extra_value(value: Any) -> Any:
    value = _plain(value)
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def _build_frame(values: dict[str, list[Any]], kind: str, lines: list[int], unit: str) -> pd.DataFrame:
    index = pd.Index(lines, name=unit, dtype="int64")
    data = {
        f.name: pd.Series(values[f.name], index=index, dtype="float64" if f.kind == "float" else object)
        for f in FIELDS[kind]
    }
    out = pd.DataFrame(data, columns=columns(kind))
    return out[~out[KEYS[kind]].duplicated(keep="first")]


# -- importing -------------------------------------------------------------------------------------


def load_file(path: str | Path, kind: str, user_id: Callable[[str], str] | None = None) -> pd.DataFrame:
    """`read_records` then `validate`, naming the file in errors. `user_id` maps shoppers' ids first
    (to pseudonyms), so that keys derived from a row never contain a raw id."""
    frame = read_records(path, kind)
    if user_id is not None and "user_id" in frame.columns:
        frame["user_id"] = [
            u if pd.isna(u) or not str(u).strip() else user_id(str(u).strip()) for u in frame["user_id"]
        ]
    return validate(frame, kind, Path(path).name)


def import_files(
    storage: Storage,
    items: str | Path | None = None,
    users: str | Path | None = None,
    interactions: str | Path | None = None,
    reviews: str | Path | None = None,
) -> dict[str, int]:
    """Validate every given file, then write them all in one transaction; rows added per kind.

    Problems from all files are reported together and nothing is stored. Events naming a user or
    item that is neither stored nor in the given files are refused with file, line and field.
    Importing the same files again adds no rows (items and users are updated in place).
    """
    paths = {
        kind: Path(path)
        for kind, path in zip(KINDS, (items, users, interactions, reviews), strict=True)
        if path is not None
    }
    frames: dict[str, pd.DataFrame] = {}
    problems = ProblemLog()
    for kind, path in paths.items():
        try:
            frames[kind] = load_file(path, kind, storage.personal.user_id if storage.personal else None)
        except DataError as exc:
            problems.extend(exc.problems, exc.total)
    problems.raise_if_any()
    added = storage.write_many(frames, sources={kind: path.name for kind, path in paths.items()})
    log.info("imported %s", ", ".join(f"{n} {kind}" for kind, n in added.items()))
    return added
