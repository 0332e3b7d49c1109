"""The implement-it checkers pass the reference solutions and fail typical wrong answers with a useful verdict.

The right answers below are the ones the chapters' solution cells give.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dmf2mel import exercises
from dmf2mel.models import DCFAM


def said(result) -> str:
    """The verdict on one line (it is wrapped to fit an output box)."""
    return " ".join(result.message.split())


# Chapter 3 ---------------------------------------------------------------------------------------------------


def band_correlation(pred, true):
    pred_c, true_c = pred - pred.mean(axis=0), true - true.mean(axis=0)
    return (pred_c * true_c).sum(axis=0) / np.sqrt((pred_c**2).sum(axis=0) * (true_c**2).sum(axis=0))


def shifted_null(pred, true, shifts):
    return np.array([band_correlation(pred, np.roll(true, s, axis=0)).mean() for s in shifts])


def test_band_correlation():
    assert exercises.check_band_correlation(band_correlation)
    covariance = exercises.check_band_correlation(lambda p, t: ((p - p.mean(0)) * (t - t.mean(0))).mean(0))
    assert not covariance and "covariance" in said(covariance) and covariance.where is not None
    across_bands = exercises.check_band_correlation(lambda p, t: band_correlation(p.T, t.T))
    assert not across_bands and "shape" in said(across_bands) and "across bands" in said(across_bands)
    assert not exercises.check_band_correlation(lambda p, t: band_correlation(p, t).mean())


def test_shifted_null():
    assert exercises.check_shifted_null(shifted_null)
    backwards = exercises.check_shifted_null(lambda p, t, s: shifted_null(p, t, -np.asarray(s)))
    assert not backwards and "other way" in said(backwards)
    cropped = exercises.check_shifted_null(
        lambda p, t, shifts: np.array([band_correlation(p[s:], t[: len(t) - s]).mean() for s in shifts])
    )
    assert not cropped and "circular" in said(cropped)


# Chapter 4 ---------------------------------------------------------------------------------------------------


def cubic_bases(x, grid_size):
    step = 2 / grid_size
    knots = -1 + step * torch.arange(-3, grid_size + 4, dtype=x.dtype)
    x = x[:, None]
    bases = ((x >= knots[:-1]) & (x < knots[1:])).to(x.dtype)
    for k in range(1, 4):
        left = (x - knots[: -(k + 1)]) / (knots[k:-1] - knots[: -(k + 1)])
        right = (knots[k + 1 :] - x) / (knots[k + 1 :] - knots[1:-k])
        bases = left * bases[:, :-1] + right * bases[:, 1:]
    return bases


def test_cubic_bases():
    assert exercises.check_cubic_bases(cubic_bases)
    quadratic = exercises.check_cubic_bases(lambda x, g: cubic_bases(x, g)[:, :-1])
    assert not quadratic and "shape" in said(quadratic)
    scaled = exercises.check_cubic_bases(lambda x, g: 6 * cubic_bases(x, g))
    assert not scaled and "6 times" in said(scaled)


# Chapter 5 ---------------------------------------------------------------------------------------------------


def aggregate(v, logits, normalise=True):
    batch, channels, time = v.shape
    n_heads, kernel_size = logits.shape[1:3]
    weights = torch.softmax(logits, dim=2) if normalise else logits
    padded = F.pad(v, (kernel_size // 2, kernel_size // 2))
    out = torch.zeros_like(v).view(batch, n_heads, channels // n_heads, time)
    heads = padded.view(batch, n_heads, channels // n_heads, -1)
    for j in range(kernel_size):
        out = out + heads[..., j : j + time] * weights[:, :, None, j]
    return out.reshape(batch, channels, time)


def test_neighbourhood_aggregation():
    assert exercises.check_neighbourhood_aggregation(aggregate)
    raw = exercises.check_neighbourhood_aggregation(lambda v, lg: aggregate(v, lg, normalise=False))
    assert not raw and "normalised" in said(raw)
    over_time = exercises.check_neighbourhood_aggregation(
        lambda v, lg: exercises.neighbourhood_aggregation(v, torch.softmax(lg, dim=3), normalise=False)
    )
    assert not over_time and "over time" in said(over_time)


def test_neighbourhood_aggregation_is_dcfams():
    """The checker's reference is the computation DCFAM runs (through its weights and neighbourhoods)."""
    torch.manual_seed(0)
    block = DCFAM(d_model=8, n_heads=2, kernel_size=3)
    v, features = torch.randn(2, 8, 13), torch.randn(2, 8, 13)
    weights = block.neighbourhood_weights(block.foreground_weights, features)
    logits = block.foreground_weights(features).view(2, 2, 3, 13)
    expected = (block._neighbourhoods(v) * weights.unsqueeze(2)).sum(dim=3).flatten(1, 2)
    torch.testing.assert_close(exercises.neighbourhood_aggregation(v, logits), expected)


# Chapter 6 ---------------------------------------------------------------------------------------------------


def top_down(decoded):
    total = decoded[0]
    for finer in decoded[1:]:
        total = finer + torch.repeat_interleave(total, 2, dim=-1)
    return total


def test_top_down_pass():
    assert exercises.check_top_down_pass(top_down)
    tiled = exercises.check_top_down_pass(
        lambda maps: maps[3] + (maps[2] + (maps[1] + maps[0].repeat(1, 1, 2)).repeat(1, 1, 2)).repeat(1, 1, 2)
    )
    assert not tiled and "repeat_interleave" in said(tiled)
    missing = exercises.check_top_down_pass(lambda maps: top_down(maps[1:]))
    assert not missing and "coarsest map" in said(missing)
    crashes = exercises.check_top_down_pass(lambda maps: maps[0] + maps[1])
    assert not crashes and "raised RuntimeError" in said(crashes)


# # Chapter 7 ---------------------------------------------------------------------------------------------------


def scan(u, delta, A, B, C, D, euler=False, scale_b=True):
    state = torch.zeros(u.shape[0], u.shape[1], A.shape[1], dtype=u.dtype)
    outputs = []
    for t in range(u.shape[-1]):
        step = delta[:, :, t, None]
        decay = 1 + step * A if euler else torch.exp(step * A)
        drive = (delta[:, :, t] * u[:, :, t] if scale_b else u[:, :, t])[:, :, None] * B[:, None, :, t]
        state = decay * state + drive
        outputs.append((state * C[:, None, :, t]).sum(-1) + D * u[:, :, t])
    return torch.stack(outputs, dim=-1)


def test_selective_scan():
    assert exercises.check_selective_scan(scan)
    no_skip = exercises.check_selective_scan(lambda u, dl, A, B, C, D: scan(u, dl, A, B, C, 0 * D))
    assert not no_skip and "D * u" in said(no_skip)
    euler = exercises.check_selective_scan(lambda *args: scan(*args, euler=True))
    assert not euler and "exp(delta * A)" in said(euler)
    unscaled = exercises.check_selective_scan(lambda *args: scan(*args, scale_b=False))
    assert not unscaled and "step size multiplies B" in said(unscaled)


# Chapter 8 ---------------------------------------------------------------------------------------------------


def test_band_head():
    assert exercises.check_band_head(lambda f, w, b: f @ w.T + b)
    no_bias = exercises.check_band_head(lambda f, w, b: f @ w.T)
    assert not no_bias and "bias" in said(no_bias)
    untransposed = exercises.check_band_head(lambda f, w, b: f @ w + b)
    assert not untransposed and "raised RuntimeError" in said(untransposed)


# Chapter 10 --------------------------------------------------------------------------------------------------


def noise_vocoder(mel, carriers, sfreq_audio, mel_sfreq):
    frames = (np.arange(len(mel)) + 0.5) / mel_sfreq
    samples = (np.arange(carriers.shape[1]) + 0.5) / sfreq_audio
    amplitude = np.sqrt(np.clip(mel, 0, None))
    audio = sum(np.interp(samples, frames, amplitude[:, b]) * carriers[b] for b in range(mel.shape[1]))
    return 0.99 * audio / np.abs(audio).max()


def test_noise_vocoder():
    assert exercises.check_noise_vocoder(noise_vocoder)
    power = exercises.check_noise_vocoder(lambda m, c, s, r: noise_vocoder(m**2, c, s, r))
    assert not power and "square root" in said(power)
    unscaled = exercises.check_noise_vocoder(lambda m, c, s, r: 0.5 * noise_vocoder(m, c, s, r))
    assert not unscaled and "0.5 times" in said(unscaled)


# The verdicts themselves -------------------------------------------------------------------------------------


def test_an_unfilled_scaffold_is_a_verdict_not_a_crash():
    def scaffold(pred, true): ...

    result = exercises.check_band_correlation(scaffold)
    assert not result and "returned None" in said(result) and "`...`" in said(result)
    with pytest.raises(AssertionError, match="returned None"):
        result.assert_passed()
    assert repr(result) == result.message


def test_a_passing_verdict_says_what_it_was_compared_with():
    result = exercises.check_band_correlation(band_correlation)
    assert result.passed and result.assert_passed() is result
    assert result.message.startswith("✓") and "dmf2mel.metrics.pearsonr_time" in said(result)
    assert all(len(line) <= exercises.VERDICT_WIDTH for line in result.message.splitlines())
    assert result.max_abs_error < 1e-9


# Linear models and match-mismatch ------------------------------------------------------------------------------


def delay_matrix(x, delays):
    out = np.zeros((len(x), len(delays), x.shape[1]))
    for i, d in enumerate(delays):
        if d >= 0:
            out[d:, i] = x[: len(x) - d]
        else:
            out[:d, i] = x[-d:]
    return out.reshape(len(x), -1)


def choose(reconstruction, candidates):
    rec = reconstruction[:, None] - reconstruction[:, None].mean(axis=2, keepdims=True)
    cand = candidates - candidates.mean(axis=2, keepdims=True)
    r = (rec * cand).sum(2) / np.sqrt((rec**2).sum(2) * (cand**2).sum(2))
    return np.argmax(r.mean(axis=-1), axis=1)


def test_delay_matrix():
    assert exercises.check_delay_matrix(delay_matrix)
    ahead = exercises.check_delay_matrix(lambda x, d: delay_matrix(x, -np.asarray(d)))
    assert not ahead and "wrong way" in said(ahead)
    rolled = exercises.check_delay_matrix(lambda x, d: np.concatenate([np.roll(x, k, axis=0) for k in d], axis=1))
    assert not rolled and "zeros" in said(rolled)
    grouped = exercises.check_delay_matrix(
        lambda x, d: delay_matrix(x, d).reshape(len(x), len(d), -1).transpose(0, 2, 1).reshape(len(x), -1)
    )
    assert not grouped and "grouped by feature" in said(grouped)
    assert "Replace the `...`" in said(exercises.check_delay_matrix(lambda x, d: None))


def test_choose_candidate():
    assert exercises.check_choose_candidate(choose)
    worst = exercises.check_choose_candidate(lambda r, c: np.argmin(choose_scores(r, c), axis=1))
    assert not worst and "largest r" in said(worst)
    loud = exercises.check_choose_candidate(
        lambda r, c: np.argmax(
            ((c - c.mean(2, keepdims=True)) * (r - r.mean(1, keepdims=True))[:, None]).sum((2, 3)), 1
        )
    )
    assert not loud and "covariances" in said(loud)


def choose_scores(reconstruction, candidates):
    rec = reconstruction[:, None] - reconstruction[:, None].mean(axis=2, keepdims=True)
    cand = candidates - candidates.mean(axis=2, keepdims=True)
    return ((rec * cand).sum(2) / np.sqrt((rec**2).sum(2) * (cand**2).sum(2))).mean(-1)
