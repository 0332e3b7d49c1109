"""The preprocessing chain: shape, rate, reference, what it removes and what it keeps."""

import numpy as np
import pytest

from dmf2mel.data.preprocess import biosemi_info, blink_samples, make_raw, preprocess

SFREQ = 128.0
SECONDS = 60
UV = 1e-6


@pytest.fixture(scope="module")
def times():
    return np.arange(int(SECONDS * SFREQ)) / SFREQ


def neural_like(times, seed=0):
    """A 5 Hz rhythm with a random spatial pattern plus small independent noise, in volts, (time, 64)."""
    rng = np.random.default_rng(seed)
    pattern = rng.standard_normal(64)
    return UV * (np.outer(np.sin(2 * np.pi * 5 * times), pattern) + 0.5 * rng.standard_normal((times.size, 64)))


def test_output_shape_rate_dtype_and_average_reference(times):
    eeg = preprocess(make_raw(neural_like(times), SFREQ))
    assert eeg.shape == (SECONDS * 64, 64)
    assert eeg.dtype == np.float32
    # Common-average reference: the mean over channels is zero at every sample.
    np.testing.assert_allclose(eeg.mean(axis=1), 0.0, atol=1e-4 * eeg.std())


def test_keeps_the_pass_band_in_microvolts(times):
    """A 5 Hz rhythm passes with its amplitude (in microvolts) and shape."""
    data = neural_like(times)
    eeg = preprocess(make_raw(data, SFREQ), artifacts=False).astype(np.float64)
    expected = data[::2] / UV
    expected -= expected.mean(axis=1, keepdims=True)
    middle = slice(640, -640)  # away from the filter edges
    r = np.corrcoef(eeg[middle].ravel(), expected[middle].ravel())[0, 1]
    assert r > 0.85
    assert 0.8 < eeg[middle].std() / expected[middle].std() < 1.1


def test_removes_line_noise_and_drift(times):
    rng = np.random.default_rng(1)
    line = 50 * UV * np.outer(np.sin(2 * np.pi * 50 * times), rng.uniform(0.5, 1.5, 64))
    drift = 100 * UV * np.outer(np.sin(2 * np.pi * 0.02 * times), rng.standard_normal(64))  # a slow skin drift
    clean = preprocess(make_raw(neural_like(times), SFREQ), artifacts=False)
    middle = slice(640, -640)  # away from the filter edges
    for artifact in (line, drift):
        dirty = preprocess(make_raw(neural_like(times) + artifact, SFREQ), artifacts=False)
        # At least 40 dB of attenuation.
        assert np.abs(dirty - clean)[middle].max() < 0.01 * np.abs(artifact).max() / UV


def test_blinks_are_projected_out(times):
    info = biosemi_info(SFREQ)
    pos = np.array([ch["loc"][:3] for ch in info["chs"]])
    pattern = np.exp(-np.linalg.norm(pos - [0.0, 0.1, 0.02], axis=1) / 0.04)
    trace = sum(np.exp(-0.5 * ((times - onset) / 0.1) ** 2) for onset in np.arange(2.0, SECONDS - 1, 4.0))
    blinks = 150 * UV * np.outer(trace, pattern / pattern.max())
    base = neural_like(times)
    mask = blink_samples(make_raw(base + blinks, SFREQ).get_data(), info.ch_names, SFREQ)
    assert mask[(trace > 0.5)].all() and mask.mean() < 0.3
    reference = preprocess(make_raw(base, SFREQ), artifacts=False)
    without = preprocess(make_raw(base + blinks, SFREQ), artifacts=False)
    cleaned = preprocess(make_raw(base + blinks, SFREQ))
    fp1 = info.ch_names.index("Fp1")
    error_before = np.abs(without - reference)[:, fp1].max()
    error_after = np.abs(cleaned - reference)[:, fp1].max()
    assert error_after < 0.2 * error_before


def test_make_raw_checks_the_shape():
    with pytest.raises(ValueError, match=r"\(time, 64\)"):
        make_raw(np.zeros((100, 32)), SFREQ)
