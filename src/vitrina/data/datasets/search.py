r"""Product search relevance judgments as a CSV `id product_uid product_title search_term relevance`:
search-homedepot (the Kaggle "Home Depot Product Search Relevance" training set).

Encoding: the copy here is valid UTF-8 (the Kaggle original is read as ISO-8859-1), but its text
carries the original's mojibake: a character was written as UTF-8, read as cp1252, written as Mac
Roman, read as Latin-1, so '°' appears as 'å¡', '’' as '\x89Ûª', '™' as '\x89ã¢'. `repair_text`
undoes that chain per run of non-ASCII characters and leaves a run unchanged when it cannot be
undone. Three lossy forms whose last byte was dropped are mapped by hand: '<digit>è_' (a degree
ring) to '°', 'mmå_' to 'mm²' and '\x89Û\x90' (a hyphen) to '-'. The unrepaired title is kept in
`attributes["title_raw"]`.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import pandas as pd

from vitrina.data.dataset import RawDataset
from vitrina.data.datasets._common import base_meta, check_columns, floats, ids, numeric_order, require, text

FILE = "train.csv"

_LOSSY = {"è_": "°", "å_": "²", "\x89Û\x90": "-"}
_RUN = re.compile(r"(?<=\d)è_|(?<=mm)å_|\x89Û\x90|[\x80-\xff]+")
_INVISIBLE = str.maketrans({"\ufeff": None, "\u200b": None, "\xa0": " "})


def _undo(match: re.Match[str]) -> str:
    run = match.group()
    if run in _LOSSY:
        return _LOSSY[run]
    try:
        return run.encode("latin-1").decode("mac_roman").encode("cp1252").decode("utf-8")
    except UnicodeError:
        return run


def repair_text(value: str) -> str:
    """Undo the Home Depot mojibake in one string (ASCII strings come back unchanged)."""
    if value.isascii():
        return value
    return _RUN.sub(_undo, value).translate(_INVISIBLE)


def decode_bytes(raw: bytes) -> tuple[str, str]:
    """Decode as UTF-8 when that is valid, else as Latin-1 (how the Kaggle original is read, and
    what `repair_text` expects); return (text, encoding)."""
    try:
        return raw.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return raw.decode("latin-1"), "latin-1"


def load_search_homedepot(folder: str | Path) -> RawDataset:
    folder, name = Path(folder), "search-homedepot"
    path = require(folder / FILE, name)
    content, encoding = decode_bytes(path.read_bytes())
    content = content.removeprefix("\ufeff")
    raw = pd.read_csv(io.StringIO(content), dtype=str, keep_default_na=False)
    check_columns(raw, ("product_uid", "product_title", "search_term", "relevance"), path, name)

    title_raw = raw["product_title"]
    unique_titles = title_raw.unique()
    fixed = dict(zip(unique_titles, (repair_text(t) for t in unique_titles), strict=True))
    title = title_raw.map(fixed)
    query_raw = raw["search_term"]
    query = query_raw.map({q: repair_text(q) for q in query_raw.unique()})

    # One item per product_uid (numeric order); its title is the first one seen. 15 products have
    # two titles in the file: the others are kept in attributes["alt_titles"].
    pairs = pd.DataFrame({"uid": raw["product_uid"], "title": title, "raw": title_raw}).drop_duplicates(
        ["uid", "title"]
    )
    first = pairs.drop_duplicates("uid")
    first = first.iloc[numeric_order(first["uid"])].reset_index(drop=True)
    alternates = pairs[pairs.duplicated("uid")].groupby("uid", sort=False)["title"].agg(list).to_dict()
    attributes = []
    for uid, t, r in zip(first["uid"], first["title"], first["raw"], strict=True):
        attr = {}
        if t != r:
            attr["title_raw"] = r
        if uid in alternates:
            attr["alt_titles"] = alternates[uid]
        attributes.append(attr or None)
    items = pd.DataFrame(
        {"item_id": ids(first["uid"]), "title": text(first["title"]), "attributes": pd.Series(attributes)}
    )

    query_id, _ = pd.factorize(query)
    judgments = pd.DataFrame(
        {
            "query_id": query_id.astype("int64"),
            "query": ids(query),
            "item_id": ids(raw["product_uid"]),
            "relevance": floats(raw["relevance"]),
        }
    )
    meta = {
        **base_meta(
            folder,
            "Home Depot product search relevance: (query, product, graded relevance 1-3)",
            f"{FILE} (id product_uid product_title search_term relevance)",
        ),
        "encoding": encoding,
        "text_columns": {
            "title": "product_title (mojibake repaired)",
            "extras.judgments.query": "search_term",
        },
        "titles_repaired": int(sum(1 for a in attributes if a and "title_raw" in a)),
        "n_queries": int(query_id.max() + 1) if len(query_id) else 0,
    }
    return RawDataset(name=name, items=items, extras={"judgments": judgments}, meta=meta)
