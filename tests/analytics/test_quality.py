"""The data-quality report finds what was planted in a small generated dataset, and nothing else."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from vitrina.analytics.quality import dhash, near_duplicate_pairs, quality_report, write_report
from vitrina.data.dataset import RawDataset


def _dataset(root: Path) -> RawDataset:
    rng = np.random.default_rng(0)
    (root / "img").mkdir(parents=True)
    paths = []
    for i in range(8):
        pixels = rng.integers(0, 255, (96, 80, 3), dtype=np.uint8)  # sharp noise: not blurred
        if i == 1:
            pixels = np.full((96, 80, 3), 128, np.uint8)  # near-blank
        if i == 2:
            pixels = pixels[:30, :30]  # tiny
        Image.fromarray(pixels).save(root / "img" / f"{i}.png")
        paths.append([f"img/{i}.png"])
    Image.open(root / "img" / "0.png").resize((70, 84)).save(root / "img" / "7.png")  # near-duplicate of 0
    (root / "img" / "6.png").write_bytes(b"not a png")  # corrupt
    paths[5] = ["img/missing.png"]
    items = pd.DataFrame(
        {
            "item_id": [f"i{i}" for i in range(8)],
            "title": ["red dress", "red dress", "blue shirt", None, "hat", "scarf", "sock", "shoe"],
            "description": ["long", "long", "short", None, "wool", "silk", "cotton", "leather"],
            "price": [10.0, 10.0, -1.0, 5.0, 3.0, 2.0, 1.0, 9.0],
            "image_paths": paths,
        }
    )
    users = pd.DataFrame({"user_id": ["u1", "u2", "bot"]})
    minute = 1_700_000_000.0
    events = [("u1", "i0", "view", 1.0, minute), ("u2", "i9", "view", 1.0, minute), ("u1", "i1", "rating", 7.0, minute)]
    events += [("bot", "i4", "view", 1.0, minute + s) for s in range(40)]
    interactions = pd.DataFrame(events, columns=["user_id", "item_id", "type", "value", "ts"])
    interactions["event_id"] = [f"e{i}" for i in range(len(interactions))]
    reviews = pd.DataFrame(
        {
            "review_id": ["r1", "r2", "r3", "r4"],
            "user_id": ["u1", "u2", "u1", "u2"],
            "item_id": ["i0", "i0", "i1", "i1"],
            "text": ["Great value", "Great value", "awful, broke at once", "love it"],
            "rating": [5.0, 5.0, 5.0, 1.0],
        }
    )
    return RawDataset(
        "planted", items=items, users=users, interactions=interactions, reviews=reviews, meta={"root": str(root)}
    )


def test_report_finds_what_was_planted(tmp_path: Path) -> None:
    raw = _dataset(tmp_path / "data")
    report = quality_report(
        raw, sentiment=lambda texts: np.array([0.1 if "awful" in t else 0.9 for t in texts]), workers=1
    )
    hits = {f.check: f for f in report.findings}

    def examples(prefix: str) -> list:
        return next(f.examples for check, f in hits.items() if check.startswith(prefix))

    assert examples("items without title") == ["i3"]
    assert examples("items with identical title") == ["i0", "i1"]
    assert examples("negative prices") == ["i2"]
    assert examples("photo files that are not there") == ["i5"]
    assert examples("photos that do not decode") == ["i6"]
    assert examples("tiny photos") == ["i2"]
    assert examples("near-blank") == ["i1"]
    assert examples("items whose photo nearly duplicates") == [("i0", "i7")]
    assert examples("events naming an unknown item") == ["e1"]
    assert examples("event ratings outside") == ["e2"]
    assert examples("users with more than") == ["bot"]
    assert examples("review texts posted by more than one user") == ["r1", "r2"]
    assert examples("ratings contradicting") == ["r3", "r4"]
    json_path, html_path = write_report(report, tmp_path / "out")
    assert json.loads(json_path.read_text())["counts"]["items"] == 8
    assert "near-blank" in html_path.read_text()


def test_dhash_bands_find_near_duplicates_only() -> None:
    hashes = [0, 0b111, (1 << 63) | 0b1, None, 0xFFFF_FFFF_FFFF_FFFF]
    assert near_duplicate_pairs(hashes, max_bits=3, n_bits=64) == [(0, 1), (0, 2), (1, 2)]
    flat, ramp = Image.new("L", (32, 32), 90), Image.linear_gradient("L").resize((32, 32)).rotate(90)
    assert dhash(flat) == 0 and dhash(ramp) != 0
