"""Labelled review text as a CSV `cat label review`: reviews-zh (online_shopping_10_cats).

review_id is `zh<row>` with the 0-based data row of the file, so ids stay stable when a row is
dropped (the one empty review is dropped: the schema requires text). The category of each review
comes as `extras["review_category"]` (review_id, category).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from vitrina.data.dataset import RawDataset
from vitrina.data.datasets._common import base_meta, check_columns, floats, ids, read_table

FILE = "online_shopping_10_cats.csv"


def load_reviews_zh(folder: str | Path) -> RawDataset:
    folder, name = Path(folder), "reviews-zh"
    path = folder / FILE
    raw = read_table(path, name)
    check_columns(raw, ("cat", "label", "review"), path, name)

    review_id = "zh" + pd.Series(range(len(raw))).astype(str)
    body = raw["review"].str.replace("\ufeff", "", regex=False)  # 20 reviews start with a UTF-8 BOM
    keep = (body.str.strip() != "").to_numpy()
    category = raw["cat"].str.replace("\ufeff", "", regex=False).str.strip()

    reviews = pd.DataFrame(
        {
            "review_id": ids(review_id[keep]),
            "text": ids(body[keep]),
            "label": floats(raw["label"][keep]),
        }
    )
    review_category = pd.DataFrame({"review_id": reviews["review_id"], "category": ids(category[keep])})
    meta = {
        **base_meta(
            folder,
            "Chinese e-commerce reviews with sentiment labels (1 positive, 0 negative)",
            f"{FILE} (cat label review)",
        ),
        "text_columns": {"text": "review (UTF-8 BOMs removed)"},
        "dropped_empty": int((~keep).sum()),
        "categories": sorted(review_category["category"].unique().tolist()),
    }
    return RawDataset(name=name, reviews=reviews, extras={"review_category": review_category}, meta=meta)
