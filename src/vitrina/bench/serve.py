"""`vitrina bench serve`: load on the running service over loopback with wrk (Debian `wrk`).

Three phases against `vitrina serve run` started here with its workers: recommendations for random
known shoppers at 50 connections; event ingestion at 50 connections, every event with its own
idempotency key, then counted back in the database; recommendations again while a new version is
published (the swap), which must produce no errors.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from vitrina.config import Config
from vitrina.data.storage import Storage
from vitrina.serving import process
from vitrina.serving.bundle import current_version, publish, version_folder
from vitrina.serving.live import LiveStore
from vitrina.serving.servers import copy_database
from vitrina.serving.settings import ServeSettings

__all__ = ["parse_wrk", "run", "table"]

# Shared by the scripts: user and item ids from files; `delay` (ms, exponential around the mean)
# spaces each connection's requests so that the connections together offer VITRINA_BENCH_RATE
# requests/s (0: as fast as responses come back).
_COMMON_LUA = """
local users, items = {}, {}
for line in io.lines(os.getenv("VITRINA_BENCH_USERS")) do users[#users + 1] = line end
for line in io.lines(os.getenv("VITRINA_BENCH_ITEMS")) do items[#items + 1] = line end
local mean_delay = tonumber(os.getenv("VITRINA_BENCH_DELAY_MS"))
local threads = {}
local next_id = 0
setup = function(thread)
  thread:set("tid", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end
init = function(args) math.randomseed(os.time() + tid * 7919) end
if mean_delay > 0 then
  delay = function() return -mean_delay * math.log(1 - math.random()) end
end
"""

_RECOMMEND_LUA = (
    _COMMON_LUA
    + """
request = function()
  return wrk.format("GET", "/users/" .. users[math.random(#users)] .. "/recommendations?k=10")
end
"""
)

# Every event has its own idempotency key; the response hook counts what the service acknowledged
# (201 stored, 200 duplicate, other), printed once at the end for the Python side to check.
_EVENTS_LUA = (
    _COMMON_LUA
    + """
local run = os.getenv("VITRINA_BENCH_RUN")
n, created, duplicate, other = 0, 0, 0, 0  -- globals: done() reads them per thread
request = function()
  n = n + 1
  local body = string.format('{"user_id":"%s","item_id":"%s","type":"view","event_id":"%s-%d-%d"}',
    users[math.random(#users)], items[math.random(#items)], run, tid, n)
  return wrk.format("POST", "/events", {["Content-Type"] = "application/json"}, body)
end
response = function(status, headers, body)
  if status == 201 then created = created + 1
  elseif status == 200 then duplicate = duplicate + 1
  else other = other + 1 end
end
done = function(summary, latency, requests)
  local c, d, o = 0, 0, 0
  for _, t in ipairs(threads) do c = c + t:get("created"); d = d + t:get("duplicate"); o = o + t:get("other") end
  io.write(string.format("VITRINA_ACKS created=%d duplicate=%d other=%d\\n", c, d, o))
end
"""
)

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip()).groups()  # type: ignore[union-attr]
    return float(value) * _UNITS[unit]


def parse_wrk(output: str) -> dict[str, Any]:
    """Requests, rate, latency percentiles and errors from `wrk --latency` output."""
    out: dict[str, Any] = {}
    for pct in ("50", "75", "90", "99"):
        m = re.search(rf"^\s+{pct}(?:\.000)?%\s+(\S+)", output, re.M)
        if m:
            out[f"p{pct}_ms"] = _ms(m.group(1))
    m = re.search(r"(\d+) requests in ([\d.]+)(\w+)", output)
    if m:
        out["requests"] = int(m.group(1))
        out["seconds"] = _ms(m.group(2) + m.group(3)) / 1000
    m = re.search(r"Requests/sec:\s+([\d.]+)", output)
    out["rps"] = float(m.group(1)) if m else 0.0
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    non2xx = int(m.group(1)) if m else 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    sockets = sum(int(x) for x in m.groups()) if m else 0
    out["non_2xx"], out["socket_errors"] = non2xx, sockets
    out["errors"] = non2xx + sockets
    return out


def _wrk(
    url: str, script: str, seconds: int, connections: int, env: dict[str, str], rate: float = 0.0
) -> dict[str, Any]:
    if shutil.which("wrk") is None:
        raise RuntimeError("wrk is not installed (Debian: apt-get install wrk)")
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(script)
    try:
        cmd = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", f.name, url]
        delay = connections / rate * 1000 if rate > 0 else 0
        env = {**os.environ, **env, "VITRINA_BENCH_DELAY_MS": str(delay)}
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    finally:
        os.unlink(f.name)
    out = parse_wrk(done.stdout)
    acks = re.search(r"VITRINA_ACKS created=(\d+) duplicate=(\d+) other=(\d+)", done.stdout)
    if acks:
        out["created"], out["duplicate"], out["other"] = (int(x) for x in acks.groups())
    return out


def private_copy(cfg: Config, settings: ServeSettings, work: Path) -> dict[str, str]:
    """The benchmark writes tens of thousands of events and ad impressions and publishes versions:
    it runs on a copy of the shop's SQLite database and current version, never on the shop itself."""
    url = cfg.storage_url
    work.mkdir(parents=True, exist_ok=True)
    if url.startswith("sqlite:///"):
        copy = work / "shop.db"
        with sqlite3.connect(Path(url.removeprefix("sqlite:///"))) as src, sqlite3.connect(copy) as dst:
            src.backup(dst)  # SQLite's online backup: consistent even while the shop is running
        copy_url = f"sqlite:///{copy}"
    elif url.startswith(("postgresql://", "postgres://")):
        copy_url = copy_database(url, f"bench_{uuid.uuid4().hex[:12]}")
    else:
        raise RuntimeError(f"bench serve copies the shop's database first; it cannot copy {url!r}")
    version = current_version(settings.dir) or ""
    shutil.copytree(version_folder(settings.dir, version), version_folder(work / "serve", version))
    (work / "serve" / "CURRENT").write_text(version)
    return {"storage.url": copy_url, "serve.dir": str(work / "serve")}


def republish(serve_dir: Path) -> str:
    """Publish a copy of the current version as a new one: what a retrain's swap does, without the
    minutes of training."""
    source = version_folder(serve_dir, current_version(serve_dir) or "")

    def build(folder: Path, version: str) -> None:
        shutil.copytree(source, folder, dirs_exist_ok=True)
        info = json.loads((folder / "bundle.json").read_text())
        (folder / "bundle.json").write_text(json.dumps({**info, "version": version}))

    return publish(serve_dir, build)


def run(
    cfg: Config,
    overrides: dict[str, Any],
    seconds: int = 20,
    connections: int = 50,
    workers: int | None = None,
    rate: float = 550.0,
) -> dict[str, Any]:
    """The phases; recommendation latency is measured at `rate` requests/s offered by the
    connections together, throughput with every connection sending as fast as answers return."""
    settings = ServeSettings.from_config(cfg)
    if current_version(settings.dir) is None:
        raise RuntimeError(
            f"no published version in {settings.dir}: run `vitrina demo --no-serve` or `vitrina serve build`"
        )
    work = Path(tempfile.mkdtemp(prefix="vitrina-bench-serve-"))
    overrides = {**overrides, **private_copy(cfg, settings, work)}
    settings = ServeSettings.from_config(Config.load(None, overrides))
    storage = Storage(overrides["storage.url"])
    live = LiveStore(storage)
    users = storage.read("users")["user_id"].astype(str).tolist()[:2000]
    items = storage.read("items")["item_id"].astype(str).tolist()
    port = process.free_port()
    url = f"http://127.0.0.1:{port}"
    workers = workers or settings.workers
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "users").write_text("\n".join(users))
        (Path(tmp) / "items").write_text("\n".join(items))
        env = {
            "VITRINA_BENCH_USERS": str(Path(tmp) / "users"),
            "VITRINA_BENCH_ITEMS": str(Path(tmp) / "items"),
            "VITRINA_BENCH_RUN": f"bench{int(time.time())}",
        }
        log = open(Path(tmp) / "server.log", "wb")  # noqa: SIM115 - closed with the server below
        server = process.start(overrides, workers, port, stdout=log, stderr=subprocess.STDOUT)
        try:
            try:
                process.wait_ready(url)
            except RuntimeError as exc:
                raise RuntimeError(f"{exc}; its log ends: {(Path(tmp) / 'server.log').read_text()[-2000:]}") from exc
            _wrk(url, _RECOMMEND_LUA, 3, connections, env)  # warm-up: every worker loads and caches
            saturated = _wrk(url, _RECOMMEND_LUA, seconds, connections, env)
            paced = _wrk(url, _RECOMMEND_LUA, seconds, connections, env, rate)
            before = live.count_events()
            events = _wrk(url, _EVENTS_LUA, seconds, connections, env)
            time.sleep(1.0)  # requests still in flight when wrk stopped
            stored = live.count_events() - before
            swapped: list[str] = []
            swapper = threading.Thread(
                target=lambda: (time.sleep(seconds / 3), swapped.append(republish(settings.dir)))
            )
            swapper.start()
            swap = _wrk(url, _RECOMMEND_LUA, seconds, connections, env, rate)
            swapper.join()
        finally:
            server.terminate()
            server.wait(timeout=30)
            log.close()
            storage.close()
            shutil.rmtree(work, ignore_errors=True)
    created = events.get("created", 0)
    return {
        "recommend": {
            "p50_ms": paced.get("p50_ms"),
            "p99_ms": paced.get("p99_ms"),
            "rps": saturated.get("rps"),
            "errors": paced["errors"] + saturated["errors"],
            "offered_rps": rate,
            "achieved_rps": paced.get("rps"),
            "saturated": {k: saturated.get(k) for k in ("p50_ms", "p99_ms", "rps", "requests", "errors")},
        },
        "events": {
            "per_s": stored / max(events.get("seconds", seconds), 1e-9),
            # Acknowledged (201) events must all be in the database; up to `connections` more may
            # have been stored whose answer wrk stopped waiting for.
            "sent": created + events.get("duplicate", 0) + events.get("other", 0),
            "stored": stored,
            "acknowledged": created,
            "lost": max(0, created - stored),
            "errors": events["errors"],
            "p99_ms": events.get("p99_ms"),
        },
        "swap": {
            "errors": swap["errors"],
            "requests": swap.get("requests"),
            "p50_ms": swap.get("p50_ms"),
            "p99_ms": swap.get("p99_ms"),
            "new_version": swapped[0] if swapped else None,
        },
        "settings": {
            "connections": connections,
            "seconds": seconds,
            "workers": workers,
            "users": len(users),
            "items": len(items),
            "cpus": os.cpu_count(),
            "tool": "wrk -t2 --latency (on the same machine)",
        },
    }


def table(result: dict[str, Any]) -> str:
    r, e, s = result["recommend"], result["events"], result["swap"]
    rec = f"{r['saturated']['requests']} requests closed loop"
    ev = f"sent {e['sent']}, acknowledged {e['acknowledged']}, stored {e['stored']}, lost {e['lost']}"
    sw = f"{s['requests']} requests, swapped to {s['new_version']}"
    sat = r["saturated"]
    rows = [
        "| phase | p50 ms | p99 ms | requests/s | errors | notes |",
        "|---|---|---|---|---|---|",
        f"| recommend at {r['offered_rps']:.0f}/s offered | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | "
        f"{r['achieved_rps']:.0f} | {r['errors']} | {rec} |",
        f"| recommend, as fast as possible | {sat['p50_ms']:.2f} | {sat['p99_ms']:.2f} | {sat['rps']:.0f} | "
        f"{sat['errors']} | closed loop |",
        f"| events | – | {e['p99_ms']:.2f} | {e['per_s']:.0f} stored/s | {e['errors']} | {ev} |",
        f"| recommend during a model swap | {s['p50_ms']:.2f} | {s['p99_ms']:.2f} | – | {s['errors']} | {sw} |",
    ]
    return "\n".join(rows)
