"""Safe image decoding: one place that turns untrusted catalogue files into upright RGB images.

Shop uploads are untrusted: a truncated JPEG, an HTML error page saved as `.jpg` or a decompression
bomb must become a precise `ImageError` naming the file, never a half-grey image or an out-of-memory
crash. The pixel limit is checked here, per call, from the image header before any pixel is
decoded, so Pillow's process-wide `Image.MAX_IMAGE_PIXELS` is never touched.
"""

from __future__ import annotations

import contextlib
import io
import os
import struct
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

__all__ = ["DEFAULT_MAX_PIXELS", "FORMATS", "ImageError", "ImageSource", "load_image", "to_rgb"]

# 50 megapixels: above any product photo (a 45 MP camera frame passes) and far below what would
# exhaust memory (an RGB image of this size is 150 MB once decoded).
DEFAULT_MAX_PIXELS = 50_000_000
# Formats a shop may upload; exotic Pillow plugins (EPS, which runs Ghostscript; fonts; ...) stay
# off the attack surface.
FORMATS: tuple[str, ...] = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")  # JPEG includes MPO (camera JPEGs)
# What Pillow raises on bad input: UnidentifiedImageError and truncation are OSError, broken PNG
# chunks are SyntaxError, short headers are EOFError/struct.error, impossible sizes ValueError.
_DECODE_ERRORS = (OSError, SyntaxError, EOFError, ValueError, struct.error)

ImageSource = str | os.PathLike[str] | bytes


class ImageError(ValueError):
    """An input that is not a usable image; `source` names the file, `reason` says what is wrong."""

    def __init__(self, source: str, reason: str) -> None:
        super().__init__(f"{source}: {reason}")
        self.source = source
        self.reason = reason

    def __reduce__(self) -> tuple[type[ImageError], tuple[str, str]]:
        # Rebuilt from both fields when it crosses a process boundary (pooled encoders).
        return (type(self), (self.source, self.reason))


def _read(source: ImageSource, name: str | None) -> tuple[bytes, str]:
    if isinstance(source, bytes | bytearray | memoryview):
        return bytes(source), name or "<bytes>"
    path = Path(source)
    label = name or str(path)
    try:
        return path.read_bytes(), label
    except FileNotFoundError:
        raise ImageError(label, "file not found") from None
    except IsADirectoryError:
        raise ImageError(label, "is a directory, not an image file") from None
    except OSError as exc:
        raise ImageError(label, f"cannot read file ({exc.strerror or exc})") from exc


def _scale_to_8bit(img: Image.Image) -> Image.Image:
    """16-bit / 32-bit / float grayscale to 8 bits by range, because Pillow's convert("L") clips at 255."""
    arr = np.asarray(img).astype(np.float64)
    top = float(arr.max(initial=0.0))
    if img.mode.startswith("I;16") or 255.0 < top <= 65535.0:
        arr = arr / 257.0
    elif top > 65535.0:
        low = float(arr.min(initial=0.0))
        arr = (arr - low) * (255.0 / max(top - low, 1e-12))
    return Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), mode="L")


def to_rgb(img: Image.Image, background: tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
    """Any Pillow mode as 8-bit RGB; transparency is composited on `background` (white: product
    photos are shot on white, and a black fill would read as a dark product to every model)."""
    if img.mode == "RGB":
        return img
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (*background, 255))
        return Image.alpha_composite(canvas, rgba).convert("RGB")
    if img.mode.startswith("I") or img.mode == "F":
        img = _scale_to_8bit(img)
    return img.convert("RGB")


def load_image(
    source: ImageSource,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    *,
    draft: int | None = None,
    name: str | None = None,
) -> Image.Image:
    """Decode a file path or raw bytes into an upright RGB image, or raise `ImageError`.

    `max_pixels` rejects decompression bombs from the header, before decoding. `draft` (JPEG only)
    lets libjpeg decode at 1/2, 1/4 or 1/8 scale while both sides stay >= draft pixels: a cheap
    speed-up for large photos that are resized to ~256 px anyway. `name` labels bytes in errors.
    """
    data, label = _read(source, name)
    if not data:
        raise ImageError(label, "empty file (0 bytes)")
    try:
        img = Image.open(io.BytesIO(data), formats=list(FORMATS))
        width, height = img.size
        if width <= 0 or height <= 0:
            raise ImageError(label, f"zero-size image ({width}x{height})")
        if width * height > max_pixels:
            raise ImageError(
                label,
                f"decompression bomb suspected: {width}x{height} = {width * height} pixels "
                f"exceeds max_pixels={max_pixels}",
            )
        if draft and img.format in ("JPEG", "MPO"):
            img.draft("RGB", (draft, draft))
        img.load()  # decode now, inside the try, so truncation surfaces here
        # A malformed EXIF block does not spoil the pixels: keep them as stored.
        with contextlib.suppress(*_DECODE_ERRORS):
            ImageOps.exif_transpose(img, in_place=True)  # no copy when already upright
        return to_rgb(img)
    except ImageError:
        raise
    except Image.UnidentifiedImageError:
        head = data[:16]
        raise ImageError(
            label, f"cannot identify image: not {'/'.join(FORMATS)}, or a corrupt header; starts {head!r}"
        ) from None
    except Image.DecompressionBombError as exc:
        raise ImageError(label, f"decompression bomb suspected: {exc}") from None
    except _DECODE_ERRORS as exc:
        reason = str(exc) or type(exc).__name__
        if "truncated" in reason.lower():
            reason = f"truncated or incomplete image data ({reason})"
        raise ImageError(label, f"corrupt image: {reason}") from exc
