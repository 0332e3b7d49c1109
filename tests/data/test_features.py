"""The ICASSP-2024 mel recipe and the gammatone envelope on synthetic tones."""

import numpy as np
import pytest

from dmf2mel.data.features import envelope, mel_band_edges, mel_spectrogram

SFREQ = 16000


def tone(freq, seconds=4.0, sfreq=SFREQ):
    t = np.arange(int(seconds * sfreq)) / sfreq
    return np.sin(2 * np.pi * freq * t)


def test_band_edges_span_0_to_5000_hz():
    edges = mel_band_edges()
    assert edges.shape == (12,) and edges[0] == 0 and edges[-1] == pytest.approx(5000)
    assert np.all(np.diff(edges) > 0)


@pytest.mark.parametrize("band", range(10))
def test_a_tone_at_a_band_centre_lands_in_that_band(band):
    centre = mel_band_edges()[band + 1]
    mel = mel_spectrogram(tone(centre), SFREQ)
    assert mel.shape[1] == 10 and mel.dtype == np.float32
    assert mel.mean(axis=0).argmax() == band


def test_energy_above_fmax_is_ignored():
    assert mel_spectrogram(tone(7000), SFREQ).mean() < 1e-3 * mel_spectrogram(tone(1000), SFREQ).mean()


@pytest.mark.parametrize("sfreq, seconds", [(16000, 10.0), (48000, 3.0), (22050, 7.5)])
def test_frame_count_matches_duration_at_64_hz(sfreq, seconds):
    mel = mel_spectrogram(tone(500, seconds, sfreq), sfreq)
    assert abs(len(mel) - 64 * seconds) <= 2


def test_power_not_log_and_dc_removed():
    x = tone(1000)
    mel = mel_spectrogram(x, SFREQ)
    np.testing.assert_allclose(mel_spectrogram(2 * x, SFREQ), 4 * mel, rtol=1e-4, atol=1e-6)  # power 2, linear
    np.testing.assert_allclose(mel_spectrogram(x + 0.5, SFREQ), mel, rtol=1e-4, atol=1e-6)  # DC removal


def test_envelope_follows_amplitude_modulation():
    t = np.arange(4 * SFREQ) / SFREQ
    modulation = 1 + 0.9 * np.sin(2 * np.pi * 4 * t)
    env = envelope(modulation * np.sin(2 * np.pi * 1000 * t), SFREQ)
    assert abs(len(env) - 256) <= 1 and env.dtype == np.float32
    expected = (modulation**0.6)[:: SFREQ // 64][: len(env)]
    assert np.corrcoef(env[16:-16], expected[16:-16])[0, 1] > 0.9


def test_bad_audio_is_refused():
    with pytest.raises(ValueError, match="one-dimensional"):
        mel_spectrogram(np.zeros((2, 1000)), SFREQ)
    with pytest.raises(ValueError, match="sfreq must exceed"):
        mel_spectrogram(np.zeros(1000), 8000)
    with pytest.raises(ValueError, match="NaN"):
        mel_spectrogram(np.full(16000, np.nan), SFREQ)
