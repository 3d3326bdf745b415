"""The data-quality report of a dataset: can its data be trusted, and where not, which rows?

Five sections, each a list of findings (a check, how many rows it hit, a few examples) plus the
numbers behind them:
- completeness: missing values per column of each record kind, and per modality (items without any
  text, without a photo, photo files that are not there);
- consistency: ids that reference nothing, values out of range (ratings, prices, timestamps),
  repeated event keys, items with identical text, near-identical photos (256-bit difference hashes
  within 12 bits and the same mean colour);
- reliability of reviews: one text posted by several users, bursts of reviews from one user within an
  hour, and (with a sentiment model) a rating that contradicts the text;
- image quality: files that do not decode, tiny, near-blank, and blurred photos (the blur threshold is
  relative: the catalogue's own 2nd percentile of the Laplacian variance, and an absolute floor);
- behaviour: users whose event rate looks automated (many events within one minute).
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import numpy as np
import pandas as pd
from PIL import Image

from vitrina.data.dataset import RawDataset
from vitrina.data.schema import columns
from vitrina.features.image_io import ImageError, load_image
from vitrina.features.image_quality import image_quality

__all__ = ["Finding", "QualityReport", "dhash", "near_duplicate_pairs", "quality_report", "write_report"]

EXAMPLES = 5
TINY_SIDE = 64  # pixels: a photo whose shorter side is below this is useless on a product page
BLANK_STD = 4.0  # gray-level standard deviation below which a photo is a flat field
BLUR_FLOOR = 20.0  # Laplacian variance below which a photo is blurred whatever the catalogue
BOT_EVENTS_PER_MINUTE = 30  # more events than this within one minute from one user
BURST_REVIEWS_PER_HOUR = 5
HASH_SIDE = 16  # difference hashes of 16 × 16 = 256 bits
DHASH_BITS = 12  # near-identical photos: hashes at most this many bits apart (under 5%) ...
COLOUR_DISTANCE = 12.0  # ... and mean RGB within this many levels (0-255) per channel


@dataclass
class Finding:
    section: str
    check: str
    rows: int
    of: int
    severity: str  # "info" | "warning" | "error"
    examples: list[Any] = field(default_factory=list)

    @property
    def share(self) -> float:
        return self.rows / self.of if self.of else 0.0


@dataclass
class QualityReport:
    dataset: str
    counts: dict[str, int]
    findings: list[Finding]
    completeness: dict[str, dict[str, int]]
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "counts": self.counts,
            "completeness": self.completeness,
            "findings": [{**asdict(f), "share": f.share} for f in self.findings],
            "seconds": self.seconds,
        }


def _missing(values: pd.Series) -> pd.Series:
    def empty(v: Any) -> bool:
        if v is None or (isinstance(v, float) and np.isnan(v)):
            return True
        return (isinstance(v, str) and not v.strip()) or (isinstance(v, list | tuple | dict) and not v)

    return values.map(empty).astype(bool)


def _finding(
    section: str, check: str, hits: pd.Series | np.ndarray, of: int, severity: str, labels: Sequence[Any]
) -> Finding:
    hits = np.asarray(hits, dtype=bool)
    examples = [labels[i] for i in np.flatnonzero(hits)[:EXAMPLES]]
    return Finding(section, check, int(hits.sum()), of, severity if hits.any() else "info", examples)


def dhash(img: Image.Image, side: int = HASH_SIDE) -> int:
    """Difference hash of side² bits ((side+1)×side grayscale, each pixel brighter than its right
    neighbour?): equal or within a few bits for the same photo resized, recompressed or lightly
    edited. 16 (256 bits) tells apart studio shots that only share a silhouette; 8 does not."""
    small = np.asarray(img.convert("L").resize((side + 1, side)), dtype=np.int16)
    bits = (small[:, 1:] > small[:, :-1]).ravel()
    return int.from_bytes(np.packbits(bits).tobytes(), "big")


def near_duplicate_pairs(
    hashes: Sequence[int | None], max_bits: int, n_bits: int = HASH_SIDE**2
) -> list[tuple[int, int]]:
    """Index pairs whose hashes differ in at most `max_bits` bits. Candidates share one of
    `max_bits + 1` bands (pigeonhole), so the search stays near linear."""
    bands = max_bits + 1
    width = n_bits // bands
    buckets: dict[tuple[int, int], list[int]] = defaultdict(list)
    for i, h in enumerate(hashes):
        if h is not None:
            for b in range(bands):
                buckets[(b, (h >> (b * width)) & ((1 << width) - 1))].append(i)
    pairs: set[tuple[int, int]] = set()
    for members in buckets.values():
        if len(members) > 200:  # a flat band value shared by hundreds: compare within, capped
            members = members[:200]
        for x in range(len(members)):
            for y in range(x + 1, len(members)):
                i, j = members[x], members[y]
                if bin(hashes[i] ^ hashes[j]).count("1") <= max_bits:  # type: ignore[operator]
                    pairs.add((i, j))
    return sorted(pairs)


def _photos(raw: RawDataset, workers: int) -> pd.DataFrame:
    root = Path(raw.meta["root"]) if raw.meta.get("root") else None
    paths: list[str | None] = []
    for value in raw.items["image_paths"]:
        first = value[0] if isinstance(value, list | tuple) and value else None
        paths.append(None if first is None else str(root / first if root and not Path(first).is_absolute() else first))

    def measure(path: str | None) -> dict[str, Any]:
        if path is None:
            return {"has": False}
        if not Path(path).is_file():
            return {"has": True, "exists": False}
        try:
            img = load_image(path)
        except ImageError as exc:
            return {"has": True, "exists": True, "ok": False, "error": exc.reason}
        gray_std = float(np.asarray(img.convert("L"), dtype=np.float32).std())
        colour = np.asarray(img.convert("RGB").resize((8, 8)), dtype=np.float32).reshape(-1, 3).mean(0)
        measures = {"gray_std": gray_std, "dhash": dhash(img), "colour": colour, **image_quality(img)}
        return {"has": True, "exists": True, "ok": True, **measures}

    with ThreadPoolExecutor(max_workers=workers) as pool:
        rows = list(pool.map(measure, paths))
    return pd.DataFrame(rows)


def quality_report(
    raw: RawDataset,
    sentiment: Callable[[list[str]], np.ndarray] | None = None,
    workers: int = 2,
) -> QualityReport:
    """Every check that applies to what `raw` holds; `sentiment(texts)` -> P(positive) enables the
    rating-versus-text check."""
    start = time.perf_counter()
    findings: list[Finding] = []
    completeness: dict[str, dict[str, int]] = {}
    counts = {kind: len(getattr(raw, kind)) for kind in ("items", "users", "interactions", "reviews")}
    for kind, n in counts.items():
        if n:
            frame = getattr(raw, kind)
            completeness[kind] = {c: int(_missing(frame[c]).sum()) for c in columns(kind) if c in frame.columns}

    items, events, reviews = raw.items, raw.interactions, raw.reviews
    ids = items["item_id"].astype(str).tolist()
    if len(items):
        text = items[["title", "description"]].apply(lambda col: ~_missing(col)).any(axis=1)
        findings.append(
            _finding("completeness", "items without title or description", ~text, len(items), "warning", ids)
        )
        findings.append(
            _finding("consistency", "repeated item ids", items["item_id"].duplicated(), len(items), "error", ids)
        )
        key = (
            items["title"].fillna("").str.strip().str.lower()
            + "|"
            + items["description"].fillna("").str.strip().str.lower()
        )
        same = key.duplicated(keep=False) & (key != "|")
        findings.append(
            _finding("consistency", "items with identical title and description", same, len(items), "warning", ids)
        )
        price = pd.to_numeric(items["price"], errors="coerce")
        findings.append(_finding("consistency", "negative prices", price < 0, len(items), "error", ids))
        if not _missing(items["image_paths"]).all():
            findings.extend(_image_findings(raw, ids, workers))
    if len(events):
        findings.extend(_event_findings(raw, events))
    if len(reviews):
        findings.extend(_review_findings(reviews, sentiment))
    return QualityReport(raw.name, counts, findings, completeness, time.perf_counter() - start)


def _image_findings(raw: RawDataset, ids: list[str], workers: int) -> list[Finding]:
    m = _photos(raw, workers)
    n = len(ids)
    has = m["has"].to_numpy(bool)
    exists = m.get("exists", pd.Series(False, index=m.index)).fillna(False).to_numpy(bool)
    ok = m.get("ok", pd.Series(False, index=m.index)).fillna(False).to_numpy(bool)
    out = [
        _finding("completeness", "items without a photo", ~has, n, "warning", ids),
        _finding("completeness", "photo files that are not there", has & ~exists, n, "error", ids),
        _finding("image quality", "photos that do not decode", exists & ~ok, n, "error", ids),
    ]
    if ok.any():
        side = np.minimum(m["width"].fillna(0), m["height"].fillna(0)).to_numpy(float)
        blur = m["blur"].to_numpy(float)
        threshold = max(BLUR_FLOOR, float(np.nanpercentile(blur[ok], 2)))
        out += [
            _finding(
                "image quality",
                f"tiny photos (shorter side < {TINY_SIDE} px)",
                ok & (side < TINY_SIDE),
                n,
                "warning",
                ids,
            ),
            _finding(
                "image quality",
                "near-blank photos (flat gray levels)",
                ok & (m["gray_std"].to_numpy(float) < BLANK_STD),
                n,
                "warning",
                ids,
            ),
            _finding(
                "image quality",
                f"blurred photos (Laplacian variance < {threshold:.0f})",
                ok & (blur < threshold),
                n,
                "warning",
                ids,
            ),
        ]
        hashes = [int(h) if o else None for h, o in zip(m["dhash"], ok, strict=True)]
        colours = m["colour"].tolist()
        # Grayscale structure and colour both alike: colour variants of one garment share the first.
        pairs = [
            (i, j)
            for i, j in near_duplicate_pairs(hashes, DHASH_BITS)
            if np.abs(colours[i] - colours[j]).mean() <= COLOUR_DISTANCE
        ]
        hit = np.zeros(n, bool)
        for i, j in pairs:
            hit[i] = hit[j] = True
        finding = _finding(
            "consistency",
            f"items whose photo nearly duplicates another item's (dHash <= {DHASH_BITS} bits, same colours)",
            hit,
            n,
            "warning",
            ids,
        )
        finding.examples = [(ids[i], ids[j]) for i, j in pairs[:EXAMPLES]]
        out.append(finding)
    return out


def _event_findings(raw: RawDataset, events: pd.DataFrame) -> list[Finding]:
    n = len(events)
    labels = events["event_id"].astype(str).tolist() if "event_id" in events else list(range(n))
    out = []
    if len(raw.items):
        unknown = ~events["item_id"].astype(str).isin(set(raw.items["item_id"].astype(str)))
        out.append(_finding("consistency", "events naming an unknown item", unknown, n, "error", labels))
    if len(raw.users):
        unknown = ~events["user_id"].astype(str).isin(set(raw.users["user_id"].astype(str)))
        out.append(_finding("consistency", "events naming an unknown user", unknown, n, "error", labels))
    ratings = events["type"] == "rating"
    value = pd.to_numeric(events["value"], errors="coerce")
    out.append(
        _finding("consistency", "event ratings outside 0..5", ratings & ((value < 0) | (value > 5)), n, "error", labels)
    )
    ts = pd.to_numeric(events["ts"], errors="coerce")
    if ts.notna().any():
        future = ts > time.time() + 86_400
        out.append(
            _finding(
                "consistency",
                "timestamps in the future or before 1995",
                future | (ts < 788_918_400),
                n,
                "error",
                labels,
            )
        )
        minute = (ts // 60).astype("Int64")
        per_minute = events.assign(minute=minute).groupby(["user_id", "minute"]).size()
        bots = per_minute[per_minute > BOT_EVENTS_PER_MINUTE].index.get_level_values(0).unique()
        users = events["user_id"].astype(str).unique()
        finding = _finding(
            "behaviour",
            f"users with more than {BOT_EVENTS_PER_MINUTE} events in one minute",
            np.isin(users, bots),
            len(users),
            "warning",
            list(users),
        )
        out.append(finding)
    repeated = events.duplicated(["user_id", "item_id", "type", "ts"], keep="first") if ts.notna().any() else None
    if repeated is not None:
        out.append(_finding("consistency", "repeated (user, item, type, time) events", repeated, n, "warning", labels))
    return out


def _review_findings(reviews: pd.DataFrame, sentiment: Callable[[list[str]], np.ndarray] | None) -> list[Finding]:
    n = len(reviews)
    labels = reviews["review_id"].astype(str).tolist()
    out = []
    body = reviews["text"].fillna("").str.strip()
    with_user = reviews["user_id"].notna()
    if with_user.any():
        users_per_text = reviews[with_user].groupby(body[with_user])["user_id"].nunique()
        copied = body.map(users_per_text).fillna(0) > 1
        out.append(_finding("reliability", "review texts posted by more than one user", copied, n, "warning", labels))
        ts = pd.to_numeric(reviews["ts"], errors="coerce")
        if ts.notna().any():
            hour = (ts // 3600).astype("Int64")
            per_hour = reviews.assign(hour=hour).groupby(["user_id", "hour"])["review_id"].transform("size")
            burst = per_hour > BURST_REVIEWS_PER_HOUR
            out.append(
                _finding(
                    "reliability",
                    f"reviews in bursts (> {BURST_REVIEWS_PER_HOUR} from one user within an hour)",
                    burst,
                    n,
                    "warning",
                    labels,
                )
            )
    else:
        copied = body.duplicated(keep=False) & (body != "")
        out.append(
            _finding(
                "reliability", "identical review texts (no user ids to tell authors apart)", copied, n, "info", labels
            )
        )
    rating = pd.to_numeric(reviews["rating"], errors="coerce")
    out.append(_finding("consistency", "review ratings outside 0..5", (rating < 0) | (rating > 5), n, "error", labels))
    if sentiment is not None and rating.notna().any():
        rated = rating.notna().to_numpy()
        p = np.full(n, np.nan)
        p[rated] = sentiment(body[rated].tolist())
        disagree = rated & (((rating >= 4) & (p < 0.2)) | ((rating <= 2) & (p > 0.8))).to_numpy()
        out.append(
            _finding(
                "reliability",
                "ratings contradicting the review's text sentiment",
                disagree,
                int(rated.sum()),
                "warning",
                labels,
            )
        )
    return out


def write_report(report: QualityReport, folder: str | Path) -> tuple[Path, Path]:
    """`<dataset>.json` and a self-contained `<dataset>.html` in `folder`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    data = report.to_dict()
    json_path = folder / f"{report.dataset}.json"
    json_path.write_text(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"), autoescape=True, keep_trailing_newline=True
    )
    page = env.get_template("quality.html").render(r=data)
    html_path = folder / f"{report.dataset}.html"
    html_path.write_text(page, encoding="utf-8")
    return json_path, html_path
