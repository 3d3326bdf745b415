"""Running `vitrina serve run` as a child process (load benchmark, browser test): start it on a free
loopback port with the caller's settings and wait until it answers /health/ready."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from typing import Any

__all__ = ["free_port", "start", "wait_ready"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(overrides: dict[str, Any], workers: int, port: int, **popen: Any) -> subprocess.Popen:
    """`vitrina --set k=v ... serve run` with these settings (values as TOML scalars)."""
    args = [a for k, v in overrides.items() for a in ("--set", f"{k}={json.dumps(v)}")]
    cmd = [sys.executable, "-m", "vitrina.cli", *args, "serve", "run", "--workers", str(workers), "--port", str(port)]
    return subprocess.Popen(cmd, **popen)


def wait_ready(url: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "/health/ready", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"the service at {url} did not become ready within {timeout:.0f} s")
