"""Checkers for the book's implement-it exercises.

Each chapter from 3 on asks the student to write one piece of the pipeline (a per-band Pearson r,
the cubic B-spline basis, the selective scan as a loop, ...) in a scaffold. A ``check_*`` function
here calls that function on a few random inputs, compares what it returns with what the package
itself computes, and returns a :class:`CheckResult` whose text says, in plain words, whether the
two agree and if not, what differs, where and by how much; it also recognises a few typical mistakes
(a wrong axis, a missing normalisation, ``repeat`` instead of ``repeat_interleave``) and names them.
The random inputs are chosen so that the usual wrong answers cannot pass by luck: anti-correlated and
constant bands, band counts other than 10, odd lengths. A solution that only calls the package's own
implementation (the reference the checker compares with) fails too: the checker watches the calls
made while the student's function runs and names the one it must not use.

>>> from dmf2mel import exercises
>>> exercises.check_band_correlation(my_band_correlation)  # doctest: +SKIP
✓ band correlation: correct on 3 random inputs (largest difference 2.2e-16).

The book's solution cells end with ``.assert_passed()``, which raises when the check fails, so a
wrong solution fails the book build. A checker never raises because of the student's function: an
exception it throws, a ``None`` left by an unfilled scaffold or a wrong shape are all verdicts.

Conventions follow the package: mel and EEG arrays are time-major ``(time, n_mels)``; the model
modules' inner maps are channel-first ``(batch, channels, time)``.
"""

from __future__ import annotations

import sys
import textwrap
import traceback
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from dmf2mel import metrics
from dmf2mel.data.features import FMAX, FMIN
from dmf2mel.models import kan
from dmf2mel.models.dcfam import DCFAM
from dmf2mel.models.hams import HAMSNet
from dmf2mel.models.scan import selective_scan, selective_scan_cpu, selective_scan_cuda, selective_scan_reference
from dmf2mel.viz import audio as viz_audio
from dmf2mel.viz.audio import band_carriers

__all__ = [
    "CheckResult",
    "check_band_correlation",
    "check_band_head",
    "check_choose_candidate",
    "check_cubic_bases",
    "check_delay_matrix",
    "check_neighbourhood_aggregation",
    "check_noise_vocoder",
    "check_selective_scan",
    "check_shifted_null",
    "check_top_down_pass",
    "neighbourhood_aggregation",
    "top_down_pass",
]

N_TRIALS = 3
SEED = 2024
VERDICT_WIDTH = 80  # characters per line of a verdict, so that it fits a notebook's or the book's output box


@dataclass(frozen=True)
class CheckResult:
    """The verdict of a checker.

    Attributes
    ----------
    exercise : str
        What was checked, e.g. ``"band correlation"``.
    passed : bool
        True when the student's function agreed with the package on every input.
    message : str
        The verdict in words (what shows in a notebook).
    max_abs_error : float or None
        The largest absolute difference found, when the shapes agreed.
    where : dict or None
        Where that difference is, by axis name, e.g. ``{"band": 3}``.
    """

    exercise: str
    passed: bool
    message: str
    max_abs_error: float | None = None
    where: dict | None = None

    def __bool__(self) -> bool:
        return self.passed

    def __repr__(self) -> str:
        return self.message

    def assert_passed(self) -> CheckResult:
        """Raise ``AssertionError`` with the verdict unless the check passed; return ``self``."""
        if not self.passed:
            raise AssertionError(self.message)
        return self


@dataclass(frozen=True)
class _Mistake:
    """A typical wrong answer: what it computes (same inputs as the reference) and what to say about it."""

    compute: Callable
    hint: str


@dataclass(frozen=True)
class _Forbidden:
    """Package code a solution must not call: it computes the answer itself."""

    functions: Sequence[Callable]
    name: str


def _code_of(function: Callable):
    """The code object a Python function runs, or None for a builtin (watched by identity)."""
    function = getattr(function, "__func__", function)
    return getattr(function, "__code__", None)


@contextmanager
def _watching(forbidden: Sequence[_Forbidden]):
    """Record in the yielded list the name of every forbidden function called inside the block.

    A profile hook sees each call by its code object (Python functions, whatever name the student
    imported them under) or by identity (builtins such as ``torch.nn.functional.linear``).
    """
    codes = {_code_of(f): rule.name for rule in forbidden for f in rule.functions if _code_of(f) is not None}
    builtins = {id(f): rule.name for rule in forbidden for f in rule.functions if _code_of(f) is None}
    called: list[str] = []

    def hook(frame, event, arg):
        if event == "call" and frame.f_code in codes:
            called.append(codes[frame.f_code])
        elif event == "c_call" and id(arg) in builtins:
            called.append(builtins[id(arg)])

    previous = sys.getprofile()
    sys.setprofile(hook)
    try:
        yield called
    finally:
        sys.setprofile(previous)


def _shapes(case: tuple) -> str:
    """The shapes of a case's arrays, e.g. ``(640, 13), (640, 13)``, to say which input broke a solution."""
    shapes = [tuple(x.shape) for x in case if hasattr(x, "shape")]
    return ", ".join(str(shape) for shape in shapes)


def _as_array(value) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    return np.asarray(value, dtype=np.float64)


def _location(index: tuple[int, ...], axes: Sequence[str]) -> dict:
    return {name: int(i) for name, i in zip(axes, index)}


def _describe(where: dict) -> str:
    return ", ".join(f"{name} {i}" for name, i in where.items())


def _matches(got: np.ndarray, expected: np.ndarray, rtol: float, atol: float) -> bool:
    return got.shape == expected.shape and np.allclose(got, expected, rtol=rtol, atol=atol, equal_nan=True)


def _constant_factor(got: np.ndarray, expected: np.ndarray, atol: float) -> float | None:
    """``c`` when ``got`` is ``c * expected`` (c not 1), else None."""
    mask = np.abs(expected) > 10 * atol
    if not mask.any() or not np.isfinite(got[mask]).all():
        return None
    ratios = got[mask] / expected[mask]
    factor = float(np.median(ratios))
    if abs(factor - 1) > 1e-3 and np.allclose(ratios, factor, rtol=1e-4):
        return factor
    return None


def _verdict(exercise: str, passed: bool, text: str, max_abs_error=None, where=None) -> CheckResult:
    """A :class:`CheckResult` whose message is wrapped to :data:`VERDICT_WIDTH` characters."""
    lines = [
        textwrap.fill(line, VERDICT_WIDTH, subsequent_indent="  ", break_long_words=False, break_on_hyphens=False)
        for line in text.split("\n")
    ]
    return CheckResult(exercise, passed, "\n".join(lines), max_abs_error, where)


def _error_text(error: Exception) -> str:
    """``Type: message``, with the student's line that raised it when its source is known."""
    frames = [f for f in traceback.extract_tb(error.__traceback__) if "site-packages" not in f.filename]
    text = f"{type(error).__name__}: {error}"
    if frames and frames[-1].line:
        text += f"\n  in line {frames[-1].lineno}: {frames[-1].line}"
    return text


def _check(
    exercise: str,
    student: Callable,
    cases: Sequence[tuple],
    reference: Callable,
    axes: Sequence[str],
    against: str,
    mistakes: Sequence[_Mistake] = (),
    rtol: float = 1e-5,
    atol: float = 1e-6,
    forbidden: Sequence[_Forbidden] = (),
) -> CheckResult:
    """Run ``student(*case)`` and ``reference(*case)`` on every case and compare.

    The student's function runs with numpy's and Python's warnings silenced (a 0/0 in a constant band
    is part of the exercise, the verdict says what counts) and with ``forbidden`` watched.
    """
    worst_error = 0.0
    for trial, case in enumerate(cases, start=1):
        try:
            with warnings.catch_warnings(), np.errstate(all="ignore"), _watching(forbidden) as called:
                warnings.simplefilter("ignore")
                answer = student(*case)
        except Exception as error:  # the student's bug is the verdict, not a crash of the checker
            return _verdict(
                exercise,
                False,
                f"✗ {exercise}: on random input {trial} (shapes {_shapes(case)}) your function raised "
                f"{_error_text(error)}",
            )
        if called:
            return _verdict(
                exercise,
                False,
                f"✗ {exercise}: your function calls {called[0]}, the package's own answer to this "
                "exercise. Write the computation yourself.",
            )
        if answer is None or answer is Ellipsis:
            return _verdict(
                exercise, False, f"✗ {exercise}: your function returned {answer!r}. Replace the `...` with your code."
            )
        expected = _as_array(reference(*case))
        got = _as_array(answer)
        if got.shape != expected.shape:
            hint = next((m.hint for m in mistakes if _matches(got, _as_array(m.compute(*case)), rtol, atol)), "")
            return _verdict(
                exercise,
                False,
                f"✗ {exercise}: on random input {trial} (shapes {_shapes(case)}) your result has shape "
                f"{got.shape}, expected {expected.shape} ({', '.join(axes)}).{' Hint: ' + hint if hint else ''}",
            )
        both_nan = np.isnan(got) & np.isnan(expected)
        difference = np.where(both_nan, 0.0, np.abs(got - expected))
        difference = np.where(np.isnan(difference), np.inf, difference)
        if not np.allclose(got, expected, rtol=rtol, atol=atol, equal_nan=True):
            index = np.unravel_index(np.argmax(difference), difference.shape)
            where = _location(index, axes)
            n_wrong = int((difference > atol + rtol * np.abs(expected)).sum())
            message = (
                f"✗ {exercise}: {n_wrong} of {got.size} values differ on random input {trial}. The largest "
                f"difference is {difference[index]:.3g}"
                + (f" at {_describe(where)}" if where else "")
                + f": yours {got[index]:.6g}, expected {expected[index]:.6g}."
            )
            hint = next((m.hint for m in mistakes if _matches(got, _as_array(m.compute(*case)), rtol, atol)), "")
            factor = _constant_factor(got, expected, atol)
            if hint:
                message += f"\n  Hint: {hint}"
            elif factor is not None:
                message += f"\n  Hint: every value is {factor:.4g} times the expected one: a scale factor is off."
            return _verdict(exercise, False, message, float(difference[index]), where)
        worst_error = max(worst_error, float(difference.max()) if difference.size else 0.0)
    return _verdict(
        exercise,
        True,
        f"✓ {exercise}: correct on {len(cases)} random inputs, the same as {against} "
        f"(largest difference {worst_error:.2g}).",
        worst_error,
    )


# ---------------------------------------------------------------------------------------------------------------
# Chapter 3: per-band Pearson r and the circular-shift null
# ---------------------------------------------------------------------------------------------------------------


# Band counts of the random inputs: 10 as in the model, then others, so that a hard-coded 10 fails.
BAND_COUNTS = (10, 13, 6)
CONSTANT_LEVEL = 3.0  # a constant band's value: exact in binary, so that its mean is exact and its r is 0/0


def _mel_pairs(rng: np.random.Generator, constant_band: bool = False) -> list[tuple[np.ndarray, np.ndarray]]:
    """Random (pred, true) pairs, (time, n_mels), of different lengths, scales and band counts.

    About half the bands of each pair are anti-correlated (so ``np.abs(r)`` or ``r ** 2`` cannot pass),
    and with ``constant_band`` one band of the last prediction is constant (its r is undefined, NaN).
    """
    pairs = []
    for n_times, n_mels in list(zip((640, 97, 321), BAND_COUNTS))[:N_TRIALS]:
        true = np.cumsum(rng.standard_normal((n_times, n_mels)), axis=0)
        signs = np.where(np.arange(n_mels) % 2 == 0, 1.0, -1.0)
        pred = 0.3 * signs * true + rng.standard_normal((n_times, n_mels)) * rng.uniform(0.5, 5, n_mels) + 2.0
        pairs.append((pred, true))
    if constant_band:
        pairs[-1][0][:, 1] = CONSTANT_LEVEL
    return pairs


def _uncentred_r(p: np.ndarray, t: np.ndarray) -> np.ndarray:
    """The correlation formula without subtracting the means over time (a cosine similarity per band)."""
    return (p * t).sum(axis=0) / np.sqrt((p**2).sum(axis=0) * (t**2).sum(axis=0))


def check_band_correlation(band_correlation: Callable) -> CheckResult:
    """Check ``band_correlation(pred, true) -> r`` against :func:`dmf2mel.metrics.pearsonr_time`.

    ``pred`` and ``true`` are ``(time, n_mels)`` numpy arrays; ``r`` is ``(n_mels,)``, the Pearson
    correlation over time of each band, with its sign; NaN for a band that is constant over time (its
    r is 0/0, as ``scipy.stats.pearsonr`` says).
    """

    def centred(x):
        return x - x.mean(axis=0)

    def r_of(p, t):
        return metrics.pearsonr_time(p, t)

    mistakes = [
        _Mistake(lambda p, t: metrics.pearsonr_time(p.T, t.T), "you correlated across bands; r is over time (axis 0)."),
        _Mistake(
            lambda p, t: (centred(p) * centred(t)).mean(axis=0),
            "this is the covariance: divide by both standard deviations to get a correlation.",
        ),
        _Mistake(_uncentred_r, "subtract each band's mean over time first (Pearson r ignores offsets)."),
        _Mistake(
            lambda p, t: _uncentred_r(p - p.mean(axis=1, keepdims=True), t - t.mean(axis=1, keepdims=True)),
            "you subtracted the mean over bands (axis 1); centre each band on its mean over time (axis 0).",
        ),
        _Mistake(lambda p, t: np.nanmean(r_of(p, t)), "return one r per band, not their mean."),
        _Mistake(
            lambda p, t: np.abs(r_of(p, t)),
            "some bands are anti-correlated: keep the sign of r (no np.abs).",
        ),
        _Mistake(lambda p, t: r_of(p, t) ** 2, "this is r squared: keep r itself, with its sign."),
        _Mistake(lambda p, t: -r_of(p, t), "the sign is flipped: r is positive when both rise together."),
        _Mistake(
            lambda p, t: r_of(p[:, :10], t[:, :10]),
            "you computed 10 bands; take the number of bands from the input (pred.shape[1]).",
        ),
        _Mistake(
            lambda p, t: np.nan_to_num(r_of(p, t)),
            f"a band that is constant over time has no correlation: its r is 0/0, NaN (as "
            f"scipy.stats.pearsonr gives), not 0. The last input has a constant band (value {CONSTANT_LEVEL:g}).",
        ),
    ]
    unmatched_ddof = (
        "the normalisations do not match: divide the sum of products by the square root of the sums of "
        "squares (or use the same ddof for the covariance and for np.std)."
    )
    mistakes += [
        _Mistake(lambda p, t: r_of(p, t) * (len(p) - 1) / len(p), unmatched_ddof),
        _Mistake(lambda p, t: r_of(p, t) * len(p) / (len(p) - 1), unmatched_ddof),
    ]
    return _check(
        "band correlation",
        band_correlation,
        _mel_pairs(np.random.default_rng(SEED), constant_band=True),
        metrics.pearsonr_time,
        ("band",),
        "dmf2mel.metrics.pearsonr_time",
        mistakes,
        rtol=1e-6,
        atol=1e-9,
        forbidden=[_Forbidden([metrics.pearsonr_time], "dmf2mel.metrics.pearsonr_time")],
    )


def _shifted_null_reference(pred: np.ndarray, true: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    return np.array([np.nanmean(metrics.pearsonr_time(pred, np.roll(true, int(s), axis=0))) for s in shifts])


def check_shifted_null(shifted_null: Callable) -> CheckResult:
    """Check ``shifted_null(pred, true, shifts) -> null`` (the chance distribution of chapter 3).

    For each lag ``s`` in ``shifts``, the true mel is shifted circularly in time,
    ``np.roll(true, s, axis=0)``, and correlated with the prediction band by band; ``null[i]`` is
    the mean over bands of those r. The metrics of :mod:`dmf2mel.metrics` draw their chance level
    from exactly these values (its 95th percentile).
    """
    rng = np.random.default_rng(SEED + 1)
    cases = [(pred, true, rng.integers(64, len(true) - 16, size=20)) for pred, true in _mel_pairs(rng)]

    def per_lag(p, t, shifts, roll, average=np.nanmean):
        return np.array([average(metrics.pearsonr_time(p, roll(t, int(s)))) for s in shifts])

    def cropped(p, t, shifts):
        return np.array([np.nanmean(metrics.pearsonr_time(p[s:], t[: len(t) - s])) for s in shifts])

    mistakes = [
        _Mistake(
            lambda p, t, s: _shifted_null_reference(p, t, -s),
            "your lags go the other way: use np.roll(true, s, axis=0) (or roll pred by -s).",
        ),
        _Mistake(cropped, "you shifted by cropping, which drops samples; the null uses a circular shift (np.roll)."),
        _Mistake(
            lambda p, t, s: per_lag(p, t, s, lambda x, k: np.roll(x, k, axis=1)),
            "you shifted along the bands (axis 1); shift in time (axis 0).",
        ),
        _Mistake(
            lambda p, t, s: per_lag(p, t, s, lambda x, k: np.roll(x, k)),
            "np.roll without axis= rolls the flattened array, mixing bands: pass axis=0.",
        ),
        _Mistake(
            lambda p, t, s: _shifted_null_reference(p, t, s + 1),
            "your lags are off by one (s + 1): shift by exactly s.",
        ),
        _Mistake(
            lambda p, t, s: _shifted_null_reference(p, t, s - 1),
            "your lags are off by one (s - 1): shift by exactly s.",
        ),
        _Mistake(
            lambda p, t, s: np.stack([metrics.pearsonr_time(p, np.roll(t, int(k), axis=0)) for k in s]),
            "average r over the bands: one value per lag, shape (n_shifts,).",
        ),
        _Mistake(
            lambda p, t, s: per_lag(p, t, s, lambda x, k: np.roll(x, k, axis=0), lambda r: np.nanmean(np.abs(r))),
            "keep the sign of each band's r before averaging (no np.abs).",
        ),
        _Mistake(
            lambda p, t, s: np.full(len(s), np.nanmean(metrics.pearsonr_time(p, t))),
            "every lag gave the unshifted r: shift the true mel by each s before correlating.",
        ),
    ]
    return _check(
        "circular-shift null",
        shifted_null,
        cases,
        _shifted_null_reference,
        ("shift",),
        "the metrics' null (dmf2mel.metrics.pearsonr_time on np.roll-ed targets)",
        mistakes,
        rtol=1e-6,
        atol=1e-9,
        forbidden=[
            _Forbidden([metrics.windowed_score, metrics._circular_xcorr], "the metrics' own null (dmf2mel.metrics)")
        ],
    )


# ---------------------------------------------------------------------------------------------------------------
# Linear models: the time-delayed design matrix
# ---------------------------------------------------------------------------------------------------------------


def check_delay_matrix(delay_matrix: Callable) -> CheckResult:
    """Check ``delay_matrix(x, delays) -> X`` against :func:`dmf2mel.trf.delay_matrix`.

    ``x`` is ``(time, n_features)``, ``delays`` an ascending int array (samples; positive looks into the past);
    ``X[t, d * n_features + f] = x[t - delays[d], f]``, zero where ``t - delays[d]`` is outside ``x``.
    """
    from dmf2mel import trf

    rng = np.random.default_rng(SEED + 2)
    cases = [
        (rng.standard_normal((40, 3)), np.arange(0, 6)),
        (rng.standard_normal((25, 2)), np.arange(-4, 1)),
        (rng.standard_normal((30, 4)), np.arange(-2, 3)),
    ]

    def feature_major(x, delays):
        n = len(x)
        return trf.delay_matrix(x, delays).reshape(n, len(delays), -1).transpose(0, 2, 1).reshape(n, -1)

    def wrapped(x, delays):
        return np.concatenate([np.roll(x, int(d), axis=0) for d in delays], axis=1)

    def ahead(x, delays):
        n = len(x)
        return trf.delay_matrix(x, -delays[::-1]).reshape(n, len(delays), -1)[:, ::-1].reshape(n, -1)

    mistakes = [
        _Mistake(ahead, "your delays go the wrong way: x[t - d], not x[t + d]."),
        _Mistake(feature_major, "the columns are grouped by feature; group them by delay (d * n_features + f)."),
        _Mistake(wrapped, "np.roll wraps the end around to the start: fill the shifted-in samples with zeros."),
    ]
    return _check(
        "delay matrix",
        delay_matrix,
        cases,
        trf.delay_matrix,
        ("time", "column"),
        "dmf2mel.trf.delay_matrix (and MNE's ReceptiveField)",
        mistakes,
        rtol=0,
        atol=1e-12,
    )


# ---------------------------------------------------------------------------------------------------------------
# Match-mismatch: deciding by correlation
# ---------------------------------------------------------------------------------------------------------------


def _choose_reference(reconstruction: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    from dmf2mel import match_mismatch

    return np.argmax(match_mismatch.correlation_scores(reconstruction, candidates), axis=1)


def check_choose_candidate(choose: Callable) -> CheckResult:
    """Check ``choose(reconstruction, candidates) -> choice`` against :func:`dmf2mel.match_mismatch.correlation_scores`.

    ``reconstruction`` is ``(n, time, n_features)``, ``candidates`` ``(n, K, time, n_features)``; ``choice`` is
    ``(n,)``, the index of the candidate whose Pearson r over time with the reconstruction, averaged over the
    features, is highest.
    """
    rng = np.random.default_rng(SEED + 3)
    cases = []
    for n, k, n_times, n_features in ((30, 5, 64, 10), (40, 2, 50, 1), (25, 3, 80, 4)):
        candidates = np.cumsum(rng.standard_normal((n, k, n_times, n_features)), axis=2)
        candidates *= rng.uniform(0.2, 5.0, (n, k, 1, 1))  # loudness differs: covariance would prefer loud ones
        candidates += rng.uniform(-3, 3, (n, k, 1, 1))
        label = rng.integers(k, size=n)
        heard = candidates[np.arange(n), label]
        noise = rng.standard_normal(heard.shape) * heard.std(axis=1, keepdims=True)
        cases.append((heard + 1.5 * noise, candidates))

    def covariance_choice(reconstruction, candidates):
        centred = candidates - candidates.mean(axis=2, keepdims=True)
        rec = reconstruction - reconstruction.mean(axis=1, keepdims=True)
        return np.argmax((centred * rec[:, None]).sum(axis=(2, 3)), axis=1)

    mistakes = [
        _Mistake(lambda r, c: np.argmin(metrics.pearsonr_time(r[:, None], c).mean(-1), axis=1), "pick the largest r."),
        _Mistake(covariance_choice, "compare correlations, not covariances: louder candidates must not win."),
        _Mistake(
            lambda r, c: np.argmax(metrics.pearsonr_time(r[:, None].swapaxes(-1, -2), c.swapaxes(-1, -2)).mean(-1), 1),
            "correlate over time (the time axis), not across features.",
        ),
    ]
    return _check(
        "choose the candidate",
        choose,
        cases,
        _choose_reference,
        ("trial",),
        "dmf2mel.match_mismatch.correlation_scores",
        mistakes,
        rtol=0,
        atol=0,
    )


# ---------------------------------------------------------------------------------------------------------------
# Chapter 6: the cubic B-spline basis
# ---------------------------------------------------------------------------------------------------------------


def _spline_bases_reference(x: torch.Tensor, grid_size: int) -> torch.Tensor:
    return kan.b_spline_bases_reference(x, kan.uniform_knots(grid_size, dtype=x.dtype))


def check_cubic_bases(cubic_bases: Callable) -> CheckResult:
    """Check ``cubic_bases(x, grid_size) -> bases`` against the package's Cox–de Boor recursion.

    ``x`` is a 1-D float64 tensor of points in ``[-1, 1]``; ``bases`` is ``(len(x), grid_size + 3)``:
    the cubic B-spline bases on :func:`dmf2mel.models.kan.uniform_knots` (``grid_size`` intervals
    over ``[-1, 1]``, three extra knots on each side), as in every KAN layer of the model.
    """
    rng = np.random.default_rng(SEED + 2)
    cases = [(torch.from_numpy(rng.uniform(-1, 1, 50)), grid_size) for grid_size in (5, 8, 3)[:N_TRIALS]]

    def of_order(order):
        return lambda x, g: kan.b_spline_bases_reference(x, kan.uniform_knots(g, order, dtype=x.dtype), order)

    def on_knots(knots):
        return lambda x, g: kan.b_spline_bases_reference(x, knots(g, x.dtype))

    mistakes = [
        _Mistake(of_order(2), "these are quadratic B-splines: a cubic basis needs three rounds of the recursion."),
        _Mistake(of_order(1), "these are linear B-splines (hat functions): a cubic basis needs three rounds."),
        _Mistake(
            on_knots(lambda g, dtype: torch.linspace(-1, 1, g + 1, dtype=dtype)),
            "extend the grid by three knots on each side (kan.uniform_knots does): "
            "otherwise the bases near the ends are missing.",
        ),
        _Mistake(lambda x, g: _spline_bases_reference(x, g).T, "your result is transposed: one row per point."),
        _Mistake(
            lambda x, g: _spline_bases_reference(x, g + 1),
            "one basis too many: grid_size intervals carry grid_size + 3 cubic bases.",
        ),
        _Mistake(
            lambda x, g: _spline_bases_reference(x, g - 1),
            "one basis too few: grid_size intervals carry grid_size + 3 cubic bases.",
        ),
        _Mistake(
            lambda x, g: _spline_bases_reference(x, cases[0][1]),
            "use the grid_size you are given, not a fixed number of intervals.",
        ),
        _Mistake(
            on_knots(lambda g, dtype: kan.uniform_knots(g, grid_range=(0.0, 1.0), dtype=dtype)),
            "the grid spans [-1, 1], not [0, 1].",
        ),
    ]
    return _check(
        "cubic B-spline bases",
        cubic_bases,
        cases,
        _spline_bases_reference,
        ("point", "basis"),
        "dmf2mel.models.kan.b_spline_bases_reference",
        mistakes,
        rtol=1e-6,
        atol=1e-9,
        forbidden=[
            _Forbidden(
                [kan.b_spline_bases_reference, kan.uniform_cubic_bases, kan.local_to_dense, kan.KANLinear.forward],
                "the package's B-splines (dmf2mel.models.kan)",
            )
        ],
    )


# ---------------------------------------------------------------------------------------------------------------
# Chapter 7: DC-FAM's normalised neighbourhood aggregation
# ---------------------------------------------------------------------------------------------------------------


def neighbourhood_aggregation(v: torch.Tensor, logits: torch.Tensor, normalise: bool = True) -> torch.Tensor:
    """DC-FAM's aggregation: each step of ``v`` becomes a weighted sum of its zero-padded neighbourhood.

    Parameters
    ----------
    v : (batch, channels, time)
        The values; ``channels`` splits into ``n_heads`` consecutive groups, one per head.
    logits : (batch, n_heads, kernel_size, time)
        The predicted weight of each neighbour ``j`` (time offset ``j - kernel_size // 2``) per head
        and step, before the softmax over the neighbourhood.
    normalise : bool
        Softmax over the neighbourhood (DCFAM's default); False applies the raw logits, as the
        official code does.

    Returns
    -------
    (batch, channels, time)
    """
    return _aggregate(v, logits, normalise)


def _aggregate(v: torch.Tensor, logits: torch.Tensor, normalise: bool = True, late: int = 0) -> torch.Tensor:
    """:func:`neighbourhood_aggregation`, its windows moved ``late`` steps later (a wrong padding when not 0)."""
    batch, channels, time = v.shape
    n_heads, kernel_size = logits.shape[1], logits.shape[2]
    weights = torch.softmax(logits, dim=2) if normalise else logits
    padded = F.pad(v, (kernel_size // 2 + late, kernel_size // 2 - late))
    windows = padded.unfold(-1, kernel_size, 1)  # (batch, channels, time, kernel_size)
    windows = windows.reshape(batch, n_heads, channels // n_heads, time, kernel_size)
    return torch.einsum("bhctk,bhkt->bhct", windows, weights).reshape(batch, channels, time)


def check_neighbourhood_aggregation(aggregate: Callable) -> CheckResult:
    """Check ``aggregate(v, logits) -> out``, DC-FAM's softmax neighbourhood aggregation.

    See :func:`neighbourhood_aggregation` for the shapes; the same computation runs inside
    :class:`dmf2mel.models.DCFAM` for both of its branches.
    """
    generator = torch.Generator().manual_seed(SEED + 3)
    cases = []
    for batch, n_heads, head_size, kernel_size, time in ((2, 2, 3, 3, 11), (1, 1, 4, 5, 7), (3, 4, 2, 3, 9)):
        v = torch.randn(batch, n_heads * head_size, time, generator=generator, dtype=torch.float64)
        logits = 2 * torch.randn(batch, n_heads, kernel_size, time, generator=generator, dtype=torch.float64)
        cases.append((v, logits))

    def circular(v, logits):
        k = logits.shape[2] // 2
        padded = torch.cat([v[..., -k:], v, v[..., :k]], dim=-1)
        trimmed = neighbourhood_aggregation(padded, F.pad(logits, (k, k)))
        return trimmed[..., k:-k]

    def interleaved(v, logits):
        """Heads taking every n_heads-th channel instead of consecutive groups."""
        batch, channels, time = v.shape
        n_heads = logits.shape[1]
        grouped = v.view(batch, channels // n_heads, n_heads, time).transpose(1, 2).reshape(batch, channels, time)
        out = neighbourhood_aggregation(grouped, logits)
        return out.view(batch, n_heads, channels // n_heads, time).transpose(1, 2).reshape(batch, channels, time)

    mistakes = [
        _Mistake(
            lambda v, lg: neighbourhood_aggregation(v, lg, normalise=False),
            "the weights are not normalised (the official code's version): apply a softmax over the "
            "neighbourhood (dim=2) first.",
        ),
        _Mistake(
            lambda v, lg: neighbourhood_aggregation(v, torch.softmax(lg, dim=3), normalise=False),
            "the softmax runs over time; it should run over the neighbourhood (dim=2).",
        ),
        _Mistake(
            lambda v, lg: neighbourhood_aggregation(v, torch.softmax(lg, dim=1), normalise=False),
            "the softmax runs over the heads; it should run over the neighbourhood (dim=2).",
        ),
        _Mistake(circular, "the ends wrap around: pad with zeros (F.pad), not circularly."),
        _Mistake(
            lambda v, lg: neighbourhood_aggregation(v, lg.flip(2)),
            "your neighbourhood runs backwards: weight j belongs to the step at offset j - kernel_size // 2.",
        ),
        _Mistake(
            lambda v, lg: _aggregate(v, lg, late=1),
            "your windows are one step late: centre them on t (pad kernel_size // 2 on each side).",
        ),
        _Mistake(
            lambda v, lg: _aggregate(v, lg, late=-1),
            "your windows are one step early: centre them on t (pad kernel_size // 2 on each side).",
        ),
        _Mistake(
            interleaved,
            "channels form n_heads consecutive groups (head 0 has the first channels // n_heads), not every "
            "n_heads-th channel.",
        ),
    ]
    return _check(
        "neighbourhood aggregation",
        aggregate,
        cases,
        neighbourhood_aggregation,
        ("batch", "channel", "time step"),
        "DC-FAM's aggregation",
        mistakes,
        forbidden=[
            _Forbidden([neighbourhood_aggregation], "dmf2mel.exercises.neighbourhood_aggregation"),
            _Forbidden([DCFAM._neighbourhoods, DCFAM.neighbourhood_weights, DCFAM.forward], "DC-FAM's own code"),
        ],
    )


# ---------------------------------------------------------------------------------------------------------------
# Chapter 8: HAMS-Net's top-down pass
# ---------------------------------------------------------------------------------------------------------------


def top_down_pass(decoded: Sequence[torch.Tensor]) -> torch.Tensor:
    """HAMS-Net's top-down pass: from the coarsest decoder map to the finest, each map plus the running sum upsampled.

    ``decoded`` holds the decoder maps coarse to fine, ``(batch, channels, T/8)``, ``(.., T/4)``, ``(.., T/2)``,
    ``(.., T)``; the result ``d_T + up(d_{T/2} + up(d_{T/4} + up(d_{T/8})))`` is ``(batch, channels, T)``, ``up``
    doubling each step (nearest neighbour), as in :meth:`dmf2mel.models.HAMSNet.forward`.
    """
    total = decoded[0]
    for finer in decoded[1:]:
        total = finer + total.repeat_interleave(2, dim=-1)
    return total


def check_top_down_pass(top_down: Callable) -> CheckResult:
    """Check ``top_down(decoded) -> out``, HAMS-Net's coarse-to-fine sum (see :func:`top_down_pass`)."""
    generator = torch.Generator().manual_seed(SEED + 4)
    cases = []
    for batch, channels, time in ((2, 3, 16), (1, 5, 8), (2, 2, 24)):
        maps = [
            torch.randn(batch, channels, time // 2**s, generator=generator, dtype=torch.float64) for s in (3, 2, 1, 0)
        ]
        cases.append((maps,))

    def with_up(up):
        def top_down_with(decoded):
            total = decoded[0]
            for finer in decoded[1:]:
                total = finer + up(total)
            return total

        return top_down_with

    def linear_up(x):
        return F.interpolate(x, scale_factor=2, mode="linear", align_corners=False)

    def averaged(decoded):
        total = decoded[0]
        for finer in decoded[1:]:
            total = (finer + total.repeat_interleave(2, dim=-1)) / 2
        return total

    mistakes = [
        _Mistake(
            with_up(lambda x: x.repeat(1, 1, 2)),
            "x.repeat(1, 1, 2) tiles the whole sequence twice; each step must be doubled in place "
            "(x.repeat_interleave(2, dim=-1)).",
        ),
        _Mistake(with_up(linear_up), "HAMS-Net upsamples by repeating each step (nearest neighbour), not linearly."),
        _Mistake(lambda decoded: top_down_pass(decoded[1:]), "the coarsest map (T/8) is missing: start from it."),
        _Mistake(lambda decoded: decoded[-1], "you returned the finest map alone: add the upsampled coarser maps."),
        _Mistake(
            lambda decoded: decoded[-1] + decoded[-2].repeat_interleave(2, dim=-1),
            "only the two finest maps are summed: carry the running sum up (total = finer + up(total)).",
        ),
        _Mistake(averaged, "you averaged each map with the upsampled sum: add them."),
    ]
    return _check(
        "top-down pass",
        top_down,
        cases,
        top_down_pass,
        ("batch", "channel", "time step"),
        "HAMS-Net's top-down pass",
        mistakes,
        forbidden=[
            _Forbidden([top_down_pass], "dmf2mel.exercises.top_down_pass"),
            _Forbidden([HAMSNet.forward], "HAMS-Net's own forward pass"),
        ],
    )


# ---------------------------------------------------------------------------------------------------------------
# Chapter 9: the selective scan as a loop
# ---------------------------------------------------------------------------------------------------------------


def _scan_reference(u, delta, A, B, C, D):
    return selective_scan(u, delta, A, B, C, D, backend="reference")


def check_selective_scan(scan: Callable) -> CheckResult:
    """Check ``scan(u, delta, A, B, C, D) -> out`` against :func:`dmf2mel.models.scan.selective_scan`.

    Shapes: ``u, delta (batch, dim, length)``, ``A (dim, d_state)``, ``B, C (batch, d_state, length)``,
    ``D (dim,)`` -> ``(batch, dim, length)``; ``delta`` is already positive (no bias, no softplus):
    ``h_t = exp(delta_t A) h_{t-1} + delta_t B_t u_t``, ``y_t = C_t . h_t + D u_t``, ``h_0 = 0``.
    """
    generator = torch.Generator().manual_seed(SEED + 5)
    cases = []
    for batch, dim, d_state, length in ((2, 3, 4, 12), (1, 2, 8, 20), (3, 4, 2, 7)):

        def randn(*shape):
            return torch.randn(*shape, generator=generator, dtype=torch.float64)

        u, delta = randn(batch, dim, length), F.softplus(randn(batch, dim, length))
        A = -torch.exp(randn(dim, d_state))
        cases.append((u, delta, A, randn(batch, d_state, length), randn(batch, d_state, length), randn(dim)))

    def euler(u, delta, A, B, C, D):
        return _wrong_scan(u, delta, A, B, C, D, euler_decay=True)

    def undelta_drive(u, delta, A, B, C, D):
        return _wrong_scan(u, delta, A, B, C, D, undelta_drive=True)

    def late_readout(u, delta, A, B, C, D):
        return _wrong_scan(u, delta, A, B, C, D, read_before_update=True)

    mistakes = [
        _Mistake(lambda u, dl, A, B, C, D: _scan_reference(u, dl, A, B, C, None), "the skip term D * u is missing."),
        _Mistake(euler, "the decay is exp(delta * A), not 1 + delta * A (that is only its first-order approximation)."),
        _Mistake(undelta_drive, "the input enters as delta_t * B_t * u_t: the step size multiplies B too."),
        _Mistake(
            late_readout,
            "y_t reads the state one step late: update h_t first, then y_t = C_t . h_t + D u_t.",
        ),
        _Mistake(
            lambda u, dl, A, B, C, D: _scan_reference(u, dl, -A, B, C, D),
            "A is negative already: the decay is exp(delta * A); exp(-delta * A) makes the state grow.",
        ),
        _Mistake(
            lambda u, dl, A, B, C, D: _scan_reference(u, dl, A, C, B, D),
            "B and C are swapped: B_t writes the input into the state, C_t reads the state out.",
        ),
        _Mistake(
            lambda u, dl, A, B, C, D: _scan_reference(u, F.softplus(dl), A, B, C, D),
            "delta is already positive here: use it as it is, without another softplus.",
        ),
    ]
    return _check(
        "selective scan",
        scan,
        cases,
        _scan_reference,
        ("batch", "channel", "time step"),
        "dmf2mel.models.scan.selective_scan",
        mistakes,
        forbidden=[
            _Forbidden(
                [selective_scan, selective_scan_reference, selective_scan_cpu, selective_scan_cuda, _scan_reference],
                "dmf2mel.models.scan.selective_scan",
            )
        ],
    )


def _wrong_scan(u, delta, A, B, C, D, euler_decay=False, undelta_drive=False, read_before_update=False):
    """The scan as a loop with a typical slip: a first-order decay ``1 + delta_t A`` instead of
    ``exp(delta_t A)`` (``euler_decay``), ``B_t u_t`` instead of ``delta_t B_t u_t`` as the input
    (``undelta_drive``), or ``y_t`` read from ``h_{t-1}`` (``read_before_update``)."""
    state, out = u.new_zeros(u.shape[0], u.shape[1], A.shape[1]), []
    for t in range(u.shape[-1]):
        step = delta[..., t, None]
        decay = 1 + step * A if euler_decay else torch.exp(step * A)
        drive = u[..., t, None] if undelta_drive else step * u[..., t, None]
        previous = state
        state = decay * state + drive * B[:, None, :, t]
        out.append(torch.einsum("bdn,bn->bd", previous if read_before_update else state, C[..., t]))
    return torch.stack(out, -1) + u * D[:, None]


# ---------------------------------------------------------------------------------------------------------------
# Chapter 10: the 10-band head
# ---------------------------------------------------------------------------------------------------------------


def check_band_head(band_head: Callable) -> CheckResult:
    """Check ``band_head(features, weight, bias) -> mel``, the model's last layer.

    ``features (batch, time, d_model)``, ``weight (n_mels, d_model)``, ``bias (n_mels,)`` ->
    ``(batch, time, n_mels)``: one linear read-out per mel band, applied at every time step, as
    ``DMF2Mel.head`` (a ``torch.nn.Linear(d_model, n_mels)``) computes it.
    """
    generator = torch.Generator().manual_seed(SEED + 6)
    cases = []
    for batch, time, d_model, n_mels in ((2, 7, 16, 10), (1, 5, 8, 10), (3, 4, 12, 6)):
        cases.append(
            (
                torch.randn(batch, time, d_model, generator=generator, dtype=torch.float64),
                torch.randn(n_mels, d_model, generator=generator, dtype=torch.float64),
                torch.randn(n_mels, generator=generator, dtype=torch.float64),
            )
        )

    def reference(features, weight, bias):
        head = torch.nn.Linear(weight.shape[1], weight.shape[0], dtype=weight.dtype)
        with torch.no_grad():
            head.weight.copy_(weight)
            head.bias.copy_(bias)
            return head(features)

    mistakes = [
        _Mistake(lambda f, w, b: f @ w.T, "the bias is missing."),
        _Mistake(
            lambda f, w, b: (f @ w[:1].T + b[:1]).expand(-1, -1, w.shape[0]),
            "every band got the same output: that is the official single head, broadcast to the bands.",
        ),
        _Mistake(
            lambda f, w, b: torch.softmax(f @ w.T + b, dim=-1),
            "no softmax: each band is its own linear read-out, not a share of a total.",
        ),
        _Mistake(
            lambda f, w, b: (f.mean(dim=1, keepdim=True) @ w.T + b).expand(-1, f.shape[1], -1),
            "the head reads out every time step on its own: do not average over time.",
        ),
    ]
    return _check(
        "10-band head",
        band_head,
        cases,
        reference,
        ("batch", "time step", "band"),
        "the model's head, torch.nn.Linear(d_model, n_mels)",
        mistakes,
        forbidden=[
            _Forbidden([F.linear, torch.nn.Linear.forward], "torch.nn.functional.linear (the head itself)"),
        ],
    )


# ---------------------------------------------------------------------------------------------------------------
# Chapter 12: the noise vocoder
# ---------------------------------------------------------------------------------------------------------------


def check_noise_vocoder(noise_vocoder: Callable, sfreq_audio: float = 16_000, mel_sfreq: float = 64) -> CheckResult:
    """Check ``noise_vocoder(mel, carriers, sfreq_audio, mel_sfreq) -> audio`` against :func:`dmf2mel.viz.vocode`.

    ``mel (n_frames, n_mels)`` is band power; ``carriers (n_mels, n_samples)`` are the band-limited
    noises (:func:`dmf2mel.viz.audio.band_carriers`), ``n_samples = round(n_frames * sfreq_audio /
    mel_sfreq)``. The audio is the sum over bands of ``sqrt(power)``, interpolated linearly from the
    frame centres ``(i + 0.5) / mel_sfreq`` to the sample centres ``(n + 0.5) / sfreq_audio``, times
    that band's carrier, scaled to a peak of 0.99 in absolute value (the second input's carriers are
    sign-flipped, so that its largest excursion is negative).
    """
    rng = np.random.default_rng(SEED + 7)
    cases = []
    for seed, (n_frames, n_mels), sign in zip(range(3), ((64, 10), (32, 10), (48, 6)), (1, -1, 1)):
        mel = np.abs(rng.standard_normal((n_frames, n_mels))) ** 2 * rng.uniform(0.1, 10, n_mels)
        n_samples = int(round(n_frames * sfreq_audio / mel_sfreq))
        carriers = sign * band_carriers(n_mels, n_samples, sfreq_audio, FMIN, FMAX, seed)
        cases.append((mel, carriers, sfreq_audio, mel_sfreq, seed, sign))

    def reference(mel, carriers, sfreq, rate, seed, sign):
        return sign * viz_audio.vocode(mel, sfreq_audio=sfreq, mel_sfreq=rate, seed=seed)

    def build(amplitude_of, hold=False, frame_offset=0.5, peak=lambda audio: np.abs(audio).max()):
        def vocoder(mel, carriers, sfreq, rate, *_):
            n_samples = carriers.shape[1]
            frames = (np.arange(len(mel)) + frame_offset) / rate
            samples = (np.arange(n_samples) + 0.5) / sfreq
            amplitude = amplitude_of(mel)
            if hold:
                envelopes = amplitude[np.minimum((samples * rate).astype(int), len(mel) - 1)].T
            else:
                envelopes = np.stack([np.interp(samples, frames, band) for band in amplitude.T])
            audio = (envelopes * carriers).sum(axis=0)
            return 0.99 * audio / peak(audio)

        return vocoder

    mistakes = [
        _Mistake(build(lambda m: m), "the mel holds power: the carriers' amplitude is its square root."),
        _Mistake(
            build(np.sqrt, hold=True),
            "each frame is held constant; interpolate the envelope linearly between frame centres (np.interp).",
        ),
        _Mistake(
            build(np.sqrt, peak=lambda audio: 0.99),
            "scale the audio to a peak of 0.99: divide by np.abs(audio).max() and multiply by 0.99.",
        ),
        _Mistake(
            build(np.sqrt, peak=np.max),
            "the peak is the largest absolute value (np.abs(audio).max()); a negative peak can be the larger.",
        ),
        _Mistake(
            build(np.sqrt, frame_offset=0.0),
            "frame i stands for the time (i + 0.5) / mel_sfreq, its centre, not i / mel_sfreq.",
        ),
    ]
    return _check(
        "noise vocoder",
        lambda mel, carriers, sfreq, rate, seed, sign: noise_vocoder(mel, carriers, sfreq, rate),
        cases,
        reference,
        ("audio sample",),
        "dmf2mel.viz.vocode",
        mistakes,
        rtol=1e-4,
        atol=2e-6,
        forbidden=[_Forbidden([viz_audio.vocode], "dmf2mel.viz.vocode")],
    )
