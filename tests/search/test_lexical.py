"""Full-text search in the database, on SQLite FTS5 and PostgreSQL alike."""

from __future__ import annotations

import pandas as pd
import pytest

from vitrina.data.storage import Storage
from vitrina.search.filters import Filters
from vitrina.search.lexical import LexicalIndex, stale_rows


@pytest.fixture
def index(shop: Storage) -> LexicalIndex:
    lexical = LexicalIndex(shop.engine)
    lexical.build(shop.read("items"))
    return lexical


def _titles(index: LexicalIndex, catalog: pd.DataFrame, query: str, k: int = 5, **filters: object) -> list[str]:
    title = dict(zip(catalog["item_id"], catalog["title"], strict=True))
    return [title[m.item_id] for m in index.search(query, k, Filters.parse(filters))]


def test_finds_words_in_any_field_with_stems(index: LexicalIndex, catalog: pd.DataFrame) -> None:
    assert all("hammer" in t for t in _titles(index, catalog, "hammers", k=3))
    assert all("hose" in t for t in _titles(index, catalog, "garden hoses", k=3))


def test_title_outweighs_description(shop: Storage) -> None:
    items = shop.read("items").head(2).copy()
    items["title"] = ["Plain widget", "Kettle"]
    items["description"] = ["A kettle for tea", "Plain widget"]
    shop.write("items", items)
    index = LexicalIndex(shop.engine)
    index.build(items)
    assert [m.item_id for m in index.search("kettle", 2)] == [items["item_id"][1], items["item_id"][0]]


def test_chinese_is_segmented_with_jieba(index: LexicalIndex, catalog: pd.DataFrame) -> None:
    assert _titles(index, catalog, "连衣裙")[0].endswith(("black", "red", "green"))
    assert "连衣裙" in _titles(index, catalog, "连衣裙")[0]


def test_typos_and_prefixes_still_match(index: LexicalIndex, catalog: pd.DataFrame) -> None:
    assert all("cordless drill" in t for t in _titles(index, catalog, "cordles dril", k=3))
    assert all("screwdriver" in t for t in _titles(index, catalog, "screwd", k=3))  # as-you-type prefix
    assert index.search("the and of", 5) == []  # stop words only


def test_filters_act_inside_retrieval(index: LexicalIndex, catalog: pd.DataFrame) -> None:
    """The best matches are outside the filter; the filtered search still fills its k from inside it."""
    hits = _titles(index, catalog, "drill red", k=4, category="Garden")
    assert len(hits) == 4
    garden = set(catalog.loc[catalog["category_path"] == "Garden", "title"])
    assert set(hits) <= garden
    assert all("red" in t for t in hits[:3])  # the garden items matching "red" come first


def test_upsert_delete_and_consistency_check(shop: Storage, index: LexicalIndex, catalog: pd.DataFrame) -> None:
    new = catalog.head(1).copy()
    new["item_id"], new["title"] = "new-1", "Telescopic ladder"
    shop.write("items", new)
    assert stale_rows(index.digests(), shop.read("items"))["missing"] == ["new-1"]
    index.upsert(new)
    assert [m.item_id for m in index.search("ladder", 3)] == ["new-1"]
    changed = catalog.iloc[[5]].copy()
    changed["title"] = "Renamed thing"
    shop.write("items", changed)
    assert stale_rows(index.digests(), shop.read("items"))["changed"] == [changed["item_id"].iloc[0]]
    index.delete(["new-1"])
    assert index.search("ladder", 3) == []
    assert stale_rows(index.digests(), shop.read("items"))["missing"] == ["new-1"]


def test_score_ranks_only_the_given_items(index: LexicalIndex, catalog: pd.DataFrame) -> None:
    ids = catalog["item_id"].tolist()
    scores = index.score("hammer", ids[10:20])  # the hammers are i012-i014
    assert set(scores) == {"i012", "i013", "i014"}
    assert all(s > 0 for s in scores.values())


def test_unbuilt_index_says_so(storage: Storage) -> None:
    with pytest.raises(RuntimeError, match="never built"):
        LexicalIndex(storage.engine).search("drill")
