"""Tiny generated H&M folders (articles.csv, customers.csv, copurchase.csv, images/<3>/<id>.jpg) with
drawn product photos, for the tests that run the real hm loader and encoders end to end."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

# product_group_name -> the garment drawn in its photos
SHAPES = {"Garment Upper body": "top", "Garment Lower body": "legs", "Shoes": "shoe"}
COLOURS = {"Red": (200, 30, 30), "Blue": (30, 60, 200)}


def garment_photo(shape: str, colour: tuple[int, int, int], seed: int) -> Image.Image:
    """A 2:3 product photo on light grey: a torso (off-centre, so mirroring changes it), two legs
    or a low shoe, shifted a few pixels per seed."""
    rng = np.random.default_rng(seed)
    img = Image.new("RGB", (60, 90), (235, 235, 235))
    draw = ImageDraw.Draw(img)
    dx, dy = (int(v) for v in rng.integers(-4, 5, 2))
    if shape == "top":
        draw.rectangle((8 + dx, 10 + dy, 40 + dx, 45 + dy), fill=colour)
    elif shape == "legs":
        draw.rectangle((14 + dx, 10 + dy, 27 + dx, 85 + dy), fill=colour)
        draw.rectangle((33 + dx, 10 + dy, 46 + dx, 85 + dy), fill=colour)
    else:
        draw.ellipse((10 + dx, 60 + dy, 50 + dx, 80 + dy), fill=colour)
    return img


def write_hm_folder(folder: Path, articles: pd.DataFrame, photos: dict[str, Image.Image]) -> Path:
    """Write `articles` (an `article_id` column plus any H&M article columns), a JPEG per entry of
    `photos` (article id -> image) and one customer and co-purchase row; returns `folder`."""
    for article, photo in photos.items():
        path = folder / "images" / article[:3] / f"{article}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        photo.save(path, quality=92)
    folder.mkdir(parents=True, exist_ok=True)
    articles.to_csv(folder / "articles.csv", index=False)
    pd.DataFrame({"customer_id": ["c1"], "age": ["30"]}).to_csv(folder / "customers.csv", index=False)
    ids = articles["article_id"].tolist()
    pd.DataFrame({"article_id": [ids[0]], "co_article_id": [ids[-1]], "score": ["1.0"]}).to_csv(
        folder / "copurchase.csv", index=False
    )
    return folder
