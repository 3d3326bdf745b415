"""Audio preprocessing entry point: the `[features.audio]` settings and the objects built from them.

`AudioSettings` is the one place that reads the config, so decoding, mel features, the `mel-stats`
encoder and speech recognition all agree on sample rate, frame sizes and limits.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from vitrina.config import Config, ConfigError
from vitrina.features.audio_dsp import log_mel_spectrogram, spectral_gate, stft
from vitrina.features.audio_encoders import MelStatsEncoder, WhisperEncoder
from vitrina.features.audio_io import AudioError, AudioSource, load_audio, prepare_audio
from vitrina.features.speech import PocketSphinxRecognizer, Segment, Transcript, WhisperRecognizer, transcribe

__all__ = [
    "AudioError",
    "AudioSettings",
    "MelStatsEncoder",
    "PocketSphinxRecognizer",
    "Segment",
    "Transcript",
    "WhisperEncoder",
    "WhisperRecognizer",
    "load_audio",
    "log_mel_spectrogram",
    "prepare_audio",
    "spectral_gate",
    "stft",
    "transcribe",
]


@dataclasses.dataclass(frozen=True)
class AudioSettings:
    """Defaults mirror `[features.audio]` in defaults.toml."""

    sample_rate: int = 16000
    max_seconds: float = 600.0
    n_fft: int = 512
    hop: int = 160
    window: str = "hann"
    n_mels: int = 64
    whisper_model_dir: str = ".cache/vitrina/models/whisper-base"
    beam_size: int = 5
    compute_type: str = "int8"
    cpu_threads: int = 0

    def __post_init__(self) -> None:
        if self.sample_rate < 8000 or self.max_seconds <= 0 or self.hop < 1 or self.n_mels < 1:
            raise ConfigError(f"features.audio: invalid sample_rate, max_seconds, hop or n_mels in {self}")
        if self.n_fft < 16 or self.n_fft % 2:
            raise ConfigError(f"features.audio.n_fft must be even and at least 16, got {self.n_fft}")

    @classmethod
    def from_config(cls, cfg: Config) -> AudioSettings:
        """The `[features.audio]` section; an empty `whisper_model_dir` is `<paths.cache_dir>/models/whisper-base`."""
        section = cfg.section("features.audio", {f.name for f in dataclasses.fields(cls)})
        if not section.get("whisper_model_dir"):
            section["whisper_model_dir"] = str(Path(cfg.get("paths.cache_dir")) / "models" / "whisper-base")
        return cls(**section)

    def load(self, source: AudioSource) -> np.ndarray:
        """A file (or its bytes) as mono float32 at `sample_rate`, peak-normalised."""
        return load_audio(source, self.sample_rate, "peak", self.max_seconds)

    def mel_stats(self) -> MelStatsEncoder:
        return MelStatsEncoder(self.sample_rate, self.n_fft, self.hop, self.n_mels, self.window, self.max_seconds)

    def recognizer(self) -> WhisperRecognizer:
        return WhisperRecognizer(
            Path(self.whisper_model_dir).expanduser(),
            self.beam_size,
            self.compute_type,
            self.cpu_threads,
            self.max_seconds,
        )
