"""With [serve] require_keys: every API route asks for a key whose role has its scope (401/403),
each key has a rate (429), the dashboard signs in by key, CORS follows the allow-list, and admin
actions and reads of personal data land in the audit log."""

from __future__ import annotations

import copy
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from vitrina.config import Config
from vitrina.data.schema import users_table
from vitrina.data.storage import Storage
from vitrina.privacy.audit import AuditLog
from vitrina.privacy.keys import KeyStore
from vitrina.privacy.personal import Keyring, PersonalData
from vitrina.search.engine import Models
from vitrina.serving.access import ROUTES
from vitrina.serving.app import create_app

ORIGIN = "https://shop.example"


@pytest.fixture(scope="module")
def keys(served: tuple[Config, Storage, Models]) -> dict[str, str]:
    store = KeyStore(served[1])
    made = {role: store.create(f"test {role}", role)[1] for role in ("admin", "analyst", "service", "shop-front")}
    made["slow"] = store.create("rate-limited", "shop-front", rate_per_min=3)[1]
    made["revoked"] = store.create("to revoke", "admin")[1]
    return made


@pytest.fixture(scope="module")
def client(served: tuple[Config, Storage, Models], keys: dict[str, str]) -> Iterator[TestClient]:
    cfg, storage, models = served
    data = copy.deepcopy(cfg.data)
    data["serve"].update(require_keys=True, key_cache_s=0.0, cors_origins=[ORIGIN], shop_front_key=keys["shop-front"])
    with TestClient(create_app(Config(data), models, storage)) as c:
        yield c


def _h(key: str) -> dict[str, str]:
    return {"x-api-key": key}


def test_every_api_route_of_the_app_has_a_rule(client: TestClient) -> None:
    """A new route without a rule would fall to 'admin only': list them so that it is a choice."""
    uncovered = [
        (method, route.path)
        for route in client.app.routes
        for method in getattr(route, "methods", None) or ()
        if not any(method in r.methods and r.path.match(route.path.replace("{", "x").replace("}", "")) for r in ROUTES)
    ]
    assert uncovered == []


def test_public_routes_need_no_key(client: TestClient) -> None:
    assert client.get("/health/live").status_code == 200
    assert client.get("/openapi.json").status_code == 200
    page = client.get("/")
    assert page.status_code == 200 and 'data-key="vk_' in page.text  # the shop-front key rides in the page


def test_no_key_bad_key_and_missing_scope(client: TestClient, keys: dict[str, str]) -> None:
    missing = client.get("/users/u00/recommendations")
    assert missing.status_code == 401 and "x-api-key" in missing.json()["detail"]
    assert missing.headers["www-authenticate"].startswith("ApiKey")
    assert client.get("/users/u00/recommendations", headers=_h("vk_00000000_" + "x" * 43)).status_code == 401
    ok = client.get("/users/u00/recommendations", headers={"authorization": f"Bearer {keys['shop-front']}"})
    assert ok.status_code == 200
    denied = client.delete("/items/no-such-item", headers=_h(keys["shop-front"]))
    assert denied.status_code == 403 and "catalog:write" in denied.json()["detail"]
    assert client.delete("/items/no-such-item", headers=_h(keys["service"])).status_code == 404  # past the gate
    assert client.get("/users/u00", headers=_h(keys["service"])).status_code == 403
    assert client.get("/metrics", headers=_h(keys["analyst"])).status_code == 200
    closed = client.get("/no/rule/here", headers=_h(keys["analyst"]))
    assert closed.status_code == 403 and "admin key" in closed.json()["detail"]
    assert client.get("/no/rule/here", headers=_h(keys["admin"])).status_code == 404


def test_rate_limit_and_revocation(client: TestClient, keys: dict[str, str], served: tuple) -> None:
    codes = [client.get("/items/x/similar", headers=_h(keys["slow"])).status_code for _ in range(4)]
    assert 429 not in codes[:3] and codes[3] == 429  # a full bucket of 3, then refused
    limited = client.get("/items/x/similar", headers=_h(keys["slow"]))
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
    assert client.get("/metrics", headers=_h(keys["revoked"])).status_code == 200
    KeyStore(served[1]).revoke(keys["revoked"].split("_")[1])
    assert client.get("/metrics", headers=_h(keys["revoked"])).status_code == 401  # key_cache_s = 0


def test_personal_reads_and_admin_actions_are_audited(client: TestClient, keys: dict[str, str], served: tuple) -> None:
    analyst_id = keys["analyst"].split("_")[1]
    assert client.get("/users/u03", headers=_h(keys["analyst"])).status_code == 200
    assert client.delete("/reviews/none", headers=_h(keys["service"])).status_code == 404
    log = AuditLog(served[1]).query(limit=10)
    u03 = served[1].personal.user_id("u03")  # the log names shoppers by pseudonym
    read = log[(log["subject"] == u03) & (log["action"] == "personal-read")].iloc[0]
    assert read["target"] == f"GET /users/{u03}"
    assert read["key_id"] == analyst_id and read["role"] == "analyst" and read["status"] == 200
    assert ((log["target"] == "DELETE /reviews/none") & (log["status"] == 404)).any()
    assert not log["target"].str.contains("recommendations").any()  # reads of recommendations are not audited


def test_dashboard_signs_in_by_key(client: TestClient, keys: dict[str, str]) -> None:
    assert client.get("/admin").status_code == 401
    assert client.post("/admin/login", data={"key": keys["shop-front"]}).status_code == 403
    assert client.post("/admin/login", data={"key": "vk_nope"}).status_code == 401
    signed = client.post("/admin/login", data={"key": keys["analyst"]}, follow_redirects=False)
    assert signed.status_code == 303 and "httponly" in signed.headers["set-cookie"].lower()
    page = client.get("/admin")
    assert page.status_code == 200 and 'id="audit"' in page.text
    assert client.get("/users/u00").status_code == 401  # the cookie is read for /admin only
    client.cookies.clear()


def test_cors_allow_list(client: TestClient) -> None:
    ask = {"access-control-request-method": "POST", "access-control-request-headers": "x-api-key,content-type"}
    allowed = client.options("/events", headers={"origin": ORIGIN, **ask})
    assert allowed.status_code == 200 and allowed.headers["access-control-allow-origin"] == ORIGIN
    other = client.options("/events", headers={"origin": "https://evil.example", **ask})
    assert "access-control-allow-origin" not in other.headers


def test_personal_data_through_the_api(served: tuple[Config, Storage, Models], shop_dir) -> None:
    """With pseudonyms on, the shop's own ids work at the API while the database, the audit log and
    the request log never hold them; a tampered field is refused, not returned."""
    cfg, storage, models = served
    personal = PersonalData(Keyring(shop_dir / "keys"))
    private = Storage(cfg.storage_url, personal=personal)
    item = str(storage.read("items")["item_id"].iloc[0])
    with TestClient(create_app(cfg, models, private)) as c:
        user = {"user_id": "alice@shop", "attributes": {"email": "alice@example.com", "tier": "gold"}}
        assert c.post("/users", json=user).status_code == 201
        assert c.post("/events", json={"user_id": "alice@shop", "item_id": item, "type": "view"}).status_code == 201
        got = c.get("/users/alice@shop").json()
        assert got["pseudonym"] == personal.user_id("alice@shop") and got["attributes"]["email"] == "alice@example.com"
        assert got["recent"][0]["item_id"] == item
        assert c.get("/users/alice@shop/recommendations").status_code == 200
        with storage.engine.connect() as conn:
            dump = " ".join(
                str(row)
                for t in ("users", "interactions", "audit_log")
                for row in conn.execute(sa.text(f"SELECT * FROM {t}"))
            )
        assert "alice" not in dump and got["pseudonym"] in dump
        with storage.begin() as conn:
            sealed = {**got["attributes"], "email": "enc:v1:" + "A" * 60}
            conn.execute(
                sa.update(users_table).where(users_table.c.user_id == got["pseudonym"]).values(attributes=sealed)
            )
        broken = c.get("/users/alice@shop")
        assert broken.status_code == 500 and "integrity" in broken.json()["detail"]
