"""API keys with roles: created, listed and revoked by the operator; only argon2 hashes are stored.

A key reads `vk_<key id>_<secret>`. The key id is public (lists, logs, the audit trail name it); the
secret is shown once, at creation, and the database keeps only its argon2id hash, so a stolen
database does not give working keys. Verifying a hash costs tens of milliseconds by design, so a
worker remembers a key it has verified for `cache_s` seconds (by a SHA-256 of the whole key): a
revoked key stops working within that time on every worker.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import threading
import time
from dataclasses import dataclass

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from vitrina.data.schema import api_keys_table
from vitrina.data.storage import Storage

__all__ = ["ROLES", "SCOPES", "UNLISTED", "ApiKey", "ApiKeyError", "KeyStore"]

UNLISTED = "unlisted"
# What each scope lets a key do (the routes each needs: vitrina.privacy.access.ROUTES).
SCOPES: dict[str, str] = {
    "recommend:read": "recommendations, similar items, bought together",
    "search:read": "text, photo and voice search",
    "catalog:read": "items, their reviews",
    "catalog:write": "create, change, delete and import items",
    "events:write": "record shoppers' events and ad clicks",
    "users:read": "read a shopper's profile and history (personal data, audited)",
    "users:write": "create and delete shoppers, post and delete reviews (audited)",
    "ads:read": "list campaigns",
    "ads:write": "create and change campaigns (audited)",
    "metrics:read": "Prometheus metrics",
    "dashboard:read": "the admin dashboard and the audit log",
    UNLISTED: "routes without an access rule of their own (closed by default: admin keys only)",
}
_ALL = frozenset(SCOPES)
ROLES: dict[str, frozenset[str]] = {
    "admin": _ALL,
    "analyst": frozenset(
        {"recommend:read", "search:read", "catalog:read", "users:read", "ads:read", "metrics:read", "dashboard:read"}
    ),
    # The shop's back end: keeps the catalogue, shoppers and reviews in step and forwards events.
    "service": frozenset(
        {"recommend:read", "search:read", "catalog:read", "catalog:write", "events:write", "users:write", "ads:read"}
    ),
    # A key that ships inside the shop's web pages or app: it can only read and report behaviour.
    "shop-front": frozenset({"recommend:read", "search:read", "catalog:read", "events:write"}),
}
_KEY = re.compile(r"^vk_([0-9a-f]{8})_([A-Za-z0-9_-]{20,64})$")


class ApiKeyError(ValueError):
    """A key that cannot be created or revoked as asked (unknown role, unknown key id)."""


@dataclass(frozen=True)
class ApiKey:
    key_id: str
    name: str
    role: str
    rate_per_min: int | None
    created_ts: float
    revoked_ts: float | None = None

    @property
    def scopes(self) -> frozenset[str]:
        return ROLES[self.role]


class KeyStore:
    """The `api_keys` table, and this worker's short memory of keys it has verified."""

    def __init__(self, storage: Storage, cache_s: float = 5.0) -> None:
        self.storage = storage
        self.cache_s = cache_s
        self._hasher = PasswordHasher()
        self._verified: dict[bytes, tuple[ApiKey, float]] = {}
        self._lock = threading.Lock()

    def create(self, name: str, role: str, rate_per_min: int | None = None) -> tuple[ApiKey, str]:
        """A new key; returns it and its secret, which is not stored and cannot be shown again."""
        if role not in ROLES:
            raise ApiKeyError(f"unknown role '{role}'; choose from {', '.join(ROLES)}")
        if not name.strip():
            raise ApiKeyError("a key needs a name (who or what uses it)")
        if rate_per_min is not None and rate_per_min < 1:
            raise ApiKeyError(f"rate_per_min must be at least 1, got {rate_per_min}")
        key_id, secret = secrets.token_hex(4), secrets.token_urlsafe(32)
        full = f"vk_{key_id}_{secret}"
        key = ApiKey(key_id, name.strip(), role, rate_per_min, time.time())
        row = {**key.__dict__, "hash": self._hasher.hash(full)}
        with self.storage.begin() as conn:
            conn.execute(sa.insert(api_keys_table).values(**row))
        return key, full

    def list(self, include_revoked: bool = True) -> list[ApiKey]:
        query = sa.select(api_keys_table).order_by(api_keys_table.c.created_ts)
        if not include_revoked:
            query = query.where(api_keys_table.c.revoked_ts.is_(None))
        with self.storage.engine.connect() as conn:
            return [_key(row) for row in conn.execute(query).mappings()]

    def revoke(self, key_id: str) -> ApiKey:
        """Revoke a key for good (it stays listed, with the time)."""
        with self.storage.begin() as conn:
            row = conn.execute(sa.select(api_keys_table).where(api_keys_table.c.key_id == key_id)).mappings().first()
            if row is None:
                raise ApiKeyError(f"no API key with id '{key_id}'")
            if row["revoked_ts"] is None:
                now = time.time()
                conn.execute(sa.update(api_keys_table).where(api_keys_table.c.key_id == key_id).values(revoked_ts=now))
                row = {**row, "revoked_ts": now}
        with self._lock:
            self._verified = {k: v for k, v in self._verified.items() if v[0].key_id != key_id}
        return _key(row)

    def authenticate(self, presented: str) -> ApiKey | None:
        """The live key `presented` is, or None (malformed, unknown, wrong secret, revoked)."""
        digest = hashlib.sha256(presented.encode("utf-8", "replace")).digest()
        now = time.monotonic()
        with self._lock:
            hit = self._verified.get(digest)
        if hit is not None and now - hit[1] < self.cache_s:
            return hit[0]
        match = _KEY.match(presented)
        if match is None:
            return None
        with self.storage.engine.connect() as conn:
            query = sa.select(api_keys_table).where(api_keys_table.c.key_id == match.group(1))
            row = conn.execute(query).mappings().first()
        if row is None or row["revoked_ts"] is not None:
            return None
        try:
            self._hasher.verify(row["hash"], presented)
        except (VerificationError, InvalidHashError):
            return None
        key = _key(row)
        with self._lock:
            self._verified[digest] = (key, now)
        return key


def _key(row: sa.RowMapping | dict) -> ApiKey:
    return ApiKey(
        row["key_id"], row["name"], row["role"], row["rate_per_min"], float(row["created_ts"]), row["revoked_ts"]
    )
