"""Shared fixtures: throwaway PostgreSQL and Redis servers and storage URLs for both backends.

The servers are real, started on loopback from the locally installed binaries (Debian's postgresql
and redis-server packages) by the same code `vitrina servers up` uses, so storage code is tested
against the database it meets in production rather than a mock. Without the binaries those tests
are skipped, never failed, unless the run asked for PostgreSQL (VITRINA_TEST_DATABASE).

VITRINA_TEST_DATABASE=postgresql runs every test that opens a shop's database on PostgreSQL
instead of an SQLite file (`make test-postgres`; see `shop_db_url`).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from vitrina.data.storage import Storage
from vitrina.serving.process import free_port
from vitrina.serving.servers import PostgresServer, RedisServer, ServerUnavailable

TEST_DATABASE = os.environ.get("VITRINA_TEST_DATABASE", "sqlite")
if TEST_DATABASE not in ("sqlite", "postgresql"):
    raise pytest.UsageError(f"VITRINA_TEST_DATABASE must be sqlite or postgresql, got {TEST_DATABASE!r}")


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A private PostgreSQL server on 127.0.0.1 for the whole session; stopped and removed at the end."""
    root = Path(tempfile.mkdtemp(prefix="vitrina-pg-"))
    try:
        server = PostgresServer(root, free_port(), durable=False)
    except ServerUnavailable as exc:
        shutil.rmtree(root, ignore_errors=True)
        if TEST_DATABASE == "postgresql":
            raise  # asked for explicitly: a missing server is a failure, not a skip
        pytest.skip(str(exc))
    try:
        for attempt in range(3):
            try:
                server.start()
                break
            except ServerUnavailable:
                # Most likely someone took the port between choosing and binding it.
                if attempt == 2:
                    raise
                server.port = free_port()
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """URL of a fresh, empty database on the session's PostgreSQL server (one per test)."""
    return postgres_server.create_database()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def storage_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The same test against an SQLite file and against PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'db' / 'vitrina.sqlite'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def storage(storage_url: str) -> Iterator[Storage]:
    """An empty database with the schema created, on each backend in turn."""
    store = Storage(storage_url)
    store.create_schema()
    yield store
    store.close()


@pytest.fixture(scope="session")
def shop_db_url(request: pytest.FixtureRequest) -> Callable[[Path], str]:
    """`shop_db_url(path)`: where a test keeps a shop's database: an SQLite file at `path`, or under
    VITRINA_TEST_DATABASE=postgresql a fresh database on the session's PostgreSQL server. Tests that
    go through it run on either backend unchanged."""
    if TEST_DATABASE == "sqlite":
        return lambda path: f"sqlite:///{path}"
    server: PostgresServer = request.getfixturevalue("postgres_server")
    databases: dict[Path, str] = {}

    def url(path: Path) -> str:  # one database per path, as a file would be
        if path not in databases:
            databases[path] = server.create_database()
        return databases[path]

    return url


@pytest.fixture(scope="module")
def ray_local() -> Iterator[None]:
    """A local Ray instance with 2 CPUs (as CI has) for a module's tests; shut down after them."""
    import ray

    from vitrina.distributed.ray_encoder import ensure_ray

    ensure_ray(None, num_cpus=2)
    yield
    ray.shutdown()


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    """A private redis-server on 127.0.0.1, no persistence; stopped after the test. Skipped with a
    message when it is not installed."""
    try:
        server = RedisServer(tmp_path / "redis", free_port())
    except ServerUnavailable as exc:
        pytest.skip(str(exc))
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under VITRINA_TEST_DATABASE=postgresql only the tests that open a shop's database through
    `shop_db_url` run; the others never open one, or (`storage_url`) run on both backends in every pass."""
    if TEST_DATABASE != "postgresql":
        return
    selected = [item for item in items if "shop_db_url" in getattr(item, "fixturenames", ())]
    config.hook.pytest_deselected(items=[item for item in items if item not in selected])
    items[:] = selected
