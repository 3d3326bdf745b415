"""A small generated shop catalogue: real product kinds in categories, brands, colours and prices."""

from __future__ import annotations

import numpy as np
import pandas as pd

from vitrina.data.schema import columns

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
