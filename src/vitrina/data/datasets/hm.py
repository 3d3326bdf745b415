"""H&M catalogue sample: `articles.csv`, `customers.csv`, `copurchase.csv`, `images/<id[:3]>/<id>.jpg`.

There are no interactions (the raw transactions are not included); the co-purchase pairs, scored
from the real transactions, come as `extras["copurchase"]`. Article ids are 10-digit strings with a
leading zero and stay strings.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from vitrina.data.dataset import RawDataset
from vitrina.data.datasets._common import check_columns, const, floats, ids, read_table, records, text

CATEGORY_LEVELS = ("index_group_name", "product_group_name", "product_type_name")
# Article columns mapped to schema fields; every other article column goes into `attributes`.
_MAPPED = ("article_id", "prod_name", "detail_desc", *CATEGORY_LEVELS)


def _image_files(images: Path) -> set[str]:
    """Relative paths 'images/<sub>/<file>' of every file under images/ (one scandir per folder)."""
    found: set[str] = set()
    if not images.is_dir():
        return found
    with os.scandir(images) as subs:
        for sub in subs:
            if sub.is_dir():
                with os.scandir(sub.path) as files:
                    found.update(f"images/{sub.name}/{f.name}" for f in files if f.is_file())
    return found


def _category_path(frame: pd.DataFrame) -> pd.Series:
    levels = [frame[c].str.strip() for c in CATEGORY_LEVELS if c in frame.columns]
    joined = [" > ".join(part for part in parts if part) for parts in zip(*levels, strict=True)]
    return text(pd.Series(joined, dtype=object))


def load_hm(folder: str | Path) -> RawDataset:
    folder, name = Path(folder), "hm"

    path = folder / "articles.csv"
    art = read_table(path, name)
    check_columns(art, ("article_id", "prod_name", "detail_desc"), path, name)
    if art["article_id"].duplicated().any():
        raise ValueError(f"{name}: repeated article_id in {path}")
    item_id = ids(art["article_id"])
    on_disk = _image_files(folder / "images")
    rel = "images/" + art["article_id"].str[:3] + "/" + art["article_id"] + ".jpg"
    image_paths = [[p] if p in on_disk else None for p in rel]
    extra_cols = [c for c in art.columns if c not in _MAPPED]
    items = pd.DataFrame(
        {
            "item_id": item_id,
            "title": text(art["prod_name"]),
            "description": text(art["detail_desc"]),
            "category_path": _category_path(art),
            "brand": const("H&M", len(art)),
            "image_paths": pd.Series(image_paths, dtype=object),
            "attributes": records(art[extra_cols]),
        }
    )

    path = folder / "customers.csv"
    cust = read_table(path, name)
    check_columns(cust, ("customer_id",), path, name)
    attrs = cust.drop(columns=["customer_id"])
    attr_records = records(attrs)
    numeric = [c for c in ("age", "FN", "Active") if c in attrs.columns]
    if numeric:
        nums = pd.DataFrame({c: floats(attrs[c]) for c in numeric}).astype(object)
        nums = nums.where(nums.notna(), None).to_dict("records")
        for rec, num in zip(attr_records, nums, strict=True):
            rec.update(num)
    users = pd.DataFrame({"user_id": ids(cust["customer_id"]), "attributes": attr_records})

    path = folder / "copurchase.csv"
    co = read_table(path, name)
    check_columns(co, ("article_id", "co_article_id", "score"), path, name)
    copurchase = pd.DataFrame(
        {
            "article_id": ids(co["article_id"]),
            "co_article_id": ids(co["co_article_id"]),
            "score": floats(co["score"]),
        }
    )

    root = str(folder.resolve())
    meta = {
        "source": root,
        "root": root,
        "description": "H&M fashion catalogue sample: photos, product text, customers and co-purchase pairs",
        "official_split": False,
        "ordered": False,
        "format": "articles.csv + customers.csv + copurchase.csv + images/<id[:3]>/<id>.jpg",
        "text_columns": {
            "title": "prod_name",
            "description": "detail_desc",
            "category_path": " > ".join(c for c in CATEGORY_LEVELS if c in art.columns),
        },
        "image_root": "image_paths are relative to meta['root']",
        "n_images": sum(p is not None for p in image_paths),
    }
    return RawDataset(name=name, items=items, users=users, extras={"copurchase": copurchase}, meta=meta)
