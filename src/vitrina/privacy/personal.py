"""Shoppers' personal data at rest: pseudonymous ids and encrypted personal fields.

- **Pseudonyms.** A raw user id becomes `p_` + the first 128 bits of HMAC-SHA256(key, id) in hex at
  ingestion (importer, API, demo): the same shopper always gets the same pseudonym, the database,
  models, logs, analytics and exports hold only pseudonyms, and without the key (kept in a file outside
  the database) a pseudonym cannot be traced back, not even by trying candidate ids. Ids already of
  the form `p_<32 hex>` are taken as pseudonyms, so applying it twice changes nothing (shop ids of
  that form are reserved). The key is never rotated: that would give every shopper a new identity.
- **Encrypted fields.** The personal fields of a user's attributes (`[privacy] encrypt_fields`: email,
  phone, address, profile) are stored as `enc:v<key version>:<base64 nonce + AES-256-GCM ciphertext>`,
  authenticated together with the user's pseudonym and the field name, so a changed byte, or a
  ciphertext moved to another shopper or field, fails to decrypt (`TamperedError`). Data keys are
  versioned files; `rotate_data_key` adds a version that new writes use, and `reencrypt_users`
  rewrites stored fields in small transactions while the service keeps reading both versions, so
  rotation needs no downtime. Old key files are removed only when nothing uses them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from vitrina.data.schema import users_table

__all__ = [
    "FieldCipher",
    "Keyring",
    "PersonalData",
    "TamperedError",
    "is_pseudonym",
    "reencrypt_users",
]

_PSEUDONYM = re.compile(r"^p_[0-9a-f]{32}$")
_TOKEN = re.compile(r"^enc:v(\d+):([A-Za-z0-9+/=]+)$")
USER_KINDS = ("users", "interactions", "reviews")


class TamperedError(ValueError):
    """A stored ciphertext failed its integrity check (changed, or moved to another row or field)."""


def is_pseudonym(value: str) -> bool:
    return bool(_PSEUDONYM.match(value))


class Keyring:
    """Secret files in one folder (mode 0700, files 0600): the pseudonym key and versioned data keys."""

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)

    def _secret(self, name: str, create: bool) -> bytes:
        path = self.folder / name
        if not path.exists():
            if not create:
                raise FileNotFoundError(f"{path}: no such key (was it deleted, or is [privacy] keys_dir wrong?)")
            self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(secrets.token_bytes(32))
        data = path.read_bytes()
        if len(data) != 32:
            raise ValueError(f"{path}: a key file holds 32 bytes, this one {len(data)}")
        return data

    def pseudonym_key(self) -> bytes:
        return self._secret("pseudonym.key", create=True)

    def versions(self) -> list[int]:
        return sorted(int(p.stem.split("-v")[1]) for p in self.folder.glob("data-v*.key"))

    def current_version(self) -> int:
        found = self.versions()
        if not found:
            self._secret("data-v1.key", create=True)
            return 1
        return found[-1]

    def data_key(self, version: int) -> bytes:
        return self._secret(f"data-v{version}.key", create=False)

    def rotate(self) -> int:
        """A new data key, which new writes use from now on; returns its version."""
        version = self.current_version() + 1
        self._secret(f"data-v{version}.key", create=True)
        return version

    def retire(self, version: int) -> None:
        (self.folder / f"data-v{version}.key").unlink()


class FieldCipher:
    """AES-256-GCM for single text fields, bound to (shopper, field) as associated data."""

    def __init__(self, keyring: Keyring) -> None:
        self.keyring = keyring
        self._aead: dict[int, AESGCM] = {}

    def _for(self, version: int) -> AESGCM:
        if version not in self._aead:
            self._aead[version] = AESGCM(self.keyring.data_key(version))
        return self._aead[version]

    def encrypt(self, text: str, user_id: str, field: str, version: int) -> str:
        """Under data key `version` (the keyring's current one, looked up once per batch by callers)."""
        nonce = secrets.token_bytes(12)
        sealed = self._for(version).encrypt(nonce, text.encode("utf-8"), f"{user_id}\0{field}".encode())
        return f"enc:v{version}:{base64.b64encode(nonce + sealed).decode('ascii')}"

    def decrypt(self, token: str, user_id: str, field: str) -> str:
        match = _TOKEN.match(token)
        if match is None:
            raise TamperedError(f"{field} of {user_id}: not an encrypted value")
        version, blob = int(match.group(1)), base64.b64decode(match.group(2))
        try:
            plain = self._for(version).decrypt(blob[:12], blob[12:], f"{user_id}\0{field}".encode())
        except InvalidTag as exc:
            raise TamperedError(f"{field} of {user_id}: the stored ciphertext fails its integrity check") from exc
        return plain.decode("utf-8")

    @staticmethod
    def version_of(token: Any) -> int | None:
        match = _TOKEN.match(token) if isinstance(token, str) else None
        return int(match.group(1)) if match else None

    @staticmethod
    def versions(attributes: dict[str, Any] | None) -> set[int]:
        """The data-key versions an attributes record's encrypted fields are under."""
        found = (FieldCipher.version_of(v) for v in (attributes or {}).values())
        return {v for v in found if v is not None}


@dataclass
class PersonalData:
    """What the storage applies to every write: pseudonyms, and encryption of personal fields."""

    keyring: Keyring
    pseudonymize: bool = True
    fields: tuple[str, ...] = ("email", "phone", "address", "profile")

    def __post_init__(self) -> None:
        self._key = self.keyring.pseudonym_key() if self.pseudonymize else b""
        self.cipher = FieldCipher(self.keyring)

    @classmethod
    def from_config(cls, cfg: Any) -> PersonalData:
        folder = cfg.get("privacy.keys_dir") or Path(cfg.cache_dir) / "secrets"
        fields = tuple(str(f) for f in cfg.get("privacy.encrypt_fields", []))
        return cls(Keyring(folder), bool(cfg.get("privacy.pseudonymize", True)), fields)

    def user_id(self, raw: str) -> str:
        """The shopper's pseudonym (a pseudonym stays as it is); the raw id when pseudonyms are off."""
        if not self.pseudonymize or is_pseudonym(raw):
            return raw
        return "p_" + hmac.new(self._key, raw.encode("utf-8"), hashlib.sha256).hexdigest()[:32]

    def protect(self, kind: str, values: dict[str, list[Any]]) -> None:
        """In place, on a record kind's columns: user ids to pseudonyms, personal fields encrypted."""
        if kind not in USER_KINDS:
            return
        values["user_id"] = [None if u is None else self.user_id(str(u)) for u in values["user_id"]]
        if kind == "users" and self.fields:
            version = self.keyring.current_version()
            values["attributes"] = [
                self.seal(a, u, version) for a, u in zip(values["attributes"], values["user_id"], strict=True)
            ]

    def seal(self, attributes: dict[str, Any] | None, user_id: str, version: int) -> dict[str, Any] | None:
        """Attributes with the personal fields not yet encrypted encrypted under data key `version`."""
        if not attributes:
            return attributes
        return {
            k: self.cipher.encrypt(str(v), user_id, k, version)
            if k in self.fields and v is not None and FieldCipher.version_of(v) is None
            else v
            for k, v in attributes.items()
        }

    def reveal(self, attributes: dict[str, Any] | None, user_id: str) -> dict[str, Any] | None:
        """Attributes with personal fields decrypted (raises TamperedError on a bad ciphertext)."""
        if not attributes:
            return attributes
        return {
            k: self.cipher.decrypt(v, user_id, k) if FieldCipher.version_of(v) is not None else v
            for k, v in attributes.items()
        }


def reencrypt_users(storage: Any, personal: PersonalData, batch: int = 500) -> dict[str, int]:
    """Re-encrypt every personal field not under the current data key, a few hundred users per
    transaction (the service keeps reading: each row is valid under one of the kept keys throughout)."""
    current = personal.keyring.current_version()
    t = users_table
    rewritten = scanned = 0
    last = ""
    while True:
        with storage.engine.connect() as conn:
            query = sa.select(t.c.user_id, t.c.attributes).where(t.c.user_id > last).order_by(t.c.user_id)
            rows = conn.execute(query.limit(batch)).all()
        if not rows:
            break
        last = rows[-1][0]
        scanned += len(rows)
        changed = [(u, a) for u, a in rows if FieldCipher.versions(a) - {current}]
        if changed:
            with storage.begin() as conn:
                for user_id, attributes in changed:
                    fresh = personal.seal(personal.reveal(attributes, user_id), user_id, current)
                    conn.execute(sa.update(t).where(t.c.user_id == user_id).values(attributes=fresh))
            rewritten += len(changed)
    return {"users_scanned": scanned, "users_rewritten": rewritten, "key_version": current}


def versions_in_use(storage: Any) -> set[int]:
    """Data-key versions some stored field still needs."""
    used: set[int] = set()
    with storage.engine.connect() as conn:
        for (attributes,) in conn.execute(sa.select(users_table.c.attributes)):
            used |= FieldCipher.versions(attributes)
    return used


def open_storage(cfg: Any) -> Any:
    """The configured database with `[privacy]` applied to every write: how the CLI, the demo and
    the service open it."""
    from vitrina.data.storage import Storage

    batch = int(cfg.get("storage.batch_size", 5000))
    return Storage(cfg.storage_url, batch_size=batch, personal=PersonalData.from_config(cfg))
