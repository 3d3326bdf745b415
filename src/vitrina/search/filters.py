"""Search filters and facets: one definition that runs as SQL (lexical) and as a mask (vectors).

A filter narrows retrieval itself (the full-text query's WHERE, the ANN search's allowed set), so a
page of ten filtered results is the best ten that pass, never what is left of ten after truncation.
The SQL and the mask must agree; `tests/search/test_filters.py` checks them against each other.

Semantics: `category` matches a `category_path` or any path below it ("Garments" matches
"Garments > Trousers"); `brand` and attributes match exactly; a price bound drops items without a
price. A list of values means any of them.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

from vitrina.checks import non_negative

__all__ = ["SEPARATOR", "FilterError", "Filters", "facet_counts", "under"]

SEPARATOR = " > "
KEYS = ("category", "brand", "price_min", "price_max")
_ATTRIBUTE_PREFIX = "attributes."


class FilterError(ValueError):
    """A filter the engine cannot apply (unknown key, a bad bound): the message names it."""


def _values(key: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str | int | float):
        values: tuple[Any, ...] = (value,)
    elif isinstance(value, list | tuple | set | frozenset):
        values = tuple(value)
    else:  # None, a mapping, anything else a client may send
        values = ()
    if not values or any(not isinstance(v, str | int | float) or str(v) == "" for v in values):
        raise FilterError(f"filter '{key}': expected a non-empty value or list of values, got {value!r}")
    return tuple(str(v) for v in values)


@dataclass(frozen=True)
class Filters:
    """What a result must satisfy; empty means everything passes."""

    category: tuple[str, ...] = ()
    brand: tuple[str, ...] = ()
    price_min: float | None = None
    price_max: float | None = None
    attributes: tuple[tuple[str, tuple[str, ...]], ...] = field(default=())

    @classmethod
    def parse(cls, spec: Mapping[str, Any] | None) -> Filters:
        """From {"category": ..., "brand": ..., "price_min": ..., "price_max": ...,
        "attributes.KEY": ...} (or "attributes": {KEY: ...}); an unknown key is an error naming the
        known ones, never silently ignored."""
        spec = dict(spec or {})
        attributes: dict[str, tuple[str, ...]] = {}
        nested = spec.pop("attributes", None) or {}
        if not isinstance(nested, Mapping):
            raise FilterError(f"filter 'attributes': expected a mapping of attribute to value, got {nested!r}")
        for key, value in [*nested.items(), *((k, v) for k, v in spec.items() if k.startswith(_ATTRIBUTE_PREFIX))]:
            name = key.removeprefix(_ATTRIBUTE_PREFIX)
            if not name:
                raise FilterError("filter 'attributes.': the attribute name is empty")
            attributes[name] = _values(f"attributes.{name}", value)
        unknown = [k for k in spec if k not in KEYS and not k.startswith(_ATTRIBUTE_PREFIX)]
        if unknown:
            raise FilterError(f"unknown filter {unknown[0]!r}; known: {', '.join(KEYS)}, attributes.<name>")
        lo, hi = (
            None if spec.get(key) is None else non_negative(f"filter '{key}'", spec[key], FilterError)
            for key in ("price_min", "price_max")
        )
        if lo is not None and hi is not None and lo > hi:
            raise FilterError(f"filter price_min ({lo}) is above price_max ({hi})")
        return cls(
            category=_values("category", spec["category"]) if spec.get("category") is not None else (),
            brand=_values("brand", spec["brand"]) if spec.get("brand") is not None else (),
            price_min=lo,
            price_max=hi,
            attributes=tuple(sorted(attributes.items())),
        )

    def __bool__(self) -> bool:
        return bool(self.category or self.brand or self.attributes) or (
            self.price_min is not None or self.price_max is not None
        )

    def where(self, items: sa.Table) -> sa.ColumnElement[bool]:
        """The filters as a WHERE clause over the items table (either backend)."""
        clauses: list[sa.ColumnElement[bool]] = []
        if self.category:
            path = items.c.category_path
            clauses.append(
                sa.or_(*(sa.or_(path == c, path.startswith(c + SEPARATOR, autoescape=True)) for c in self.category))
            )
        if self.brand:
            clauses.append(items.c.brand.in_(self.brand))
        if self.price_min is not None:
            clauses.append(items.c.price >= self.price_min)
        if self.price_max is not None:
            clauses.append(items.c.price <= self.price_max)
        for name, values in self.attributes:
            clauses.append(items.c.attributes[name].as_string().in_(values))
        return sa.and_(sa.true(), *clauses)

    def mask(self, catalog: pd.DataFrame) -> np.ndarray:
        """Boolean mask over the rows of an items frame: the same test as `where`."""
        keep = np.ones(len(catalog), dtype=bool)
        if self.category:
            path = catalog["category_path"].fillna("").astype(str)
            hit = np.zeros(len(catalog), dtype=bool)
            for c in self.category:
                hit |= ((path == c) | path.str.startswith(c + SEPARATOR)).to_numpy()
            keep &= hit
        if self.brand:
            keep &= catalog["brand"].isin(self.brand).to_numpy()
        price = pd.to_numeric(catalog["price"], errors="coerce").to_numpy(dtype=float)
        with np.errstate(invalid="ignore"):
            if self.price_min is not None:
                keep &= price >= self.price_min
            if self.price_max is not None:
                keep &= price <= self.price_max
        for name, values in self.attributes:
            wanted = set(values)
            keep &= np.fromiter(
                (_attribute_text(a, name) in wanted for a in catalog["attributes"].tolist()), bool, len(catalog)
            )
        return keep


def under(path: str | None, category: str) -> bool:
    """Is a category path `category` itself or below it ("Tools > Drills" is under "Tools")?"""
    return path is not None and (path == category or path.startswith(category + SEPARATOR))


def _attribute_text(attributes: Any, name: str) -> str | None:
    """An attribute as the database's JSON text extraction gives it (numbers as their text)."""
    if not isinstance(attributes, Mapping) or attributes.get(name) is None:
        return None
    value = attributes[name]
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def facet_counts(
    catalog: pd.DataFrame, rows: np.ndarray, price_edges: Sequence[float], attributes: Sequence[str] = ()
) -> dict[str, dict[str, int]]:
    """Counts of the values of the result rows: every level of the category path ("A", "A > B"),
    brand, price bucket ("10-25", "250+") and the named attributes; most frequent first."""
    picked = catalog.iloc[np.asarray(rows, dtype=np.int64)]
    facets: dict[str, dict[str, int]] = {}
    categories: Counter[str] = Counter()
    for path in picked["category_path"].dropna().tolist():
        parts = str(path).split(SEPARATOR)
        categories.update(SEPARATOR.join(parts[: i + 1]) for i in range(len(parts)))
    facets["category"] = dict(categories.most_common())
    facets["brand"] = dict(Counter(picked["brand"].dropna().astype(str)).most_common())
    prices = pd.to_numeric(picked["price"], errors="coerce").dropna().to_numpy(dtype=float)
    edges = sorted(float(e) for e in price_edges)
    buckets: dict[str, int] = {}
    if len(edges) and len(prices):
        slot = np.searchsorted(edges, prices, side="right")
        labels = [f"<{edges[0]:g}"] + [f"{a:g}-{b:g}" for a, b in itertools.pairwise(edges)]
        labels.append(f"{edges[-1]:g}+")
        counts = np.bincount(slot, minlength=len(labels))
        buckets = {label: int(n) for label, n in zip(labels, counts, strict=True) if n}
    facets["price"] = buckets
    for name in attributes:
        values = (v for a in picked["attributes"].tolist() if (v := _attribute_text(a, name)) is not None)
        facets[f"attributes.{name}"] = dict(Counter(values).most_common())
    return facets
