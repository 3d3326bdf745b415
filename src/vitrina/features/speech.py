"""Speech-to-text for voice queries: Whisper-base through faster-whisper (CTranslate2, int8 on CPU),
with PocketSphinx as a light English-only fallback.

Both take a file path or a 16 kHz mono array and return the same `Transcript`, so search code does
not care which engine heard the query. Models load once per recogniser object; `transcribe` keeps
one default Whisper recogniser per process.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from vitrina.features.audio_io import load_audio, prepare_audio
from vitrina.features.whisper_files import whisper_model_dir

if TYPE_CHECKING:
    from faster_whisper import WhisperModel

__all__ = [
    "PocketSphinxRecognizer",
    "Segment",
    "Transcript",
    "WhisperRecognizer",
    "default_recognizer",
    "transcribe",
]

SAMPLE_RATE = 16000  # both engines' native rate
AudioInput = str | os.PathLike[str] | bytes | np.ndarray


@dataclasses.dataclass(frozen=True)
class Segment:
    """A stretch of speech with its start and end in seconds from the start of the audio."""

    start: float
    end: float
    text: str


@dataclasses.dataclass(frozen=True)
class Transcript:
    """What was said: `text`, its language code (e.g. "en", "zh"), the timed segments, and the
    length of the audio in `seconds`."""

    text: str
    language: str
    segments: tuple[Segment, ...]
    seconds: float


def _samples(audio: AudioInput, max_seconds: float | None) -> np.ndarray:
    """A path (or file bytes) is decoded and resampled; an array must be [samples] or [samples, channels]
    at 16 kHz already."""
    if isinstance(audio, np.ndarray):
        return prepare_audio(audio, SAMPLE_RATE, SAMPLE_RATE, max_seconds=max_seconds)
    return load_audio(audio, SAMPLE_RATE, max_seconds=max_seconds)


class WhisperRecognizer:
    """Whisper-base (multilingual: English, Chinese and 97 more) on CPU.

    `lead_in_s` of silence is put before the audio: Whisper was trained on 30 s windows where speech
    rarely starts at sample 0, and a query clipped right at the first word tends to lose it (on an
    abrupt espeak-ng clip, 0.5 s turned "and cotton ..." back into "red cotton ...").
    """

    def __init__(
        self,
        model_dir: str | os.PathLike[str] = ".cache/vitrina/models/whisper-base",
        beam_size: int = 5,
        compute_type: str = "int8",
        cpu_threads: int = 0,
        max_seconds: float | None = 600.0,
        lead_in_s: float = 0.5,
    ) -> None:
        if beam_size < 1:
            raise ValueError(f"beam_size must be at least 1, got {beam_size}")
        self.model_dir = Path(model_dir)
        self.beam_size = beam_size
        self.compute_type = compute_type
        self.cpu_threads = cpu_threads
        self.max_seconds = max_seconds
        self.lead_in_s = lead_in_s

    @functools.cached_property
    def model(self) -> WhisperModel:
        """Loaded on first use (assembling the weights folder the very first time)."""
        from faster_whisper import WhisperModel

        return WhisperModel(
            str(whisper_model_dir(self.model_dir)),
            device="cpu",
            compute_type=self.compute_type,
            cpu_threads=self.cpu_threads,
            local_files_only=True,
        )

    def transcribe(self, audio: AudioInput, language: str | None = None) -> Transcript:
        """Text of `audio`; `language` (ISO code such as "en" or "zh") skips detection, which is the
        weakest step on a two-second query."""
        x = _samples(audio, self.max_seconds)
        lead = round(self.lead_in_s * SAMPLE_RATE)
        padded = np.concatenate([np.zeros(lead, dtype=np.float32), x])
        segments, info = self.model.transcribe(
            padded, language=language, beam_size=self.beam_size, condition_on_previous_text=False
        )
        shift = lead / SAMPLE_RATE
        found = tuple(Segment(max(0.0, s.start - shift), max(0.0, s.end - shift), s.text.strip()) for s in segments)
        text = ("" if info.language in ("zh", "ja", "th") else " ").join(s.text for s in found if s.text)
        return Transcript(text, info.language, found, x.size / SAMPLE_RATE)


class PocketSphinxRecognizer:
    """CMU PocketSphinx with its bundled US-English model: tiny and fast, but far less accurate than
    Whisper (use it only where Whisper's 150 MB or its CPU time cannot be afforded)."""

    def __init__(self, max_seconds: float | None = 600.0) -> None:
        self.max_seconds = max_seconds

    @functools.cached_property
    def decoder(self) -> Any:
        from pocketsphinx import Decoder

        return Decoder(samprate=SAMPLE_RATE, loglevel="FATAL")

    def transcribe(self, audio: AudioInput, language: str | None = None) -> Transcript:
        if language not in (None, "en"):
            raise ValueError(f"PocketSphinx has only an English model, not '{language}'")
        x = _samples(audio, self.max_seconds)
        pcm = (np.clip(x, -1.0, 1.0) * 32767.0).astype(np.int16).tobytes()
        self.decoder.start_utt()
        self.decoder.process_raw(pcm, full_utt=True)
        self.decoder.end_utt()
        hyp = self.decoder.hyp()
        text = hyp.hypstr if hyp is not None else ""
        segment = (Segment(0.0, x.size / SAMPLE_RATE, text),) if text else ()
        return Transcript(text, "en", segment, x.size / SAMPLE_RATE)


@functools.cache
def default_recognizer() -> WhisperRecognizer:
    """The process-wide Whisper recogniser built from the loaded config, so the model loads once."""
    from vitrina.config import Config
    from vitrina.features.audio import AudioSettings  # audio builds on this module

    return AudioSettings.from_config(Config.load()).recognizer()


def transcribe(audio: AudioInput, language: str | None = None) -> Transcript:
    """Whisper transcript of a file or a 16 kHz array, with the configured settings (model loaded once)."""
    return default_recognizer().transcribe(audio, language)
