"""The implement-it checkers pass the right answers and reject the wrong answers students write, with a hint.

The right answers below are the ones the chapters' solution cells give (``test_the_chapters_solutions_pass``
runs those cells' own functions). Every checker has a table of plausible wrong answers (a sign, an absolute
value, a wrong axis, an off-by-one lag, a missing normalisation, a hard-coded band count, a constant band,
...), each written as a student would write it, with the words its verdict must contain. A solution that only
calls the package's own implementation fails too.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import nbformat
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dmf2mel import exercises, metrics
from dmf2mel.models import DCFAM, HAMSNet, kan
from dmf2mel.models.scan import selective_scan
from dmf2mel.viz import vocode

ROOT = Path(__file__).resolve().parent.parent


def said(result) -> str:
    """The verdict on one line (it is wrapped to fit an output box)."""
    return " ".join(result.message.split())


def assert_rejected(check, wrong, *words):
    result = check(wrong)
    assert not result.passed, f"accepted a wrong answer: {result.message}"
    assert result.message.startswith("✗")
    for word in words:
        assert word in said(result), f"{word!r} not in the verdict: {said(result)}"
    return result


# Chapter 3 ---------------------------------------------------------------------------------------------------


def band_correlation(pred, true):
    pred_c, true_c = pred - pred.mean(axis=0), true - true.mean(axis=0)
    return (pred_c * true_c).sum(axis=0) / np.sqrt((pred_c**2).sum(axis=0) * (true_c**2).sum(axis=0))


def shifted_null(pred, true, shifts):
    return np.array([band_correlation(pred, np.roll(true, s, axis=0)).mean() for s in shifts])


def centred(x, axis=0):
    return x - x.mean(axis=axis, keepdims=True)


BAND_CORRELATION_WRONG = {
    "absolute value": (lambda p, t: np.abs(band_correlation(p, t)), "anti-correlated", "np.abs"),
    "sign": (lambda p, t: -band_correlation(p, t), "sign is flipped"),
    "squared": (lambda p, t: band_correlation(p, t) ** 2, "r squared"),
    "across bands": (lambda p, t: band_correlation(p.T, t.T), "shape", "across bands"),
    "centred over bands": (
        lambda p, t: (centred(p, 1) * centred(t, 1)).sum(0)
        / np.sqrt((centred(p, 1) ** 2).sum(0) * (centred(t, 1) ** 2).sum(0)),
        "mean over bands",
    ),
    "covariance": (lambda p, t: (centred(p) * centred(t)).mean(axis=0), "covariance"),
    "not centred": (
        lambda p, t: (p * t).sum(axis=0) / np.sqrt((p**2).sum(axis=0) * (t**2).sum(axis=0)),
        "subtract each band's mean",
    ),
    "mixed ddof": (
        lambda p, t: (centred(p) * centred(t)).mean(axis=0) / (p.std(axis=0, ddof=1) * t.std(axis=0, ddof=1)),
        "normalisations do not match",
    ),
    "mean over bands": (lambda p, t: band_correlation(p, t).mean(), "one r per band"),
    "ten bands": (
        lambda p, t: np.array([band_correlation(p[:, [b]], t[:, [b]])[0] for b in range(10)]),
        "10 bands",
        "pred.shape[1]",
    ),
    "constant band as 0": (lambda p, t: np.nan_to_num(band_correlation(p, t)), "constant", "NaN"),
    "epsilon for a constant band": (
        lambda p, t: (centred(p) * centred(t)).sum(0)
        / (np.sqrt((centred(p) ** 2).sum(0) * (centred(t) ** 2).sum(0)) + 1e-12),
        "constant",
        "NaN",
    ),
}


@pytest.mark.parametrize("mistake", BAND_CORRELATION_WRONG)
def test_band_correlation_rejects(mistake):
    wrong, *words = BAND_CORRELATION_WRONG[mistake]
    assert_rejected(exercises.check_band_correlation, wrong, *words)


def test_band_correlation_accepts_right_answers():
    assert exercises.check_band_correlation(band_correlation)
    # np.corrcoef's cross block is right too (the chapter asks for numpy without it, the checker does not mind)
    corrcoef = exercises.check_band_correlation(
        lambda p, t: np.array([np.corrcoef(p[:, b], t[:, b])[0, 1] for b in range(p.shape[1])])
    )
    assert corrcoef, corrcoef.message


def roll_each(pred, true, shifts, roll=lambda x, s: np.roll(x, s, axis=0), average=np.mean):
    return np.array([average(band_correlation(pred, roll(true, s))) for s in shifts])


SHIFTED_NULL_WRONG = {
    "lags the other way": (lambda p, t, s: roll_each(p, t, -np.asarray(s)), "other way"),
    "pred rolled by s": (
        lambda p, t, s: np.array([band_correlation(np.roll(p, k, axis=0), t).mean() for k in s]),
        "other way",
    ),
    "cropped": (
        lambda p, t, shifts: np.array([band_correlation(p[s:], t[: len(t) - s]).mean() for s in shifts]),
        "circular",
    ),
    "rolled along bands": (lambda p, t, s: roll_each(p, t, s, lambda x, k: np.roll(x, k, axis=1)), "axis 1"),
    "roll without axis": (lambda p, t, s: roll_each(p, t, s, lambda x, k: np.roll(x, k)), "axis=0"),
    "off by one late": (lambda p, t, s: roll_each(p, t, np.asarray(s) + 1), "off by one"),
    "off by one early": (lambda p, t, s: roll_each(p, t, np.asarray(s) - 1), "off by one"),
    "no mean over bands": (
        lambda p, t, s: np.stack([band_correlation(p, np.roll(t, k, axis=0)) for k in s]),
        "shape",
        "over the bands",
    ),
    "absolute values": (lambda p, t, s: roll_each(p, t, s, average=lambda r: np.abs(r).mean()), "sign"),
    "not shifted": (lambda p, t, s: np.full(len(s), band_correlation(p, t).mean()), "unshifted"),
}


@pytest.mark.parametrize("mistake", SHIFTED_NULL_WRONG)
def test_shifted_null_rejects(mistake):
    wrong, *words = SHIFTED_NULL_WRONG[mistake]
    assert_rejected(exercises.check_shifted_null, wrong, *words)


def test_shifted_null_accepts_the_right_answer():
    assert exercises.check_shifted_null(shifted_null)


# Chapter 6 ---------------------------------------------------------------------------------------------------


def cubic_bases(x, grid_size, order=3, low=-1.0, extend=True):
    step = (1 - low) / grid_size
    first = -order if extend else 0
    knots = low + step * torch.arange(first, grid_size - first + 1, dtype=x.dtype)
    x = x[:, None]
    bases = ((x >= knots[:-1]) & (x < knots[1:])).to(x.dtype)
    for k in range(1, order + 1):
        left = (x - knots[: -(k + 1)]) / (knots[k:-1] - knots[: -(k + 1)])
        right = (knots[k + 1 :] - x) / (knots[k + 1 :] - knots[1:-k])
        bases = left * bases[:, :-1] + right * bases[:, 1:]
    return bases


CUBIC_BASES_WRONG = {
    "quadratic": (lambda x, g: cubic_bases(x, g, order=2), "quadratic"),
    "linear": (lambda x, g: cubic_bases(x, g, order=1), "linear B-splines"),
    "grid not extended": (lambda x, g: cubic_bases(x, g, extend=False), "three knots on each side"),
    "transposed": (lambda x, g: cubic_bases(x, g).T, "transposed"),
    "one interval too many": (lambda x, g: cubic_bases(x, g + 1), "one basis too many"),
    "one interval too few": (lambda x, g: cubic_bases(x, g - 1), "one basis too few"),
    "fixed grid size": (lambda x, g: cubic_bases(x, 5), "the grid_size you are given"),
    "grid over [0, 1]": (lambda x, g: cubic_bases(x, g, low=0.0), "[-1, 1]"),
    "scaled": (lambda x, g: 6 * cubic_bases(x, g), "6 times"),
    "dropped last basis": (lambda x, g: cubic_bases(x, g)[:, :-1], "shape"),
}


@pytest.mark.parametrize("mistake", CUBIC_BASES_WRONG)
def test_cubic_bases_rejects(mistake):
    wrong, *words = CUBIC_BASES_WRONG[mistake]
    assert_rejected(exercises.check_cubic_bases, wrong, *words)


def test_cubic_bases_accepts_the_right_answer():
    assert exercises.check_cubic_bases(cubic_bases)


# Chapter 7 ---------------------------------------------------------------------------------------------------


def aggregate(v, logits, normalise=True, dim=2, pad=None, flip=False, interleave=False, circular=False):
    batch, channels, time = v.shape
    n_heads, kernel_size = logits.shape[1:3]
    weights = torch.softmax(logits, dim=dim) if normalise else logits
    weights = weights.flip(2) if flip else weights
    left, right = pad or (kernel_size // 2, kernel_size // 2)
    padded = F.pad(v, (left, right), mode="circular" if circular else "constant")
    if interleave:
        heads = padded.view(batch, channels // n_heads, n_heads, -1).transpose(1, 2)
    else:
        heads = padded.view(batch, n_heads, channels // n_heads, -1)
    out = sum(heads[..., j : j + time] * weights[:, :, None, j] for j in range(kernel_size))
    if interleave:
        out = out.transpose(1, 2)
    return out.reshape(batch, channels, time)


NEIGHBOURHOOD_WRONG = {
    "not normalised": (lambda v, lg: aggregate(v, lg, normalise=False), "normalised"),
    "softmax over time": (lambda v, lg: aggregate(v, lg, dim=3), "over time"),
    "softmax over heads": (lambda v, lg: aggregate(v, lg, dim=1), "over the heads"),
    "circular padding": (lambda v, lg: aggregate(v, lg, circular=True), "wrap around"),
    "reversed neighbourhood": (lambda v, lg: aggregate(v, lg, flip=True), "backwards"),
    "one step late": (lambda v, lg: aggregate(v, lg, pad=(lg.shape[2] // 2 + 1, lg.shape[2] // 2 - 1)), "late"),
    "one step early": (lambda v, lg: aggregate(v, lg, pad=(lg.shape[2] // 2 - 1, lg.shape[2] // 2 + 1)), "early"),
    "interleaved heads": (lambda v, lg: aggregate(v, lg, interleave=True), "consecutive groups"),
}


@pytest.mark.parametrize("mistake", NEIGHBOURHOOD_WRONG)
def test_neighbourhood_aggregation_rejects(mistake):
    wrong, *words = NEIGHBOURHOOD_WRONG[mistake]
    assert_rejected(exercises.check_neighbourhood_aggregation, wrong, *words)


def test_neighbourhood_aggregation_accepts_the_right_answer():
    assert exercises.check_neighbourhood_aggregation(aggregate)


def test_neighbourhood_aggregation_is_dcfams():
    """The checker's reference is the computation DCFAM runs (through its weights and neighbourhoods)."""
    torch.manual_seed(0)
    block = DCFAM(d_model=8, n_heads=2, kernel_size=3)
    v, features = torch.randn(2, 8, 13), torch.randn(2, 8, 13)
    weights = block.neighbourhood_weights(block.foreground_weights, features)
    logits = block.foreground_weights(features).view(2, 2, 3, 13)
    expected = (block._neighbourhoods(v) * weights.unsqueeze(2)).sum(dim=3).flatten(1, 2)
    torch.testing.assert_close(exercises.neighbourhood_aggregation(v, logits), expected)


# Chapter 8 ---------------------------------------------------------------------------------------------------


def top_down(decoded, up=lambda x: torch.repeat_interleave(x, 2, dim=-1), combine=lambda a, b: a + b):
    total = decoded[0]
    for finer in decoded[1:]:
        total = combine(finer, up(total))
    return total


TOP_DOWN_WRONG = {
    "tiled": (lambda maps: top_down(maps, up=lambda x: x.repeat(1, 1, 2)), "repeat_interleave"),
    "linear upsampling": (
        lambda maps: top_down(maps, up=lambda x: F.interpolate(x, scale_factor=2, mode="linear")),
        "nearest neighbour",
    ),
    "coarsest missing": (lambda maps: top_down(maps[1:]), "coarsest map"),
    "finest alone": (lambda maps: maps[-1], "finest map alone"),
    "two finest": (lambda maps: maps[3] + maps[2].repeat_interleave(2, dim=-1), "running sum"),
    "averaged": (lambda maps: top_down(maps, combine=lambda a, b: (a + b) / 2), "averaged"),
    "no upsampling": (lambda maps: maps[0] + maps[1], "raised RuntimeError"),
    "flattened repeat_interleave": (lambda maps: top_down(maps, up=lambda x: x.repeat_interleave(2)), "raised"),
}


@pytest.mark.parametrize("mistake", TOP_DOWN_WRONG)
def test_top_down_pass_rejects(mistake):
    wrong, *words = TOP_DOWN_WRONG[mistake]
    assert_rejected(exercises.check_top_down_pass, wrong, *words)


def test_top_down_pass_accepts_the_right_answer():
    assert exercises.check_top_down_pass(top_down)


# Chapter 9 ---------------------------------------------------------------------------------------------------


def scan(u, delta, A, B, C, D, euler=False, scale_b=True, late=False, softplus=False):
    delta = F.softplus(delta) if softplus else delta
    state = torch.zeros(u.shape[0], u.shape[1], A.shape[1], dtype=u.dtype)
    outputs = []
    for t in range(u.shape[-1]):
        step = delta[:, :, t, None]
        decay = 1 + step * A if euler else torch.exp(step * A)
        drive = (delta[:, :, t] * u[:, :, t] if scale_b else u[:, :, t])[:, :, None] * B[:, None, :, t]
        previous, state = state, decay * state + drive
        outputs.append(((previous if late else state) * C[:, None, :, t]).sum(-1) + D * u[:, :, t])
    return torch.stack(outputs, dim=-1)


SCAN_WRONG = {
    "no skip": (lambda u, dl, A, B, C, D: scan(u, dl, A, B, C, 0 * D), "D * u"),
    "euler decay": (lambda *args: scan(*args, euler=True), "exp(delta * A)"),
    "unscaled input": (lambda *args: scan(*args, scale_b=False), "step size multiplies B"),
    "output before the update": (lambda *args: scan(*args, late=True), "one step late"),
    "sign of A": (lambda u, dl, A, B, C, D: scan(u, dl, -A, B, C, D), "A is negative already"),
    "B and C swapped": (lambda u, dl, A, B, C, D: scan(u, dl, A, C, B, D), "swapped"),
    "softplus twice": (lambda *args: scan(*args, softplus=True), "softplus"),
}


@pytest.mark.parametrize("mistake", SCAN_WRONG)
def test_selective_scan_rejects(mistake):
    wrong, *words = SCAN_WRONG[mistake]
    assert_rejected(exercises.check_selective_scan, wrong, *words)


def test_selective_scan_accepts_the_right_answer():
    assert exercises.check_selective_scan(scan)


# Chapter 10 ---------------------------------------------------------------------------------------------------

BAND_HEAD_WRONG = {
    "no bias": (lambda f, w, b: f @ w.T, "bias"),
    "not transposed": (lambda f, w, b: f @ w + b, "raised RuntimeError"),
    "single head": (lambda f, w, b: (f @ w[0] + b[0])[..., None].expand(-1, -1, len(b)), "single head"),
    "softmax": (lambda f, w, b: torch.softmax(f @ w.T + b, dim=-1), "no softmax"),
    "averaged over time": (lambda f, w, b: (f.mean(1, keepdim=True) @ w.T + b).expand(-1, f.shape[1], -1), "time"),
    "ten bands": (lambda f, w, b: torch.stack([f @ w[k] + b[k] for k in range(10)], -1), "raised IndexError", "(6,"),
}


@pytest.mark.parametrize("mistake", BAND_HEAD_WRONG)
def test_band_head_rejects(mistake):
    wrong, *words = BAND_HEAD_WRONG[mistake]
    assert_rejected(exercises.check_band_head, wrong, *words)


def test_band_head_accepts_the_right_answer():
    assert exercises.check_band_head(lambda f, w, b: f @ w.T + b)
    assert exercises.check_band_head(lambda f, w, b: torch.einsum("btd,md->btm", f, w) + b)


# Chapter 12 --------------------------------------------------------------------------------------------------


def noise_vocoder(mel, carriers, sfreq_audio, mel_sfreq, offset=0.5, amplitude=np.sqrt, peak=None, n_bands=None):
    frames = (np.arange(len(mel)) + offset) / mel_sfreq
    samples = (np.arange(carriers.shape[1]) + 0.5) / sfreq_audio
    envelopes = amplitude(np.clip(mel, 0, None))
    audio = sum(np.interp(samples, frames, envelopes[:, b]) * carriers[b] for b in range(n_bands or mel.shape[1]))
    return 0.99 * audio / (np.abs(audio).max() if peak is None else peak(audio))


def held_vocoder(mel, carriers, sfreq_audio, mel_sfreq):
    frame_of_sample = np.minimum(np.arange(carriers.shape[1]) * mel_sfreq // sfreq_audio, len(mel) - 1)
    audio = (np.sqrt(mel)[frame_of_sample.astype(int)].T * carriers).sum(axis=0)
    return 0.99 * audio / np.abs(audio).max()


VOCODER_WRONG = {
    "power as amplitude": (lambda m, c, s, r: noise_vocoder(m, c, s, r, amplitude=lambda x: x), "square root"),
    "frames held": (held_vocoder, "held constant"),
    "not peak-normalised": (lambda m, c, s, r: noise_vocoder(m, c, s, r, peak=lambda a: 0.99), "peak of 0.99"),
    "peak without abs": (lambda m, c, s, r: noise_vocoder(m, c, s, r, peak=np.max), "absolute value"),
    "frame starts, not centres": (lambda m, c, s, r: noise_vocoder(m, c, s, r, offset=0.0), "(i + 0.5)"),
    "half the level": (lambda m, c, s, r: 0.5 * noise_vocoder(m, c, s, r), "0.5 times"),
    "ten bands": (lambda m, c, s, r: noise_vocoder(m, c, s, r, n_bands=10), "raised IndexError", "(48, 6)"),
}


@pytest.mark.parametrize("mistake", VOCODER_WRONG)
def test_noise_vocoder_rejects(mistake):
    wrong, *words = VOCODER_WRONG[mistake]
    assert_rejected(exercises.check_noise_vocoder, wrong, *words)


def test_noise_vocoder_accepts_the_right_answer():
    assert exercises.check_noise_vocoder(noise_vocoder)


# Solutions that call the package's own answer ----------------------------------------------------------------


def _linear_head(f, w, b):
    return F.linear(f, w, b)


def _layer_head(f, w, b):
    layer = torch.nn.Linear(w.shape[1], w.shape[0], dtype=w.dtype)
    with torch.no_grad():
        layer.weight.copy_(w), layer.bias.copy_(b)
        return layer(f)


def _dcfam_aggregate(v, logits):
    batch, channels, time = v.shape
    block = DCFAM(d_model=channels, n_heads=logits.shape[1], kernel_size=logits.shape[2]).double()
    return (block._neighbourhoods(v) * torch.softmax(logits, 2).unsqueeze(2)).sum(3).flatten(1, 2)


DELEGATIONS = {
    "pearsonr_time": (exercises.check_band_correlation, metrics.pearsonr_time, "dmf2mel.metrics.pearsonr_time"),
    "the metrics' null": (
        exercises.check_shifted_null,
        lambda p, t, s: np.nanmean(metrics._circular_xcorr(p[None], t[None])[0][0, -np.asarray(s) % len(t)], axis=-1),
        "the metrics' own null",
    ),
    "B-spline reference": (
        exercises.check_cubic_bases,
        lambda x, g: kan.b_spline_bases_reference(x, kan.uniform_knots(g, dtype=x.dtype)),
        "dmf2mel.models.kan",
    ),
    "closed-form bases": (
        exercises.check_cubic_bases,
        lambda x, g: kan.local_to_dense(*kan.uniform_cubic_bases(x[:, None], g), g + 3)[:, 0],
        "dmf2mel.models.kan",
    ),
    "exercises.neighbourhood_aggregation": (
        exercises.check_neighbourhood_aggregation,
        exercises.neighbourhood_aggregation,
        "dmf2mel.exercises.neighbourhood_aggregation",
    ),
    "DC-FAM's neighbourhoods": (exercises.check_neighbourhood_aggregation, _dcfam_aggregate, "DC-FAM's own code"),
    "exercises.top_down_pass": (
        exercises.check_top_down_pass,
        lambda maps: exercises.top_down_pass(list(maps)),
        "dmf2mel.exercises.top_down_pass",
    ),
    "reference scan": (
        exercises.check_selective_scan,
        lambda *args: selective_scan(*args, backend="reference"),
        "dmf2mel.models.scan.selective_scan",
    ),
    "CPU scan": (
        exercises.check_selective_scan,
        lambda *args: selective_scan(*args, backend="cpu"),
        "dmf2mel.models.scan.selective_scan",
    ),
    "F.linear": (exercises.check_band_head, _linear_head, "torch.nn.functional.linear"),
    "nn.Linear": (exercises.check_band_head, _layer_head, "torch.nn.functional.linear"),
    "viz.vocode": (
        exercises.check_noise_vocoder,
        lambda m, c, s, r: vocode(m, sfreq_audio=s, mel_sfreq=r, seed=0),
        "dmf2mel.viz.vocode",
    ),
}


@pytest.mark.parametrize("case", DELEGATIONS)
def test_a_solution_that_calls_the_package_fails_and_is_told_why(case):
    check, delegate, name = DELEGATIONS[case]
    assert_rejected(check, delegate, "your function calls", name, "yourself")


def test_hams_forward_is_watched():
    """HAMSNet's forward computes the whole pass; calling it from a solution is delegation too."""

    def through_the_model(maps):
        HAMSNet(d_model=maps[0].shape[1], reduction=1, n_bottleneck_adaf=1).double()(maps[-1].transpose(1, 2))
        return top_down(maps)

    assert_rejected(exercises.check_top_down_pass, through_the_model, "HAMS-Net's own forward pass")


def test_watching_ends_with_the_check():
    """The profile hook is removed after the student's call, also when it raised."""
    import sys

    before = sys.getprofile()
    exercises.check_band_correlation(lambda p, t: 1 / 0)
    exercises.check_band_correlation(band_correlation)
    assert sys.getprofile() is before


# The chapters' own solutions ---------------------------------------------------------------------------------


def solution_checks():
    """(chapter, checker name) of every implement-it solution cell of the chapters."""
    for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        for cell in nbformat.read(path, as_version=4).cells:
            if cell.cell_type == "code" and "solution" in cell.metadata.get("tags", []):
                for name in sorted(set(re.findall(r"exercises\.(check_\w+)\(", cell.source))):
                    yield path.name, name


@pytest.mark.parametrize("chapter, check", list(solution_checks()))
def test_the_chapters_solutions_pass(chapter, check):
    """The function each solution cell defines (the chapter's imports and solution definitions only) passes."""
    notebook = nbformat.read(ROOT / "notebooks" / chapter, as_version=4)
    imports = next(cell.source for cell in notebook.cells if cell.cell_type == "code")
    namespace: dict = {}
    head = [node for node in ast.parse(imports).body if isinstance(node, (ast.Import, ast.ImportFrom))]
    exec(compile(ast.Module(head, []), "imports", "exec"), namespace)
    checked = None
    for cell in notebook.cells:
        if cell.cell_type != "code" or "solution" not in cell.metadata.get("tags", []):
            continue
        definitions = [node for node in ast.parse(cell.source).body if isinstance(node, ast.FunctionDef)]
        exec(compile(ast.Module(definitions, []), chapter, "exec"), namespace)
        if f"exercises.{check}(" in cell.source:
            checked = definitions[-1].name
    getattr(exercises, check)(namespace[checked]).assert_passed()


# The verdicts themselves -------------------------------------------------------------------------------------


def test_an_unfilled_scaffold_is_a_verdict_not_a_crash():
    def scaffold(pred, true): ...

    result = exercises.check_band_correlation(scaffold)
    assert not result and "returned None" in said(result) and "`...`" in said(result)
    with pytest.raises(AssertionError, match="returned None"):
        result.assert_passed()
    assert repr(result) == result.message


def test_a_verdict_on_an_error_names_the_input_and_the_line():
    result = exercises.check_band_head(lambda f, w, b: f @ w + b)
    assert "random input 1" in said(result) and "(2, 7, 16)" in said(result) and "in line" in said(result)


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
