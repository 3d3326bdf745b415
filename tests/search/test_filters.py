"""Filters: parsing errors name the problem; the SQL and the in-memory mask pick the same items."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from vitrina.data.schema import items_table
from vitrina.data.storage import Storage
from vitrina.search.filters import FilterError, Filters, facet_counts


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"colour": "red"}, "unknown filter 'colour'"),
        ({"price_min": -1}, "non-negative"),
        ({"price_min": "cheap"}, "expected a number"),
        ({"price_min": 50, "price_max": 10}, "above price_max"),
        ({"brand": []}, "non-empty"),
        ({"attributes": "red"}, "mapping"),
    ],
)
def test_bad_filters_are_named(spec: dict, message: str) -> None:
    with pytest.raises(FilterError, match=message):
        Filters.parse(spec)


SPECS = [
    {"category": "Tools"},
    {"category": ["Garden", "Clothing > Dresses"]},
    {"brand": "Bosch", "price_max": 150},
    {"price_min": 20, "price_max": 100},
    {"attributes.colour": "red"},
    {"attributes": {"size": 1}, "category": "Tools > Hand Tools"},
    {"category": "Tool"},  # a prefix of a name is not a parent category
]


@pytest.mark.parametrize("spec", SPECS)
def test_sql_and_mask_agree(shop: Storage, catalog: pd.DataFrame, spec: dict) -> None:
    filters = Filters.parse(spec)
    from_sql = set(shop.read("items", filters.where(items_table))["item_id"])
    from_mask = set(catalog["item_id"][filters.mask(catalog)])
    assert from_sql == from_mask
    if spec != {"category": "Tool"}:
        assert from_mask, f"{spec} should select something in the generated catalogue"


def test_category_includes_subcategories(catalog: pd.DataFrame) -> None:
    picked = catalog[Filters.parse({"category": "Tools"}).mask(catalog)]
    assert set(picked["category_path"]) == {"Tools > Power Tools", "Tools > Hand Tools"}


def test_facets_count_every_category_level_and_price_bucket(catalog: pd.DataFrame) -> None:
    rows = np.flatnonzero(catalog["category_path"].str.startswith("Tools").to_numpy())
    facets = facet_counts(catalog, rows, price_edges=[50, 100], attributes=["colour"])
    assert facets["category"]["Tools"] == len(rows)
    assert facets["category"]["Tools > Power Tools"] + facets["category"]["Tools > Hand Tools"] == len(rows)
    assert sum(facets["price"].values()) == len(rows)
    prices = catalog["price"].to_numpy()[rows]
    assert facets["price"].get("<50", 0) == int((prices < 50).sum())
    assert sum(facets["attributes.colour"].values()) == len(rows)
