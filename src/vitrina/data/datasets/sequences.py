"""Per-user ordered sequences as `sequences.jsonl` + `items.tsv` (`asin title`): amazon-toys-2023.

Each line is `{"user_id": str, "items": [asin, ...]}` in the user's chronological order; there are
no timestamps. Interactions are listed user by user (file order) and, within a user, in
chronological order, because downstream leave-last-out splitting uses row order.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from vitrina.data.dataset import RawDataset
from vitrina.data.datasets._common import base_meta, check_columns, check_known, const, ids, read_table, require, text


def load_amazon_toys_2023(folder: str | Path) -> RawDataset:
    folder, name = Path(folder), "amazon-toys-2023"

    path = folder / "items.tsv"
    raw = read_table(path, name, sep="\t")  # titles use CSV quoting ("" inside quoted fields)
    check_columns(raw, ("asin", "title"), path, name)
    if raw["asin"].duplicated().any():
        raise ValueError(f"{name}: repeated asin in {path}")
    items = pd.DataFrame({"item_id": ids(raw["asin"]), "title": text(raw["title"])})

    path = require(folder / "sequences.jsonl", name)
    users: list[str] = []
    seqs: list[list[str]] = []
    with path.open(encoding="utf-8") as handle:
        for lineno, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
                users.append(str(obj["user_id"]))
                seqs.append([str(a) for a in obj["items"]])
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                msg = f"{name}: {path}:{lineno} is not a {{user_id, items}} object: {exc}"
                raise ValueError(msg) from exc
    if len(set(users)) != len(users):
        raise ValueError(f"{name}: a user has more than one line in {path}")

    lengths = np.fromiter((len(s) for s in seqs), dtype=np.int64, count=len(seqs))
    starts = np.cumsum(lengths) - lengths
    position = np.arange(int(lengths.sum())) - np.repeat(starts, lengths)
    user_col = pd.Series(np.repeat(np.array(users, dtype=object), lengths), dtype=object)
    item_col = pd.Series([a for s in seqs for a in s], dtype=object)
    inter = pd.DataFrame(
        {
            "event_id": ids(user_col + ":" + pd.Series(position).astype(str).astype(object)),
            "user_id": user_col,
            "item_id": item_col,
            "type": const("purchase", len(item_col)),
            "value": np.ones(len(item_col)),
        }
    )
    check_known(inter["item_id"], items["item_id"], name, "item")

    meta = {
        **base_meta(
            folder,
            "Amazon Reviews 2023 Toys and Games: per-user chronological sequences (no timestamps)",
            "sequences.jsonl + items.tsv (asin title)",
            ordered=True,
        ),
        "text_columns": {"title": "the real Amazon product title"},
        "position": "event_id is '<user_id>:<0-based position in the user's sequence>'",
    }
    users_frame = pd.DataFrame({"user_id": ids(pd.Series(users, dtype=object))})
    return RawDataset(name=name, items=items, users=users_frame, interactions=inter, meta=meta)
