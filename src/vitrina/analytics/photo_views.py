"""Several looks at one product photo, encoded through the feature store, for product recognition.

The image encoders see a centre crop: on H&M's portrait photos (2:3) the resize-then-crop keeps
only the middle 58% of the height, cutting off hems, necklines and shoes, which is what tells a
dress from a top or trousers from shorts. The "whole" view pads the photo to a square with its own
border colour first, so the same crop keeps all of it (smaller); "top" and "bottom" are the squares
at either end of the photo, at the centre crop's scale. The "centre" view is the photo file itself,
so it reuses the vectors `vitrina featurize` cached; the others are encoded once and cached by
their pixels. (Mirror-image views were tried for flip augmentation and test-time averaging and
gained nothing on H&M validation, so they are not offered.)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image
from tqdm import tqdm

from vitrina.features.image_encoders import EfficientNetLite0
from vitrina.features.image_io import ImageError, load_image
from vitrina.features.store import FeatureStore

__all__ = ["VIEWS", "end_square", "photo_views", "view_features", "whole_photo"]

VIEWS = ("centre", "whole", "top", "bottom")


def whole_photo(img: Image.Image, resize: int, crop: int) -> Image.Image:
    """`img` centred on a square canvas (filled with the median colour of its border pixels) large
    enough that a resize of the shorter side to `resize` and a centre crop of `crop` keep it whole
    (with a pixel to spare on each side, against rounding)."""
    side = math.ceil(max(img.size) * resize / crop) + 2
    arr = np.asarray(img)
    border = np.concatenate([arr[0], arr[-1], arr[:, 0], arr[:, -1]])
    fill = tuple(int(c) for c in np.median(border, axis=0))
    canvas = Image.new("RGB", (side, side), fill)
    canvas.paste(img, ((side - img.width) // 2, (side - img.height) // 2))
    return canvas


def end_square(img: Image.Image, last: bool) -> Image.Image:
    """The square at the start (top of a portrait photo, left of a landscape one) or the end."""
    w, h = img.size
    side = min(w, h)
    x, y = (w - side, h - side) if last else (0, 0)
    return img.crop((x, y, x + side, y + side))


def photo_views(img: Image.Image, views: Sequence[str], resize: int, crop: int) -> list[Image.Image]:
    """The named views of one decoded photo (see `VIEWS`)."""
    out = []
    for name in views:
        if name not in VIEWS:
            raise ValueError(f"unknown view '{name}'; choose from {', '.join(VIEWS)}")
        if name == "whole":
            out.append(whole_photo(img, resize, crop))
        elif name in ("top", "bottom"):
            out.append(end_square(img, name == "bottom"))
        else:
            out.append(img)
    return out


def view_features(
    encoder: EfficientNetLite0,
    store: FeatureStore,
    photos: Sequence[Any],
    views: Sequence[str] = VIEWS,
    chunk: int = 512,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray, dict[int, str]]:
    """(features [n, len(views), dim], ok [n], errors {row: reason}) for photo paths, bytes or PIL
    images; a row is ok only when every view encoded. Photos are decoded `chunk` at a time."""
    unknown = [v for v in views if v not in VIEWS]
    if unknown:
        raise ValueError(f"unknown view(s) {unknown}; choose from {', '.join(VIEWS)}")
    resize, crop = encoder.preprocess.resize, encoder.preprocess.crop
    out = np.zeros((len(photos), len(views), encoder.dim), dtype=np.float32)
    ok = np.zeros(len(photos), dtype=bool)
    errors: dict[int, str] = {}
    for start in tqdm(range(0, len(photos), chunk), desc="photo views", unit="chunk", disable=not progress):
        rows, inputs = [], []
        for row in range(start, min(start + chunk, len(photos))):
            photo = photos[row]
            try:
                img = photo if isinstance(photo, Image.Image) else load_image(photo, encoder.max_pixels, draft=resize)
            except ImageError as exc:
                errors[row] = str(exc)
                continue
            rows.append(row)
            # The plain centre view passes the file itself, so its cache key is the featurize one.
            inputs += [
                photo if v == "centre" else p for v, p in zip(views, photo_views(img, views, resize, crop), strict=True)
            ]
        if not rows:
            continue
        got = store.encode(encoder, inputs, batch_size=encoder.batch_size)
        vectors = got.vectors.reshape(len(rows), len(views), -1)
        good = got.ok.reshape(len(rows), len(views)).all(1)
        for j, row in enumerate(rows):
            out[row] = vectors[j]
            ok[row] = good[j]
            if not good[j]:
                errors[row] = next(
                    got.errors[j * len(views) + k] for k in range(len(views)) if not got.ok[j * len(views) + k]
                )
    return out, ok, errors
