"""The lagged ridge decoder: lag matrix, recovery of a known mapping, torch forward == numpy predict."""

import numpy as np
import pytest
import torch

from dmf2mel.models.linear import LinearDecoder, lag_matrix

N_CHANS, N_MELS, SFREQ = 6, 3, 64.0


def lag_matrix_loop(eeg, n_lags):
    """Reference: one sample and one lag at a time."""
    n_times, n_chans = eeg.shape
    out = np.zeros((n_times, n_lags * n_chans))
    for t in range(n_times):
        for lag in range(n_lags):
            if t + lag < n_times:
                out[t, lag * n_chans : (lag + 1) * n_chans] = eeg[t + lag]
    return out


def test_lag_matrix_matches_loop():
    eeg = np.random.default_rng(0).standard_normal((50, 4))
    np.testing.assert_array_equal(lag_matrix(eeg, 7), lag_matrix_loop(eeg, 7))


def synthetic(rng, n_times, weights, bias, noise=0.1):
    """EEG (white) and a target that is a known lagged linear function of it."""
    eeg = rng.standard_normal((n_times, N_CHANS))
    n_lags = weights.shape[0]
    target = lag_matrix(eeg, n_lags) @ weights.reshape(n_lags * N_CHANS, N_MELS) + bias
    return eeg, target + noise * rng.standard_normal(target.shape)


@pytest.fixture(scope="module")
def known():
    rng = np.random.default_rng(1)
    decoder = LinearDecoder(n_chans=N_CHANS, n_mels=N_MELS, sfreq=SFREQ, max_lag_s=0.125)
    weights = rng.standard_normal((decoder.n_lags, N_CHANS, N_MELS))
    bias = np.array([0.5, -1.0, 2.0])
    train = [synthetic(rng, 3000, weights, bias) for _ in range(2)]
    val = [synthetic(rng, 1000, weights, bias)]
    test = [synthetic(rng, 1000, weights, bias)]
    return decoder.fit(train, val), weights, bias, test


def test_lags_cover_zero_to_max_lag():
    assert LinearDecoder(sfreq=64, max_lag_s=0.25).n_lags == 17  # samples t .. t+16


def test_recovers_known_lagged_mapping(known):
    decoder, weights, bias, test = known
    np.testing.assert_allclose(decoder.weights, weights, atol=0.02)
    np.testing.assert_allclose(decoder.conv.bias.detach().numpy(), bias, atol=0.02)
    assert decoder.score(test) > 0.99
    assert decoder.alpha_ in decoder.val_r_ and max(decoder.val_r_.values()) == decoder.val_r_[decoder.alpha_]


def test_ridge_strength_is_picked_on_validation():
    """With few, noisy samples a strong penalty must win over the weakest one."""
    rng = np.random.default_rng(2)
    decoder = LinearDecoder(n_chans=N_CHANS, n_mels=N_MELS, max_lag_s=0.25)
    weights = 0.05 * rng.standard_normal((decoder.n_lags, N_CHANS, N_MELS))
    train = [synthetic(rng, 150, weights, 0.0, noise=3.0)]
    val = [synthetic(rng, 2000, weights, 0.0, noise=3.0)]
    decoder.fit(train, val)
    assert decoder.alpha_ > min(decoder.alphas)
    assert decoder.val_r_[decoder.alpha_] > decoder.val_r_[min(decoder.alphas)]


def test_forward_matches_predict(known):
    decoder, _, _, test = known
    eeg = np.stack([test[0][0][:200], test[0][0][300:500]])  # (batch, time, channels)
    with torch.no_grad():
        out = decoder(torch.from_numpy(eeg).float(), subject=torch.tensor([0, 1]))
    assert out.shape == (2, 200, N_MELS)
    for b in range(2):
        np.testing.assert_allclose(out[b].numpy(), decoder.predict(eeg[b]), rtol=1e-4, atol=1e-4)


def test_wrong_shapes_are_rejected():
    decoder = LinearDecoder(n_chans=N_CHANS, n_mels=N_MELS)
    with pytest.raises(ValueError, match="shape"):
        decoder.predict(np.zeros((10, N_CHANS + 1)))
    with pytest.raises(ValueError, match="batch, time"):
        decoder(torch.zeros(10, N_CHANS))
