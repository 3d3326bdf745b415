"""End to end in a real browser: the shop served by `vitrina serve run` (uvicorn, one worker) and
driven by Playwright in Debian's headless Chromium (tests/e2e/shop.spec.js): search, open a
product, see recommendations change after cart and purchase events, search by photo, open the
dashboard. Screenshots land in results/tmp/e2e (kept as test artefacts)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from vitrina.serving import process

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


@pytest.mark.skipif(_missing() is not None, reason=str(_missing()))
def test_shop_front_in_chromium(served, shop_dir: Path) -> None:
    cfg, storage, _ = served
    shopper = storage.personal.user_id("u04")  # the shop front lists shoppers by pseudonym
    port = process.free_port()
    keys = ("paths.cache_dir", "storage.url", "serve.media_root", "features.store.image_encoder")
    overrides = {k: str(cfg.get(k)) for k in keys} | {"serve.dir": str(cfg.cache_dir / "serve")}
    server = process.start(overrides, 1, port, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        process.wait_ready(base, timeout=60)
        SHOTS.mkdir(parents=True, exist_ok=True)
        photo = shop_dir / "media" / "photos" / "i036.png"  # a dress on the Clothing backdrop
        run = subprocess.run(
            ["node", str(E2E / "shop.spec.js"), base, str(SHOTS), shopper, str(photo)],
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
