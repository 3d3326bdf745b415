"""The web shop front and the admin dashboard: server-rendered (Jinja2), no external CDN, so they
work offline. Every page reads the same `View` as the API; the browser sends events to /events."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from fastapi import FastAPI, File, Form, HTTPException, Request, UploadFile
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool

from vitrina.ads.matching import AdRequest
from vitrina.ads.server import blend
from vitrina.analytics.sentiment import SentimentModel
from vitrina.data.storage import Storage
from vitrina.plotting import pyplot
from vitrina.privacy.audit import AuditLog
from vitrina.privacy.dp import PrivacyAccountant
from vitrina.privacy.keys import KeyStore
from vitrina.search.engine import SearchError
from vitrina.search.filters import FilterError
from vitrina.serving.access import COOKIE as KEY_COOKIE
from vitrina.serving.ads import ServingAds
from vitrina.serving.bundle import version_folder
from vitrina.serving.metrics import Metrics
from vitrina.serving.state import ServingState
from vitrina.serving.view import View

__all__ = ["mount_web"]

HERE = Path(__file__).parent
COOKIE = "vitrina_user"
DEMO_NOTE = (
    "Demo shoppers: the catalogue, photos and co-purchase pairs are real H&M data; the shoppers and "
    "their histories are generated, as random walks on the real co-purchase graph; the advertisers are simulated."
)


def _plot_png(draw: Callable[[Any], None], size: tuple[float, float] = (7.0, 4.0)) -> bytes:
    plt = pyplot()

    fig, ax = plt.subplots(figsize=size)
    draw(ax)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def _embedding_map(view: View) -> bytes:
    """The catalogue's joint content vectors in 2-D (PCA), coloured by top-level category."""
    rows = np.flatnonzero(view.alive)
    x = view.joint[rows] - view.joint[rows].mean(0)
    _, _, vt = np.linalg.svd(x[:: max(1, len(x) // 4000)], full_matrices=False)
    xy = x @ vt[:2].T
    tops = view.meta["category_path"].iloc[rows].fillna("(none)").astype(str).str.split(" > ").str[0].to_numpy()

    def draw(ax: Any) -> None:
        names, counts = np.unique(tops, return_counts=True)
        for name in names[np.argsort(-counts)][:10]:
            sel = tops == name
            ax.scatter(xy[sel, 0], xy[sel, 1], s=3, alpha=0.5, label=f"{name} ({sel.sum()})")
        ax.legend(markerscale=4, fontsize=7, loc="best")
        ax.set_title("Catalogue map: joint text + image vectors (PCA), by category")
        ax.set_xticks([])
        ax.set_yticks([])

    return _plot_png(draw, (7.5, 5.5))


def _training_curve(history: list[dict[str, float]], model: str) -> bytes:
    def draw(ax: Any) -> None:
        epochs = [h["epoch"] for h in history if "valid_recall@20" in h]
        ax.plot(epochs, [h["valid_recall@20"] for h in history if "valid_recall@20" in h], marker="o", ms=3)
        ax.set_xlabel("epoch")
        ax.set_ylabel("validation Recall@20")
        loss = [h.get("loss") for h in history]
        if any(v is not None for v in loss):
            twin = ax.twinx()
            twin.plot([h["epoch"] for h in history], loss, color="grey", alpha=0.5)
            twin.set_ylabel("training loss", color="grey")
        ax.set_title(f"Training curve of the serving model ({model})")

    return _plot_png(draw)


def _bench_files(results_dir: Path) -> list[Path]:
    """Recommendation benchmark JSON files (the ones `vitrina bench report` reads)."""
    out = []
    for path in sorted(results_dir.glob("*.json")):
        try:
            payload = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        runs = payload.get("results") if isinstance(payload, dict) and "split" in payload else None
        if isinstance(runs, list) and runs and isinstance(runs[0], dict) and "test" in runs[0]:
            out.append(path)
    return out


def mount_web(
    app: FastAPI,
    state: ServingState,
    storage: Storage,
    metrics: Metrics,
    results_dir: Path,
    ads: ServingAds,
    slots: dict[str, list[int]],
    keys: KeyStore,
    audit: AuditLog,
    accountant: PrivacyAccountant,
) -> None:
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    sentiment_model = SentimentModel.load(state.settings.sentiment_model) if state.settings.sentiment_model else None
    # P(positive) per review id as the model read it: reviews do not change, so each is read once per
    # worker (the model's encoder view costs tens of milliseconds a review), not on every page view.
    review_reading: dict[str, float] = {}
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    plots: dict[tuple[str, str], bytes] = {}

    def user_of(request: Request) -> str | None:
        return request.cookies.get(COOKIE) or None

    def page(request: Request, name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
        view = state.current()
        users = view.bundle.users.ids[:40].tolist()
        context = {
            "user": user_of(request),
            "users": users,
            "note": DEMO_NOTE,
            "version": view.bundle.version,
            "shop_key": state.settings.shop_front_key,
            **context,
        }
        return templates.TemplateResponse(request, name, context, status_code=status_code)

    def sponsored_card(view: View, ad: Any) -> dict[str, Any]:
        return {**view.card(ad.item_id), "sponsored": True, "impression_id": ad.impression_id}

    def recs(view: View, user: str | None, k: int, feed: bool = True) -> tuple[str, list[dict[str, Any]]]:
        history = state.live.history(user) if user else []
        found = state.recommend(view, user, history, k)
        title = "Recommended for you" if user else "Popular now"
        cards = [{**view.card(r.item_id), "reason": r.reason} for r in found]
        server = ads.current(view, user) if feed else None
        if server is not None:
            request = AdRequest(day=date.today(), user_id=user, segments=view.segment_of(user))
            served = server.serve(request, len(slots["feed"]))
            cards = [
                c if kind == "organic" else sponsored_card(view, c) for kind, c in blend(cards, served, slots["feed"])
            ]
        return title, cards

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def home(request: Request) -> HTMLResponse:
        view = state.current()
        title, items = recs(view, user_of(request), 18)
        return page(request, "home.html", rec_title=title, items=items)

    @app.get("/shop/recs", response_class=HTMLResponse, include_in_schema=False)
    async def rec_panel(request: Request, k: int = 12) -> HTMLResponse:
        view = state.current()
        title, items = recs(view, user_of(request), max(1, min(k, 48)))
        return templates.TemplateResponse(request, "_recs.html", {"rec_title": title, "items": items})

    def results(request: Request, **kwargs: Any) -> HTMLResponse:
        view = state.current()
        user = user_of(request)
        try:
            found = state.search(
                view,
                page_size=24,
                user_id=user,
                ads=ads.current(view, user),
                ad_slots=slots["search"],
                segments=view.segment_of(user),
                **kwargs,
            )
        except (SearchError, FilterError) as exc:
            return page(request, "search.html", error=str(exc), found=None, q=kwargs.get("query") or "")
        hits = {h["item_id"]: h for h in found["hits"]}
        impressions = {ad["item_id"]: ad["impression_id"] for ad in found["sponsored"]}
        items = [
            hits[slot["item_id"]]
            if slot["kind"] != "sponsored"
            else {**view.card(slot["item_id"]), "sponsored": True, "impression_id": impressions[slot["item_id"]]}
            for slot in found["layout"]
            if slot["item_id"] in hits or slot["item_id"] in view.row
        ]
        filters = kwargs.get("filters") or {}
        return page(request, "search.html", found=found, items=items, q=found["query"], error=None, category=filters)

    @app.get("/shop/search", response_class=HTMLResponse, include_in_schema=False)
    async def search_page(request: Request, q: str = "", category: str | None = None) -> HTMLResponse:
        return results(request, query=q or None, mode="hybrid", filters={"category": category} if category else None)

    @app.post("/shop/search/photo", response_class=HTMLResponse, include_in_schema=False)
    async def search_photo_page(request: Request, photo: Annotated[UploadFile, File()]) -> HTMLResponse:
        data = await photo.read()
        if not (photo.content_type or "").startswith("image/"):
            raise HTTPException(415, f"the photo has media type {photo.content_type!r}; expected image/*")
        return results(request, mode="image", photo=data)

    @app.post("/shop/search/voice", response_class=HTMLResponse, include_in_schema=False)
    async def search_voice_page(request: Request, audio: Annotated[UploadFile, File()]) -> HTMLResponse:
        if not (audio.content_type or "").startswith("audio/"):
            raise HTTPException(415, f"the clip has media type {audio.content_type!r}; expected audio/*")
        return results(request, mode="voice", audio=await audio.read())

    @app.get("/product/{item_id}", response_class=HTMLResponse, include_in_schema=False)
    async def product(request: Request, item_id: str) -> HTMLResponse:
        view = state.current()
        item = view.item(item_id)
        with state.lock:
            by_look = view.similar(item_id, "image", 6)
            by_text = view.similar(item_id, "text", 6)
        reviews = storage.read("reviews", {"item_id": item_id})
        sentiment = None
        if len(reviews):
            labels = reviews["label"].dropna()
            ratings = reviews["rating"].dropna()
            sentiment = {
                "count": len(reviews),
                "positive": float(labels.mean()) if len(labels) else None,
                "rating": float(ratings.mean()) if len(ratings) else None,
                "model_positive": None,
            }
            if sentiment_model is not None:
                ids = reviews["review_id"].astype(str)
                unread = ~ids.isin(review_reading)
                if unread.any():
                    fresh = sentiment_model.predict_proba(reviews.loc[unread, "text"].fillna("").tolist())
                    review_reading.update(zip(ids[unread], fresh.tolist(), strict=True))
                sentiment["model_positive"] = float((ids.map(review_reading) > 0.5).mean())
        title, items = recs(view, user_of(request), 6, feed=False)
        return page(
            request,
            "product.html",
            item={**view.card(item_id), "description": item.get("description")},
            by_look=[view.card(i) for i, _ in by_look],
            by_text=[view.card(i) for i, _ in by_text],
            together=[view.card(i) for i, _ in view.together(item_id, 6)],
            sentiment=sentiment,
            rec_title=title,
            items=items,
        )

    # -- admin -----------------------------------------------------------------------------------

    @app.get("/admin", response_class=HTMLResponse, include_in_schema=False)
    async def admin(request: Request) -> HTMLResponse:
        from vitrina.bench.report import load_runs, tables

        view = state.current()
        counts = storage.counts()
        meta = view.meta[view.alive]
        quality = {
            column: int(meta[column].isna().sum() + (meta[column].astype(str) == "").sum())
            for column in ("title", "description", "category_path", "brand", "price", "image_paths")
        }
        present = {m: int(p.sum()) for m, p in view.bundle.present.items()}
        info = view.bundle.info
        files = _bench_files(results_dir)
        bench = tables(load_runs(files)) if files else ""
        live = metrics.summary()
        extra = {}
        for name in ("search-homedepot", "search-hm", "ads"):
            path = results_dir / f"{name}.json"
            if path.exists():
                extra[name] = path.name
        return page(
            request,
            "admin.html",
            counts=counts,
            quality=quality,
            present=present,
            n_items=len(view),
            info=info,
            model=info.get("model"),
            bench=bench,
            bench_files=[f.name for f in files],
            live=live,
            extra=extra,
            search_summary=_search_summary(results_dir),
            segments=view.segments.get("segments", []),
            audit=_audit_rows(audit),
            budgets=accountant.budgets(),
            releases=[{**r, "when": _utc(r["ts"])} for r in accountant.latest_releases()],
        )

    @app.get("/admin/login", response_class=HTMLResponse, include_in_schema=False)
    async def login_form(request: Request) -> HTMLResponse:
        return page(request, "login.html")

    @app.post("/admin/login", response_class=HTMLResponse, include_in_schema=False)
    async def login(request: Request, key: Annotated[str, Form(max_length=200)]) -> Response:
        """Check the key once and keep it in an HttpOnly, same-site cookie that only /admin reads."""
        found = await run_in_threadpool(keys.authenticate, key.strip())
        if found is None or "dashboard:read" not in found.scopes:
            error = (
                "That key is unknown or revoked." if found is None else f"A {found.role} key cannot open the dashboard."
            )
            return page(request, "login.html", error=error, status_code=401 if found is None else 403)
        response = RedirectResponse("/admin", status_code=303)
        response.set_cookie(KEY_COOKIE, key.strip(), httponly=True, samesite="strict", path="/admin", max_age=8 * 3600)
        return response

    @app.get("/admin/plot/{name}.png", include_in_schema=False)
    async def admin_plot(name: str) -> Response:
        view = state.current()
        key = (name, view.bundle.version)
        if key not in plots:
            if name == "map":
                plots[key] = _embedding_map(view)
            elif name == "curve":
                path = version_folder(state.settings.dir, view.bundle.version) / "history.json"
                if not path.exists():
                    raise HTTPException(404, "this version was trained without a curve")
                plots[key] = _training_curve(
                    json.loads(path.read_text()), str(view.bundle.info.get("model", {}).get("model"))
                )
            elif name == "segments":
                path = version_folder(state.settings.dir, view.bundle.version) / "segments.png"
                if not path.exists():
                    raise HTTPException(404, "this version has no segments (too few trained users)")
                plots[key] = path.read_bytes()
            elif name == "models":
                from vitrina.bench.report import load_runs, plot

                files = _bench_files(results_dir)
                if not files:
                    raise HTTPException(404, f"no benchmark results in {results_dir}")
                out = plot(load_runs(files), Path(state.settings.dir) / f"models-{int(time.time())}.png")
                plots[key] = out.read_bytes()
                out.unlink()
            else:
                raise HTTPException(404, f"unknown plot {name!r}; known: map, curve, segments, models")
        return Response(plots[key], media_type="image/png")


def _search_summary(results_dir: Path) -> list[dict[str, Any]]:
    """Headline search and ads figures from their benchmark files, when present."""
    rows: list[dict[str, Any]] = []
    path = results_dir / "search-homedepot.json"
    if path.exists():
        payload = json.loads(path.read_text())
        for r in payload.get("results", []):
            if isinstance(r, dict) and "ndcg@10" in r:
                rows.append({"what": f"homedepot {r.get('mode')}", "metric": "NDCG@10", "value": r["ndcg@10"]})
                rows.append({"what": f"homedepot {r.get('mode')}", "metric": "p99 ms", "value": r.get("p99_ms")})
    path = results_dir / "ads.json"
    if path.exists():
        payload = json.loads(path.read_text())
        for key in ("auc", "logloss", "ece"):
            if isinstance(payload.get(key), int | float):
                rows.append({"what": "ads pCTR", "metric": key, "value": payload[key]})
    return rows


def _audit_rows(audit: AuditLog, limit: int = 20) -> list[dict[str, Any]]:
    rows = audit.query(limit=limit).to_dict("records")
    for row in rows:
        row["when"] = _utc(row["ts"])
    return rows


def _utc(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts))
