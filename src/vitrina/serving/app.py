"""The REST API (FastAPI; OpenAPI docs at /docs). `create_app(cfg)` builds one worker's app: it opens
the shared database, follows the published versions and answers from the current one.

Errors speak the caller's terms: an unknown id is a 404 naming it, a bad field a 422 naming it, an
oversized body 413, a wrong media type 415, a wrong method 405; a worker never crashes on input.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict
from datetime import date
from pathlib import Path
from typing import Annotated, Any

import pandas as pd
from fastapi import FastAPI, File, Form, Header, HTTPException, Query, Request, UploadFile
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel, Field
from sqlalchemy.exc import InterfaceError, OperationalError, SQLAlchemyError
from starlette.concurrency import run_in_threadpool

from vitrina.ads.campaign import AdsError
from vitrina.ads.matching import AdRequest
from vitrina.ads.server import blend
from vitrina.config import Config
from vitrina.data.errors import DataError
from vitrina.data.importer import read_records, validate
from vitrina.data.schema import INTERACTION_TYPES
from vitrina.data.storage import KINDS, Storage
from vitrina.privacy.audit import AuditLog
from vitrina.privacy.dp import PrivacyAccountant
from vitrina.privacy.keys import KeyStore
from vitrina.privacy.personal import TamperedError, open_storage
from vitrina.search.engine import Models, SearchError, SearchSettings
from vitrina.search.filters import FilterError, Filters
from vitrina.serving.access import AccessControl
from vitrina.serving.ads import ServingAds
from vitrina.serving.catalog import CatalogWriter
from vitrina.serving.erasure import export_user, forget_user
from vitrina.serving.live import Event, UnknownItem
from vitrina.serving.metrics import Metrics
from vitrina.serving.recent import RecentCache
from vitrina.serving.replies import send_json_error
from vitrina.serving.settings import ServeSettings
from vitrina.serving.state import NotReady, ServingState
from vitrina.serving.view import SIMILAR_BY, View
from vitrina.serving.web import mount_web

__all__ = ["create_app"]

log = logging.getLogger("vitrina.serving")

UPLOAD_PATHS = ("/search/photo", "/search/voice", "/import", "/shop/search/")


class EventIn(BaseModel):
    user_id: str = Field(min_length=1, max_length=128)
    item_id: str = Field(min_length=1, max_length=128)
    type: str = Field(description=f"one of {', '.join(INTERACTION_TYPES)}")
    value: float = 1.0
    ts: float | None = None
    event_id: str | None = Field(default=None, max_length=64, description="idempotency key (or the header)")


class EventsIn(BaseModel):
    events: list[EventIn] = Field(min_length=1, max_length=1000)


class ClickIn(BaseModel):
    impression_id: str = Field(min_length=1, max_length=64)


class UserIn(BaseModel):
    user_id: str = Field(min_length=1, max_length=128)
    attributes: dict[str, Any] | None = None


class ReviewIn(BaseModel):
    item_id: str = Field(min_length=1, max_length=128)
    text: str = Field(min_length=1, max_length=20_000)
    user_id: str | None = Field(default=None, max_length=128)
    rating: float | None = Field(default=None, ge=0, le=5)
    review_id: str | None = Field(default=None, max_length=64)


def _filters(category: str | None, brand: str | None, price_min: float | None, price_max: float | None) -> Filters:
    spec = {
        k: v
        for k, v in (("category", category), ("brand", brand), ("price_min", price_min), ("price_max", price_max))
        if v is not None
    }
    try:
        return Filters.parse(spec)
    except FilterError as exc:
        raise HTTPException(422, str(exc)) from exc


class _BodyLimit:
    """ASGI middleware: refuse bodies over the limit (413) while they stream in, and media types a
    route does not take (415), before any handler or parser runs."""

    def __init__(self, app: Any, json_limit: int, upload_limit: int) -> None:
        self.app, self.json_limit, self.upload_limit = app, json_limit, upload_limit

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        upload = path.startswith(UPLOAD_PATHS)
        limit = self.upload_limit if upload else self.json_limit
        headers = dict(scope["headers"])
        ctype = headers.get(b"content-type", b"").decode("latin-1").split(";")[0].strip().lower()
        wanted = "multipart/form-data" if upload else "application/json"
        length = headers.get(b"content-length")
        has_body = (length is not None and length != b"0") or b"transfer-encoding" in headers
        json_route = path.startswith(("/events", "/items", "/users", "/reviews", "/campaigns", "/ads", *UPLOAD_PATHS))
        if has_body and json_route and ctype != wanted:
            await send_json_error(send, 415, f"{path} takes {wanted}, not {ctype or 'no content type'}")
            return
        if length is not None and length.isdigit() and int(length) > limit:
            await send_json_error(send, 413, f"request body of {int(length)} bytes is over the limit of {limit}")
            return
        seen = 0

        async def limited() -> dict:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > limit:
                raise _TooLarge(limit)
            return message

        try:
            await self.app(scope, limited, send)
        except _TooLarge as exc:
            await send_json_error(send, 413, str(exc))


class _Observe:
    """ASGI middleware: latency histogram per route and status, an `x-request-id` on every
    response, and one JSON log line per request when INFO logging is on. Plain ASGI: Starlette's
    BaseHTTPMiddleware would add a task and a copy per request."""

    def __init__(self, app: Any, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        request_id = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"x-request-id"), None)
        request_id = request_id or uuid.uuid4().hex[:16]
        status = 500

        async def send_with_id(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode("latin-1"))]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - start
            route = getattr(scope.get("route"), "path", "unmatched")
            self.metrics.observe(scope["method"], route, status, elapsed)
            if log.isEnabledFor(logging.INFO):
                line = {"event": "request", "request_id": request_id, "method": scope["method"], "route": route}
                log.info(json.dumps({**line, "status": status, "ms": round(elapsed * 1000, 3)}))


class _TooLarge(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"request body is over the limit of {limit} bytes")


def create_app(cfg: Config, models: Models | None = None, storage: Storage | None = None) -> FastAPI:
    """One worker's API. `models` (text/image encoders, speech recogniser) default to those the
    published search index was built with, loaded on first use."""
    settings = ServeSettings.from_config(cfg)
    search_settings = SearchSettings.from_config(cfg)
    storage = storage or open_storage(cfg)
    storage.create_schema()
    models = models if models is not None else default_models(cfg, settings)
    cache = RecentCache.from_url(settings.redis_url) if settings.redis_url else None
    metrics = Metrics()
    state = ServingState(storage, settings, models, search_settings, cache, metrics)
    writer = CatalogWriter(storage, models, search_settings, settings.media_root)
    ads = ServingAds(storage, cfg, settings.ads_sync_s)
    feed_slots = [int(x) for x in cfg.get("ads.feed_slots", [2, 8])]
    search_slots = [int(x) for x in cfg.get("ads.search_slots", [0, 5])]
    keys = KeyStore(storage, settings.key_cache_s)
    personal = storage.personal

    def uid(raw: str) -> str:
        """A shopper's id as stored: their pseudonym when [privacy] pseudonymize is on."""
        return personal.user_id(raw) if personal is not None else raw

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        state.refresh()  # load the current version before the first request, not during it
        yield

    app = FastAPI(
        title="Vitrina",
        version="1",
        description="Multimodal recommendations, search and events for a shop. Every error names what was wrong.",
        lifespan=lifespan,
    )
    app.state.vitrina = state
    app.state.ads = ads
    app.state.metrics = metrics
    app.state.keys = keys
    app.state.settings = settings

    @app.exception_handler(NotReady)
    async def not_ready(_: Request, exc: NotReady) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=503)

    @app.exception_handler(UnknownItem)
    async def unknown_item(_: Request, exc: UnknownItem) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=404)

    @app.exception_handler(TamperedError)
    async def tampered(_: Request, exc: TamperedError) -> JSONResponse:
        log.error("integrity check failed: %s", exc)
        return JSONResponse({"detail": f"stored personal data failed its integrity check: {exc}"}, status_code=500)

    @app.exception_handler(OperationalError)
    @app.exception_handler(InterfaceError)
    async def database_down(_: Request, exc: Exception) -> JSONResponse:
        """The database cannot be reached (or refuses connections): 503, and the client may retry;
        nothing was half-written, since every write is one transaction."""
        log.error("database unavailable: %s", exc)
        detail = f"the database is unavailable, retry shortly ({type(exc).__name__})"
        return JSONResponse({"detail": detail}, status_code=503, headers={"retry-after": "5"})

    @app.exception_handler(DataError)
    async def bad_data(_: Request, exc: DataError) -> JSONResponse:
        problems = [
            {"field": p.field, "row": p.line, "value": None if p.value is None else str(p.value), "reason": p.reason}
            for p in exc.problems
        ]
        return JSONResponse({"detail": str(exc), "problems": problems}, status_code=422)

    def view() -> View:
        return state.current()

    # -- health and metrics ------------------------------------------------------------------------

    @app.get("/health/live", tags=["health"])
    async def live() -> dict[str, str]:
        """The process answers."""
        return {"status": "ok"}

    @app.get("/health/ready", tags=["health"])
    async def ready() -> JSONResponse:
        """A model version is loaded and the database answers."""
        try:
            v = view()
            state.live.last_seq()
        except NotReady as exc:
            return JSONResponse({"status": "not ready", "detail": str(exc)}, status_code=503)
        except SQLAlchemyError as exc:
            return JSONResponse({"status": "not ready", "detail": f"database: {exc}"}, status_code=503)
        return JSONResponse({"status": "ready", "version": v.bundle.version, "items": len(v)})

    @app.get("/metrics", tags=["health"], response_class=PlainTextResponse)
    async def prometheus() -> Response:
        """Prometheus metrics: request latency histograms, model version, index size."""
        v = state.view
        if v is not None:
            metrics.set_model(v.bundle.version, len(v))
        body, ctype = metrics.render()
        return Response(body, media_type=ctype)

    @app.get("/version", tags=["health"])
    async def version() -> dict[str, Any]:
        v = view()
        return {**state.status(), "model": v.bundle.info.get("model", {}).get("model")}

    # -- recommendations -------------------------------------------------------------------------

    @app.get("/users/{user_id}/recommendations", tags=["recommend"])
    async def recommendations(
        user_id: str,
        k: Annotated[int, Query(ge=1, le=100)] = 10,
        exclude_seen: bool = True,
        category: str | None = None,
        brand: str | None = None,
        price_min: float | None = None,
        price_max: float | None = None,
    ) -> JSONResponse:
        """Top-k for a shopper, blended with their latest events, each with the reason it is there."""
        v = view()
        filters = _filters(category, brand, price_min, price_max)
        pid = uid(user_id)
        history = state.live.history(pid)
        if not history and not state.live.user_exists(pid):
            raise HTTPException(404, f"unknown user id {user_id!r}")
        recs = state.recommend(v, pid, history, k, filters, exclude_seen)
        sponsored = []
        server = ads.current(v, pid)
        if server is not None:
            request = AdRequest(day=date.today(), user_id=pid, segments=v.segment_of(pid), category=category)
            sponsored = [{**v.card(ad.item_id), **asdict(ad)} for ad in server.serve(request, len(feed_slots))]
        # Built of plain Python values: a JSONResponse skips FastAPI's generic encoder (hot path).
        return JSONResponse(
            {
                "user_id": user_id,
                "version": v.bundle.version,
                "items": [
                    {**v.card(r.item_id), "score": r.score, "reason": r.reason, "because": r.because} for r in recs
                ],
                "sponsored": sponsored,
                "layout": [
                    {"kind": kind, "item_id": x.item_id if kind == "organic" else x["item_id"]}
                    for kind, x in blend(recs, sponsored, feed_slots)
                ],
            }
        )

    @app.get("/items/{item_id}/similar", tags=["recommend"])
    async def similar(item_id: str, by: str = "fused", k: Annotated[int, Query(ge=1, le=100)] = 10) -> dict[str, Any]:
        """Items like this one: by look (image), by description (text) or both (fused)."""
        if by not in SIMILAR_BY:
            raise HTTPException(422, f"by: {by!r} is not one of {', '.join(SIMILAR_BY)}")
        v = view()
        with state.lock:
            found = v.similar(item_id, by, k)
        return {
            "item_id": item_id,
            "by": by,
            "items": [{**v.card(i), "score": s} for i, s in found if i in v.row],
        }

    @app.get("/items/{item_id}/together", tags=["recommend"])
    async def together(item_id: str, k: Annotated[int, Query(ge=1, le=50)] = 6) -> dict[str, Any]:
        """Frequently bought together."""
        v = view()
        return {"item_id": item_id, "items": [{**v.card(i), "score": s} for i, s in v.together(item_id, k)]}

    # -- search ----------------------------------------------------------------------------------

    def _search(v: View, **kwargs: Any) -> dict[str, Any]:
        try:
            return state.search(v, **kwargs)
        except (SearchError, FilterError) as exc:
            raise HTTPException(422, str(exc)) from exc

    @app.get("/search", tags=["search"])
    async def search(
        q: Annotated[str, Query(min_length=1, max_length=500)],
        mode: str = "hybrid",
        page: Annotated[int, Query(ge=1)] = 1,
        page_size: Annotated[int, Query(ge=1, le=100)] = 10,
        category: str | None = None,
        brand: str | None = None,
        price_min: float | None = None,
        price_max: float | None = None,
        user_id: str | None = None,
    ) -> dict[str, Any]:
        """Text search (lexical, semantic, text-image or hybrid) with facets and filters."""
        filters = _filters(category, brand, price_min, price_max)
        v = view()
        pid = uid(user_id) if user_id else None
        return _search(
            v,
            query=q,
            mode=mode,
            filters=filters,
            page=page,
            page_size=page_size,
            user_id=pid,
            ads=ads.current(v, pid),
            ad_slots=search_slots,
            segments=v.segment_of(pid),
        )

    async def _upload(file: UploadFile, kind: str) -> bytes:
        if not (file.content_type or "").startswith(f"{kind}/"):
            raise HTTPException(415, f"the {kind} upload has media type {file.content_type!r}; expected {kind}/*")
        data = await file.read()
        if not data:
            raise HTTPException(422, f"the {kind} upload is empty")
        return data

    @app.post("/search/photo", tags=["search"])
    async def search_photo(
        photo: Annotated[UploadFile, File(description="a product photo (JPEG, PNG, WebP)")],
        q: Annotated[str | None, Form(max_length=500)] = None,
        page_size: Annotated[int, Form(ge=1, le=100)] = 10,
    ) -> dict[str, Any]:
        """Search by photo, alone (image) or with text (hybrid)."""
        data = await _upload(photo, "image")
        return _search(view(), query=q or None, mode="hybrid" if q else "image", photo=data, page_size=page_size)

    @app.post("/search/voice", tags=["search"])
    async def search_voice(
        audio: Annotated[UploadFile, File(description="a spoken query (WAV, FLAC, OGG, MP3)")],
        page_size: Annotated[int, Form(ge=1, le=100)] = 10,
    ) -> dict[str, Any]:
        """Search by voice: transcribed (Whisper), then searched as hybrid text."""
        data = await _upload(audio, "audio")
        v = view()
        if v.engine is None:
            raise NotReady("this version has no search index")
        try:
            transcript = await run_in_threadpool(v.engine.transcribe, data)
        except SearchError as exc:
            raise HTTPException(422, str(exc)) from exc
        out = _search(v, query=transcript, mode="hybrid", page_size=page_size)
        out["transcript"] = transcript
        return out

    # -- events ----------------------------------------------------------------------------------

    def _event(e: EventIn, key: str | None) -> Event:
        try:
            return Event(key or e.event_id or Event.new_id(), uid(e.user_id), e.item_id, e.type, e.value, e.ts)
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from exc

    @app.post("/events", tags=["events"], status_code=201)
    async def post_event(
        e: EventIn, idempotency_key: Annotated[str | None, Header(max_length=64)] = None
    ) -> JSONResponse:
        """Store one event; sent again with the same key it is stored once (200 the second time).
        The shopper's next recommendations take it into account at once."""
        event = _event(e, idempotency_key)
        stored = state.live.record([event])[0]
        return JSONResponse({"event_id": event.event_id, "stored": stored}, status_code=201 if stored else 200)

    @app.post("/events/batch", tags=["events"])
    async def post_events(body: EventsIn) -> dict[str, Any]:
        """Store up to 1,000 events in one transaction (all or none); per event, stored or duplicate."""
        events = [_event(e, None) for e in body.events]
        stored = state.live.record(events)
        return {"stored": int(sum(stored)), "duplicates": len(stored) - int(sum(stored))}

    # -- sponsored ------------------------------------------------------------------------------

    @app.post("/campaigns", tags=["ads"], status_code=201)
    async def post_campaigns(specs: list[dict[str, Any]] | dict[str, Any]) -> dict[str, Any]:
        """Create or replace campaigns (advertiser, CPC bid, budgets, keywords, targeting, items)."""
        batch = specs if isinstance(specs, list) else [specs]
        try:
            ids = ads.store.put(batch)
        except AdsError as exc:
            raise HTTPException(422, str(exc)) from exc
        ads.invalidate()
        return {"campaign_ids": ids}

    @app.get("/campaigns", tags=["ads"])
    async def get_campaigns() -> dict[str, Any]:
        return {"campaigns": ads.store.specs()}

    @app.post("/ads/click", tags=["ads"])
    async def ad_click(body: ClickIn) -> dict[str, Any]:
        """A click on a sponsored result: charged once, at its auction price within the budgets."""
        try:
            charge = ads.click(body.impression_id)
        except AdsError as exc:
            raise HTTPException(404, str(exc)) from exc
        return {"impression_id": body.impression_id, "charged": charge}

    # -- catalogue, users, reviews ---------------------------------------------------------------

    @app.get("/items/{item_id}", tags=["catalogue"])
    async def get_item(item_id: str) -> dict[str, Any]:
        rows = storage.read("items", {"item_id": item_id})
        if not len(rows):
            raise UnknownItem(item_id)
        return json.loads(rows.iloc[0].to_json())

    @app.post("/items", tags=["catalogue"], status_code=201)
    async def post_items(records: list[dict[str, Any]] | dict[str, Any]) -> dict[str, Any]:
        """Create or replace items (schema fields; extra fields become attributes). They are
        searchable and recommendable through their content at once, without retraining."""
        batch = records if isinstance(records, list) else [records]
        if not batch or len(batch) > 1000:
            raise HTTPException(422, "send 1 to 1,000 items")
        try:
            ids = await run_in_threadpool(writer.upsert, batch)
        except ValueError as exc:
            if isinstance(exc, DataError):
                raise
            raise HTTPException(422, str(exc)) from exc
        state.refresh()
        return {"item_ids": ids}

    @app.put("/items/{item_id}", tags=["catalogue"])
    async def put_item(item_id: str, record: dict[str, Any]) -> dict[str, Any]:
        if str(record.get("item_id", item_id)) != item_id:
            raise HTTPException(
                422, f"item_id in the body ({record.get('item_id')!r}) differs from the path ({item_id!r})"
            )
        return await post_items({**record, "item_id": item_id})

    @app.delete("/items/{item_id}", tags=["catalogue"])
    async def delete_item(item_id: str) -> dict[str, Any]:
        """Remove an item, its events and its reviews."""
        writer.delete(item_id)
        state.refresh()
        return {"deleted": item_id}

    @app.get("/users/{user_id}", tags=["users"])
    async def get_user(user_id: str) -> dict[str, Any]:
        """The shopper's profile (personal fields decrypted) and latest events; every call is audited."""
        pid = uid(user_id)
        rows = storage.read("users", {"user_id": pid})
        if not len(rows):
            raise HTTPException(404, f"unknown user id {user_id!r}")
        history = state.live.history(pid, limit=50)
        attributes = rows.iloc[0]["attributes"]
        return {
            "user_id": user_id,
            "pseudonym": pid,
            "attributes": personal.reveal(attributes, pid) if personal is not None else attributes,
            "recent": [{"item_id": i, "type": t, "value": val} for i, t, val in history],
        }

    @app.post("/users", tags=["users"], status_code=201)
    async def post_user(user: UserIn) -> dict[str, Any]:
        frame = validate(pd.DataFrame([{**user.model_dump(), "user_id": uid(user.user_id)}]), "users", "request body")
        storage.write("users", frame, source="request body")
        return {"user_id": user.user_id}

    @app.delete("/users/{user_id}", tags=["users"])
    async def delete_user(user_id: str) -> dict[str, Any]:
        """Remove a user, their events and their reviews (their trained vector leaves at the next
        `serve build`; until then they are unknown to every endpoint)."""
        report = await run_in_threadpool(forget_user, storage, settings.dir, uid(user_id), state.live)
        if not report["database"]:
            raise HTTPException(404, f"unknown user id {user_id!r}")
        return {"deleted": user_id, "removed_from_versions": report["versions"]}

    @app.get("/users/{user_id}/export", tags=["users"])
    async def export(user_id: str) -> dict[str, Any]:
        """Everything held about a shopper (an access request): profile, events, reviews, ad log rows,
        their trained vector and segment, and who read their data (audited)."""
        found = await run_in_threadpool(export_user, storage, settings.dir, uid(user_id))
        if found is None:
            raise HTTPException(404, f"unknown user id {user_id!r}")
        return found

    @app.get("/items/{item_id}/reviews", tags=["reviews"])
    async def get_reviews(item_id: str, limit: Annotated[int, Query(ge=1, le=500)] = 50) -> dict[str, Any]:
        view().index(item_id)
        rows = storage.read("reviews", {"item_id": item_id}).tail(limit)
        return {"item_id": item_id, "reviews": json.loads(rows.to_json(orient="records"))}

    @app.post("/reviews", tags=["reviews"], status_code=201)
    async def post_review(review: ReviewIn) -> dict[str, Any]:
        view().index(review.item_id)
        body = review.model_dump()
        body["user_id"] = uid(body["user_id"]) if body["user_id"] else None
        frame = validate(pd.DataFrame([body]), "reviews", "request body")
        added = storage.write("reviews", frame, source="request body")
        return {"review_id": str(frame["review_id"].iloc[0]), "stored": bool(added)}

    @app.delete("/reviews/{review_id}", tags=["reviews"])
    async def delete_review(review_id: str) -> dict[str, Any]:
        if not state.live.delete_review(review_id):
            raise HTTPException(404, f"unknown review id {review_id!r}")
        return {"deleted": review_id}

    @app.post("/import", tags=["catalogue"])
    async def bulk_import(
        kind: Annotated[str, Form(description=f"one of {', '.join(KINDS)}")],
        file: Annotated[UploadFile, File(description="CSV, TSV, JSONL or Parquet")],
    ) -> dict[str, Any]:
        """Import a file of one record kind in one transaction (all rows or none). Items imported
        this way are searchable by text at once; recommendable after the next `serve build`."""
        if kind not in KINDS:
            raise HTTPException(422, f"kind: {kind!r} is not one of {', '.join(KINDS)}")
        suffix = Path(file.filename or "upload.csv").suffix or ".csv"
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / f"{kind}{suffix}"
            path.write_bytes(await file.read())
            try:
                frame = await run_in_threadpool(lambda: validate(read_records(path, kind), kind, file.filename or kind))
            except ValueError as exc:
                if isinstance(exc, DataError):
                    raise
                raise HTTPException(422, str(exc)) from exc
        added = storage.write(kind, frame, source=file.filename)
        if kind == "items":
            writer.index_text(frame)
        return {"kind": kind, "rows": len(frame), "added": added}

    @app.get("/media/{item_id}", tags=["catalogue"], include_in_schema=False)
    async def media(item_id: str) -> FileResponse:
        """The item's first photo."""
        v = view()
        photos = v.meta.at[v.index(item_id), "image_paths"]
        path = writer.photo_path(photos)
        if path is None:
            raise HTTPException(404, f"item {item_id!r} has no photo")
        return FileResponse(path, headers={"cache-control": "public, max-age=86400"})

    audit = AuditLog(storage)
    slots = {"feed": feed_slots, "search": search_slots}
    accountant = PrivacyAccountant.from_config(storage, cfg)
    mount_web(app, state, storage, metrics, cfg.output_dir, ads, slots, keys, audit, accountant)
    app.add_middleware(_BodyLimit, json_limit=settings.max_body_bytes, upload_limit=search_settings.max_upload_bytes)
    app.add_middleware(
        AccessControl,
        keys=keys,
        audit=audit,
        subject_of=uid,
        required=settings.require_keys,
        rate_per_min=settings.rate_per_min,
    )
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST", "PUT", "DELETE"],
            allow_headers=["x-api-key", "authorization", "content-type", "idempotency-key", "x-request-id"],
        )
    app.add_middleware(_Observe, metrics=metrics)  # outermost: refused requests are counted too
    return app


def serving_models(cfg: Config, image_encoder: str | None, text_encoder: str | None = None) -> Models:
    """The text encoder (`text_encoder` by name, else the configured one), the named image encoder
    (None: no photo indexes) and the speech recogniser (its model loads on first use). Queries are
    refused, not masked, when a photo cannot be decoded."""
    from vitrina.features.audio import AudioSettings
    from vitrina.features.featurize import make_encoder
    from vitrina.features.image_encoders import EfficientNetLite0
    from vitrina.features.text_encoders import text_encoder_from_config

    image = None
    if image_encoder == EfficientNetLite0.name:
        image = EfficientNetLite0.from_config(cfg)
    elif image_encoder:
        image = make_encoder(image_encoder, {})
    return Models(
        text_encoder=text_encoder_from_config(cfg, text_encoder),
        image_encoder=image,
        recognizer=AudioSettings.from_config(cfg).recognizer(),
    )


def default_models(cfg: Config, settings: ServeSettings) -> Models:
    """`serving_models` with the image encoder the current version's photo index was built with."""
    from vitrina.serving.bundle import current_version, version_folder

    version = current_version(settings.dir)
    path = version_folder(settings.dir, version) / "search" / "search.json" if version is not None else None
    return index_models(cfg, json.loads(path.read_text()) if path is not None and path.exists() else {})


def index_models(cfg: Config, info: dict[str, Any]) -> Models:
    """`serving_models` with the encoders a saved search index (its search.json) was built with."""
    text, image = info.get("text_encoder"), info.get("image_encoder")
    return serving_models(cfg, image["name"] if image else None, text["name"] if text else None)
