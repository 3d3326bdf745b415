"""Photo views for product recognition: geometry of the whole-photo view, and view features through
the feature store (the centre view shares the cache of `vitrina featurize`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vitrina.analytics.photo_views import end_square, photo_views, view_features, whole_photo
from vitrina.features.image_encoders import EfficientNetLite0
from vitrina.features.image_transforms import resize_center_crop
from vitrina.features.store import FeatureStore


def _portrait(seed: int = 0, size: tuple[int, int] = (40, 60)) -> Image.Image:
    """A grey portrait photo with a dark garment that touches its top and bottom edges."""
    rng = np.random.default_rng(seed)
    arr = np.full((size[1], size[0], 3), 230, dtype=np.uint8)
    arr[:, 10:30] = rng.integers(0, 80, (size[1], 20, 3), dtype=np.uint8)
    return Image.fromarray(arr, "RGB")


def test_whole_photo_survives_the_centre_crop() -> None:
    img = _portrait()
    canvas = whole_photo(img, resize=256, crop=224)
    assert canvas.width == canvas.height >= 60 * 256 / 224
    assert canvas.getpixel((0, 0)) == (230, 230, 230)  # filled with the photo's border colour
    seen = np.asarray(resize_center_crop(canvas, 256, 224)).astype(int)
    dark = np.flatnonzero((seen.mean(2) < 100).any(1))
    # The garment spans the photo's full height, and the crop keeps it all (with a border above and below).
    assert dark.min() > 0 and dark.max() < 223 and dark.max() - dark.min() >= 215
    plain = np.asarray(resize_center_crop(img, 256, 224)).astype(int)
    assert (plain.mean(2) < 100).any(1).all()  # the usual centre crop cuts it off at both ends


def test_views() -> None:
    img = _portrait()
    centre, whole, top, bottom = photo_views(img, ["centre", "whole", "top", "bottom"], 256, 224)
    assert centre is img and whole.size == whole_photo(img, 256, 224).size
    assert top.size == bottom.size == (40, 40)
    assert np.array_equal(np.asarray(top), np.asarray(img)[:40])
    assert np.array_equal(np.asarray(bottom), np.asarray(img)[20:])
    assert end_square(img.transpose(Image.Transpose.ROTATE_90), last=True).size == (40, 40)
    with pytest.raises(ValueError, match="unknown view 'side'"):
        photo_views(img, ["side"], 256, 224)


@pytest.fixture(scope="module")
def encoder() -> EfficientNetLite0:
    return EfficientNetLite0(backend="torch", on_error="mask", batch_size=4, decode_workers=1)


def test_view_features_are_cached_and_share_the_centre_key(encoder: EfficientNetLite0, tmp_path: Path) -> None:
    paths = []
    for i in range(3):
        paths.append(tmp_path / f"p{i}.jpg")
        _portrait(seed=i).save(paths[-1], quality=95)
    (tmp_path / "bad.jpg").write_bytes(b"not a jpeg")
    photos = [str(paths[0]), str(tmp_path / "bad.jpg"), str(paths[1]), str(paths[2])]
    store = FeatureStore(tmp_path / "store")
    # The centre view of each photo is what featurize would have cached for the file.
    store.encode(encoder, [str(p) for p in paths])
    assert store.size(encoder) == 3
    values, ok, errors = view_features(encoder, store, photos, chunk=2)
    assert values.shape == (4, 4, 1280) and ok.tolist() == [True, False, True, True]
    assert list(errors) == [1] and "bad.jpg" in errors[1]
    assert store.size(encoder) == 3 + 3 * 3  # only the three other views per photo were encoded
    assert np.allclose(np.linalg.norm(values[ok], axis=2), 1.0, atol=1e-4)
    assert np.allclose(values[0, 0], encoder.encode([str(paths[0])])[0], atol=1e-5)
    assert not np.allclose(values[0, 0], values[0, 1], atol=1e-3)  # the whole photo looks different
    again, ok_again, _ = view_features(encoder, store, photos, ("whole",))
    assert store.size(encoder) == 12 and np.allclose(again[ok_again, 0], values[ok_again, 1], atol=1e-6)
    with pytest.raises(ValueError, match="unknown view"):
        view_features(encoder, store, photos, ("zoom",))
