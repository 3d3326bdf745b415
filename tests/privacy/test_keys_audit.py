"""API keys keep only argon2 hashes and die when revoked; the audit log cannot be rewritten."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from vitrina.data.schema import api_keys_table, audit_log_table
from vitrina.data.storage import Storage
from vitrina.privacy.audit import AuditEntry, AuditLog
from vitrina.privacy.keys import ROLES, SCOPES, ApiKeyError, KeyStore


def test_roles_use_known_scopes_and_admin_has_all() -> None:
    assert all(scopes <= set(SCOPES) for scopes in ROLES.values())
    assert ROLES["admin"] == set(SCOPES)
    assert "catalog:write" not in ROLES["shop-front"] and "users:read" not in ROLES["service"]


def test_create_authenticate_revoke(storage: Storage) -> None:
    store = KeyStore(storage, cache_s=60.0)
    key, secret = store.create("shop back end", "service", rate_per_min=100)
    assert secret.startswith(f"vk_{key.key_id}_") and key.scopes == ROLES["service"]
    with storage.engine.connect() as conn:
        stored = conn.execute(sa.select(api_keys_table)).mappings().one()
    assert stored["hash"].startswith("$argon2id$") and secret.split("_", 2)[2] not in stored["hash"]
    assert store.authenticate(secret) == key
    assert store.authenticate(secret[:-1] + ("A" if secret[-1] != "A" else "B")) is None  # wrong secret
    assert store.authenticate("vk_nothex_" + "a" * 40) is None and store.authenticate("") is None
    other = KeyStore(storage, cache_s=0.0)  # another worker, trusting nothing it has not just verified
    assert other.authenticate(secret) == key
    revoked = store.revoke(key.key_id)
    assert revoked.revoked_ts is not None
    assert store.authenticate(secret) is None and other.authenticate(secret) is None
    assert [k.key_id for k in store.list()] == [key.key_id] and store.list(include_revoked=False) == []
    with pytest.raises(ApiKeyError, match="unknown role"):
        store.create("x", "superuser")
    with pytest.raises(ApiKeyError, match="no API key"):
        store.revoke("00000000")


def test_audit_log_is_append_only(storage: Storage) -> None:
    log = AuditLog(storage)
    log.record(AuditEntry("personal-read", "GET /users/u1", key_id="k1", role="analyst", subject="u1", status=200))
    log.record(AuditEntry("admin", "DELETE /items/i9", key_id="k2", role="admin", status=200))
    assert log.query(subject="u1")["target"].tolist() == ["GET /users/u1"]
    assert log.query()["action"].tolist() == ["admin", "personal-read"]  # newest first
    for statement in (
        sa.update(audit_log_table).values(subject="someone else"),
        sa.delete(audit_log_table),
    ):
        with pytest.raises(sa.exc.DBAPIError, match="append-only"), storage.begin() as conn:
            conn.execute(statement)
    assert len(log.query()) == 2 and log.query(subject="u1")["subject"].tolist() == ["u1"]
