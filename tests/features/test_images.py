"""Image pipeline: safe decoding of every awkward file a shop uploads, preprocessing and
augmentation, quality measures, and the EfficientNet-Lite0 / colour-histogram encoders, first on
generated fixtures, then on real H&M product photos."""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFilter

from vitrina.config import Config
from vitrina.features.encoder import ENCODERS, create_encoder
from vitrina.features.image_encoders import ColorHistogram, EfficientNetLite0, imagenet_classes
from vitrina.features.image_io import ImageError, load_image, to_rgb
from vitrina.features.image_quality import brightness, image_quality, laplacian_variance, quality_report
from vitrina.features.image_transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Augment,
    Preprocess,
    center_crop,
    denoise,
    normalize,
    resize_center_crop,
    resize_shorter,
)
from vitrina.features.throughput import measure_image_throughput

RED, BLUE, WHITE = (255, 0, 0), (0, 0, 255), (255, 255, 255)

# ImageNet classes a photo of a garment or accessory may fairly be given.
CLOTHING = {
    "jersey", "cardigan", "sweatshirt", "miniskirt", "swimming trunks", "brassiere", "bikini", "maillot",
    "tank suit", "jean", "suit", "abaya", "academic gown", "apron", "bow tie", "bulletproof vest", "cloak",
    "cowboy boot", "clog", "fur coat", "gown", "hoopskirt", "kimono", "lab coat", "Loafer", "military uniform",
    "mitten", "overskirt", "pajama", "poncho", "running shoe", "sandal", "sarong", "sock", "stole",
    "trench coat", "vestment", "Windsor tie", "wool", "bonnet", "cowboy hat", "sombrero", "backpack", "purse",
    "wallet", "necklace", "sunglasses", "sunglass", "buckle", "diaper", "bib", "knee pad", "Christmas stocking",
    "velvet", "feather boa", "bolo tie", "hair slide", "ski mask", "wig", "handkerchief", "chain mail",
    "breastplate", "cuirass", "shower cap", "bathing cap", "mailbag",
}  # fmt: skip


def _data_dir() -> Path:
    env = os.environ.get("VITRINA_DATA_DIR")
    return Path(env) if env else Path(__file__).resolve().parents[2].parent / "shared" / "data"


def _hm_photos(n: int, step: int = 1) -> list[Path]:
    folder = _data_dir() / "hm" / "images"
    if not folder.is_dir():
        pytest.skip(f"real H&M photos not found in {folder} (set VITRINA_DATA_DIR to the shared data dir)")
    return sorted(folder.glob("*/*.jpg"))[::step][:n]


def _textured(size: tuple[int, int] = (64, 48), seed: int = 0) -> Image.Image:
    """Sharp random texture: many edges, so blur measures and encoders have something to see."""
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8), "RGB")


def _save(img: Image.Image, path: Path, **params: object) -> Path:
    img.save(path, **params)
    return path


def _png_claiming(width: int, height: int) -> bytes:
    """A 60-byte PNG whose header claims width x height, with a token pixel stream."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0")) + chunk(b"IEND", b"")


# --- decoding ---------------------------------------------------------------------------------


def test_valid_jpeg_loads_as_rgb(tmp_path: Path) -> None:
    path = _save(_textured(), tmp_path / "ok.jpg", quality=95)
    img = load_image(path)
    assert img.mode == "RGB" and img.size == (64, 48)
    assert load_image(path.read_bytes()).size == (64, 48)  # raw bytes work too


def test_png_alpha_is_composited_on_white(tmp_path: Path) -> None:
    rgba = Image.new("RGBA", (10, 10), (255, 0, 0, 0))  # fully transparent "red"
    rgba.paste((255, 0, 0, 255), (0, 0, 5, 10))  # opaque red left half
    rgba.paste((0, 0, 255, 128), (5, 0, 10, 10))  # half-transparent blue right half
    img = load_image(_save(rgba, tmp_path / "alpha.png"))
    assert img.mode == "RGB"
    assert img.getpixel((1, 1)) == RED
    r, g, b = img.getpixel((8, 1))
    assert 125 <= r <= 129 and 125 <= g <= 129 and b == 255  # 50% blue over white
    la = Image.new("LA", (4, 4), (0, 0))  # transparent black greyscale -> white
    assert load_image(_save(la, tmp_path / "la.png")).getpixel((0, 0)) == WHITE


def test_palette_png_with_and_without_transparency(tmp_path: Path) -> None:
    rgb = Image.new("RGB", (8, 8), RED)
    rgb.paste(BLUE, (4, 0, 8, 8))
    pal = rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=4)
    img = load_image(_save(pal, tmp_path / "pal.png"))
    assert img.mode == "RGB" and img.getpixel((0, 0)) == RED and img.getpixel((7, 7)) == BLUE
    blue_index = pal.getpixel((7, 7))
    transparent = load_image(_save(pal, tmp_path / "pal_t.png", transparency=blue_index))
    assert transparent.getpixel((7, 7)) == WHITE and transparent.getpixel((0, 0)) == RED


def test_cmyk_jpeg_becomes_rgb(tmp_path: Path) -> None:
    cmyk = Image.new("CMYK", (16, 16), (0, 255, 255, 0))  # no cyan, full magenta + yellow = red
    img = load_image(_save(cmyk, tmp_path / "cmyk.jpg", quality=95))
    r, g, b = img.getpixel((8, 8))
    assert img.mode == "RGB" and r > 230 and g < 30 and b < 30


def test_16_bit_grayscale_png_is_scaled_not_clipped(tmp_path: Path) -> None:
    arr = np.tile(np.array([0, 1000, 32896, 65535], dtype=np.uint16), (4, 1))
    gray16 = Image.fromarray(arr)
    assert gray16.mode == "I;16"
    path = _save(gray16, tmp_path / "gray16.png")
    img = load_image(path)
    assert img.mode == "RGB"
    assert [img.getpixel((x, 0))[0] for x in range(4)] == [0, 4, 128, 255]


def test_exif_orientation_6_is_applied(tmp_path: Path) -> None:
    stored = Image.new("RGB", (40, 20), RED)
    stored.paste(BLUE, (20, 0, 40, 20))  # red left half, blue right half, as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    img = load_image(_save(stored, tmp_path / "rotated.jpg", exif=exif.tobytes(), quality=95))
    assert img.size == (20, 40)  # upright: portrait
    top, bottom = img.getpixel((10, 5)), img.getpixel((10, 35))
    assert top[0] > 200 and top[2] < 60  # the stored left (red) is now on top
    assert bottom[2] > 200 and bottom[0] < 60


def test_truncated_jpeg_is_rejected(tmp_path: Path) -> None:
    data = io.BytesIO()
    _textured((128, 128)).save(data, "JPEG", quality=90)
    path = tmp_path / "cut.jpg"
    path.write_bytes(data.getvalue()[: len(data.getvalue()) // 2])
    with pytest.raises(ImageError, match="truncated") as err:
        load_image(path)
    assert str(path) in str(err.value) and err.value.source == str(path)


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("empty.jpg", b"", "empty file"),
        ("page.jpg", b"<html><body>404 Not Found</body></html>\n", "cannot identify image"),
        ("noise.png", bytes(range(256)) * 4, "cannot identify image"),
        ("header.png", _png_claiming(10, 10)[:20], "corrupt image: truncated"),
    ],
)
def test_unusable_files_raise_image_error_naming_the_file(
    tmp_path: Path, name: str, content: bytes, reason: str
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ImageError, match=reason) as err:
        load_image(path)
    assert str(path) in str(err.value)
    assert isinstance(err.value, ValueError)


def test_missing_file_and_bytes_are_named(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="file not found"):
        load_image(tmp_path / "nope.jpg")
    with pytest.raises(ImageError, match="^upload-7: empty file"):
        load_image(b"", name="upload-7")


def test_decompression_bombs_are_rejected_before_decoding(tmp_path: Path) -> None:
    header = tmp_path / "bomb_header.png"
    header.write_bytes(_png_claiming(100_000, 100_000))  # claims 10^10 pixels
    with pytest.raises(ImageError, match="decompression bomb") as err:
        load_image(header)
    assert str(header) in str(err.value)
    # A real, tiny file that inflates to 16 MP: rejected under a low local limit ...
    flat = _save(Image.new("L", (4000, 4000), 200), tmp_path / "flat.png", optimize=True)
    assert flat.stat().st_size < 100_000
    with pytest.raises(ImageError, match="4000x4000 = 16000000 pixels exceeds max_pixels=1000000"):
        load_image(flat, max_pixels=1_000_000)
    # ... which is not global: the default limit still accepts it.
    assert load_image(flat).size == (4000, 4000)


def test_to_rgb_handles_any_mode() -> None:
    for mode in ("1", "L", "P", "RGBA", "LA", "CMYK", "YCbCr", "I", "F", "I;16"):
        img = Image.new(mode, (3, 3))
        assert to_rgb(img).mode == "RGB", mode


def test_jpeg_draft_decodes_large_photos_at_reduced_scale(tmp_path: Path) -> None:
    path = _save(_textured((1600, 1200)), tmp_path / "big.jpg", quality=85)
    img = load_image(path, draft=256)
    assert min(img.size) >= 256 and img.size == (400, 300)  # 1/4 scale: both sides still >= 256


# --- transforms -------------------------------------------------------------------------------


def test_preprocess_shape_dtype_and_geometry() -> None:
    pre = Preprocess()
    photo = Image.new("RGB", (171, 256), WHITE)  # an H&M photo's size
    assert resize_shorter(photo, 256).size == (256, 383)
    out = pre(photo)
    assert out.shape == (3, 224, 224) and out.dtype == np.float32
    batch = pre.batch([photo, _textured((300, 200)), _textured((50, 40))])
    assert batch.shape == (3, 3, 224, 224) and batch.dtype == np.float32 and batch.flags.c_contiguous


def test_fused_resize_crop_matches_resize_then_crop() -> None:
    for size in [(171, 256), (300, 200), (1000, 700), (256, 256), (257, 300), (50, 40)]:
        img = _textured(size, seed=size[0])
        fused = np.asarray(resize_center_crop(img, 256, 224), dtype=np.int16)
        stepwise = np.asarray(center_crop(resize_shorter(img, 256), 224), dtype=np.int16)
        assert fused.shape == (224, 224, 3) and np.abs(fused - stepwise).max() <= 1, size


def test_normalisation_of_constant_images() -> None:
    white = Preprocess()(Image.new("RGB", (300, 300), WHITE))
    expected = (1.0 - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    np.testing.assert_allclose(white.reshape(3, -1).mean(axis=1), expected, rtol=1e-5)
    assert white.reshape(3, -1).std(axis=1).max() < 1e-5
    mean_colour = tuple(round(255 * m) for m in IMAGENET_MEAN)
    grey = normalize(Image.new("RGB", (8, 8), mean_colour))
    assert np.abs(grey).max() < 0.01  # the dataset mean maps to zero


def test_center_crop_takes_the_middle() -> None:
    arr = np.arange(10 * 12, dtype=np.uint8).reshape(10, 12)
    crop = np.asarray(center_crop(Image.fromarray(arr, "L"), 4))
    np.testing.assert_array_equal(crop, arr[3:7, 4:8])
    small = center_crop(Image.new("RGB", (2, 2), WHITE), 4)  # smaller than the crop: padded
    assert small.size == (4, 4) and small.getpixel((0, 0)) == (0, 0, 0) and small.getpixel((1, 1)) == WHITE


def test_augmentation_is_reproducible_from_its_seed() -> None:
    img, aug, pre = _textured((120, 90)), Augment(), Preprocess()
    a = pre.batch([img, img], augment=aug, rng=np.random.default_rng(7))
    b = pre.batch([img, img], augment=aug, rng=np.random.default_rng(7))
    c = pre.batch([img, img], augment=aug, rng=np.random.default_rng(8))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c) and not np.array_equal(a[0], a[1])
    assert a.shape == (2, 3, 224, 224)
    with pytest.raises(ValueError, match="rng"):
        pre.batch([img], augment=aug)


def test_horizontal_flip_and_white_rotation_fill() -> None:
    img = _textured((32, 32))
    flip_only = Augment(size=32, scale=(1.0, 1.0), ratio=(1.0, 1.0), hflip=1.0, degrees=0.0,
                        brightness=0.0, contrast=0.0, saturation=0.0)  # fmt: skip
    out = flip_only(img, np.random.default_rng(0))
    np.testing.assert_array_equal(np.asarray(out), np.asarray(img)[:, ::-1])
    rotate = Augment(size=32, scale=(1.0, 1.0), ratio=(1.0, 1.0), hflip=0.0, degrees=30.0,
                     brightness=0.0, contrast=0.0, saturation=0.0)  # fmt: skip
    turned = rotate(Image.new("RGB", (32, 32), BLUE), np.random.default_rng(1))
    assert turned.getpixel((0, 0)) == WHITE and turned.getpixel((16, 16)) == BLUE


def test_random_resized_crop_respects_scale_and_output_size() -> None:
    img = _textured((200, 100))
    out = Augment(size=64, scale=(0.5, 0.5), degrees=0.0)(img, np.random.default_rng(3))
    assert out.size == (64, 64)


def test_denoising_filters() -> None:
    specks = Image.new("L", (21, 21), 128)
    specks.putpixel((10, 10), 255)  # one salt pixel
    assert denoise(specks, "median").getpixel((10, 10)) == 128
    sharp = _textured((64, 64))
    assert laplacian_variance(denoise(sharp, "gaussian", 1.5)) < laplacian_variance(sharp) / 4
    assert denoise(sharp, "none") is sharp
    with pytest.raises(ValueError, match="denoise"):
        denoise(sharp, "bilateral")
    with pytest.raises(ValueError, match="denoise"):
        Preprocess(denoise="wavelet")


def test_preprocess_from_config_reads_features_image() -> None:
    cfg = Config.load(overrides={"features.image.crop": 192, "features.image.denoise": "median"}, environ={})
    pre = Preprocess.from_config(cfg)
    assert (pre.resize, pre.crop, pre.denoise) == (256, 192, "median")


# --- quality ----------------------------------------------------------------------------------


def test_quality_measures(tmp_path: Path) -> None:
    sharp = _textured((80, 40))
    blurred = sharp.filter(ImageFilter.GaussianBlur(2))
    assert laplacian_variance(blurred) < laplacian_variance(sharp) / 10
    assert laplacian_variance(Image.new("RGB", (20, 20), RED)) == 0.0
    assert brightness(Image.new("RGB", (5, 5), WHITE)) == 255.0
    assert brightness(Image.new("RGB", (5, 5), (0, 0, 0))) == 0.0
    q = image_quality(sharp)
    assert (q["width"], q["height"], q["aspect_ratio"]) == (80, 40, 2.0)

    paths = [_save(sharp, tmp_path / "a.png"), _save(blurred, tmp_path / "b.png"), tmp_path / "bad.jpg"]
    paths[2].write_bytes(b"plain text")
    report = quality_report(paths)
    assert list(report["ok"]) == [True, True, False]
    assert report.loc[0, "blur"] > report.loc[1, "blur"]
    assert "cannot identify image" in report.loc[2, "error"] and report.loc[2, "path"] == str(paths[2])
    assert report.loc[0, "width"] == 80 and report["width"].isna().sum() == 1


# --- encoders ---------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("vitrina-cache") / "models"


@pytest.fixture(scope="module")
def lite(model_cache: Path) -> EfficientNetLite0:
    return EfficientNetLite0(cache_dir=model_cache, batch_size=4)


@pytest.fixture(scope="module")
def lite_torch() -> EfficientNetLite0:
    return EfficientNetLite0(backend="torch")


def test_encoders_are_registered() -> None:
    assert ENCODERS["efficientnet-lite0"] is EfficientNetLite0
    assert isinstance(create_encoder("color-histogram"), ColorHistogram)
    names = imagenet_classes()
    assert len(names) == 1000 == len(set(names)) and names[610] == "jersey"


def test_lite0_shape_norm_and_batch_invariance(lite: EfficientNetLite0, tmp_path: Path) -> None:
    images = [_textured((90 + 10 * i, 120), seed=i) for i in range(5)]
    paths = [_save(img, tmp_path / f"{i}.png") for i, img in enumerate(images)]
    one_by_one = lite.encode(paths, batch_size=1)
    batched = lite.encode(paths, batch_size=3)
    assert one_by_one.shape == (5, 1280) and one_by_one.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(batched, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(one_by_one, batched, atol=1e-5)
    np.testing.assert_allclose(lite.encode(images[:2]), batched[:2], atol=1e-5)  # PIL images too
    assert lite.encode([]).shape == (0, 1280)


def test_lite0_onnx_file_is_reused(lite: EfficientNetLite0, model_cache: Path) -> None:
    assert lite.onnx_path is not None and lite.onnx_path.parent == model_cache
    mtime = lite.onnx_path.stat().st_mtime_ns
    again = EfficientNetLite0(cache_dir=model_cache)
    assert again.exported is False and again.onnx_path == lite.onnx_path
    assert lite.onnx_path.stat().st_mtime_ns == mtime
    assert sorted(p.name for p in model_cache.iterdir()) == [lite.onnx_path.name]  # no temp files left
    cfg = Config.load(overrides={"paths.cache_dir": str(model_cache.parent)}, environ={})
    assert EfficientNetLite0.from_config(cfg).exported is False


def test_lite0_bad_file_raises_or_masks(lite: EfficientNetLite0, model_cache: Path, tmp_path: Path) -> None:
    good = _save(_textured(), tmp_path / "good.jpg")
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"GIF89a-but-not-really")
    with pytest.raises(ImageError, match="bad.jpg"):
        lite.encode([good, bad, good])
    masked = EfficientNetLite0(cache_dir=model_cache, on_error="mask")
    out = masked.encode([good, bad, good], batch_size=2)
    assert list(masked.last_errors) == [1] and "bad.jpg" in masked.last_errors[1]
    assert not out[1].any() and np.allclose(out[0], out[2]) and np.isclose(np.linalg.norm(out[0]), 1.0)
    assert masked.top_classes([bad], k=3) == [[]]
    with pytest.raises(ValueError, match="on_error"):
        EfficientNetLite0(cache_dir=model_cache, on_error="skip")  # type: ignore[arg-type]


def test_lite0_onnx_agrees_with_torch_on_real_photos(lite: EfficientNetLite0, lite_torch: EfficientNetLite0) -> None:
    photos = _hm_photos(2, step=3000)
    f_onnx, l_onnx = lite.encode_with_logits(photos)
    f_torch, l_torch = lite_torch.encode_with_logits(photos)
    assert np.abs(f_onnx - f_torch).max() < 1e-3
    assert np.abs(l_onnx - l_torch).max() < 1e-3
    assert lite_torch.torch_module().training is False


def test_lite0_top1_class_of_real_photos_is_clothing(lite: EfficientNetLite0) -> None:
    """On 1,180 H&M photos (every 10th) the top-1 class is a garment or accessory for 90.5% and
    the top-5 hold one for 98.0%; 24 evenly spaced photos must reach 75% and 22 of 24."""
    photos = _hm_photos(24, step=490)
    tops = lite.top_classes(photos, k=5)
    top1 = [t[0][0] for t in tops]
    assert sum(name in CLOTHING for name in top1) >= 18, top1
    assert sum(any(name in CLOTHING for name, _ in t) for t in tops) >= 22, tops
    assert all(len(t) == 5 and t[0][1] >= t[-1][1] for t in tops)


def test_measure_image_throughput(lite: EfficientNetLite0, tmp_path: Path) -> None:
    paths = [_save(_textured(seed=i), tmp_path / f"{i}.jpg") for i in range(4)]
    assert measure_image_throughput(lite, paths, batch_size=2) > 0


def test_color_histogram_peaks_in_the_right_bin(tmp_path: Path) -> None:
    hist = ColorHistogram()
    red = Image.new("RGB", (30, 30), (220, 20, 30))
    blue = _save(Image.new("RGB", (300, 200), BLUE), tmp_path / "blue.png")
    out = hist.encode([red, blue])
    assert out.shape == (2, 128) and np.allclose(np.linalg.norm(out, axis=1), 1.0)
    h, s, v = np.unravel_index(int(out[0].argmax()), hist.bins)
    assert h in (0, hist.bins[0] - 1) and s == hist.bins[1] - 1 and v == hist.bins[2] - 1  # red, vivid, bright
    assert np.unravel_index(int(out[1].argmax()), hist.bins)[0] == 5  # blue: hue 240/360 -> bin 5 of 8
    assert float(out[0] @ out[1]) == 0.0
    assert create_encoder("color-histogram", bins=(4, 2, 2)).dim == 16
