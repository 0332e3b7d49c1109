"""Listening to a mel spectrogram: a 10-band noise vocoder (Shannon et al., 1995).

Ten mel bands at 64 Hz keep the slow envelope of each frequency region and nothing of the fine
structure (pitch, formant detail), so the natural way to hear one is a noise vocoder: each band's
envelope modulates noise filtered with that band's own triangular mel filter. A true and a
predicted mel vocoded the same way can be compared by ear.
"""

from __future__ import annotations

import numpy as np

from dmf2mel.data.features import FMAX, FMIN, TARGET_SFREQ, mel_band_edges
from dmf2mel.errors import UserError
from dmf2mel.viz.mel import check_mel

AUDIO_SFREQ = 16_000
PEAK = 0.99  # output peak, just below full scale


def band_carriers(n_mels: int, n_samples: int, sfreq_audio: float, fmin: float, fmax: float, seed: int) -> np.ndarray:
    """Unit-RMS noise carriers shaped by the triangular mel filters, shape (n_mels, n_samples).

    Band ``i`` rises from ``edges[i]``, peaks at ``edges[i + 1]`` and falls to ``edges[i + 2]``
    (:func:`dmf2mel.data.features.mel_band_edges`), as in the filterbank that computed the mel.
    """
    rng = np.random.default_rng(seed)
    spectrum = np.fft.rfft(rng.standard_normal(n_samples))
    freqs = np.fft.rfftfreq(n_samples, d=1.0 / sfreq_audio)
    edges = mel_band_edges(n_mels, fmin, fmax)
    carriers = np.empty((n_mels, n_samples))
    for band in range(n_mels):
        gain = np.interp(freqs, edges[band : band + 3], [0.0, 1.0, 0.0], left=0.0, right=0.0)
        carrier = np.fft.irfft(spectrum * gain, n=n_samples)
        carriers[band] = carrier / max(np.sqrt(np.mean(carrier**2)), np.finfo(float).tiny)
    return carriers


def vocode(
    mel: np.ndarray,
    sfreq_audio: float = AUDIO_SFREQ,
    mel_sfreq: float = TARGET_SFREQ,
    fmin: float = FMIN,
    fmax: float = FMAX,
    seed: int = 0,
) -> np.ndarray:
    """Noise-vocoded audio from the band envelopes of a mel spectrogram.

    Parameters
    ----------
    mel : (time, n_mels) array
        Band *power* (linear, as the ``*_-_mel.npy`` files store it). Negative values are treated as
        zero. A z-scored prediction must first be mapped back to power, e.g. with the recording's
        training mean and standard deviation (``z * std + mean``).
    sfreq_audio : float
        Output sampling rate in Hz; must exceed ``2 * fmax``.
    mel_sfreq : float
        Frame rate of ``mel`` in Hz.
    fmin, fmax : float
        The mel filterbank's range (0–5000 Hz for the challenge's mel).
    seed : int
        Seed of the noise carriers: the same seed gives the same audio, and vocoding a true and a
        predicted mel with one seed makes them differ only in their envelopes.

    Returns
    -------
    audio : (round(time * sfreq_audio / mel_sfreq),) float32 array
        Peak-normalised to 0.99 (all zeros for a silent mel); play with ``IPython.display.Audio``.
    """
    mel = check_mel(mel)
    if sfreq_audio <= 2 * fmax:
        raise UserError(
            f"sfreq_audio must exceed {2 * fmax:g} Hz (the top band reaches {fmax:g} Hz), got {sfreq_audio:g}"
        )
    if mel_sfreq <= 0:
        raise UserError(f"mel_sfreq must be positive, got {mel_sfreq:g}")
    n_frames, n_mels = mel.shape
    n_samples = int(round(n_frames * sfreq_audio / mel_sfreq))
    # Amplitude is the square root of power; linear interpolation between frames keeps it non-negative.
    amplitude = np.sqrt(np.clip(mel, 0.0, None))
    frame_times = (np.arange(n_frames) + 0.5) / mel_sfreq
    sample_times = (np.arange(n_samples) + 0.5) / sfreq_audio
    carriers = band_carriers(n_mels, n_samples, sfreq_audio, fmin, fmax, seed)
    audio = np.zeros(n_samples)
    for band in range(n_mels):
        audio += np.interp(sample_times, frame_times, amplitude[:, band]) * carriers[band]
    peak = np.max(np.abs(audio))
    if peak > 0:
        audio *= PEAK / peak
    return audio.astype(np.float32)
