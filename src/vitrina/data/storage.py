"""The database behind a shop's data: SQLite embedded by default, PostgreSQL for a shared server.

`Storage(url)` picks the backend from the URL. Writes take frames in schema columns (as produced
by `vitrina.data.importer.validate` or a dataset loader) and apply them in one transaction, so an
import either lands completely or not at all. Rows go in through executemany with plain dicts:
per-row ORM objects would make a 160k-event import take minutes instead of seconds.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from vitrina.data.dataset import RawDataset
from vitrina.data.errors import MAX_PROBLEMS, DataError, Problem, ProblemLog, row_locations
from vitrina.data.schema import FIELDS, KEYS, TABLES, Field, columns, metadata

KINDS: tuple[str, ...] = ("items", "users", "interactions", "reviews")
# Kinds whose rows are immutable events: re-importing them must add nothing, and they keep their
# import order in `pos`.
EVENT_KINDS: tuple[str, ...] = ("interactions", "reviews")
# Which columns of which kind must name an existing row of another kind.
REFERENCES: dict[str, dict[str, str]] = {"interactions": {"user_id": "users", "item_id": "items"}}

_SINGULAR = {"items": "item", "users": "user", "interactions": "interaction", "reviews": "review"}
# Ids per existence query: SQLite binds each id separately (and old builds allow 999 parameters);
# PostgreSQL takes a whole chunk as one array parameter.
_ID_CHUNK = {"sqlite": 900, "postgresql": 50_000}

WhereClause = Mapping[str, Any] | sa.ColumnElement[bool]


def normalize_url(url: str | sa.URL) -> sa.URL:
    """Parse a storage URL, mapping plain `postgresql://` (and `postgres://`) to the psycopg 3 driver."""
    parsed = sa.make_url(url)
    backend = parsed.get_backend_name()
    if backend in ("postgresql", "postgres"):
        if parsed.drivername in ("postgresql", "postgres"):
            parsed = parsed.set(drivername="postgresql+psycopg")
        return parsed
    if backend == "sqlite":
        return parsed
    raise ValueError(f"unsupported storage URL '{parsed.render_as_string()}': use sqlite:/// or postgresql://")


def _make_engine(url: sa.URL) -> sa.Engine:
    if url.get_backend_name() == "postgresql":
        return sa.create_engine(url)
    database = url.database or ""
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(url)

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Hand transaction control to SQLAlchemy (the sqlite3 module would otherwise begin lazily,
        # leaving reads outside the transaction), then set per-connection pragmas.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        # Deleted rows are overwritten, not left in free pages: an erased shopper stays erased on disk.
        cursor.execute("PRAGMA secure_delete=ON")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        # Writers take the write lock up front: a read-then-write transaction that upgrades later
        # can fail with SQLITE_BUSY when another writer got in between.
        immediate = conn.get_execution_options().get("vitrina_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def _is_missing(value: Any) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    return isinstance(value, float) and math.isnan(value)


def _jsonable(value: Any) -> Any:
    """Plain Python for a JSON column: numpy arrays/scalars and tuples become lists and numbers."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _column_values(series: pd.Series, field: Field, source: str) -> list[Any]:
    """A frame column as plain Python values with None for missing, ready for executemany."""
    if field.kind == "float":
        try:
            numbers = series.astype("float64")
        except (TypeError, ValueError) as exc:
            raise DataError(
                Problem(source, None, field.name, None, f"is not numeric ({exc}); validate the frame first")
            ) from exc
        return [None if math.isnan(v) else v for v in numbers.tolist()]
    values = series.tolist()
    if field.kind in ("json_list", "json_dict"):
        return [None if _is_missing(v) else _jsonable(v) for v in values]
    for i in np.flatnonzero(series.isna().to_numpy()):
        values[i] = None
    return [v if v is None or type(v) is str else _text(v) for v in values]


def _text(value: Any) -> str:
    """Text for a string column from a stray non-string (an id that went through a numeric column)."""
    value = value.item() if isinstance(value, np.generic) else value
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


class _Batch:
    """One kind's rows, converted once outside the transaction; `lines` locate rows in errors."""

    def __init__(self, kind: str, frame: pd.DataFrame, source: str) -> None:
        self.kind = kind
        self.source = source
        missing = [c for c in columns(kind) if c not in frame.columns]
        if missing:
            raise DataError(
                Problem(source, None, missing[0], None, f"column missing from the frame (all missing: {missing})")
            )
        self.lines, self.unit = row_locations(frame)
        self.values: dict[str, list[Any]] = {f.name: _column_values(frame[f.name], f, source) for f in FIELDS[kind]}
        self._check_columns()
        self._collapse_duplicate_keys()

    def _check_columns(self) -> None:
        """Refuse what the database would: empty NOT NULL fields and text longer than its column.

        Checked here so both backends fail alike (SQLite ignores lengths) and the error names rows.
        """
        table = TABLES[self.kind]
        log = ProblemLog()
        for name, values in self.values.items():
            column = table.c[name]
            if not column.nullable or column.primary_key:
                self._report(log, name, [i for i, v in enumerate(values) if v is None], "must not be empty")
            length = getattr(column.type, "length", None)
            if length:
                too_long = [i for i, v in enumerate(values) if v is not None and len(v) > length]
                self._report(log, name, too_long, f"is longer than {length} characters")
        log.raise_if_any()

    def _report(self, log: ProblemLog, name: str, bad: list[int], reason: str) -> None:
        for i in bad[:MAX_PROBLEMS]:
            value = self.values[name][i]
            shown = reason if value is None else f"{value!r} {reason}"
            log.add(Problem(self.source, self.lines[i], name, value, shown, self.unit))
        log.note(max(0, len(bad) - MAX_PROBLEMS))

    def _collapse_duplicate_keys(self) -> None:
        # Events keep the first copy (as a repeated import would); catalogue rows keep the last, as
        # if each row had been upserted in turn.
        keys = self.values[KEYS[self.kind]]
        if len(set(keys)) == len(keys):
            return
        keep = "first" if self.kind in EVENT_KINDS else "last"
        mask = ~pd.Series(keys).duplicated(keep=keep).to_numpy()
        self.select(mask)

    def select(self, mask: np.ndarray) -> None:
        self.values = {name: [v for v, m in zip(vals, mask, strict=True) if m] for name, vals in self.values.items()}
        self.lines = [v for v, m in zip(self.lines, mask, strict=True) if m]

    def __len__(self) -> int:
        return len(self.lines)

    def rows(self, extra: Mapping[str, Sequence[Any]] | None = None) -> list[dict[str, Any]]:
        data = dict(self.values)
        if extra:
            data.update(extra)
        names = list(data)
        return [dict(zip(names, row, strict=True)) for row in zip(*data.values(), strict=True)]


class Storage:
    """Reads and writes the four record kinds in SQLite or PostgreSQL, chosen by URL.

    Items and users are upserted on their key (a re-imported row replaces the stored one);
    interactions and reviews are insert-only (a row whose key exists is skipped), so importing the
    same file twice adds nothing.
    """

    def __init__(self, url: str | sa.URL, *, batch_size: int = 5000, personal: Any = None) -> None:
        """`personal` (vitrina.privacy.personal.PersonalData): applied to every row written, so
        shoppers are stored under pseudonyms with their personal fields encrypted."""
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.url = normalize_url(url)
        self.batch_size = batch_size
        self.personal = personal
        self.dialect = self.url.get_backend_name()
        self.engine = _make_engine(self.url)
        self._writer = self.engine.execution_options(vitrina_write=True)

    @classmethod
    def from_url(cls, url: str | sa.URL, *, batch_size: int = 5000) -> Storage:
        return cls(url, batch_size=batch_size)

    def __repr__(self) -> str:
        return f"Storage({self.url.render_as_string(hide_password=True)!r})"

    def __enter__(self) -> Storage:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.engine.dispose()

    def begin(self) -> Any:
        """A write transaction (context manager yielding the connection); SQLite takes its write
        lock up front."""
        return self._writer.begin()

    def create_schema(self) -> None:
        """Create missing tables and indexes (also indexes added to a table that already exists);
        existing ones are left as they are."""
        metadata.create_all(self.engine)
        with self._writer.begin() as conn:
            for table in metadata.sorted_tables:
                for index in table.indexes:
                    index.create(conn, checkfirst=True)

    # -- writing ---------------------------------------------------------------------------------

    def write(self, kind: str, frame: pd.DataFrame, *, source: str | None = None) -> int:
        """Write one kind's frame in one transaction; returns the number of rows added."""
        return self.write_many({kind: frame}, sources={kind: source} if source else None)[kind]

    def write_dataset(self, raw: RawDataset) -> dict[str, int]:
        """Write all four kinds of a dataset in one transaction (all or nothing); rows added per kind."""
        frames = {kind: getattr(raw, kind) for kind in KINDS}
        return self.write_many(frames, sources={kind: f"{raw.name} {kind}" for kind in KINDS})

    def write_many(
        self,
        frames: Mapping[str, pd.DataFrame],
        *,
        sources: Mapping[str, str] | None = None,
        then: Callable[[sa.Connection], None] | None = None,
    ) -> dict[str, int]:
        """Write several kinds in one transaction; returns rows added per kind (all four kinds).

        `sources` names each kind's origin (e.g. a file name) in errors. Interactions must name users
        and items that are in the database or in this same write; otherwise `DataError` is raised
        and nothing is written. `then(conn)` runs last inside the same transaction (rows that must
        land together with these, such as a change-feed entry).
        """
        unknown = sorted(set(frames) - set(KINDS))
        if unknown:
            raise ValueError(f"unknown record kinds {unknown}; expected some of {list(KINDS)}")
        names = {kind: (sources or {}).get(kind) or kind for kind in frames}
        batches = {
            kind: _Batch(kind, frames[kind], names[kind]) for kind in KINDS if kind in frames and len(frames[kind])
        }
        if self.personal is not None:
            for batch in batches.values():
                self.personal.protect(batch.kind, batch.values)
        added = dict.fromkeys(KINDS, 0)
        with self._writer.begin() as conn:
            self._check_references(conn, batches)
            for kind, batch in batches.items():
                before = self._count(conn, kind)
                if kind in EVENT_KINDS:
                    self._insert_events(conn, batch, table_empty=before == 0)
                else:
                    self._upsert(conn, batch)
                added[kind] = self._count(conn, kind) - before
            if then is not None:
                then(conn)
        return added

    def _insert_stmt(self, table: sa.Table) -> Any:
        dialect_insert = postgresql.insert if self.dialect == "postgresql" else sqlite.insert
        return dialect_insert(table)

    def _execute_batches(self, conn: sa.Connection, stmt: Any, rows: list[dict[str, Any]]) -> None:
        for start in range(0, len(rows), self.batch_size):
            conn.execute(stmt, rows[start : start + self.batch_size])

    def _upsert(self, conn: sa.Connection, batch: _Batch) -> None:
        table = TABLES[batch.kind]
        key = KEYS[batch.kind]
        stmt = self._insert_stmt(table)
        stmt = stmt.on_conflict_do_update(
            index_elements=[table.c[key]],
            set_={name: stmt.excluded[name] for name in columns(batch.kind) if name != key},
        )
        self._execute_batches(conn, stmt, batch.rows())

    def _insert_events(self, conn: sa.Connection, batch: _Batch, *, table_empty: bool) -> None:
        table = TABLES[batch.kind]
        key = KEYS[batch.kind]
        if not table_empty:
            # Drop rows already stored so that `pos` stays dense and a re-import does no work.
            stored = self._existing(conn, batch.kind, batch.values[key])
            if stored:
                batch.select(np.array([k not in stored for k in batch.values[key]], dtype=bool))
        if not len(batch):
            return
        start = conn.execute(sa.select(sa.func.coalesce(sa.func.max(table.c.pos), 0))).scalar_one() + 1
        rows = batch.rows({"pos": range(start, start + len(batch))})
        stmt = self._insert_stmt(table).on_conflict_do_nothing(index_elements=[table.c[key]])
        self._execute_batches(conn, stmt, rows)

    def _existing(self, conn: sa.Connection, kind: str, ids: Sequence[Any]) -> set[Any]:
        """Which of `ids` are stored as keys of `kind`, asked in chunks to bound each query."""
        column = TABLES[kind].c[KEYS[kind]]
        wanted = list(dict.fromkeys(ids))
        if self.dialect == "postgresql":
            ids_param = sa.bindparam("ids", type_=postgresql.ARRAY(column.type))
            stmt = sa.select(column).where(column == sa.any_(ids_param))
        else:
            stmt = sa.select(column).where(column.in_(sa.bindparam("ids", expanding=True)))
        chunk = _ID_CHUNK[self.dialect]
        found: set[Any] = set()
        for start in range(0, len(wanted), chunk):
            found.update(conn.execute(stmt, {"ids": wanted[start : start + chunk]}).scalars())
        return found

    def _check_references(self, conn: sa.Connection, batches: Mapping[str, _Batch]) -> None:
        log = ProblemLog()
        for kind, refs in REFERENCES.items():
            batch = batches.get(kind)
            if batch is None:
                continue
            for column, target in refs.items():
                values = batch.values[column]
                known = set(batches[target].values[KEYS[target]]) if target in batches else set()
                candidates = {v for v in values if v not in known}
                unknown = candidates - self._existing(conn, target, list(candidates)) if candidates else set()
                if not unknown:
                    continue
                bad = [i for i, v in enumerate(values) if v in unknown]
                for i in bad[:MAX_PROBLEMS]:
                    reason = (
                        f"{values[i]!r} is not a known {_SINGULAR[target]}: it is neither in the database "
                        f"nor among the {target} written with these {kind}"
                    )
                    log.add(Problem(batch.source, batch.lines[i], column, values[i], reason, batch.unit))
                log.note(max(0, len(bad) - MAX_PROBLEMS))
        log.raise_if_any()

    # -- reading ---------------------------------------------------------------------------------

    def read(self, kind: str, where: WhereClause | None = None) -> pd.DataFrame:
        """Rows of one kind in schema columns; interactions and reviews in import order.

        `where` is either a mapping {column: value} (a list, tuple or set value means "one of",
        None means "is empty") or a SQLAlchemy condition on `TABLES[kind]`. Float fields come back
        as float64 (NaN when empty); all others as Python objects, JSON columns as lists/dicts.
        """
        table = _table(kind)
        stmt = sa.select(*(table.c[name] for name in columns(kind)))
        if where is not None:
            stmt = stmt.where(_condition(table, where))
        stmt = stmt.order_by(table.c.pos if "pos" in table.c else table.c[KEYS[kind]])
        with self.engine.connect() as conn:
            rows = conn.execute(stmt).all()
        data: dict[str, Any] = {}
        for i, field in enumerate(FIELDS[kind]):
            values = [row[i] for row in rows]
            if field.kind == "float":
                data[field.name] = pd.Series(values, dtype="float64")
            else:
                data[field.name] = pd.Series(values, dtype=object)
        return pd.DataFrame(data, columns=columns(kind))

    def counts(self) -> dict[str, int]:
        """Number of stored rows per kind."""
        with self.engine.connect() as conn:
            return {kind: self._count(conn, kind) for kind in KINDS}

    @staticmethod
    def _count(conn: sa.Connection, kind: str) -> int:
        return int(conn.execute(sa.select(sa.func.count()).select_from(TABLES[kind])).scalar_one())

    def delete_all(self) -> None:
        """Empty every table (events first, for the foreign keys); meant for tests and resets."""
        with self._writer.begin() as conn:
            for kind in ("interactions", "reviews", "users", "items"):
                conn.execute(TABLES[kind].delete())


def _table(kind: str) -> sa.Table:
    try:
        return TABLES[kind]
    except KeyError:
        raise ValueError(f"unknown record kind '{kind}'; expected one of {list(KINDS)}") from None


def _condition(table: sa.Table, where: WhereClause) -> sa.ColumnElement[bool]:
    if isinstance(where, sa.ColumnElement):
        return where
    clauses: list[sa.ColumnElement[bool]] = []
    for name, value in where.items():
        if name not in table.c:
            raise ValueError(f"table '{table.name}' has no column '{name}'")
        column = table.c[name]
        if value is None:
            clauses.append(column.is_(None))
        elif isinstance(value, list | tuple | set | frozenset):
            clauses.append(column.in_(list(value)))
        else:
            clauses.append(column == value)
    return sa.and_(sa.true(), *clauses)
