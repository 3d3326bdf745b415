"""Signal processing on decoded audio in plain numpy/scipy: STFT and its inverse, a mel filterbank,
log-mel spectrograms, deltas and noise reduction by spectral gating.

The mel scale is Slaney's (Auditory Toolbox; librosa's default, and what Whisper was trained on):
linear below 1 kHz (200/3 Hz per mel), logarithmic above (27 mels per factor 6.4), filters scaled
to equal area. `htk=True` switches to the HTK formula mel = 2595 log10(1 + f / 700).
"""

from __future__ import annotations

import numpy as np
from scipy.signal import fftconvolve, get_window

__all__ = [
    "deltas",
    "hz_to_mel",
    "istft",
    "log_mel_spectrogram",
    "mel_filterbank",
    "mel_to_hz",
    "power_spectrogram",
    "spectral_gate",
    "stft",
]

_F_SP = 200.0 / 3.0  # Slaney: Hz per mel in the linear part
_MIN_LOG_HZ = 1000.0
_MIN_LOG_MEL = _MIN_LOG_HZ / _F_SP  # 15 mels
_LOGSTEP = np.log(6.4) / 27.0


def hz_to_mel(hz: np.ndarray | float, htk: bool = False) -> np.ndarray:
    """Frequency (Hz) to mels: Slaney (default) or HTK."""
    f = np.asarray(hz, dtype=np.float64)
    if htk:
        return 2595.0 * np.log10(1.0 + f / 700.0)
    return np.where(
        f >= _MIN_LOG_HZ,
        _MIN_LOG_MEL + np.log(np.maximum(f, 1e-12) / _MIN_LOG_HZ) / _LOGSTEP,
        f / _F_SP,
    )


def mel_to_hz(mel: np.ndarray | float, htk: bool = False) -> np.ndarray:
    """Inverse of `hz_to_mel`."""
    m = np.asarray(mel, dtype=np.float64)
    if htk:
        return 700.0 * (10.0 ** (m / 2595.0) - 1.0)
    return np.where(m >= _MIN_LOG_MEL, _MIN_LOG_HZ * np.exp(_LOGSTEP * (m - _MIN_LOG_MEL)), m * _F_SP)


def mel_filterbank(
    sample_rate: int,
    n_fft: int,
    n_mels: int,
    fmin: float = 0.0,
    fmax: float | None = None,
    htk: bool = False,
) -> np.ndarray:
    """Triangular filters [n_mels, n_fft // 2 + 1] evenly spaced in mels, each of unit area in Hz
    ("slaney" norm), so a band's energy does not grow with its width."""
    fmax = sample_rate / 2.0 if fmax is None else fmax
    if not 0.0 <= fmin < fmax <= sample_rate / 2.0:
        raise ValueError(f"need 0 <= fmin < fmax <= {sample_rate / 2:g} Hz, got fmin={fmin}, fmax={fmax}")
    bin_hz = np.fft.rfftfreq(n_fft, d=1.0 / sample_rate)
    edges = mel_to_hz(np.linspace(hz_to_mel(fmin, htk), hz_to_mel(fmax, htk), n_mels + 2), htk)
    widths = np.diff(edges)
    ramps = edges[:, None] - bin_hz[None, :]
    rising = -ramps[:-2] / widths[:-1, None]
    falling = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(rising, falling))
    weights *= (2.0 / (edges[2:] - edges[:-2]))[:, None]
    return weights.astype(np.float32)


def _window(window: str, n_fft: int) -> np.ndarray:
    return get_window(window, n_fft, fftbins=True).astype(np.float64)  # periodic, as for spectra


def stft(x: np.ndarray, n_fft: int = 512, hop: int = 160, window: str = "hann", center: bool = True) -> np.ndarray:
    """Complex spectrum [frames, n_fft // 2 + 1]; `center` pads n_fft/2 on both sides (reflecting the
    signal when it is long enough) so frame t is centred on sample t * hop."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"stft expects a mono 1-D signal, got shape {x.shape}")
    if hop <= 0 or n_fft <= 0:
        raise ValueError(f"n_fft and hop must be positive, got n_fft={n_fft}, hop={hop}")
    if center:
        pad = n_fft // 2
        x = np.pad(x, pad, mode="reflect" if x.size > pad else "constant")
    if x.size < n_fft:
        x = np.pad(x, (0, n_fft - x.size))
    frames = np.lib.stride_tricks.sliding_window_view(x, n_fft)[::hop]
    return np.fft.rfft(frames * _window(window, n_fft), axis=1).astype(np.complex64)


def istft(
    spec: np.ndarray, hop: int = 160, window: str = "hann", length: int | None = None, center: bool = True
) -> np.ndarray:
    """Inverse of `stft` by weighted overlap-add (divides by the summed squared window), so an
    unmodified spectrum gives the signal back to float precision."""
    n_fft = 2 * (spec.shape[1] - 1)
    win = _window(window, n_fft)
    frames = np.fft.irfft(spec, n=n_fft, axis=1) * win
    total = n_fft + hop * (len(frames) - 1)
    out = np.zeros(total)
    norm = np.zeros(total)
    for i, frame in enumerate(frames):
        out[i * hop : i * hop + n_fft] += frame
        norm[i * hop : i * hop + n_fft] += win**2
    out /= np.where(norm > 1e-10, norm, 1.0)
    if center:
        out = out[n_fft // 2 :]
    if length is not None:
        out = np.pad(out, (0, max(0, length - out.size)))[:length]
    return out.astype(np.float32)


def power_spectrogram(x: np.ndarray, n_fft: int = 512, hop: int = 160, window: str = "hann") -> np.ndarray:
    """|STFT|^2 [frames, n_fft // 2 + 1]."""
    return np.square(np.abs(stft(x, n_fft, hop, window)), dtype=np.float32)


def log_mel_spectrogram(
    x: np.ndarray,
    sample_rate: int = 16000,
    n_fft: int = 512,
    hop: int = 160,
    n_mels: int = 64,
    window: str = "hann",
    fmin: float = 0.0,
    fmax: float | None = None,
    top_db: float | None = 80.0,
    htk: bool = False,
) -> np.ndarray:
    """Mel band power in dB [frames, n_mels]; values more than `top_db` below the clip's loudest are
    raised to that floor so digital silence does not dominate statistics with -100 dB values."""
    mel = power_spectrogram(x, n_fft, hop, window) @ mel_filterbank(sample_rate, n_fft, n_mels, fmin, fmax, htk).T
    db = 10.0 * np.log10(np.maximum(mel, 1e-10))
    if top_db is not None:
        db = np.maximum(db, db.max() - top_db)
    return db.astype(np.float32)


def deltas(features: np.ndarray, width: int = 2) -> np.ndarray:
    """HTK regression deltas along time (axis 0): sum_n n (c[t+n] - c[t-n]) / (2 sum_n n^2), edges
    repeated, so a feature's rate of change is measured over 2 * width + 1 frames."""
    if width < 1:
        raise ValueError(f"delta width must be at least 1, got {width}")
    c = np.pad(np.asarray(features, dtype=np.float32), [(width, width)] + [(0, 0)] * (features.ndim - 1), mode="edge")
    t = features.shape[0]
    num = sum(n * (c[width + n : width + n + t] - c[width - n : width - n + t]) for n in range(1, width + 1))
    return (num / (2.0 * sum(n * n for n in range(1, width + 1)))).astype(np.float32)


def _triangle(half: int) -> np.ndarray:
    up = np.arange(1, half + 2, dtype=np.float64)
    return np.concatenate([up, up[-2::-1]])


def spectral_gate(
    x: np.ndarray,
    sample_rate: int = 16000,
    noise: np.ndarray | None = None,
    n_fft: int = 512,
    hop: int = 128,
    window: str = "hann",
    n_std: float = 1.5,
    quiet_fraction: float = 0.1,
    softness_db: float = 1.0,
    freq_smooth_hz: float = 80.0,
    time_smooth_ms: float = 30.0,
    reduction: float = 1.0,
) -> np.ndarray:
    """Stationary noise reduction: attenuate every time-frequency cell that is not clearly above the
    noise floor of its frequency.

    The floor is the per-frequency mean + `n_std` standard deviations (in dB) of the `noise` clip, or,
    without one, of the `quiet_fraction` least energetic frames of `x` itself (pauses between words).
    The mask is soft (a logistic of the margin over the floor, `softness_db` wide) and smoothed by a
    triangular window `freq_smooth_hz` by `time_smooth_ms` wide, which removes the "musical noise"
    of isolated surviving cells; wider smoothing starts to eat into narrow tones (at 16 kHz / 512,
    100 Hz already costs a 440 Hz tone over 1 dB). `reduction` in [0, 1] is how much of a gated
    cell is removed.
    """
    x = np.asarray(x, dtype=np.float32)
    if not 0.0 < quiet_fraction <= 1.0 or not 0.0 <= reduction <= 1.0:
        raise ValueError("quiet_fraction must be in (0, 1] and reduction in [0, 1]")
    spec = stft(x, n_fft, hop, window)
    db = 20.0 * np.log10(np.abs(spec) + 1e-10)
    if noise is not None:
        noise_db = 20.0 * np.log10(np.abs(stft(np.asarray(noise, dtype=np.float32), n_fft, hop, window)) + 1e-10)
    else:
        energy = np.mean(np.square(np.abs(spec)), axis=1)
        k = max(1, min(len(energy), round(quiet_fraction * len(energy))))
        noise_db = db[np.argsort(energy, kind="stable")[:k]]
    floor = noise_db.mean(axis=0) + n_std * noise_db.std(axis=0)
    keep = 1.0 / (1.0 + np.exp(-np.clip((db - floor) / softness_db, -50.0, 50.0)))
    kernel = np.outer(
        _triangle(max(0, round(time_smooth_ms / 1000.0 * sample_rate / hop / 2))),
        _triangle(max(0, round(freq_smooth_hz / (sample_rate / n_fft) / 2))),
    )
    keep = np.clip(fftconvolve(keep, kernel / kernel.sum(), mode="same"), 0.0, 1.0)
    gain = 1.0 - reduction * (1.0 - keep)
    return istft(spec * gain, hop, window, length=x.size)
