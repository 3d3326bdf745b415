"""EfficientNet-Lite0 at int8: the statically quantised ONNX model, its calibration-keyed cache and
fingerprint, checked against the fp32 encoder on generated images and a few real H&M photos."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from test_images import _hm_photos, _save, _textured

from vitrina.config import Config
from vitrina.features.image_encoders import EfficientNetLite0
from vitrina.features.image_io import ImageError


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("vitrina-int8") / "models"


@pytest.fixture(scope="module")
def calibration(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("calibration")
    return [_save(_textured((90 + 10 * i, 120), seed=i), folder / f"{i}.png") for i in range(8)]


@pytest.fixture(scope="module")
def fp32(cache: Path) -> EfficientNetLite0:
    return EfficientNetLite0(cache_dir=cache, batch_size=4)


@pytest.fixture(scope="module")
def int8(cache: Path, fp32: EfficientNetLite0, calibration: list[Path]) -> EfficientNetLite0:
    return EfficientNetLite0(cache_dir=cache, batch_size=4, precision="int8", calibration=calibration)


def test_int8_features_are_unit_vectors_close_to_fp32(fp32: EfficientNetLite0, int8: EfficientNetLite0) -> None:
    images = [_textured((100, 130), seed=100 + i) for i in range(6)]  # not in the calibration set
    expected, got = fp32.encode(images), int8.encode(images, batch_size=4)
    assert got.shape == (6, 1280) and got.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    assert float(np.mean(np.sum(expected * got, axis=1))) > 0.9
    assert int8.quantized_now and int8.onnx_path is not None and "int8" in int8.onnx_path.name
    assert int8.settings()["precision"] == "int8" and fp32.settings()["precision"] == "fp32"
    assert int8.settings()["calibration"] == int8.calibration_digest and "calibration" not in fp32.settings()


def test_int8_file_is_reused_for_the_same_calibration(
    cache: Path, int8: EfficientNetLite0, calibration: list[Path]
) -> None:
    assert int8.onnx_path is not None and int8.onnx_path.parent == cache
    mtime = int8.onnx_path.stat().st_mtime_ns
    again = EfficientNetLite0(cache_dir=cache, precision="int8", calibration=calibration)
    # The key is the content, not the path: the same files given as bytes hit the same model.
    as_bytes = EfficientNetLite0(cache_dir=cache, precision="int8", calibration=[p.read_bytes() for p in calibration])
    for enc in (again, as_bytes):
        assert not enc.quantized_now and not enc.exported and enc.onnx_path == int8.onnx_path
        assert enc.fingerprint() == int8.fingerprint()
    assert int8.onnx_path.stat().st_mtime_ns == mtime
    assert not [p for p in cache.iterdir() if p.suffix != ".onnx"]  # no temporary files left
    cfg = Config.load(overrides={"paths.cache_dir": str(cache.parent)}, environ={})
    assert EfficientNetLite0.from_config(cfg).precision == "fp32"
    cfg = Config.load(overrides={"paths.cache_dir": str(cache.parent), "features.image.precision": "int8"}, environ={})
    from_cfg = EfficientNetLite0.from_config(cfg, calibration=calibration)
    assert not from_cfg.quantized_now and from_cfg.onnx_path == int8.onnx_path


def test_other_calibration_or_preprocessing_gets_its_own_model_and_fingerprint(
    cache: Path, fp32: EfficientNetLite0, int8: EfficientNetLite0, calibration: list[Path]
) -> None:
    other = EfficientNetLite0(cache_dir=cache, precision="int8", calibration=calibration[:4])
    assert other.quantized_now and other.onnx_path != int8.onnx_path
    assert other.onnx_path is not None and other.onnx_path.is_file() and int8.onnx_path is not None
    assert int8.onnx_path.is_file()
    assert len({other.fingerprint(), int8.fingerprint(), fp32.fingerprint()}) == 3
    # Same images, other preprocessing: another digest, so another file and fingerprint.
    resized = EfficientNetLite0(cache_dir=cache, resize=240)
    assert resized._calibration_digest(calibration) != int8.calibration_digest


def test_int8_argument_errors(cache: Path, fp32: EfficientNetLite0, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="precision must be 'fp32' or 'int8'"):
        EfficientNetLite0(cache_dir=cache, precision="int4")  # type: ignore[arg-type]
    for missing in (None, []):
        with pytest.raises(ValueError, match="needs calibration images"):
            EfficientNetLite0(cache_dir=cache, precision="int8", calibration=missing)
    with pytest.raises(ValueError, match="backend='onnx'"):
        EfficientNetLite0(backend="torch", precision="int8", calibration=[_textured()])
    good = _save(_textured(), tmp_path / "good.jpg")
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"GIF89a-but-not-really")
    # A calibration image that cannot be decoded raises even when encoding would mask it.
    with pytest.raises(ImageError, match="bad.jpg"):
        EfficientNetLite0(cache_dir=cache, precision="int8", calibration=[good, bad], on_error="mask")
    with pytest.raises(ImageError, match="missing.jpg: file not found"):
        EfficientNetLite0(cache_dir=cache, precision="int8", calibration=[tmp_path / "missing.jpg"])
    assert not [p for p in cache.iterdir() if p.suffix != ".onnx"]


def test_int8_agrees_with_fp32_on_real_photos(cache: Path, fp32: EfficientNetLite0) -> None:
    """On 1,000 H&M photos, calibrated on 128 others, the mean cosine to fp32 is 0.984 (min 0.909);
    8 calibration photos and 8 others must reach a mean of 0.95."""
    photos = _hm_photos(16, step=700)
    real = EfficientNetLite0(cache_dir=cache, batch_size=8, precision="int8", calibration=photos[::2])
    cosine = np.sum(fp32.encode(photos[1::2]) * real.encode(photos[1::2]), axis=1)
    assert float(cosine.mean()) > 0.95, cosine
