"""Who may call which route: API keys and their scopes, per-key rate limits, and the audit trail.

`AccessControl` is plain ASGI middleware that runs before any handler or body parser. Each request
is matched against `ROUTES` (first match wins; a path no rule names needs every scope, so a route
added without a rule is closed, not open). A request needing a scope must carry a key in
`x-api-key` (or `Authorization: Bearer`); the admin pages also take the key from the cookie the
login form sets. No key or a dead one: 401; a key whose role lacks the scope: 403; over the key's
rate: 429 with Retry-After. Admin actions and reads of personal data are written to the audit log
with their outcome, also when the service runs without keys.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.cookies import SimpleCookie
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool

from vitrina.privacy.audit import AuditEntry, AuditLog
from vitrina.privacy.keys import UNLISTED, ApiKey, KeyStore
from vitrina.serving.replies import send_json_error

__all__ = ["COOKIE", "ROUTES", "AccessControl", "RateLimiter", "Rule", "rule_for"]

COOKIE = "vitrina_key"
log = logging.getLogger("vitrina.serving")


@dataclass(frozen=True)
class Rule:
    methods: frozenset[str]
    path: re.Pattern[str]
    scope: str | None  # None: public
    audit: str | None = None  # the audit action this route's calls are logged as


def _rule(methods: str, path: str, scope: str | None, audit: str | None = None) -> Rule:
    return Rule(frozenset(methods.split("|")), re.compile(path), scope, audit)


ROUTES: tuple[Rule, ...] = (
    _rule("GET|HEAD", r"^/health/(live|ready)$", None),
    _rule("GET|HEAD", r"^/(version|docs|redoc|openapi\.json|docs/oauth2-redirect)$", None),
    # The shop front: pages, their assets and product photos are public, as on any shop.
    _rule("GET|HEAD", r"^/(shop/(recs|search)|product/[^/]+|static/.+|media/[^/]+)?$", None),
    _rule("POST", r"^/shop/search/(photo|voice)$", None),
    _rule("GET|POST", r"^/admin/login$", None),
    _rule("GET|HEAD", r"^/admin(/plot/[^/]+)?$", "dashboard:read"),
    _rule("GET|HEAD", r"^/metrics$", "metrics:read"),
    _rule("GET|HEAD", r"^/users/[^/]+/recommendations$", "recommend:read"),
    _rule("GET|HEAD", r"^/items/[^/]+/(similar|together)$", "recommend:read"),
    _rule("GET|HEAD", r"^/items/[^/]+(/reviews)?$", "catalog:read"),
    _rule("GET|HEAD", r"^/search$", "search:read"),
    _rule("POST", r"^/search/(photo|voice)$", "search:read"),
    _rule("POST", r"^/(events|events/batch|ads/click)$", "events:write"),
    _rule("POST|PUT|DELETE", r"^/items(/[^/]+)?$", "catalog:write", "admin"),
    _rule("POST", r"^/import$", "catalog:write", "admin"),
    _rule("GET|HEAD", r"^/users/[^/]+(/export)?$", "users:read", "personal-read"),
    _rule("POST|DELETE", r"^/users(/[^/]+)?$", "users:write", "admin"),
    _rule("POST|DELETE", r"^/reviews(/[^/]+)?$", "users:write", "admin"),
    _rule("GET|HEAD", r"^/campaigns$", "ads:read"),
    _rule("POST|PUT|DELETE", r"^/campaigns(/[^/]+)?$", "ads:write", "admin"),
)
_CLOSED = Rule(frozenset(), re.compile(""), UNLISTED)  # no rule: a scope only admin keys have
_SUBJECT = re.compile(r"^/users/([^/]+)")


def rule_for(method: str, path: str) -> Rule:
    if method == "OPTIONS":  # CORS preflight: answered by the CORS middleware, outside this one
        return ROUTES[0]
    return next((r for r in ROUTES if method in r.methods and r.path.match(path)), _CLOSED)


class RateLimiter:
    """Token bucket per key (per worker): `rate` requests a minute, bursts up to a minute's worth."""

    def __init__(self) -> None:
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, key_id: str, rate_per_min: int) -> float:
        """0 when the request may go ahead, else the seconds until it could."""
        now = time.monotonic()
        per_s = rate_per_min / 60.0
        with self._lock:
            tokens, last = self._buckets.get(key_id, (float(rate_per_min), now))
            tokens = min(float(rate_per_min), tokens + (now - last) * per_s)
            if tokens >= 1.0:
                self._buckets[key_id] = (tokens - 1.0, now)
                return 0.0
            self._buckets[key_id] = (tokens, now)
            return (1.0 - tokens) / per_s


class AccessControl:
    """ASGI middleware; `required` False lets requests without a key through (still audited)."""

    def __init__(
        self,
        app: Any,
        keys: KeyStore,
        audit: AuditLog,
        required: bool,
        rate_per_min: int,
        subject_of: Callable[[str], str] = str,
    ) -> None:
        """`subject_of` maps a shopper's id in a path to the id the audit log keeps (their pseudonym)."""
        self.app, self.keys, self.audit, self.subject_of = app, keys, audit, subject_of
        self.required, self.rate_per_min = required, rate_per_min
        self.limiter = RateLimiter()

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method, path = scope["method"], scope["path"]
        rule = rule_for(method, path)
        key: ApiKey | None = None
        if rule.scope is not None and self.required:
            presented = _presented_key(scope, cookie_ok=path.startswith("/admin"))
            if presented is None:
                await _deny(send, 401, f"{method} {path} needs an API key (header x-api-key) with scope {rule.scope}")
                return
            try:
                key = await run_in_threadpool(self.keys.authenticate, presented)
            except SQLAlchemyError as exc:
                await _deny(send, 503, f"the database is unavailable, retry shortly ({type(exc).__name__})")
                return
            if key is None:
                await _deny(send, 401, "the API key is unknown, malformed or revoked")
                return
            if rule.scope not in key.scopes:
                need = "an admin key" if rule.scope == UNLISTED else f"scope {rule.scope}"
                await _deny(send, 403, f"key {key.key_id} (role {key.role}) may not {method} {path}: needs {need}")
                return
            wait = self.limiter.take(key.key_id, key.rate_per_min or self.rate_per_min)
            if wait > 0:
                headers = [(b"retry-after", str(math.ceil(wait)).encode())]
                await _deny(send, 429, f"key {key.key_id} is over its rate limit; retry in {wait:.1f} s", headers)
                return
        if rule.audit is None:
            await self.app(scope, receive, send)
            return
        status = 500

        async def send_status(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            found = _SUBJECT.match(path)
            subject = self.subject_of(found.group(1)) if found else None  # ASGI paths arrive decoded
            if found:  # the log names the shopper by pseudonym, never by the id in the request
                path = f"/users/{subject}{path[found.end() :]}"
            entry = AuditEntry(
                action=rule.audit,
                target=f"{method} {path}",
                key_id=key.key_id if key else None,
                role=key.role if key else None,
                subject=subject,
                status=status,
            )
            try:
                await run_in_threadpool(self.audit.record, entry)
            except SQLAlchemyError:  # the answer has gone out; a missing audit row must not pass silently
                log.exception("AUDIT WRITE FAILED for %s", entry)


def _presented_key(scope: dict, cookie_ok: bool) -> str | None:
    headers = dict(scope["headers"])
    if b"x-api-key" in headers:
        return headers[b"x-api-key"].decode("latin-1").strip()
    auth = headers.get(b"authorization", b"").decode("latin-1")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    if cookie_ok and b"cookie" in headers:
        morsel = SimpleCookie(headers[b"cookie"].decode("latin-1")).get(COOKIE)
        return morsel.value if morsel else None
    return None


async def _deny(send: Any, status: int, detail: str, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    extra = [(b"www-authenticate", b'ApiKey header="x-api-key"')] if status == 401 else []
    await send_json_error(send, status, detail, [*extra, *(headers or [])])
