"""Shoppers are stored under keyed pseudonyms with their personal fields encrypted; a changed or
moved ciphertext is caught; keys rotate while data stays readable."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from vitrina.data.importer import import_files, validate
from vitrina.data.schema import users_table
from vitrina.data.storage import Storage
from vitrina.privacy.personal import (
    Keyring,
    PersonalData,
    TamperedError,
    is_pseudonym,
    reencrypt_users,
    versions_in_use,
)

EMAIL = "ana.garcia@example.com"


def _shop(storage: Storage) -> None:
    storage.create_schema()
    items = validate(pd.DataFrame({"item_id": ["i1", "i2"], "title": ["red dress", "blue shirt"]}), "items")
    users = pd.DataFrame(
        {"user_id": ["ana", "bo"], "attributes": [{"email": EMAIL, "phone": "+34 600 000 000", "size": "M"}, None]}
    )
    events = validate(
        pd.DataFrame(
            {"user_id": ["ana", "bo", "ana"], "item_id": ["i1", "i1", "i2"], "type": ["view", "view", "cart"]}
        ),
        "interactions",
    )
    reviews = validate(pd.DataFrame({"user_id": ["ana"], "item_id": ["i1"], "text": ["lovely"]}), "reviews")
    storage.write_many({"items": items, "users": validate(users, "users"), "interactions": events, "reviews": reviews})


def _all_text(storage: Storage) -> str:
    with storage.engine.connect() as conn:
        return " ".join(  # each value quoted; JSON columns as JSON text (PostgreSQL hands back dicts)
            f"'{value if isinstance(value, str) else json.dumps(value)}'"
            for table in ("users", "interactions", "reviews")
            for row in conn.execute(sa.text(f"SELECT * FROM {table}"))
            for value in row
        )


def test_pseudonyms_are_keyed_stable_and_idempotent(tmp_path: Path) -> None:
    one = PersonalData(Keyring(tmp_path / "a"))
    other = PersonalData(Keyring(tmp_path / "b"))
    p = one.user_id("ana")
    assert is_pseudonym(p) and p == one.user_id("ana") and one.user_id(p) == p
    assert p != other.user_id("ana")  # a different key, a different pseudonym: not a plain hash
    assert stat.S_IMODE((tmp_path / "a").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "a" / "pseudonym.key").stat().st_mode) == 0o600
    assert PersonalData(Keyring(tmp_path / "a"), pseudonymize=False).user_id("ana") == "ana"


def test_database_holds_only_pseudonyms_and_ciphertext(tmp_path: Path, shop_db_url) -> None:
    personal = PersonalData(Keyring(tmp_path / "keys"))
    storage = Storage(shop_db_url(tmp_path / "shop.db"), personal=personal)
    _shop(storage)
    text = _all_text(storage)
    assert "'ana'" not in text and "'bo'" not in text and personal.user_id("ana") in text
    assert EMAIL not in text and "600 000" not in text and '"size": "M"' in text  # only the listed fields are sealed
    storage.close()
    if (tmp_path / "shop.db").exists():  # SQLite: not in the file's bytes either (free pages, journal)
        raw_bytes = (tmp_path / "shop.db").read_bytes()
        assert EMAIL.encode() not in raw_bytes and b"ana" not in raw_bytes.replace(b"banana", b"")
    user = Storage(shop_db_url(tmp_path / "shop.db")).read("users", {"user_id": personal.user_id("ana")}).iloc[0]
    assert personal.reveal(user["attributes"], user["user_id"])["email"] == EMAIL


def test_changed_or_moved_ciphertext_is_detected(tmp_path: Path, shop_db_url) -> None:
    personal = PersonalData(Keyring(tmp_path / "keys"))
    storage = Storage(shop_db_url(tmp_path / "shop.db"), personal=personal)
    _shop(storage)
    ana, bo = personal.user_id("ana"), personal.user_id("bo")
    attrs = storage.read("users", {"user_id": ana}).iloc[0]["attributes"]
    token = attrs["email"]
    flipped = token[:-6] + ("A" if token[-6] != "A" else "B") + token[-5:]
    with pytest.raises(TamperedError, match="integrity"):
        personal.reveal({**attrs, "email": flipped}, ana)
    with pytest.raises(TamperedError):
        personal.reveal({"email": token}, bo)  # moved to another shopper
    with pytest.raises(TamperedError):
        personal.reveal({"phone": token}, ana)  # moved to another field


def test_rotation_reencrypts_without_losing_a_field(tmp_path: Path, shop_db_url) -> None:
    personal = PersonalData(Keyring(tmp_path / "keys"))
    storage = Storage(shop_db_url(tmp_path / "shop.db"), personal=personal)
    _shop(storage)
    assert versions_in_use(storage) == {1}
    assert personal.keyring.rotate() == 2
    # Between rotation and re-encryption a write uses the new key, old rows still read.
    storage.write("users", validate(pd.DataFrame({"user_id": ["cy"], "attributes": [{"email": "cy@x.org"}]}), "users"))
    assert versions_in_use(storage) == {1, 2}
    done = reencrypt_users(storage, personal, batch=1)
    assert done == {"users_scanned": 3, "users_rewritten": 1, "key_version": 2}
    assert versions_in_use(storage) == {2}
    personal.keyring.retire(1)
    fresh = PersonalData(Keyring(tmp_path / "keys"))  # another process, after the old key is gone
    row = storage.read("users", {"user_id": fresh.user_id("ana")}).iloc[0]
    assert fresh.reveal(row["attributes"], row["user_id"])["email"] == EMAIL


def test_importer_derives_keys_from_pseudonyms(tmp_path: Path, shop_db_url) -> None:
    (tmp_path / "items.csv").write_text("item_id,title\ni1,dress\n")
    (tmp_path / "users.csv").write_text("user_id,email\nana,ana@example.com\n")
    (tmp_path / "events.csv").write_text("user_id,item_id,type,ts\nana,i1,view,1700000000\n")
    personal = PersonalData(Keyring(tmp_path / "keys"))
    storage = Storage(shop_db_url(tmp_path / "shop.db"), personal=personal)
    storage.create_schema()
    import_files(storage, tmp_path / "items.csv", tmp_path / "users.csv", tmp_path / "events.csv")
    plain = Storage(shop_db_url(tmp_path / "plain.db"))
    plain.create_schema()
    import_files(plain, tmp_path / "items.csv", tmp_path / "users.csv", tmp_path / "events.csv")
    ours, theirs = storage.read("interactions").iloc[0], plain.read("interactions").iloc[0]
    assert ours["user_id"] == personal.user_id("ana") and ours["event_id"] != theirs["event_id"]
    with storage.engine.connect() as conn:
        (user_id, attributes), *_ = conn.execute(sa.select(users_table.c.user_id, users_table.c.attributes)).all()
    assert user_id == personal.user_id("ana") and attributes["email"].startswith("enc:v1:")  # extra column: sealed
