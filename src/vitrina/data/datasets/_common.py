"""Helpers shared by the dataset loaders: file checks, fast reads, column conversions."""

from __future__ import annotations

import errno
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd


def require(path: Path, dataset: str, what: str = "file") -> Path:
    """Return `path`, or raise FileNotFoundError naming the expected path."""
    if not path.exists():
        raise FileNotFoundError(errno.ENOENT, f"{dataset}: expected {what} is missing", str(path))
    return path


def read_table(path: Path, dataset: str, sep: str = ",", encoding: str = "utf-8") -> pd.DataFrame:
    """Read a delimited file with every column as a string; empty cells stay ''.

    `dtype=str` keeps leading zeros of ids; `keep_default_na=False` keeps e.g. 'NA' or '' as text.
    """
    require(path, dataset)
    return pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, encoding=encoding)


def check_columns(frame: pd.DataFrame, needed: Iterable[str], path: Path, dataset: str) -> None:
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise ValueError(f"{dataset}: {path} lacks columns {missing}; has {list(frame.columns)}")


def text(values: pd.Series | np.ndarray) -> pd.Series:
    """Strings as an object column of Python str, with '' and missing turned into None."""
    s = pd.Series(values).astype(object)
    return s.where(s.notna() & (s != ""), None).reset_index(drop=True)


def const(value: object, n: int) -> pd.Series:
    """A column repeating one value, as object dtype (not pandas' own string dtype)."""
    return pd.Series([value] * n, dtype=object)


def ids(values: pd.Series | np.ndarray) -> pd.Series:
    """Ids as an object column of Python str (never empty)."""
    return pd.Series(values).astype(str).astype(object).reset_index(drop=True)


def floats(values: pd.Series | np.ndarray) -> pd.Series:
    """Numbers as float64; '' and missing become NaN."""
    s = pd.Series(values)
    if s.dtype != np.float64:
        s = pd.to_numeric(s.astype(object).where(s != "", None), errors="raise").astype(np.float64)
    return s.reset_index(drop=True)


def records(frame: pd.DataFrame) -> list[dict]:
    """Row dicts (for the `attributes` column); '' and NaN values become None."""
    clean = frame.astype(object)
    clean = clean.where(clean.notna() & (clean != ""), None)
    return clean.to_dict("records")


def numeric_order(values: pd.Series) -> np.ndarray:
    """Positions that sort decimal id strings by their integer value (stable)."""
    return np.argsort(values.astype(np.int64).to_numpy(), kind="stable")


def check_dense(values: pd.Series, dataset: str, what: str) -> None:
    """Raise unless the id strings, in order, are exactly '0', '1', ..., str(n - 1)."""
    expected = np.arange(len(values)).astype(str)
    if not np.array_equal(values.to_numpy(dtype=str), expected):
        raise ValueError(f"{dataset}: {what} ids are not the dense range 0..{len(values) - 1}")


def check_known(used: pd.Series, known: pd.Series, dataset: str, what: str) -> None:
    unknown = ~used.isin(set(known))
    if unknown.any():
        sample = used[unknown].unique()[:5].tolist()
        count = int(unknown.sum())
        raise ValueError(f"{dataset}: {count} interactions use unknown {what} ids, e.g. {sample}")


def base_meta(folder: Path, description: str, fmt: str, *, official_split: bool = False, ordered: bool = False) -> dict:
    """The meta keys every loader sets: where the data came from and what shape it has."""
    root = str(Path(folder).resolve())
    return {
        "source": root,
        "root": root,
        "description": description,
        "official_split": official_split,
        "ordered": ordered,
        "format": fmt,
    }
