"""A worker's serving state: the current `View`, kept up to date with published versions and the
catalogue change feed, and swapped in with one assignment."""

from __future__ import annotations

import gc
import json
import logging
import threading
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from vitrina.data.storage import Storage
from vitrina.search.engine import Models, SearchEngine, SearchSettings
from vitrina.search.filters import Filters
from vitrina.serving.bundle import Bundle, current_version, version_folder
from vitrina.serving.live import Change, LiveStore
from vitrina.serving.metrics import Metrics
from vitrina.serving.precomputed import PrecomputedLists
from vitrina.serving.recent import RecentCache
from vitrina.serving.settings import ServeSettings
from vitrina.serving.view import Recommendation, View

__all__ = ["NotReady", "ServingState"]

log = logging.getLogger("vitrina.serving")


class NotReady(RuntimeError):
    """No version has been published yet (or none could be loaded)."""


class ServingState:
    def __init__(
        self,
        storage: Storage,
        settings: ServeSettings,
        models: Models | None = None,
        search_settings: SearchSettings | None = None,
        cache: RecentCache | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.storage, self.settings, self.metrics = storage, settings, metrics
        self.models = models or Models()
        self.search_settings = search_settings or SearchSettings()
        self.live = LiveStore(storage, cache)
        self.lists = PrecomputedLists(storage, cache.client if cache is not None else None)
        self._lists_version: str | None = None  # the version the batch job's lists are for, if any
        self.view: View | None = None
        # Search indexes are mutated by refresh and read by requests: one at a time.
        self.lock = threading.RLock()
        self._next_check = 0.0
        self._loading: str | None = None
        self._failed: str | None = None  # the last version that failed to load (not retried)
        self.load_error: str | None = None

    def current(self) -> View:
        """The view to answer one request with. When `refresh_s` has passed: catalogue changes are
        applied, and a newly published version is loaded in a background thread while requests keep
        using the current view (swapped in when complete). Before any view exists, the first load
        happens here."""
        if time.monotonic() >= self._next_check:
            self.refresh(background=self.view is not None)
        if self.view is None:
            raise NotReady(self.load_error or "no model version has been published: run `vitrina serve build`")
        return self.view

    def refresh(self, background: bool = False) -> None:
        """Load a newly published version, else apply catalogue changes. A version that fails to
        load is reported and the previous one keeps serving."""
        self._next_check = time.monotonic() + self.settings.refresh_s
        version = current_version(self.settings.dir)
        if version is not None and (self.view is None or self.view.bundle.version != version):
            if self._loading == version or self._failed == version:
                return  # being loaded, or refused already: the next publish is tried, not this one again
            if background:
                self._loading = version
                threading.Thread(target=self._swap, args=(version,), daemon=True, name="vitrina-load").start()
            else:
                self._swap(version)
            return
        if self.view is not None:
            with self.lock:
                changes = self.live.changes_since(self.view.seq)
                if changes:
                    self.view = self._apply(self.view, changes)
            serving = self.view.bundle.version
            self._lists_version = serving if self.lists.has(serving) else None

    def recommend(
        self,
        view: View,
        user_id: str | None,
        history: list[tuple[str, str, float]],
        k: int = 10,
        filters: Filters | None = None,
        exclude_seen: bool = True,
    ) -> list[Recommendation]:
        """`view.recommend`, answered from the batch job's list when the shopper has one that still
        holds (same version, catalogue and history; no filters, seen items left out)."""
        if user_id is not None and not filters and exclude_seen and self._lists_version == view.bundle.version:
            found = self.lists.recommend(view, user_id, history, k)
            if self.metrics is not None:
                self.metrics.lists.labels("miss" if found is None else "hit").inc()
            if found is not None:
                return found
        return view.recommend(user_id, history, k, filters, exclude_seen)

    def _swap(self, version: str) -> None:
        try:
            view = self.load_view(version)
        except Exception as exc:
            self.load_error = f"version {version} cannot be loaded ({type(exc).__name__}: {exc}); still serving " + (
                self.view.bundle.version if self.view is not None else "nothing"
            )
            self._failed = version
            log.error(self.load_error)
        else:
            with self.lock:
                self.view = view  # one assignment: a request holds the old view or the new one
            # The view's hundreds of thousands of long-lived objects leave the collector's
            # generations: full collections then stop pausing requests for tens of milliseconds.
            gc.freeze()
            self.load_error = None
            log.info("serving version %s (%d items)", version, len(view))
        finally:
            self._loading = None

    def load_view(self, version: str, search: bool = True) -> View:
        """The view a worker serves `version` with, catalogue changes applied (`search=False`: without
        the search indexes, as the batch job ranks)."""
        folder = version_folder(self.settings.dir, version)
        bundle = Bundle.load(folder)
        engine = None
        if search and (folder / "search").is_dir():
            engine = SearchEngine.load(folder / "search", self.storage, self.models, self.search_settings)
        view = View(bundle, self.storage.read("items"), engine, self.settings, seq=int(bundle.info.get("feed_seq", 0)))
        if (folder / "segments.json").exists():
            view.segments = json.loads((folder / "segments.json").read_text())
        changes = self.live.changes_since(view.seq)
        return self._apply(view, changes) if changes else view

    def _apply(self, view: View, changes: list[Change]) -> View:
        latest: dict[str, Change] = {}
        for c in changes:
            latest[c.item_id] = c
        rows = self.storage.read("items", {"item_id": list(latest)})
        if view.engine is not None:
            self._index_changes(view.engine, latest, rows)
        return view.apply(list(latest.values()), rows)

    @staticmethod
    def _index_changes(engine: SearchEngine, latest: Mapping[str, Change], rows: pd.DataFrame) -> None:
        present = set(rows["item_id"].astype(str))
        gone = [i for i, c in latest.items() if (c.op == "delete" or i not in present) and i in engine]
        if gone:
            engine.delete_items(gone, index_text=False)
        up = rows[rows["item_id"].astype(str).map(lambda i: latest[i].op == "upsert")].reset_index(drop=True)
        if not len(up):
            return
        vectors = [latest[i].vectors for i in up["item_id"].astype(str)]
        text = np.stack([v["text"] for v in vectors]) if all("text" in v for v in vectors) else None
        image = None
        if "image" in engine.vectors:
            dim = engine.vectors["image"].index.dim
            has = np.array(["image" in v for v in vectors], bool)
            image = (np.stack([v.get("image", np.zeros(dim, np.float32)) for v in vectors]), has)
        engine.upsert_items(up, text_vectors=text, image_vectors=image, index_text=False)

    def search(self, view: View, **kwargs: Any) -> dict[str, Any]:
        """`SearchEngine.search` on the view's indexes (under the lock that refresh takes), hits
        with their cards. Raises SearchError / FilterError for requests the engine refuses."""
        if view.engine is None:
            raise NotReady("this version has no search index")
        with self.lock:
            out = view.engine.search(**kwargs).to_dict()
        out["hits"] = [{**h, **(view.card(h["item_id"]) if h["item_id"] in view.row else {})} for h in out["hits"]]
        out["sponsored"] = [{**view.card(ad["item_id"]), **ad} for ad in out["sponsored"] if ad["item_id"] in view.row]
        return out

    def status(self) -> dict[str, Any]:
        view = self.view
        return {
            "version": view.bundle.version if view else None,
            "items": len(view) if view else 0,
            "feed_seq": view.seq if view else 0,
            "error": self.load_error,
        }
