"""The multichannel Wiener filter: blocked lag stacking equals the plain one; blinks go, speech stays."""

import numpy as np
import pytest
import scipy.signal

from dmf2mel.data import mwf
from dmf2mel.data.simulate_raw import blink_topography

SFREQ = 256  # enough samples per lagged dimension for stable covariances (the chain runs at 1024 Hz)
FRONTAL = list(mwf.BIOSEMI_FRONTAL)


def stacked_reference(data, delay):
    """The lag-stacked signal built whole, with np.roll and zeroed wrap-around (the plain way)."""
    blocks = []
    for tau in range(-delay, delay + 1):
        shifted = np.roll(data, tau, axis=1)
        if tau > 0:
            shifted[:, :tau] = 0
        elif tau < 0:
            shifted[:, tau:] = 0
        blocks.append(shifted)
    return np.concatenate(blocks)


def components(seed=0, seconds=60):
    """Brain noise, a speech response and blinks with the simulated corpus's blink topography, (64, time) each."""
    rng = np.random.default_rng(seed)
    n = seconds * SFREQ
    brain = rng.standard_normal((64, 20)) @ rng.standard_normal((20, n)) + 0.3 * rng.standard_normal((64, n))
    drive = scipy.signal.lfilter([1.0], [1.0, -0.95], rng.standard_normal(n))
    speech = 0.3 * np.outer(rng.standard_normal(64), drive / drive.std())
    t = np.arange(n) / SFREQ
    blink_trace = sum(np.exp(-0.5 * ((t - onset) / 0.1) ** 2) for onset in rng.uniform(1, seconds - 1, seconds // 4))
    blinks = 40.0 * np.outer(blink_topography(), blink_trace)
    return brain, speech, blinks


@pytest.mark.parametrize("n_times", [50, 1000])
def test_blocked_stacking_equals_the_plain_one(monkeypatch, n_times):
    monkeypatch.setattr(mwf, "BLOCK", 64)
    data = np.random.default_rng(1).standard_normal((5, n_times))
    reference = stacked_reference(data, 3)
    blocked = np.concatenate([mwf._stacked(data, s, min(s + 64, n_times), 3) for s in range(0, n_times, 64)], axis=1)
    np.testing.assert_array_equal(blocked, reference)
    mask = np.zeros(n_times, bool)
    mask[n_times // 3 : n_times // 2] = True
    r_yy, r_nn = mwf._covariances(data, mask, 3)
    np.testing.assert_allclose(r_yy, np.cov(reference[:, mask]), atol=1e-10)
    np.testing.assert_allclose(r_nn, np.cov(reference[:, ~mask]), atol=1e-10)


def test_mwf_removes_most_blink_power_at_frontal_channels_and_keeps_the_speech_response():
    brain, speech, blinks = components()
    clean, mask = mwf.remove_artifacts(brain + speech + blinks, SFREQ)
    peaks = scipy.signal.find_peaks(blinks[FRONTAL[3]], height=20)[0]
    assert mask[peaks].all() and mask.mean() < 0.5  # every blink found, most of the recording left clean
    left = clean - (brain + speech)
    blink_power = (blinks[FRONTAL] ** 2).sum()
    assert (left[FRONTAL] ** 2).sum() < 0.2 * blink_power  # measured: 0.11-0.13 over three seeds
    # The filter is linear: what it takes from the speech response alone is what it costs the speech.
    fitted = mwf.fit_mwf(brain + speech + blinks, mask)
    assert fitted.rank > 0 and fitted.weights.shape == (64 * 7, 64)
    taken = mwf.artifact_estimate(speech, fitted)
    assert (taken**2).sum() < 0.15 * (speech**2).sum()  # measured: 0.07-0.10 over three seeds
    kept = speech - taken
    assert np.corrcoef(kept.ravel(), speech.ravel())[0, 1] > 0.95
    r_before = np.corrcoef((brain + speech + blinks)[FRONTAL].ravel(), (brain + speech)[FRONTAL].ravel())[0, 1]
    r_after = np.corrcoef(clean[FRONTAL].ravel(), (brain + speech)[FRONTAL].ravel())[0, 1]
    assert r_after > 0.9 > r_before


def test_without_blinks_nothing_changes():
    brain, speech, _ = components(seconds=20)
    data = brain + speech
    data[FRONTAL] *= 0.0  # nothing ever crosses the threshold on flat frontal channels
    clean, mask = mwf.remove_artifacts(data, SFREQ)
    assert not mask.any()
    np.testing.assert_array_equal(clean, data)
