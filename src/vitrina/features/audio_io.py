"""Audio decoding and conditioning: any wav/flac/ogg/mp3 becomes mono float32 at one sample rate.

Everything downstream (mel features, Whisper, encoders) assumes 16 kHz mono in [-1, 1], so this is
the single place that decodes (libsndfile through `soundfile`; it reads MP3 from libsndfile 1.1),
down-mixes, resamples (polyphase, `scipy.signal.resample_poly`) and rejects bad input with an
`AudioError` that names the file and the reason.
"""

from __future__ import annotations

import io
import os
from fractions import Fraction
from pathlib import Path
from typing import Literal

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

__all__ = [
    "AudioError",
    "AudioSource",
    "load_audio",
    "normalize_peak",
    "normalize_rms",
    "prepare_audio",
    "resample",
    "to_mono",
]

AudioSource = str | os.PathLike[str] | bytes
Normalize = Literal["peak", "rms"] | None


class AudioError(ValueError):
    """Audio that cannot be used; the message names the file (or "<array>") and the reason."""

    def __init__(self, source: str, reason: str) -> None:
        super().__init__(f"{source}: {reason}")
        self.source = source
        self.reason = reason

    def __reduce__(self) -> tuple[type[AudioError], tuple[str, str]]:
        # Rebuilt from both fields when it crosses a process boundary (pooled encoders).
        return (type(self), (self.source, self.reason))


def _name(source: AudioSource) -> str:
    return f"<{len(source)} bytes>" if isinstance(source, bytes) else str(source)


def to_mono(x: np.ndarray) -> np.ndarray:
    """Average the channels of a [samples, channels] array; 1-D input is already mono."""
    x = np.asarray(x, dtype=np.float32)
    return x.mean(axis=1, dtype=np.float32) if x.ndim == 2 else x


def resample(x: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Polyphase resampling (anti-aliased FIR, Kaiser window) by the reduced ratio target/orig."""
    if orig_sr <= 0 or target_sr <= 0:
        raise ValueError(f"sample rates must be positive, got {orig_sr} -> {target_sr}")
    if orig_sr == target_sr:
        return np.asarray(x, dtype=np.float32)
    ratio = Fraction(target_sr, orig_sr)
    y = resample_poly(np.asarray(x, dtype=np.float64), ratio.numerator, ratio.denominator, axis=0)
    return y.astype(np.float32)


def normalize_peak(x: np.ndarray, peak: float = 0.95) -> np.ndarray:
    """Scale so the largest absolute sample is `peak`; silence stays silence."""
    top = float(np.max(np.abs(x))) if x.size else 0.0
    return (x * (peak / top)).astype(np.float32) if top > 0 else x.astype(np.float32)


def normalize_rms(x: np.ndarray, target_dbfs: float = -20.0) -> np.ndarray:
    """Scale to a target RMS level (dBFS), then clip to [-1, 1] so loud transients cannot overflow."""
    rms = float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if x.size else 0.0
    if rms == 0.0:
        return x.astype(np.float32)
    gain = 10.0 ** (target_dbfs / 20.0) / rms
    return np.clip(x * gain, -1.0, 1.0).astype(np.float32)


def prepare_audio(
    x: np.ndarray,
    sample_rate: int,
    target_sr: int = 16000,
    normalize: Normalize = None,
    max_seconds: float | None = None,
    name: str = "<array>",
) -> np.ndarray:
    """Condition an in-memory signal ([samples] or [samples, channels]) exactly like a decoded file."""
    x = np.asarray(x)
    if x.ndim not in (1, 2) or (x.ndim == 2 and x.shape[1] == 0):
        raise AudioError(name, f"expected [samples] or [samples, channels], got shape {x.shape}")
    if not np.issubdtype(x.dtype, np.number) or np.iscomplexobj(x):
        raise AudioError(name, f"expected real numeric samples, got dtype {x.dtype}")
    if x.shape[0] == 0:
        raise AudioError(name, "no audio samples (zero length)")
    if max_seconds is not None and x.shape[0] / sample_rate > max_seconds:
        raise AudioError(name, f"{x.shape[0] / sample_rate:.1f} s is longer than the {max_seconds:g} s limit")
    if np.issubdtype(x.dtype, np.integer):  # PCM integers -> [-1, 1); unsigned PCM is offset by half
        info = np.iinfo(x.dtype)
        offset = 0.0 if info.min < 0 else (float(info.max) + 1.0) / 2.0
        x = (x.astype(np.float64) - offset) / (float(info.max) + 1.0 - offset)
    y = resample(to_mono(x), sample_rate, target_sr)
    if not np.all(np.isfinite(y)):
        raise AudioError(name, "samples contain NaN or infinity")
    if normalize == "peak":
        return normalize_peak(y)
    if normalize == "rms":
        return normalize_rms(y)
    if normalize is not None:
        raise ValueError(f"normalize must be 'peak', 'rms' or None, got {normalize!r}")
    return y


def load_audio(
    source: AudioSource,
    target_sr: int = 16000,
    normalize: Normalize = None,
    max_seconds: float | None = 600.0,
) -> np.ndarray:
    """Decode a file path (or its bytes) to mono float32 at `target_sr`.

    The length limit is checked from the header before decoding, so a 3-hour upload costs nothing.
    """
    name = _name(source)
    if isinstance(source, bytes):
        if not source:
            raise AudioError(name, "empty input (0 bytes)")
        handle: io.BytesIO | str = io.BytesIO(source)
    else:
        path = Path(source)
        if not path.is_file():
            raise AudioError(name, "no such file")
        if path.stat().st_size == 0:
            raise AudioError(name, "empty file (0 bytes)")
        handle = str(path)
    try:
        with sf.SoundFile(handle) as f:
            sample_rate, frames = f.samplerate, f.frames
            if max_seconds is not None and frames / sample_rate > max_seconds:
                raise AudioError(name, f"{frames / sample_rate:.1f} s is longer than the {max_seconds:g} s limit")
            data = f.read(dtype="float32", always_2d=True)
    except AudioError:
        raise
    except sf.LibsndfileError as exc:
        detail = exc.error_string or str(exc)
        if "does not exist" in detail:  # libsndfile's words when no decoder accepts an existing file
            detail = "format not recognised"
        raise AudioError(name, f"not readable as audio ({detail})") from exc
    except (RuntimeError, EOFError, OSError) as exc:
        raise AudioError(name, f"corrupt or truncated audio ({exc})") from exc
    if data.shape[0] == 0:
        raise AudioError(name, "no audio samples (zero length)")
    return prepare_audio(data, sample_rate, target_sr, normalize, max_seconds, name)
