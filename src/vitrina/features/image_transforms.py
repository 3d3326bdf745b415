"""Image preprocessing as in the literature, on Pillow and numpy (no torchvision CPU build exists).

Evaluation: resize the shorter side to `resize`, centre-crop `crop`, optionally denoise, scale to
[0, 1] and normalise per channel into a float32 CHW array. Training: torchvision-style random
resized crop, horizontal flip, small rotation and colour jitter, all driven by one
`numpy.random.Generator` so an augmented epoch can be replayed exactly from its seed.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter

from vitrina.config import Config, ConfigError

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "Augment",
    "Preprocess",
    "center_crop",
    "color_jitter",
    "denoise",
    "normalize",
    "random_resized_crop",
    "resize_center_crop",
    "resize_shorter",
]

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
DENOISE_METHODS = ("none", "gaussian", "median")

# Bilinear with Pillow's antialiasing support matches torchvision's Resize(antialias=True) default.
_RESAMPLE = Image.Resampling.BILINEAR


def resize_shorter(img: Image.Image, size: int) -> Image.Image:
    """Scale so the shorter side is `size`, keeping the aspect ratio (torchvision `Resize(size)`)."""
    w, h = img.size
    if min(w, h) == size:
        return img
    new = (size, max(1, int(size * h / w))) if w <= h else (max(1, int(size * w / h)), size)
    return img.resize(new, _RESAMPLE)


def center_crop(img: Image.Image, size: int, fill: tuple[int, int, int] = (0, 0, 0)) -> Image.Image:
    """The central `size` x `size` window, rounded like torchvision; smaller images are padded."""
    w, h = img.size
    if w < size or h < size:
        padded = Image.new(img.mode, (max(w, size), max(h, size)), fill)
        padded.paste(img, ((padded.width - w) // 2, (padded.height - h) // 2))
        img, (w, h) = padded, padded.size
    left = int(round((w - size) / 2.0))
    top = int(round((h - size) / 2.0))
    return img.crop((left, top, left + size, top + size))


def resize_center_crop(img: Image.Image, resize: int, crop: int) -> Image.Image:
    """`center_crop(resize_shorter(img, resize), crop)` in one resampling pass over the kept window
    only: the same sampling grid and filter support, at ~40% less work on portrait product photos."""
    w, h = img.size
    new_w, new_h = (resize, max(1, int(resize * h / w))) if w <= h else (max(1, int(resize * w / h)), resize)
    if new_w < crop or new_h < crop or (new_w, new_h) == (w, h):
        return center_crop(resize_shorter(img, resize), crop)
    left, top = int(round((new_w - crop) / 2.0)), int(round((new_h - crop) / 2.0))
    sx, sy = w / new_w, h / new_h
    box = (left * sx, top * sy, (left + crop) * sx, (top + crop) * sy)
    return img.resize((crop, crop), _RESAMPLE, box=box)


def denoise(img: Image.Image, method: str = "none", strength: float = 1.0) -> Image.Image:
    """Suppress JPEG and sensor noise: Gaussian blur (`strength` = radius in pixels) or median
    filter (window = 2*round(strength)+1, which removes salt-and-pepper specks but keeps edges)."""
    if method == "none":
        return img
    if method == "gaussian":
        return img.filter(ImageFilter.GaussianBlur(radius=strength))
    if method == "median":
        return img.filter(ImageFilter.MedianFilter(size=2 * max(1, round(strength)) + 1))
    raise ValueError(f"denoise method must be one of {', '.join(DENOISE_METHODS)}, got '{method}'")


def normalize(
    img: Image.Image,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """RGB image to float32 CHW: (pixel/255 - mean) / std. Writes into `out` when given (batches)."""
    arr = np.asarray(img, dtype=np.float32)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"expected an RGB image, got mode {img.mode} with array shape {arr.shape}")
    scale = (1.0 / (255.0 * np.asarray(std, dtype=np.float32))).reshape(3, 1, 1)
    shift = (np.asarray(mean, dtype=np.float32) / np.asarray(std, dtype=np.float32)).reshape(3, 1, 1)
    if out is None:
        out = np.empty((3, arr.shape[0], arr.shape[1]), dtype=np.float32)
    np.multiply(arr.transpose(2, 0, 1), scale, out=out)
    out -= shift
    return out


def random_resized_crop(
    img: Image.Image,
    size: int,
    rng: np.random.Generator,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
) -> Image.Image:
    """torchvision's RandomResizedCrop: a window of random area share and aspect, resized to size."""
    w, h = img.size
    area = w * h
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(log_ratio[0], log_ratio[1]))
        cw = int(round(math.sqrt(target * aspect)))
        ch = int(round(math.sqrt(target / aspect)))
        if 0 < cw <= w and 0 < ch <= h:
            top = int(rng.integers(0, h - ch + 1))
            left = int(rng.integers(0, w - cw + 1))
            return img.resize((size, size), _RESAMPLE, box=(left, top, left + cw, top + ch))
    # Fallback (torchvision's): the largest central window whose aspect is inside `ratio`.
    in_ratio = w / h
    if in_ratio < ratio[0]:
        cw, ch = w, int(round(w / ratio[0]))
    elif in_ratio > ratio[1]:
        cw, ch = int(round(h * ratio[1])), h
    else:
        cw, ch = w, h
    top, left = (h - ch) // 2, (w - cw) // 2
    return img.resize((size, size), _RESAMPLE, box=(left, top, left + cw, top + ch))


def color_jitter(
    img: Image.Image,
    rng: np.random.Generator,
    brightness: float = 0.0,
    contrast: float = 0.0,
    saturation: float = 0.0,
) -> Image.Image:
    """torchvision's ColorJitter (without hue): factors drawn from [1-x, 1+x], applied in random order."""
    enhancers = [
        (ImageEnhance.Brightness, brightness),
        (ImageEnhance.Contrast, contrast),
        (ImageEnhance.Color, saturation),
    ]
    for i in rng.permutation(len(enhancers)):
        enhancer, amount = enhancers[i]
        if amount > 0:
            img = enhancer(img).enhance(float(rng.uniform(max(0.0, 1 - amount), 1 + amount)))
    return img


@dataclasses.dataclass(frozen=True)
class Augment:
    """Training-time augmentation; defaults follow torchvision's ImageNet recipe, with a small
    rotation whose corners are filled white like a product photo's background."""

    size: int = 224
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    hflip: float = 0.5
    degrees: float = 10.0
    brightness: float = 0.2
    contrast: float = 0.2
    saturation: float = 0.2
    fill: tuple[int, int, int] = (255, 255, 255)

    def __call__(self, img: Image.Image, rng: np.random.Generator) -> Image.Image:
        img = random_resized_crop(img, self.size, rng, self.scale, self.ratio)
        if rng.random() < self.hflip:
            img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        if self.degrees > 0:
            angle = float(rng.uniform(-self.degrees, self.degrees))
            img = img.rotate(angle, resample=Image.Resampling.BILINEAR, fillcolor=self.fill)
        return color_jitter(img, rng, self.brightness, self.contrast, self.saturation)


@dataclasses.dataclass(frozen=True)
class Preprocess:
    """The image half of `[features.image]`: geometry, denoising and normalisation in one object,
    so encoders, training and the data-quality report cannot drift apart."""

    resize: int = 256
    crop: int = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    denoise: str = "none"
    denoise_strength: float = 1.0

    def __post_init__(self) -> None:
        if self.crop < 1 or self.resize < self.crop:
            raise ValueError(f"need 1 <= crop <= resize, got crop={self.crop}, resize={self.resize}")
        if self.denoise not in DENOISE_METHODS:
            raise ValueError(f"denoise must be one of {', '.join(DENOISE_METHODS)}, got '{self.denoise}'")

    @classmethod
    def from_config(cls, cfg: Config, **overrides: object) -> Preprocess:
        """Geometry and denoising from `[features.image]`; `overrides` (e.g. a model's own mean/std) win."""
        section = dict(cfg.get("features.image", {}) or {})
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(overrides) - names)
        if unknown:
            raise ConfigError(f"unknown preprocessing setting(s) {', '.join(unknown)}")
        params = {k: v for k, v in section.items() if k in names} | overrides
        return cls(**params)  # type: ignore[arg-type]

    def geometry(self, img: Image.Image) -> Image.Image:
        """Deterministic evaluation view: denoise, resize shorter side, centre crop."""
        return resize_center_crop(denoise(img, self.denoise, self.denoise_strength), self.resize, self.crop)

    def __call__(self, img: Image.Image) -> np.ndarray:
        return normalize(self.geometry(img), self.mean, self.std)

    def batch(
        self,
        images: Sequence[Image.Image],
        augment: Augment | None = None,
        rng: np.random.Generator | None = None,
    ) -> np.ndarray:
        """Many images into one float32 NCHW array; with `augment` (and its `rng`) the training view."""
        size = augment.size if augment is not None else self.crop
        out = np.empty((len(images), 3, size, size), dtype=np.float32)
        for i, img in enumerate(images):
            if augment is None:
                view = self.geometry(img)
            else:
                if rng is None:
                    raise ValueError("augment needs a numpy Generator `rng` for reproducible draws")
                view = augment(denoise(img, self.denoise, self.denoise_strength), rng)
            normalize(view, self.mean, self.std, out=out[i])
        return out
