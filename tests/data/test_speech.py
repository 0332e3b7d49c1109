"""Synthetic speech has the properties the simulation relies on; user audio folders load or fail clearly."""

import numpy as np
import pytest
import soundfile

from dmf2mel.data.features import envelope, mel_spectrogram
from dmf2mel.data.speech import SPEECH_SFREQ, load_stimuli, stimulus_name, synthesize_speech
from dmf2mel.errors import UserError

DURATION_S = 30.0


@pytest.fixture(scope="module")
def audio():
    return synthesize_speech(np.random.default_rng(0), DURATION_S)


def test_length_dtype_and_level(audio):
    assert audio.shape == (int(DURATION_S * SPEECH_SFREQ),)
    assert audio.dtype == np.float32
    assert np.all(np.isfinite(audio)) and np.abs(audio).max() <= 1.0
    assert 0.01 < np.sqrt(np.mean(audio**2)) < 0.1


def test_same_generator_state_same_samples(audio):
    np.testing.assert_array_equal(audio, synthesize_speech(np.random.default_rng(0), DURATION_S))
    assert not np.array_equal(audio, synthesize_speech(np.random.default_rng(1), DURATION_S))


def test_envelope_modulated_at_syllable_rate(audio):
    """The envelope's modulation spectrum (1-12 Hz) peaks in the 3-7 Hz syllable band."""
    env = envelope(audio, SPEECH_SFREQ).astype(np.float64)
    power = np.abs(np.fft.rfft(env - env.mean())) ** 2
    freqs = np.fft.rfftfreq(env.size, 1 / 64)
    band = (freqs > 1) & (freqs < 12)
    smoothed = np.convolve(power[band], np.ones(15) / 15, mode="same")
    assert 3.0 < freqs[band][np.argmax(smoothed)] < 7.0


def test_pauses_between_phrases(audio):
    """Some 100 ms frames are silent (pauses), most are not."""
    frames = audio[: audio.size // 1600 * 1600].reshape(-1, 1600)
    silent = np.sqrt(np.mean(frames**2, axis=1)) < 1e-4
    assert 0.05 < silent.mean() < 0.5


def test_voiced_nuclei_have_pitch_and_formants(audio):
    """Energy sits in the low (formant) mel bands, but the fricatives reach the top band."""
    mel = mel_spectrogram(audio, SPEECH_SFREQ)
    share = mel.sum(axis=0) / mel.sum()
    assert share[:4].sum() > 0.6
    assert (mel[:, -1] > 0.1 * mel[:, -1].max()).any()  # fricative bursts
    # A voiced frame has a harmonic spectrum: its autocorrelation peaks at a pitch period (2.5-12 ms).
    loud = np.argmax(np.convolve(audio**2, np.ones(800), mode="same"))
    frame = audio[loud - 400 : loud + 400].astype(np.float64)
    ac = np.correlate(frame, frame, mode="full")[frame.size - 1 :]
    lags = np.arange(int(0.0025 * SPEECH_SFREQ), int(0.012 * SPEECH_SFREQ))
    assert ac[lags].max() > 0.3 * ac[0]


def test_stimulus_name_is_split_data_safe():
    assert stimulus_name("/x/Audio Book-7.5.wav") == "audio_book_7_5"


def test_load_stimuli_resamples_to_mono_16k(tmp_path):
    rng = np.random.default_rng(0)
    stereo = 0.1 * rng.standard_normal((22050 * 11, 2)).astype(np.float32)
    soundfile.write(tmp_path / "Story 2.wav", stereo, 22050)
    soundfile.write(tmp_path / "a.flac", stereo[:, 0], 22050)
    (tmp_path / "notes.txt").write_text("not audio")
    stimuli = load_stimuli(tmp_path)
    assert list(stimuli) == ["a", "story_2"]
    for audio in stimuli.values():
        assert audio.dtype == np.float32 and audio.ndim == 1
        assert abs(audio.size - 11 * SPEECH_SFREQ) <= 1


def test_load_stimuli_errors(tmp_path):
    with pytest.raises(UserError, match="no audio file"):
        load_stimuli(tmp_path)
    with pytest.raises(UserError, match="does not exist"):
        load_stimuli(tmp_path / "missing")
    (tmp_path / "broken.wav").write_bytes(b"RIFF\x00\x00not a wave file")
    with pytest.raises(UserError, match="broken.wav"):
        load_stimuli(tmp_path)
    (tmp_path / "broken.wav").unlink()
    soundfile.write(tmp_path / "short.wav", np.zeros(16000, dtype=np.float32), 16000)
    with pytest.raises(UserError, match="short.wav.*at least"):
        load_stimuli(tmp_path)
