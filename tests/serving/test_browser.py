"""End to end in a real browser: the shop served by `vitrina serve run` (uvicorn, one worker) and
driven by Playwright in Debian's headless Chromium (tests/e2e/shop.spec.js): search, open a
product, see recommendations change after cart and purchase events, search by photo, open the
dashboard. Screenshots land in results/tmp/e2e (kept as test artefacts)."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

E2E = Path(__file__).resolve().parents[1] / "e2e"
SHOTS = Path(__file__).resolve().parents[2] / "results" / "tmp" / "e2e"


def _missing() -> str | None:
    if shutil.which("node") is None:
        return "node is not installed"
    if not Path("/usr/bin/chromium").exists() and shutil.which("chromium") is None:
        return "chromium is not installed (Debian: apt-get install chromium)"
    if not (E2E / "node_modules" / "playwright-core").is_dir():
        return "playwright-core is not installed (cd tests/e2e && npm ci)"
    return None


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.skipif(_missing() is not None, reason=str(_missing()))
def test_shop_front_in_chromium(served, shop_dir: Path) -> None:
    cfg, _, _ = served
    port = _port()
    overrides = {
        k: cfg.get(k) for k in ("paths.cache_dir", "storage.url", "serve.media_root", "features.store.image_encoder")
    }
    overrides["serve.dir"] = str(cfg.cache_dir / "serve")
    args = [a for k, v in overrides.items() for a in ("--set", f"{k}={json.dumps(str(v))}")]
    server = subprocess.Popen(
        [sys.executable, "-m", "vitrina.cli", *args, "serve", "run", "--workers", "1", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(base + "/health/ready", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(0.3)
        else:
            pytest.fail("the server did not become ready")
        SHOTS.mkdir(parents=True, exist_ok=True)
        photo = shop_dir / "media" / "photos" / "i036.png"  # a dress on the Clothing backdrop
        run = subprocess.run(
            ["node", str(E2E / "shop.spec.js"), base, str(SHOTS), "u04", str(photo)],
            cwd=E2E,
            capture_output=True,
            text=True,
            timeout=180,
        )
    finally:
        server.terminate()
        log = server.communicate(timeout=30)[0].decode(errors="replace")
    assert run.returncode == 0, f"{run.stderr}\n--- server ---\n{log[-3000:]}"
    seen = json.loads(run.stdout.strip().splitlines()[-1])
    assert seen["before"] != seen["after"]
    assert (SHOTS / "4-home-after-events.png").stat().st_size > 10_000
