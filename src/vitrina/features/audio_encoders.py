"""Audio clip encoders: `mel-stats` (log-mel statistics, no model) and `whisper-encoder` (mean-pooled
Whisper-base encoder states).

Inputs are file paths, encoded bytes, or mono / [samples, channels] arrays already at the encoder's
`sample_rate`; every clip is decoded, down-mixed, resampled and peak-normalised by `audio_io` first,
and a bad clip raises its `AudioError`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
from tqdm.auto import tqdm

from vitrina.features.audio_dsp import deltas, log_mel_spectrogram
from vitrina.features.audio_io import AudioError, load_audio, prepare_audio
from vitrina.features.encoder import Encoder, l2_normalize, register_encoder
from vitrina.features.speech import WhisperRecognizer, default_recognizer

__all__ = ["MelStatsEncoder", "WhisperEncoder"]

AudioItem = str | os.PathLike[str] | bytes | np.ndarray
SAMPLE_RATE = 16000  # Whisper's rate


class _AudioEncoder(Encoder):
    """Shared decoding, the per-clip loop with a progress bar, and the failure policy of image
    encoders: `on_error="raise"` stops at the first bad clip, `"mask"` gives it a zero row and
    records why in `last_errors` (input index -> reason) for the last `encode` call."""

    modality: ClassVar[str] = "audio"

    def __init__(self, sample_rate: int, max_seconds: float | None, on_error: str = "raise") -> None:
        if on_error not in ("raise", "mask"):
            raise ValueError(f"on_error must be 'raise' or 'mask', got '{on_error}'")
        self.sample_rate = sample_rate
        self.max_seconds = max_seconds
        self.on_error = on_error
        self.last_errors: dict[int, str] = {}

    def _samples(self, item: AudioItem, index: int) -> np.ndarray:
        sr = self.sample_rate
        if isinstance(item, np.ndarray):
            return prepare_audio(item, sr, sr, "peak", self.max_seconds, f"<input {index}>")
        if isinstance(item, str | os.PathLike | bytes):
            return load_audio(item, sr, "peak", self.max_seconds)
        raise TypeError(f"input {index}: expected a file path, bytes or a sample array, got {type(item).__name__}")

    def _clip_vector(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def encode(self, inputs: Sequence[AudioItem], batch_size: int = 64, progress: bool = False) -> np.ndarray:
        """Clips -> L2-normalised float32 [n, dim]; clips are independent, so `batch_size` only paces the bar."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        out = np.zeros((len(inputs), self.dim), dtype=np.float32)
        self.last_errors = {}
        for i in tqdm(range(len(inputs)), desc=f"encode {self.name}", unit="clip", disable=not progress):
            try:
                samples = self._samples(inputs[i], i)
            except AudioError as exc:
                if self.on_error == "raise":
                    raise
                self.last_errors[i] = str(exc)
                continue
            out[i] = self._clip_vector(samples)
        return l2_normalize(out)


@register_encoder
class MelStatsEncoder(_AudioEncoder):
    """Per mel band: mean level, standard deviation, and standard deviation of the deltas (how fast
    the band changes) over the clip, 3 * n_mels values.

    The band means are taken relative to their average, so loudness does not move the vector; each
    of the three blocks is scaled to unit length before the final L2 norm so the level block (dB
    values of tens) does not drown the variation blocks. Mean deltas are left out: over a clip they
    are ~0. Digital silence gives the zero vector.
    """

    name: ClassVar[str] = "mel-stats"
    version: ClassVar[str] = "1"

    def __init__(
        self,
        sample_rate: int = 16000,
        n_fft: int = 512,
        hop: int = 160,
        n_mels: int = 64,
        window: str = "hann",
        max_seconds: float | None = 600.0,
        on_error: str = "raise",
    ) -> None:
        super().__init__(sample_rate, max_seconds, on_error)
        self.n_fft, self.hop, self.n_mels, self.window = n_fft, hop, n_mels, window
        self.dim = 3 * n_mels

    def settings(self) -> dict[str, Any]:
        return {
            "sample_rate": self.sample_rate,
            "n_fft": self.n_fft,
            "hop": self.hop,
            "n_mels": self.n_mels,
            "window": self.window,
        }

    def _clip_vector(self, x: np.ndarray) -> np.ndarray:
        mel = log_mel_spectrogram(x, self.sample_rate, self.n_fft, self.hop, self.n_mels, self.window)
        level = mel.mean(axis=0)
        blocks = l2_normalize(np.stack([level - level.mean(), mel.std(axis=0), deltas(mel).std(axis=0)]))
        return blocks.reshape(-1)


@register_encoder
class WhisperEncoder(_AudioEncoder):
    """Whisper-base encoder states (512-d, 50 per second) averaged over the frames that hold audio.

    Whisper's encoder always sees 30 s windows; a shorter clip is padded, and only the frames that
    cover the clip are pooled so the padding does not make every short clip look alike. Longer clips
    are cut into 30 s windows whose valid frames are pooled together.
    """

    name: ClassVar[str] = "whisper-encoder"
    version: ClassVar[str] = "1"
    dim: int = 512
    _window_samples: ClassVar[int] = 30 * SAMPLE_RATE
    _samples_per_state: ClassVar[int] = 320  # 10 ms mel hop x stride-2 convolution

    def __init__(
        self, recognizer: WhisperRecognizer | None = None, max_seconds: float | None = 600.0, on_error: str = "raise"
    ) -> None:
        """Without a `recognizer`, shares the configured process-wide one (and its loaded model)."""
        super().__init__(SAMPLE_RATE, max_seconds, on_error)
        self.recognizer = recognizer or default_recognizer()

    def settings(self) -> dict[str, Any]:
        # The weights are fixed by whisper_files' hash checks; int8 vs float32 compute moves the states.
        return {"compute_type": self.recognizer.compute_type}

    def _clip_vector(self, x: np.ndarray) -> np.ndarray:
        from faster_whisper.audio import pad_or_trim

        model = self.recognizer.model
        n_windows = max(1, math.ceil(x.size / self._window_samples))
        windows = [x[k * self._window_samples : (k + 1) * self._window_samples] for k in range(n_windows)]
        features = np.stack([pad_or_trim(model.feature_extractor(w)) for w in windows])
        states = np.asarray(model.encode(features), dtype=np.float32)  # [windows, 1500, 512]
        valid = [max(1, math.ceil(w.size / self._samples_per_state)) for w in windows]
        return np.concatenate([s[:n] for s, n in zip(states, valid, strict=True)]).mean(axis=0)
