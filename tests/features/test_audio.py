"""Audio: decoding and conditioning, DSP against known values and Whisper's own front end, spectral
gating, bad input, the audio encoders, the Whisper weights folder, and speech-to-text on speech
synthesised by espeak-ng (Debian package `espeak-ng`; those tests skip without it)."""

from __future__ import annotations

import io
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from vitrina.config import Config
from vitrina.features import whisper_files
from vitrina.features.audio import AudioSettings
from vitrina.features.audio_dsp import (
    deltas,
    hz_to_mel,
    istft,
    log_mel_spectrogram,
    mel_filterbank,
    mel_to_hz,
    power_spectrogram,
    spectral_gate,
    stft,
)
from vitrina.features.audio_encoders import MelStatsEncoder, WhisperEncoder
from vitrina.features.audio_io import AudioError, load_audio, normalize_peak, normalize_rms, prepare_audio
from vitrina.features.encoder import ENCODERS, create_encoder
from vitrina.features.speech import PocketSphinxRecognizer, Transcript, WhisperRecognizer
from vitrina.features.whisper_files import ModelFilesError, whisper_model_dir

SR = 16000


def _sine(freq: float, seconds: float, sr: int = SR, amp: float = 0.5) -> np.ndarray:
    t = np.arange(round(seconds * sr)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _dominant_hz(x: np.ndarray, sr: int) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    return float(np.fft.rfftfreq(x.size, 1 / sr)[spectrum.argmax()])


# --- decoding and conditioning ----------------------------------------------------------------


def test_resampling_44k1_to_16k_keeps_the_tone(tmp_path: Path) -> None:
    path = tmp_path / "tone.wav"
    sf.write(path, _sine(1000.0, 1.0, sr=44100), 44100)
    x = load_audio(path)
    assert x.dtype == np.float32 and x.shape == (16000,)
    assert abs(_dominant_hz(x, SR) - 1000.0) <= 1.0
    assert np.max(np.abs(x[1000:-1000])) == pytest.approx(0.5, abs=0.01)  # passband gain ~1


def test_stereo_is_averaged_to_mono(tmp_path: Path) -> None:
    tone = _sine(440.0, 0.5)
    path = tmp_path / "stereo.wav"
    sf.write(path, np.stack([tone, 0.6 * tone], axis=1), SR, subtype="FLOAT")
    np.testing.assert_allclose(load_audio(path), 0.8 * tone, atol=1e-6)
    cancelled = prepare_audio(np.stack([tone, -tone], axis=1), SR)
    assert np.max(np.abs(cancelled)) == 0.0


def test_integer_pcm_arrays_and_normalisation() -> None:
    pcm = np.array([0, 16384, -32768, 8192], dtype=np.int16)
    np.testing.assert_allclose(prepare_audio(pcm, SR), [0.0, 0.5, -1.0, 0.25])
    np.testing.assert_allclose(prepare_audio(np.array([128, 255, 0], np.uint8), SR), [0.0, 127 / 128, -1.0])
    x = _sine(440.0, 0.5, amp=0.1)
    assert np.max(np.abs(normalize_peak(x))) == pytest.approx(0.95)
    rms = np.sqrt(np.mean(normalize_rms(x, -20.0) ** 2))
    assert 20 * np.log10(rms) == pytest.approx(-20.0, abs=0.01)
    assert not normalize_peak(np.zeros(10, np.float32)).any()  # silence stays silence


@pytest.mark.parametrize(("fmt", "subtype"), [("FLAC", None), ("OGG", "VORBIS"), ("MP3", "MPEG_LAYER_III")])
def test_compressed_formats_decode(tmp_path: Path, fmt: str, subtype: str | None) -> None:
    if fmt not in sf.available_formats():
        pytest.skip(f"this libsndfile ({sf.__libsndfile_version__}) cannot write {fmt}")
    path = tmp_path / f"tone.{fmt.lower()}"
    sf.write(path, _sine(440.0, 1.0, sr=22050), 22050, format=fmt, subtype=subtype)
    x = load_audio(path)
    assert abs(x.size - SR) <= 0.1 * SR  # mp3 adds encoder delay / padding
    assert abs(_dominant_hz(x, SR) - 440.0) <= 2.0


def _wav_bytes(x: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, x, SR, format="WAV")
    return buffer.getvalue()


def test_bad_input_raises_audio_error_naming_the_file(tmp_path: Path) -> None:
    cases: dict[str, bytes] = {
        "empty.wav": b"",
        "notes.mp3": b"Plain text, not an MP3 at all.\n" * 20,
        "random.wav": np.random.default_rng(0).bytes(4096),
        "header_only.wav": _wav_bytes(np.zeros(0, np.float32)),
        "truncated.wav": _wav_bytes(_sine(440.0, 0.5))[:30],
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
    sf.write(tmp_path / "long.flac", _sine(440.0, 3.0), SR)
    for name in [*cases, "long.flac", "missing.ogg"]:
        with pytest.raises(AudioError, match=re.escape(name)) as info:
            load_audio(tmp_path / name, max_seconds=2.0)
        assert isinstance(info.value, ValueError) and info.value.reason
    with pytest.raises(AudioError, match="longer than the 2 s limit"):
        load_audio(tmp_path / "long.flac", max_seconds=2.0)
    with pytest.raises(AudioError, match="empty"):
        load_audio(b"")
    with pytest.raises(AudioError, match="NaN"):
        prepare_audio(np.array([0.0, np.nan, 0.1]), SR)
    with pytest.raises(AudioError, match="zero length"):
        prepare_audio(np.zeros(0), SR)
    with pytest.raises(AudioError, match="shape"):
        prepare_audio(np.zeros((2, 3, 4)), SR)


# --- DSP ----------------------------------------------------------------------------------------


def test_mel_scale_known_values() -> None:
    # Slaney: 200/3 Hz per mel up to 1 kHz (= 15 mels), then 27 mels per factor 6.4 (6.4 kHz = 42).
    assert hz_to_mel(500.0) == pytest.approx(7.5)
    assert hz_to_mel(1000.0) == pytest.approx(15.0)
    assert hz_to_mel(6400.0) == pytest.approx(42.0)
    assert hz_to_mel(8000.0) == pytest.approx(45.245640471924965)  # the constant in Whisper's code
    assert hz_to_mel(1000.0, htk=True) == pytest.approx(999.9855, abs=1e-4)  # 2595 log10(1 + 1000/700)
    f = np.array([0.0, 100.0, 999.0, 1000.0, 4321.0, 8000.0])
    np.testing.assert_allclose(mel_to_hz(hz_to_mel(f)), f, atol=1e-9)
    np.testing.assert_allclose(mel_to_hz(hz_to_mel(f, htk=True), htk=True), f, atol=1e-9)


def test_filterbank_and_log_mel_match_whisper() -> None:
    """faster-whisper ships a numpy copy of librosa's Slaney filterbank and Whisper's log-mel."""
    fe_module = pytest.importorskip("faster_whisper.feature_extractor")
    ours = mel_filterbank(SR, 400, 80)
    np.testing.assert_allclose(ours, fe_module.FeatureExtractor.get_mel_filters(SR, 400, 80), atol=1e-7)
    assert ours.shape == (80, 201) and (ours.sum(axis=1) > 0).all()
    x = (np.random.default_rng(1).standard_normal(SR) * 0.1).astype(np.float32)
    theirs = fe_module.FeatureExtractor()(x, padding=160)
    log10 = log_mel_spectrogram(np.pad(x, (0, 160)), SR, 400, 160, 80, top_db=None)[:-1].T / 10.0
    log10 = np.maximum(log10, log10.max() - 8.0)
    np.testing.assert_allclose((log10 + 4.0) / 4.0, theirs, atol=1e-5)


def test_sine_peaks_in_the_expected_stft_bin_and_mel_band() -> None:
    x = _sine(440.0, 1.0)
    power = power_spectrogram(x, n_fft=512, hop=160)
    assert power.shape == (1 + SR // 160, 257)
    assert int(power.mean(axis=0).argmax()) == round(440 / (SR / 512))  # bin 14 (437.5 Hz)
    mel = log_mel_spectrogram(x, SR, n_fft=512, hop=160, n_mels=64)
    centres = mel_to_hz(np.linspace(0.0, hz_to_mel(SR / 2), 66))[1:-1]
    assert int(mel.mean(axis=0).argmax()) == int(np.abs(centres - 440.0).argmin())
    assert mel.max() - mel.min() <= 80.0 + 1e-3  # top_db floor


def test_stft_inverse_and_deltas() -> None:
    x = (np.random.default_rng(2).standard_normal(5000) * 0.3).astype(np.float32)
    for window in ("hann", "hamming"):
        np.testing.assert_allclose(istft(stft(x, 512, 128, window), 128, window, length=x.size), x, atol=1e-5)
    ramp = np.arange(10, dtype=np.float32)[:, None] * np.array([[1.0, -2.0]], np.float32)
    np.testing.assert_allclose(deltas(ramp)[2:-2], np.tile([1.0, -2.0], (6, 1)))  # slope per frame


def test_spectral_gating_improves_snr_and_keeps_the_tone() -> None:
    rng = np.random.default_rng(3)
    tone = _sine(440.0, 3.0)
    tone[:SR] = 0.0  # first second is noise only: the quietest frames
    noise = (rng.standard_normal(tone.size) * 0.1).astype(np.float32)
    noisy = tone + noise
    speech = slice(SR, None)

    def snr_db(out: np.ndarray) -> float:
        return float(10 * np.log10(np.sum(tone[speech] ** 2) / np.sum((out[speech] - tone[speech]) ** 2)))

    for denoised in (spectral_gate(noisy, SR), spectral_gate(noisy, SR, noise=noise[:SR])):
        assert denoised.shape == noisy.shape and denoised.dtype == np.float32
        assert snr_db(denoised) - snr_db(noisy) >= 6.0
        kept = np.sum(denoised[speech] * tone[speech]) / np.sum(tone[speech] ** 2)
        assert 10 * np.log10(kept) >= -1.0  # tone loses under 1 dB
        assert np.mean(denoised[:SR] ** 2) < 0.1 * np.mean(noisy[:SR] ** 2)  # noise alone: -10 dB or more


# --- encoders -----------------------------------------------------------------------------------


def test_mel_stats_encoder(tmp_path: Path) -> None:
    enc = create_encoder("mel-stats")
    assert isinstance(enc, MelStatsEncoder) and enc.modality == "audio" and enc.dim == 192
    sf.write(tmp_path / "a.wav", _sine(440.0, 1.0, sr=22050), 22050)
    rng = np.random.default_rng(4)
    clips = [
        tmp_path / "a.wav",
        _sine(440.0, 1.0, amp=0.05),  # same tone, quieter, already at 16 kHz
        _sine(3000.0, 1.0),
        (rng.standard_normal(SR) * 0.1).astype(np.float32),
        np.zeros(SR, np.float32),
    ]
    vectors = enc.encode(clips, batch_size=2)
    assert vectors.shape == (5, 192) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors[:4], axis=1), 1.0, atol=1e-5)
    assert not vectors[4].any()  # digital silence
    np.testing.assert_array_equal(vectors, enc.encode(clips))  # deterministic
    sims = vectors[:4] @ vectors[:4].T
    assert sims[0, 1] > 0.99  # resampled file vs array, loudness removed
    assert sims[0, 1] > sims[0, 2] and sims[0, 1] > sims[0, 3]
    with pytest.raises(AudioError, match=r"<input 0>"):
        enc.encode([np.full(100, np.inf)])
    with pytest.raises(TypeError, match="input 0"):
        enc.encode([42])


def test_audio_settings_from_config(tmp_path: Path) -> None:
    settings = AudioSettings.from_config(Config.load(overrides={"features.audio.n_mels": 40}))
    assert settings.mel_stats().dim == 120 and settings.n_fft == 512
    assert Path(settings.whisper_model_dir).parts[-2:] == ("models", "whisper-base")
    with pytest.raises(ValueError, match="n_fft"):
        AudioSettings(n_fft=511)


# --- Whisper weights and speech -----------------------------------------------------------------


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return whisper_model_dir(tmp_path_factory.mktemp("models") / "whisper-base")


@pytest.fixture(scope="module")
def whisper(model_dir: Path) -> WhisperRecognizer:
    return WhisperRecognizer(model_dir, beam_size=5, compute_type="int8")


def test_whisper_files_are_joined_once_and_verified(model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert sorted(p.name for p in model_dir.iterdir()) == sorted([*whisper_files.MODEL_FILES, whisper_files.MANIFEST])
    assert (model_dir / "model.bin").stat().st_size == 94371840 + 50845767
    before = (model_dir / "model.bin").stat().st_mtime_ns
    assert whisper_model_dir(model_dir) == model_dir
    assert (model_dir / "model.bin").stat().st_mtime_ns == before  # not rebuilt
    assert not [p for p in model_dir.parent.iterdir() if ".tmp-" in p.name]

    target = model_dir.parent / "mismatch"
    monkeypatch.setitem(whisper_files.MODEL_FILES, "config.json", (2309, "0" * 64))
    with pytest.raises(ModelFilesError, match="config.json"):
        whisper_model_dir(target)
    assert not target.exists() and not [p for p in model_dir.parent.iterdir() if ".tmp-" in p.name]


def _espeak(tmp_path: Path, text: str, voice: str, name: str) -> Path:
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not on PATH (Debian: apt-get install espeak-ng); speech tests need it")
    path = tmp_path / f"{name}.wav"
    subprocess.run(["espeak-ng", "-v", voice, "-s", "160", "-g", "8", "-w", str(path), text], check=True)
    return path


def word_error_rate(reference: str, hypothesis: str) -> float:
    """Word-level Levenshtein distance / reference words, lower-cased, punctuation stripped."""
    ref, hyp = (re.sub(r"[^\w\s]", " ", s.lower()).split() for s in (reference, hypothesis))
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (r != h))
    return row[-1] / max(1, len(ref))


def test_word_error_rate() -> None:
    assert word_error_rate("Red cotton summer dress", " red, cotton summer dress.") == 0.0
    assert word_error_rate("red cotton summer dress", "red cop in summer dress") == 0.5
    assert word_error_rate("black leather jacket", "jacket") == pytest.approx(2 / 3)


ENGLISH = {"red": "red cotton summer dress", "black": "black leather jacket"}


def test_whisper_transcribes_english_queries(whisper: WhisperRecognizer, tmp_path: Path) -> None:
    paths = {name: _espeak(tmp_path, text, "en-us", name) for name, text in ENGLISH.items()}
    auto = whisper.transcribe(paths["red"])  # language detected
    array, sr = sf.read(paths["black"], dtype="float32")
    forced = whisper.transcribe(prepare_audio(array, sr), language="en")  # array input
    print(f"\nwhisper-base: {auto.text!r} ({auto.language}), {forced.text!r}")
    assert isinstance(auto, Transcript) and auto.language == "en" and forced.language == "en"
    assert auto.seconds == pytest.approx(sf.info(paths["red"]).duration, abs=0.01)
    assert auto.segments and 0.0 <= auto.segments[0].start < auto.segments[-1].end <= auto.seconds + 0.5
    errors = [word_error_rate(ENGLISH["red"], auto.text), word_error_rate(ENGLISH["black"], forced.text)]
    assert max(errors) <= 0.34, errors


def test_whisper_on_mandarin(whisper: WhisperRecognizer, tmp_path: Path) -> None:
    """espeak-ng 1.51's `cmn` voice reads the tone digits of its pinyin in English ("hong two"), so the
    clip is made with `cmn-latn-pinyin`, which pronounces the same characters as Mandarin. Whisper-base
    then hears homophones; only the language and the script are asserted."""
    result = whisper.transcribe(_espeak(tmp_path, "红色连衣裙", "cmn-latn-pinyin", "zh"), language="zh")
    overlap = len(set(result.text) & set("红色连衣裙紅連裙"))
    print(f"\nwhisper-base zh: {result.text!r}, {overlap} of 5 characters right")
    assert result.language == "zh" and re.search(r"[\u4e00-\u9fff]", result.text)
    assert " " not in result.text


def test_whisper_encoder(whisper: WhisperRecognizer, tmp_path: Path) -> None:
    enc = WhisperEncoder(whisper)
    assert ENCODERS["whisper-encoder"] is WhisperEncoder and enc.modality == "audio"
    clips = [_sine(440.0, 1.0), (np.random.default_rng(5).standard_normal(2 * SR) * 0.1).astype(np.float32)]
    vectors = enc.encode(clips)
    assert vectors.shape == (2, 512) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(enc.encode(clips[:1]), vectors[:1], atol=1e-6)
    assert float(vectors[0] @ vectors[1]) < 0.99


def test_pocketsphinx_fallback(tmp_path: Path) -> None:
    pytest.importorskip("pocketsphinx", reason="optional dependency: pip install -e .[speech-lite]")
    path = _espeak(tmp_path, ENGLISH["black"], "en-us", "black")
    result = PocketSphinxRecognizer().transcribe(path)
    print(f"\npocketsphinx: {result.text!r}, WER {word_error_rate(ENGLISH['black'], result.text):.2f}")
    assert isinstance(result, Transcript) and result.language == "en"
    assert result.seconds == pytest.approx(sf.info(path).duration, abs=0.01)
    with pytest.raises(ValueError, match="English"):
        PocketSphinxRecognizer().transcribe(path, language="zh")
