"""Shared fixtures: a throwaway PostgreSQL server and storage URLs for both backends.

The PostgreSQL fixtures start a real server on loopback from the locally installed binaries
(Debian's postgresql package), so storage code is tested against the database it will meet in
production rather than a mock. Without the binaries those tests are skipped, never failed.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from vitrina.data.storage import Storage

PG_USER = "vitrina"
PG_START_TIMEOUT_S = 30
INSTALL_HINT = "PostgreSQL server binaries not found; install them with `apt-get install postgresql`"


def _find_pg_bin() -> Path | None:
    """The bin folder holding initdb, pg_ctl and postgres: newest Debian version first, then PATH."""
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name or 0), reverse=True
    )
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(str(Path(on_path).parent))
    for folder in candidates:
        if all((Path(folder) / tool).is_file() for tool in ("initdb", "pg_ctl", "postgres")):
            return Path(folder)
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class PostgresServer:
    """A running throwaway server; `url(db)` addresses one of its databases."""

    bin_dir: Path
    root: Path
    port: int
    run_as: dict[str, Any]

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{PG_USER}@127.0.0.1:{self.port}/{database}"

    def tool(self, name: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.bin_dir / name), *args],
            cwd=self.root,
            capture_output=True,
            text=True,
            check=check,
            timeout=PG_START_TIMEOUT_S + 30,
            **self.run_as,
        )

    def start(self) -> None:
        options = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root}"
            # Durability is pointless for a test server; skipping it makes tests fast.
            " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        log_file = str(self.root / "server.log")
        self.tool(
            "pg_ctl",
            "-D",
            str(self.data_dir),
            "-l",
            log_file,
            "-o",
            options,
            "-w",
            "-t",
            str(PG_START_TIMEOUT_S),
            "start",
        )
        self._wait_ready()

    def _wait_ready(self) -> None:
        import psycopg

        deadline = time.monotonic() + PG_START_TIMEOUT_S
        while True:
            try:
                psycopg.connect(self.url(), connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def stop(self) -> None:
        self.tool("pg_ctl", "-D", str(self.data_dir), "-m", "fast", "-w", "stop", check=False)

    def create_database(self) -> str:
        import psycopg

        name = f"test_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')
        return name

    def log_tail(self) -> str:
        path = self.root / "server.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""


def _run_as() -> dict[str, Any]:
    """subprocess arguments that drop root to the `postgres` user (postgres refuses to run as root)."""
    if os.geteuid() != 0:
        return {}
    try:
        account = pwd.getpwnam("postgres")
    except KeyError:
        pytest.skip("running as root and there is no 'postgres' system user to run the server as")
    env = {**os.environ, "HOME": account.pw_dir, "USER": "postgres", "LOGNAME": "postgres"}
    return {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": [], "env": env}


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """Start a private PostgreSQL server on 127.0.0.1 for the whole session; stopped at the end."""
    bin_dir = _find_pg_bin()
    if bin_dir is None:
        pytest.skip(INSTALL_HINT)
    run_as = _run_as()
    root = Path(tempfile.mkdtemp(prefix="vitrina-pg-"))
    if "user" in run_as:
        os.chown(root, run_as["user"], run_as["group"])
    server = PostgresServer(bin_dir, root, _free_port(), run_as)
    try:
        server.tool(
            "initdb",
            "-D",
            str(server.data_dir),
            "--auth=trust",
            "-U",
            PG_USER,
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        )
        for attempt in range(3):
            try:
                server.start()
                break
            except (subprocess.CalledProcessError, OSError) as exc:
                # Most likely someone took the port between choosing and binding it.
                if attempt == 2:
                    detail = getattr(exc, "stderr", "") or ""
                    raise RuntimeError(f"PostgreSQL did not start: {detail}\n{server.log_tail()}") from exc
                server.port = _free_port()
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """URL of a fresh, empty database on the session's PostgreSQL server (one per test)."""
    return postgres_server.url(postgres_server.create_database())


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


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    """A private redis-server on 127.0.0.1 (Debian `redis-server`), no persistence; stopped after
    the test. Skipped with a message when it is not installed."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (Debian: apt-get install redis-server); Redis tests need it")
    port = _free_port()
    args = [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no"]
    server = subprocess.Popen([*args, "--dir", str(tmp_path)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.05)
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        server.terminate()
        server.wait(timeout=10)
