"""Items written through the service: checked, embedded, stored with their change-feed entry in one
transaction, so every worker makes them searchable and recommendable without retraining."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

from vitrina.data.importer import validate
from vitrina.data.schema import interactions_table, items_table, reviews_table
from vitrina.data.storage import Storage
from vitrina.features.image_io import ImageError
from vitrina.features.text import item_text
from vitrina.search.engine import Models, SearchEngine, SearchSettings
from vitrina.search.lexical import LexicalIndex
from vitrina.serving.live import LiveStore, UnknownItem

__all__ = ["CatalogWriter"]


class CatalogWriter:
    def __init__(
        self, storage: Storage, models: Models, search: SearchSettings, media_root: Path | None = None
    ) -> None:
        self.storage, self.models, self.search, self.media_root = storage, models, search, media_root

    def photo_path(self, paths: Any) -> str | None:
        """The file of an item's first photo (under the media root), None when it has none."""
        if not isinstance(paths, list | tuple) or not paths:
            return None
        path = Path(str(paths[0]))
        if not path.is_absolute() and self.media_root is not None:
            path = self.media_root / path
        return str(path) if path.is_file() else None

    def vectors(self, items: pd.DataFrame) -> list[dict[str, np.ndarray]]:
        """Each item's modality vectors: its text always; its first photo when the file exists and
        decodes (a corrupt photo is refused with the item named)."""
        out: list[dict[str, np.ndarray]] = [{} for _ in range(len(items))]
        m = self.models
        if m.text_encoder is not None:
            texts = m.text_encoder.encode(item_text(items, self.search.text_fields))
            for row, v in zip(out, texts, strict=True):
                row["text"] = v
        if m.image_encoder is not None:
            photos = [self.photo_path(p) for p in items["image_paths"].tolist()]
            for i, photo in enumerate(photos):
                if photo is None:
                    continue
                try:
                    out[i]["image"] = m.image_encoder.encode([photo], on_error="raise")[0]
                except ImageError as exc:
                    raise ValueError(f"item {items['item_id'].iloc[i]!r}: photo {photo}: {exc}") from exc
        return out

    def upsert(self, records: Sequence[dict[str, Any]]) -> list[str]:
        """Create or replace items; returns their ids. Nothing is written when any record is bad."""
        items = validate(pd.DataFrame(list(records)), "items", "request body").reset_index(drop=True)
        vectors = self.vectors(items)
        ids = items["item_id"].astype(str).tolist()
        self.storage.write_many(
            {"items": items},
            sources={"items": "request body"},
            then=lambda conn: LiveStore.log_changes(conn, dict(zip(ids, vectors, strict=True)), []),
        )
        self.index_text(items)
        return ids

    def delete(self, item_id: str) -> None:
        """Remove an item with its events and reviews (one transaction)."""
        with self.storage.begin() as conn:
            found = conn.execute(sa.select(items_table.c.item_id).where(items_table.c.item_id == item_id)).first()
            if found is None:
                raise UnknownItem(item_id)
            conn.execute(interactions_table.delete().where(interactions_table.c.item_id == item_id))
            conn.execute(reviews_table.delete().where(reviews_table.c.item_id == item_id))
            conn.execute(items_table.delete().where(items_table.c.item_id == item_id))
            LiveStore.log_changes(conn, {}, [item_id])
        self._lexical().delete([item_id])

    def index_text(self, items: pd.DataFrame) -> None:
        """Put items in the full-text index (shared by every worker through the database)."""
        self._lexical().upsert(items)

    def _lexical(self) -> LexicalIndex:
        return SearchEngine.lexical_index(self.storage, self.search)
