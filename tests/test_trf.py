"""dmf2mel.trf: the delay matrix, ridge TRFs against MNE, recovery of known kernels, Haufe patterns, the truth."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.signal
from mne.decoding import ReceptiveField, TimeDelayingRidge
from mne.decoding.receptive_field import _delay_time_series

from dmf2mel import trf
from dmf2mel.data import corpus, simulate, sparrkulee
from dmf2mel.errors import UserError
from dmf2mel.models.linear import LinearDecoder

SFREQ = 64.0
RANGES = [(0.0, 0.3), (-0.25, 0.0), (-0.1, 0.2), (-0.3, -0.1), (0.1, 0.3)]


def absolute_alpha(model: trf.TRF) -> float:
    """The relative ridge strength of a fitted TRF in the absolute units MNE takes."""
    return model.alpha_ * np.trace(model.xx_) / len(model.xx_)


@pytest.mark.parametrize(("tmin", "tmax"), RANGES)
def test_delay_matrix_matches_mne(tmin, tmax):
    x = np.random.default_rng(0).standard_normal((50, 3))
    delays = trf.delay_samples(SFREQ, tmin, tmax)
    expected = _delay_time_series(x, tmin, tmax, SFREQ)  # (time, features, delays)
    got = trf.delay_matrix(x, delays).reshape(50, len(delays), 3)
    np.testing.assert_array_equal(got, expected.transpose(0, 2, 1))


@pytest.mark.parametrize(("tmin", "tmax"), RANGES)
def test_weights_equal_mne_time_delaying_ridge(tmin, tmax):
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((3000, 3)) + 0.5, rng.standard_normal((3000, 4)) - 1.0
    model = trf.TRF(tmin, tmax, SFREQ, alphas=[0.1]).fit(x, y)
    mne_model = TimeDelayingRidge(tmin, tmax, SFREQ, alpha=absolute_alpha(model), fit_intercept=True).fit(x, y)
    np.testing.assert_allclose(model.weights_, mne_model.coef_.transpose(2, 1, 0), atol=1e-12)


def test_several_recordings_equal_mne_epochs():
    rng = np.random.default_rng(2)
    x, y = rng.standard_normal((800, 3, 2)), rng.standard_normal((800, 3, 5))  # (time, epochs, features)
    model = trf.TRF(0.0, 0.2, SFREQ, alphas=[1.0]).fit(list(x.transpose(1, 0, 2)), list(y.transpose(1, 0, 2)))
    mne_model = TimeDelayingRidge(0.0, 0.2, SFREQ, alpha=absolute_alpha(model), fit_intercept=True).fit(x, y)
    np.testing.assert_allclose(model.weights_, mne_model.coef_.transpose(2, 1, 0), atol=1e-12)


def test_patterns_are_proportional_to_mne_receptive_field_patterns():
    rng = np.random.default_rng(3)
    eeg = rng.standard_normal((2000, 4)) @ rng.standard_normal((4, 4))  # correlated channels
    stimulus = eeg[:, :1] + rng.standard_normal((2000, 1))
    model = trf.TRF(-0.1, 0.0, SFREQ, alphas=[0.01]).fit(eeg, stimulus)
    rf = ReceptiveField(-0.1, 0.0, SFREQ, estimator=absolute_alpha(model), patterns=True)
    expected = rf.fit(eeg, stimulus[:, 0]).patterns_.T  # (delays, channels)
    got = model.patterns()[:, :, 0]
    ratio = got / expected
    assert np.all(ratio > 0)
    np.testing.assert_allclose(ratio, ratio.mean(), rtol=1e-8)


def test_recovers_a_known_kernel_and_cross_validation_adapts_the_ridge():
    rng = np.random.default_rng(4)
    kernel = np.sin(np.linspace(0, 2 * np.pi, 20)) * np.hanning(20)  # delays 0 .. 19 samples
    x = rng.standard_normal((4, 3000))
    clean = np.array([scipy.signal.lfilter(kernel, 1.0, row) for row in x])
    quiet, noisy = (
        trf.TRF(0.0, 19 / SFREQ, SFREQ).fit(
            list(x[..., None]), list((clean + s * rng.standard_normal(x.shape))[..., None])
        )
        for s in (0.01, 10.0)
    )
    np.testing.assert_allclose(quiet.weights_[:, 0, 0], kernel, atol=5e-3)
    assert np.corrcoef(noisy.weights_[:, 0, 0], kernel)[0, 1] > 0.8
    assert noisy.alpha_ > quiet.alpha_, "noisier data need a stronger ridge"
    assert quiet.cv_r_[quiet.alpha_] == max(quiet.cv_r_.values()) > 0.99
    assert quiet.score(x[0], clean[0])[0] > 0.999


def test_backward_model_is_the_linear_decoder():
    rng = np.random.default_rng(5)
    eeg = [rng.standard_normal((1500, 64)) for _ in range(2)]
    mel = [np.cumsum(e[:, :10], axis=0) * 0.01 + np.roll(e[:, 10:20], -3, axis=0) for e in eeg]
    decoder = LinearDecoder(alphas=[1.0]).fit(list(zip(eeg, mel)))
    model = trf.TRF(-0.25, 0.0, SFREQ, alphas=[1.0]).fit(eeg, mel)
    # the decoder's lag l is the TRF's delay -l; the two centre the edges differently (a few samples)
    np.testing.assert_allclose(model.weights_[::-1], decoder.weights, atol=2e-3)
    assert np.corrcoef(model.weights_[::-1].ravel(), decoder.weights.ravel())[0, 1] > 0.9999


def test_fold_segments_cover_every_sample_once():
    folds = trf.fold_segments([100, 37], 5)
    assert len(folds) == 5 and all(folds)
    covered = {i: np.zeros(n, int) for i, n in ((0, 100), (1, 37))}
    for fold in folds:
        for i, part in fold:
            covered[i][part] += 1
    assert all((c == 1).all() for c in covered.values())
    assert len(trf.fold_segments([10] * 7, 3)) == 3


def test_bad_input_is_named():
    model = trf.TRF(0.0, 0.1)
    with pytest.raises(UserError, match="same length"):
        model.fit(np.zeros((100, 2)), np.zeros((90, 3)))
    with pytest.raises(UserError, match="NaN"):
        model.fit(np.full((100, 2), np.nan), np.zeros((100, 3)))
    with pytest.raises(UserError, match="tmin must be <= tmax"):
        trf.TRF(0.2, 0.1)
    with pytest.raises(UserError, match="alphas"):
        trf.TRF(alphas=[-1.0])
    fitted = trf.TRF(0.0, 0.1, alphas=[1.0]).fit(np.random.default_rng(0).standard_normal((200, 2)), np.ones((200, 1)))
    with pytest.raises(UserError, match="2 features"):
        fitted.predict(np.zeros((10, 3)))


def test_neural_drive_is_what_the_simulation_convolves():
    rng = np.random.default_rng(6)
    subject = simulate.make_subject(rng, simulate.PRESETS["teaching"])
    sustained, onsets = simulate.auditory_drive(rng.gamma(2.0, size=(500, 10)))
    drive = trf.neural_drive(subject, sustained, onsets)
    responses = [scipy.signal.fftconvolve(drive[:, h], subject.kernels[h])[:500] for h in range(2)]
    expected = subject.gain * np.stack([(r - r.mean()) / (r.std() + 1e-12) for r in responses], axis=1)
    np.testing.assert_allclose(simulate.neural_sources(subject, sustained, onsets), expected, atol=1e-10)


def test_forward_trf_of_the_noise_free_eeg_recovers_the_true_kernels(tiny_corpus):
    truth = trf.simulated_truth(tiny_corpus, "sub-001", "audiobook_1")
    parts = sparrkulee.split_bounds(len(truth.drive))
    name = sparrkulee.format_filename("train", "sub-001", "audiobook_1", "eeg")
    clean = np.load(tiny_corpus / corpus.CLEAN_FOLDER / name)
    assert len(clean) == parts["train"].stop  # the drive is aligned with the recording
    model = trf.TRF(0.0, (truth.kernels.shape[1] - 1) / truth.sfreq).fit(truth.drive[parts["train"]], clean)
    expected = truth.expected_trf()
    for hemisphere in range(2):
        r = np.corrcoef(model.weights_[:, hemisphere].ravel(), expected[:, hemisphere].ravel())[0, 1]
        assert r > 0.99, f"hemisphere {hemisphere}: r = {r:.3f} with the true kernel x pattern"
    np.testing.assert_allclose(
        truth.agreement(model.weights_),
        [np.corrcoef(model.weights_[:, h].ravel(), expected[:, h].ravel())[0, 1] for h in range(2)],
    )
    shuffled = model.weights_[np.random.default_rng(0).permutation(len(model.weights_))]
    assert np.all(truth.agreement(shuffled) < 0.5), "the agreement sees the time course, not just the pattern"


def test_simulated_truth_rejects_unknown_names(tiny_corpus, tmp_path):
    with pytest.raises(UserError, match="sub-099"):
        trf.simulated_truth(tiny_corpus, "sub-099", "audiobook_1")
    with pytest.raises(UserError, match="not a simulated corpus"):
        trf.simulated_truth(tmp_path, "sub-001", "audiobook_1")
