"""Image quality measures for the data-quality report: sharpness, brightness, size and shape.

Blur is the variance of the Laplacian of the grayscale image (Pech-Pacheco et al., 2000): a sharp
photo has strong edges, so its second derivative varies a lot; a blurred one is flat. The value
depends on resolution and content, so compare images of one catalogue rather than using a
universal threshold.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
from PIL import Image

from vitrina.features.image_io import DEFAULT_MAX_PIXELS, ImageError, load_image

__all__ = ["QUALITY_COLUMNS", "brightness", "image_quality", "laplacian_variance", "quality_report"]

QUALITY_COLUMNS = ("path", "ok", "error", "width", "height", "aspect_ratio", "brightness", "blur")


def _gray(img: Image.Image) -> np.ndarray:
    return np.asarray(img.convert("L"), dtype=np.float32)


def laplacian_variance(img: Image.Image) -> float:
    """Variance of the 4-neighbour Laplacian [[0,1,0],[1,-4,1],[0,1,0]] over the valid region
    (OpenCV's `Laplacian(ksize=1).var()`); lower means blurrier."""
    g = _gray(img)
    if g.shape[0] < 3 or g.shape[1] < 3:
        return 0.0
    lap = g[:-2, 1:-1] + g[2:, 1:-1] + g[1:-1, :-2] + g[1:-1, 2:] - 4.0 * g[1:-1, 1:-1]
    return float(lap.var(dtype=np.float64))


def brightness(img: Image.Image) -> float:
    """Mean luma (ITU-R 601, 0 = black, 255 = white): flags under- and over-exposed photos."""
    return float(_gray(img).mean(dtype=np.float64))


def image_quality(img: Image.Image) -> dict[str, float | int]:
    """All measures of one decoded image; aspect_ratio is width / height."""
    w, h = img.size
    return {
        "width": w,
        "height": h,
        "aspect_ratio": w / h,
        "brightness": brightness(img),
        "blur": laplacian_variance(img),
    }


def _row(path: str | os.PathLike[str], max_pixels: int) -> dict[str, object]:
    label = os.fspath(path)
    try:
        img = load_image(path, max_pixels)
    except ImageError as exc:
        return {"path": label, "ok": False, "error": exc.reason}
    return {"path": label, "ok": True, "error": None, **image_quality(img)}


def quality_report(
    paths: Iterable[str | os.PathLike[str]], max_pixels: int = DEFAULT_MAX_PIXELS, workers: int = 2
) -> pd.DataFrame:
    """One row per file, in input order; files that fail to decode are kept with ok=False and the
    reason, because the report exists to list them. Decoding runs on `workers` threads (Pillow
    releases the GIL while decoding)."""
    paths = list(paths)
    if workers > 1 and len(paths) > 1:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            rows = list(pool.map(lambda p: _row(p, max_pixels), paths))
    else:
        rows = [_row(p, max_pixels) for p in paths]
    frame = pd.DataFrame(rows, columns=list(QUALITY_COLUMNS))
    return frame.astype({"width": "Int64", "height": "Int64", "ok": bool})
