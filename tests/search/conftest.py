"""The generated shop catalogue in a database, for the search tests."""

from __future__ import annotations

from collections.abc import Iterator

import pandas as pd
import pytest

from shop_catalog import make_catalog
from vitrina.data.storage import Storage


@pytest.fixture
def catalog() -> pd.DataFrame:
    return make_catalog()


@pytest.fixture
def shop(storage: Storage, catalog: pd.DataFrame) -> Iterator[Storage]:
    """The generated catalogue written to an empty database (each backend in turn)."""
    storage.write("items", catalog)
    yield storage
