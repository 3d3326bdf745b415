"""PostgreSQL and Redis on loopback, started from the Debian packages' binaries.

One implementation for the two places that need real servers on this machine: the tests (a
throwaway pair per session, on free ports) and `vitrina servers up` / `vitrina demo --servers` /
`make serve-prod` (a lasting pair under the cache folder, on fixed ports, reused by later runs).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vitrina.config import Config

PG_USER = "vitrina"
START_TIMEOUT_S = 30
PG_HINT = "PostgreSQL server binaries not found; install them with `apt-get install postgresql`"
REDIS_HINT = "redis-server is not installed; install it with `apt-get install redis-server`"


class ServerUnavailable(RuntimeError):
    """The binaries are missing or the server would not start; the message says which and why."""


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def find_pg_bin() -> Path | None:
    """The folder holding initdb, pg_ctl and postgres: the newest Debian version first, then PATH."""
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


def _run_as_postgres() -> dict[str, Any]:
    """subprocess arguments that drop root to the `postgres` account (postgres refuses to run as root)."""
    if os.geteuid() != 0:
        return {}
    try:
        account = pwd.getpwnam("postgres")
    except KeyError as exc:
        raise ServerUnavailable("running as root and there is no 'postgres' account to run the server as") from exc
    env = {**os.environ, "HOME": account.pw_dir, "USER": "postgres", "LOGNAME": "postgres"}
    return {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": [], "env": env}


@dataclass
class PostgresServer:
    """A cluster in `root`/data served on 127.0.0.1:`port` (trust authentication, loopback only)."""

    root: Path
    port: int
    durable: bool = True
    bin_dir: Path | None = None  # None: the installed binaries (find_pg_bin)

    def __post_init__(self) -> None:
        self.bin_dir = self.bin_dir or find_pg_bin()
        if self.bin_dir is None or not (self.bin_dir / "postgres").is_file():
            raise ServerUnavailable(PG_HINT)
        self.root = Path(self.root).resolve()  # pg_ctl runs inside it
        self.run_as = _run_as_postgres()

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{PG_USER}@127.0.0.1:{self.port}/{database}"

    def _tool(self, name: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.bin_dir / name), *args],
            cwd=self.root,
            capture_output=True,
            text=True,
            check=check,
            timeout=START_TIMEOUT_S + 30,
            **self.run_as,
        )

    def running(self) -> bool:
        return (
            self.data_dir.is_dir()
            and self._tool("pg_ctl", "-D", str(self.data_dir), "status", check=False).returncode == 0
        )

    def start(self) -> PostgresServer:
        """Create the cluster on first use, then start it unless it is running already."""
        self.root.mkdir(parents=True, exist_ok=True)
        if "user" in self.run_as:
            os.chown(self.root, self.run_as["user"], self.run_as["group"])
        if not (self.data_dir / "PG_VERSION").is_file():
            init = ["-D", str(self.data_dir), "--auth=trust", "-U", PG_USER, "--encoding=UTF8", "--locale=C"]
            made = self._tool("initdb", *init, *([] if self.durable else ["--no-sync"]), check=False)
            if made.returncode != 0:
                raise ServerUnavailable(
                    f"initdb failed in {self.data_dir} (running as root, every folder above it must be"
                    f" open to the 'postgres' account): {made.stderr.strip()}"
                )
        if self.running():
            return self
        options = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root}"
        if not self.durable:  # a test server: losing it on a crash costs nothing, and it is much faster
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        log = str(self.root / "server.log")
        started = self._tool(
            "pg_ctl",
            "-D",
            str(self.data_dir),
            "-l",
            log,
            "-o",
            options,
            "-w",
            "-t",
            str(START_TIMEOUT_S),
            "start",
            check=False,
        )
        if started.returncode != 0:
            raise ServerUnavailable(
                f"PostgreSQL did not start on port {self.port}: {started.stderr}\n{self.log_tail()}"
            )
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        import psycopg

        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                psycopg.connect(self.url(), connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def stop(self) -> None:
        if self.data_dir.is_dir():
            self._tool("pg_ctl", "-D", str(self.data_dir), "-m", "fast", "-w", "stop", check=False)

    def create_database(self, name: str | None = None) -> str:
        """Create a database (a fresh uniquely named one by default; an existing name is kept) and
        return its URL."""
        name = name or f"test_{uuid.uuid4().hex[:12]}"
        _create_database(self.url(), name)
        return self.url(name)

    def log_tail(self) -> str:
        path = self.root / "server.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""


@dataclass
class RedisServer:
    """redis-server on 127.0.0.1:`port`, daemonised with its pid file in `root`. Nothing is persisted:
    Vitrina keeps only a cache there (recent events), the database stays the record."""

    root: Path
    port: int
    binary: str = field(default_factory=lambda: shutil.which("redis-server") or "")

    def __post_init__(self) -> None:
        if not self.binary:
            raise ServerUnavailable(REDIS_HINT)
        self.root = Path(self.root).resolve()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid_file(self) -> Path:
        return self.root / "redis.pid"

    def _pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
            os.kill(pid, 0)
            return pid
        except (FileNotFoundError, ValueError, ProcessLookupError):
            return None

    def running(self) -> bool:
        return self._pid() is not None and _listening(self.port)

    def start(self) -> RedisServer:
        if self.running():
            return self
        self.root.mkdir(parents=True, exist_ok=True)
        args = ["--bind", "127.0.0.1", "--port", str(self.port), "--save", "", "--appendonly", "no"]
        args += ["--daemonize", "yes", "--pidfile", str(self.pid_file), "--logfile", str(self.root / "redis.log")]
        subprocess.run([self.binary, *args, "--dir", str(self.root)], check=True, capture_output=True, timeout=30)
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self.running():
            if time.monotonic() > deadline:
                log = self.root / "redis.log"
                raise ServerUnavailable(
                    f"redis-server did not start on port {self.port}: {log.read_text()[-2000:] if log.exists() else ''}"
                )
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        pid = self._pid()
        if pid is None:
            return
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while self._pid() is not None and time.monotonic() < deadline:
            time.sleep(0.05)


def _create_database(admin_url: str, name: str) -> None:
    """CREATE DATABASE `name` on the server `admin_url` connects to, unless it exists."""
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is None:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')


def copy_database(url: str, name: str) -> str:
    """A consistent copy of a PostgreSQL database that may be in use (pg_dump's snapshot restored
    into a new database `name` on the same server); returns the copy's URL."""
    import sqlalchemy as sa

    bin_dir = find_pg_bin()
    if bin_dir is None or not (bin_dir / "pg_dump").is_file():
        raise ServerUnavailable(PG_HINT)
    source = sa.make_url(url).set(drivername="postgresql")
    target = source.set(database=name)
    _create_database(source.set(database="postgres").render_as_string(hide_password=False), name)
    dump = subprocess.Popen(
        [str(bin_dir / "pg_dump"), "--no-owner", source.render_as_string(hide_password=False)], stdout=subprocess.PIPE
    )
    restore = subprocess.run(
        [str(bin_dir / "psql"), "-q", "-v", "ON_ERROR_STOP=1", target.render_as_string(hide_password=False)],
        stdin=dump.stdout,
        capture_output=True,
        text=True,
    )
    if dump.wait() != 0 or restore.returncode != 0:
        raise RuntimeError(f"copying {source.database} to {name} failed: {restore.stderr.strip()[-2000:]}")
    return target.render_as_string(hide_password=False)


def deployment(cfg: Config) -> tuple[PostgresServer, RedisServer]:
    """The lasting pair `[servers]` describes (files under servers.dir, fixed loopback ports)."""
    root = Path(cfg.get("servers.dir") or cfg.cache_dir / "servers")
    postgres = PostgresServer(root / "postgres", int(cfg.get("servers.postgres_port")))
    return postgres, RedisServer(root / "redis", int(cfg.get("servers.redis_port")))


def start_deployment(cfg: Config) -> dict[str, str]:
    """Start (or find running) the pair and create the shop's database; returns the settings that
    point Vitrina at them: storage.url and serve.redis_url."""
    postgres, redis = deployment(cfg)
    postgres.start()
    redis.start()
    return {"storage.url": postgres.create_database(str(cfg.get("servers.database"))), "serve.redis_url": redis.url}
