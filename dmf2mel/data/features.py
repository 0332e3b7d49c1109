"""Speech features exactly as the SparrKULee / ICASSP-2024 auditory-EEG pipeline computes them.

* :func:`mel_spectrogram` — the regression target of DMF2Mel and of the ICASSP-2024 challenge
  (task 2): DC removal; ``librosa.feature.melspectrogram`` with a 25 ms Hann window, ``n_fft`` the
  next power of two, 10 bands between 0 and 5000 Hz, Slaney mel scale and area normalisation,
  ``center=False``, power 2 (no log, no compression); a hop of 1/128 s, then polyphase resampling
  to 64 Hz. Output is time-major ``(time, n_mels)`` like the ``*_-_mel.npy`` files.
* :func:`envelope` — the broadband envelope of the 2023 challenge: a gammatone filterbank of 28
  ERB-spaced bands (50–5000 Hz), the magnitude of each band raised to the power 0.6, summed over
  bands, then resampled to 64 Hz.
"""

from __future__ import annotations

import math
from fractions import Fraction

import librosa
import numpy as np
import scipy.signal

TARGET_SFREQ = 64
N_MELS = 10
FMIN = 0.0
FMAX = 5000.0
MEL_FRAME_RATE = 128  # librosa's hop is 1/128 s; the frames are then resampled to 64 Hz
WINDOW_SECONDS = 0.025


def _resample(x: np.ndarray, from_sfreq: float, to_sfreq: float, axis: int) -> np.ndarray:
    ratio = Fraction(to_sfreq / from_sfreq).limit_denominator(100_000)
    return scipy.signal.resample_poly(x, ratio.numerator, ratio.denominator, axis=axis)


def _check_audio(audio: np.ndarray, sfreq: float) -> np.ndarray:
    audio = np.asarray(audio, dtype=np.float64)
    if audio.ndim != 1:
        raise ValueError(f"audio must be one-dimensional (samples,), got shape {audio.shape}")
    if sfreq <= 2 * FMAX:
        raise ValueError(f"sfreq must exceed {2 * FMAX:g} Hz (the mel filters reach {FMAX:g} Hz), got {sfreq:g}")
    if not np.all(np.isfinite(audio)):
        raise ValueError("audio contains NaN or infinite values")
    return audio


def mel_spectrogram(
    audio: np.ndarray,
    sfreq: float,
    target_sfreq: float = TARGET_SFREQ,
    n_mels: int = N_MELS,
    fmin: float = FMIN,
    fmax: float = FMAX,
) -> np.ndarray:
    """The ICASSP-2024 mel spectrogram of ``audio``.

    Parameters
    ----------
    audio : (samples,) array
        Mono audio.
    sfreq : float
        Its sampling rate in Hz (e.g. 16000 or 48000).
    target_sfreq : float
        Output frame rate in Hz (64 in SparrKULee).
    n_mels, fmin, fmax
        Mel filterbank: 10 bands between 0 and 5000 Hz in the challenge.

    Returns
    -------
    mel : (time, n_mels) float32 array at ``target_sfreq``; linear power (no log).
    """
    audio = _check_audio(audio, sfreq)
    audio = audio - audio.mean()
    hop_length = int(sfreq / MEL_FRAME_RATE)
    win_length = int(WINDOW_SECONDS * sfreq)
    n_fft = 2 ** math.ceil(math.log2(win_length))
    if audio.size < n_fft:
        raise ValueError(f"audio is shorter than one analysis window ({n_fft} samples), got {audio.size}")
    mel = librosa.feature.melspectrogram(
        y=audio,
        sr=sfreq,
        n_fft=n_fft,
        hop_length=hop_length,
        win_length=win_length,
        window="hann",
        center=False,
        power=2.0,
        n_mels=n_mels,
        fmin=fmin,
        fmax=fmax,
        htk=False,
        norm="slaney",
    )  # (n_mels, frames) at sfreq / hop_length
    mel = _resample(mel, sfreq / hop_length, target_sfreq, axis=1)
    return np.ascontiguousarray(mel.T, dtype=np.float32)


def mel_band_edges(n_mels: int = N_MELS, fmin: float = FMIN, fmax: float = FMAX) -> np.ndarray:
    """Edges of the triangular mel filters in Hz, shape (n_mels + 2,).

    Band ``i`` rises from ``edges[i]``, peaks at ``edges[i + 1]`` and falls to ``edges[i + 2]``.
    """
    return librosa.mel_frequencies(n_mels=n_mels + 2, fmin=fmin, fmax=fmax, htk=False)


def erb_space(fmin: float, fmax: float, n_bands: int) -> np.ndarray:
    """``n_bands`` centre frequencies equally spaced on the ERB-number scale (Glasberg & Moore, 1990)."""
    erb_number = lambda f: 21.4 * np.log10(1 + 0.00437 * f)  # noqa: E731
    inverse = lambda e: (10 ** (e / 21.4) - 1) / 0.00437  # noqa: E731
    return inverse(np.linspace(erb_number(fmin), erb_number(fmax), n_bands))


def envelope(
    audio: np.ndarray,
    sfreq: float,
    target_sfreq: float = TARGET_SFREQ,
    n_bands: int = 28,
    fmin: float = 50.0,
    fmax: float = FMAX,
    power: float = 0.6,
) -> np.ndarray:
    """Gammatone power-law envelope of ``audio``, shape (time,), float32 at ``target_sfreq``."""
    audio = _check_audio(audio, sfreq)
    # Filter at a moderate rate: the bands stop at 5 kHz, and this keeps the filterbank cheap.
    work_sfreq = 4 * int(math.ceil(fmax / 1000)) * 1000 if sfreq > 4 * fmax else sfreq
    if work_sfreq != sfreq:
        audio = _resample(audio, sfreq, work_sfreq, axis=0)
    total = np.zeros_like(audio)
    for centre in erb_space(fmin, fmax, n_bands):
        b, a = scipy.signal.gammatone(centre, "iir", fs=work_sfreq)
        total += np.abs(scipy.signal.lfilter(b, a, audio)) ** power
    return np.ascontiguousarray(_resample(total, work_sfreq, target_sfreq, axis=0), dtype=np.float32)
