"""A small generated shop catalogue in a database, for the search tests."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest

from vitrina.data.schema import columns
from vitrina.data.storage import Storage

PRODUCTS = {
    "Tools > Power Tools": ["cordless drill", "impact driver", "circular saw", "angle grinder"],
    "Tools > Hand Tools": ["claw hammer", "screwdriver set", "adjustable wrench", "tape measure"],
    "Garden": ["garden hose", "lawn mower", "pruning shears", "leaf blower"],
    "Clothing > Dresses": ["红色 连衣裙", "summer dress", "evening gown", "linen dress"],
}
BRANDS = ["DeWalt", "Bosch", "Makita", "Ryobi"]
COLOURS = ["black", "red", "green", "blue"]


def make_catalog(n_per_product: int = 3, seed: int = 0) -> pd.DataFrame:
    """Items named after real product kinds, each in a few brands, colours and prices."""
    rng = np.random.default_rng(seed)
    rows = []
    for category, products in PRODUCTS.items():
        for product in products:
            for v in range(n_per_product):
                brand, colour = BRANDS[(len(rows) + v) % 4], COLOURS[v % 4]
                rows.append(
                    {
                        "item_id": f"i{len(rows):03d}",
                        "title": f"{brand} {product} {colour}",
                        "description": f"A {colour} {product} for everyday use.",
                        "category_path": category,
                        "brand": brand,
                        "price": float(rng.integers(5, 300)),
                        "image_paths": None,
                        "audio_path": None,
                        "attributes": {"colour": colour, "size": v},
                    }
                )
    return pd.DataFrame(rows, columns=columns("items"))


@pytest.fixture
def catalog() -> pd.DataFrame:
    return make_catalog()


@pytest.fixture
def shop(storage: Storage, catalog: pd.DataFrame) -> Iterator[Storage]:
    """The generated catalogue written to an empty database (each backend in turn)."""
    storage.write("items", catalog)
    yield storage
