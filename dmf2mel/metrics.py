"""Evaluation metrics for mel reconstruction, each with a chance level and a p-value.

Two scores are reported (``book/architecture.md``, "Protocols and metrics"):

* **paper metric** (Fan et al. 2025): Pearson r over time within each 10 s window, per band; mean
  over bands and windows per recording; mean over recordings.
* **challenge metric** (ICASSP 2024 SP Grand Challenge, task 2): Pearson r per 30 s segment per
  band (``scipy.stats.pearsonr`` semantics) -> mean over bands -> mean per subject -> mean over
  subjects.

With scores around r = 0.05 a number alone says nothing, so every score comes with a **null
distribution**: the true mel of every window is circularly shifted in time by a random lag (the same
lag for all bands of a window, at least :data:`MIN_SHIFT_SECONDS` and at most the window length
minus that), and the score is recomputed with exactly the same aggregation. A circular shift keeps
each signal's spectrum and the correlation between bands but breaks the alignment between
prediction and stimulus. ``chance_r`` is the 95th percentile of that null and ``p_value`` the
one-sided permutation p-value ``(1 + #{null >= observed}) / (1 + n_null)``.

The correlations for *every* lag of a window come from one FFT (circular cross-correlation of the
z-scored signals), so a null of a thousand draws costs about as much as the observed score.

Conventions: predictions and targets are ``(time, n_mels)`` arrays, time-major at 64 Hz; only full
windows are scored (a trailing remainder is dropped, as in the paper); a recording shorter than one
window but at least ``min_samples`` long is scored as a single window of its own length (so short
test parts still count); a window in which either signal is constant has r = NaN (scipy's
convention) and is left out of the means.

A prediction with NaN or infinite values is a failure of the model, and a failure is never left out of a score
without a word: by default (``non_finite="raise"``) scoring it raises
:class:`~dmf2mel.errors.NonFinitePrediction`, naming the recording; with ``non_finite="fail"`` every window that
holds such a value scores r = 0 in every band (in the null too: a failure is worth no more than chance either way)
and the result counts them in ``n_failed_windows``. A true mel with such values is bad data
(:class:`~dmf2mel.errors.DataError`).
"""

from __future__ import annotations

import itertools
from typing import Mapping, NamedTuple, Sequence

import numpy as np

from dmf2mel.errors import DataError, NonFinitePrediction

#: Sampling rate of EEG and mel (Hz).
SFREQ = 64
#: Paper metric: Pearson r within 10 s windows.
PAPER_WINDOW_SECONDS = 10.0
#: Challenge metric: Pearson r per 30 s segment.
CHALLENGE_SEGMENT_SECONDS = 30.0
#: Null draws per score; the smallest possible p-value is 1 / (N_NULL + 1).
N_NULL = 1000
#: The chance level is this quantile of the null distribution.
CHANCE_QUANTILE = 0.95
#: The shortest circular shift of the null: mel envelopes stay correlated over a few hundred ms.
MIN_SHIFT_SECONDS = 1.0
#: Windows per chunk when drawing the null (bounds memory to chunk x n_null x n_mels values).
_CHUNK_WINDOWS = 256
#: Bootstrap resamples of :func:`paired_difference`.
N_BOOT = 10_000
#: Random sign flips of :func:`paired_difference` (all 2^n are enumerated when that is fewer).
N_FLIPS = 10_000
#: Coverage of the bootstrap interval of :func:`paired_difference`.
CONFIDENCE = 0.95
#: Level of the sign-flip test a verdict needs (:func:`paired_verdict`).
ALPHA = 0.05
#: The rule every verdict of the book, the benchmarks and the README follows, in one sentence.
VERDICT_RULE = (
    "A model beats (or stays below) another only when two paired tests over the same subjects agree: the 95 % "
    "bootstrap interval of the subject-by-subject difference excludes 0 and the two-sided sign-flip test gives "
    "p < 0.05. With n subjects the sign-flip test cannot give p below 2/2^n, which is above 0.05 for n <= 5: such a "
    "comparison is 'too few subjects to tell', whatever the interval says."
)
#: What a score does with a prediction holding NaN or infinite values: refuse it, or count its windows as failures.
NON_FINITE = ("raise", "fail")


class RecordingPrediction(NamedTuple):
    """A predicted and a true mel spectrogram of one recording.

    Attributes
    ----------
    subject, stimulus : str
    pred, true : np.ndarray, shape (time, n_mels)
    """

    subject: str
    stimulus: str
    pred: np.ndarray
    true: np.ndarray


def pearsonr_time(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    """Pearson r over time (axis ``-2``) per band, with ``scipy.stats.pearsonr`` semantics.

    Parameters
    ----------
    pred, true : np.ndarray, shape (..., time, n_mels)

    Returns
    -------
    np.ndarray, shape (..., n_mels), float64
        NaN where either signal is constant over time.
    """
    pred = np.asarray(pred, dtype=np.float64)
    true = np.asarray(true, dtype=np.float64)
    pred_c = pred - pred.mean(axis=-2, keepdims=True)
    true_c = true - true.mean(axis=-2, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (pred_c * true_c).sum(axis=-2) / np.sqrt((pred_c**2).sum(axis=-2) * (true_c**2).sum(axis=-2))
    constant = (np.ptp(pred, axis=-2) == 0) | (np.ptp(true, axis=-2) == 0)
    return np.where(constant, np.nan, np.clip(r, -1.0, 1.0))


class _Windows(NamedTuple):
    """Windows cut from recordings: per window the recording index, start and length."""

    recording: np.ndarray
    start: np.ndarray
    length: np.ndarray


def cut_windows(lengths: Sequence[int], window: int, min_samples: int) -> _Windows:
    """Full, non-overlapping windows of ``window`` samples from recordings of the given lengths.

    A recording shorter than ``window`` but at least ``min_samples`` long gives one window of its
    own length; shorter recordings give none.
    """
    recording, start, length = [], [], []
    for index, n_samples in enumerate(lengths):
        if n_samples >= window:
            starts = np.arange(0, n_samples - window + 1, window)
            sizes = np.full(len(starts), window)
        elif n_samples >= min_samples:
            starts, sizes = np.array([0]), np.array([n_samples])
        else:
            continue
        recording.append(np.full(len(starts), index))
        start.append(starts)
        length.append(sizes)
    if not recording:
        empty = np.zeros(0, dtype=int)
        return _Windows(empty, empty, empty)
    return _Windows(np.concatenate(recording), np.concatenate(start), np.concatenate(length))


def _zscore(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(n, time, n_mels) -> z-scored over time (population std) and a (n, n_mels) validity mask."""
    valid = np.ptp(x, axis=1) > 0
    centred = x - x.mean(axis=1, keepdims=True)
    std = centred.std(axis=1, keepdims=True)
    return centred / np.where(std > 0, std, 1.0), valid


def _circular_xcorr(pred: np.ndarray, true: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pearson r of ``pred`` with ``true`` shifted by every lag.

    Parameters
    ----------
    pred, true : np.ndarray, shape (n, time, n_mels)

    Returns
    -------
    xcorr : np.ndarray, shape (n, time, n_mels)
        ``xcorr[i, k, m]`` = r between ``pred[i, :, m]`` and ``np.roll(true[i, :, m], -k)``.
    valid : np.ndarray of bool, shape (n, n_mels)
    """
    n_times = pred.shape[1]
    pred_z, valid_p = _zscore(pred)
    true_z, valid_t = _zscore(true)
    spectrum = np.conj(np.fft.rfft(pred_z, axis=1)) * np.fft.rfft(true_z, axis=1)
    xcorr = np.clip(np.fft.irfft(spectrum, n=n_times, axis=1) / n_times, -1.0, 1.0)
    return xcorr, valid_p & valid_t


def _nested_mean_weights(valid: np.ndarray, groups: np.ndarray, n_groups: int) -> np.ndarray:
    """Weights ``w`` (n,) with ``sum(w * v)`` = mean over groups of the mean of valid ``v`` in each group.

    Groups without a valid value are left out of the outer mean.
    """
    valid = valid.astype(np.float64)
    per_group = np.bincount(groups, weights=valid, minlength=n_groups)
    n_active = np.count_nonzero(per_group)
    if n_active == 0:
        return np.zeros_like(valid)
    return valid / np.where(per_group > 0, per_group, 1.0)[groups] / n_active


def _summary(observed: np.ndarray, null: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """observed (...,), null (n_null, ...) -> (observed, chance_r, p_value), NaN where undefined."""
    chance = np.quantile(null, CHANCE_QUANTILE, axis=0)
    p_value = (1.0 + np.sum(null >= observed, axis=0)) / (1.0 + null.shape[0])
    undefined = ~np.isfinite(observed)
    return observed, np.where(undefined, np.nan, chance), np.where(undefined, np.nan, p_value)


def _to_float(x) -> float | None:
    """A float for JSON (None for NaN)."""
    x = float(x)
    return x if np.isfinite(x) else None


def _check_finite(recordings: Sequence[RecordingPrediction], non_finite: str) -> None:
    """Refuse a non-finite true mel always, and a non-finite prediction unless ``non_finite == "fail"``."""
    if non_finite not in NON_FINITE:
        raise ValueError(f"non_finite must be one of {', '.join(NON_FINITE)}, got {non_finite!r}")
    for rec in recordings:
        if not np.isfinite(rec.true).all():
            raise DataError(f"true mel of {rec.subject} / {rec.stimulus} holds NaN or infinite values")
        if non_finite == "raise":
            bad = ~np.isfinite(rec.pred)
            if bad.any():
                rows = np.flatnonzero(bad.any(axis=1))
                raise NonFinitePrediction(
                    rec.subject, rec.stimulus, int(bad.sum()), (int(rows[0]), int(rows[-1])), len(rec.pred)
                )


def windowed_score(
    recordings: Sequence[RecordingPrediction],
    window: int,
    level: str,
    n_null: int = N_NULL,
    seed: int = 0,
    sfreq: float = SFREQ,
    min_samples: int | None = None,
    non_finite: str = "raise",
) -> dict:
    """Pearson r per window and band, aggregated by recording or subject, with its null distribution.

    Parameters
    ----------
    recordings : sequence of RecordingPrediction
        ``pred`` and ``true`` of each recording, shape (time, n_mels); equal shapes.
    window : int
        Window length in samples.
    level : {"recording", "subject"}
        The intermediate mean: per recording (paper metric) or per subject (challenge metric).
        The breakdown ``per_subject`` averages the intermediate means of each subject.
    n_null : int
        Draws of the shifted null distribution (0: no chance level, ``chance_r`` and ``p_value`` NaN).
    seed : int
        Seed of the null's random shifts.
    sfreq : float
        Sampling rate (Hz), for the minimal shift.
    min_samples : int, optional
        Shortest recording scored as one window of its own (default: 4 x the minimal shift).
    non_finite : {"raise", "fail"}
        A prediction holding NaN or infinite values: raise :class:`~dmf2mel.errors.NonFinitePrediction` (default),
        or score each window that holds one as r = 0 in every band and count it in ``n_failed_windows``.

    Returns
    -------
    dict
        ``r`` (the score), ``chance_r``, ``p_value``; ``per_band``, ``per_band_chance_r``,
        ``per_band_p_value`` (lists of n_mels); ``per_subject``, ``per_subject_chance_r``,
        ``per_subject_p_value`` (dicts by subject); ``null_mean``, ``null_std``, ``n_windows``,
        ``n_failed_windows`` (scored windows whose prediction was not finite, each counted as r = 0),
        ``failed_recordings`` (``"subject / stimulus"`` of each), ``window_samples``, ``n_null``. NaN is written as
        None.

    Raises
    ------
    NonFinitePrediction
        With ``non_finite="raise"``, when a prediction holds NaN or infinite values.
    DataError
        When a true mel does.
    """
    if level not in ("recording", "subject"):
        raise ValueError(f"level must be 'recording' or 'subject', got {level!r}")
    if not recordings:
        raise ValueError("no recordings to score")
    for rec in recordings:
        if np.shape(rec.pred) != np.shape(rec.true) or np.ndim(rec.pred) != 2:
            raise ValueError(
                f"{rec.subject} {rec.stimulus}: pred {np.shape(rec.pred)} and true {np.shape(rec.true)} "
                "must both be (time, n_mels)"
            )
    _check_finite(recordings, non_finite)
    min_shift = max(1, int(round(MIN_SHIFT_SECONDS * sfreq)))
    min_samples = 4 * min_shift if min_samples is None else min_samples
    windows = cut_windows([len(rec.pred) for rec in recordings], window, min_samples)
    n_windows = len(windows.recording)
    if n_windows == 0:
        raise ValueError(f"every recording is shorter than {min_samples} samples: nothing to score")
    n_mels = recordings[0].pred.shape[1]

    subjects = sorted({rec.subject for rec in recordings})
    subject_of_rec = np.array([subjects.index(rec.subject) for rec in recordings])
    win_subject = subject_of_rec[windows.recording]
    groups = windows.recording if level == "recording" else win_subject
    n_groups = len(recordings) if level == "recording" else len(subjects)

    # Observed r and the r of every circular shift, per window and band (grouped by length for the FFT).
    rng = np.random.default_rng(seed)
    r_obs = np.full((n_windows, n_mels), np.nan)
    valid = np.zeros((n_windows, n_mels), dtype=bool)
    failed = np.zeros(n_windows, dtype=bool)
    r_null = np.full((n_null, n_windows, n_mels), np.nan)
    for length in np.unique(windows.length):
        lo = min(min_shift, length // 4)
        idx_all = np.flatnonzero(windows.length == length)
        for chunk in np.array_split(idx_all, max(1, len(idx_all) // _CHUNK_WINDOWS)):
            spans = [
                (recordings[r], slice(start, start + length))
                for r, start in zip(windows.recording[chunk], windows.start[chunk])
            ]
            pred = np.stack([np.asarray(rec.pred[span], np.float64) for rec, span in spans])
            true = np.stack([np.asarray(rec.true[span], np.float64) for rec, span in spans])
            broken = ~np.isfinite(pred).all(axis=(1, 2))
            if broken.any():
                # a failed window scores 0 in every band the true mel varies in, observed and shifted alike
                pred[broken] = 0.0
                failed[chunk[broken]] = True
            xcorr, ok = _circular_xcorr(pred, true)
            if broken.any():
                xcorr[broken] = 0.0
                ok[broken] = np.ptp(true[broken], axis=1) > 0
            r_obs[chunk] = np.where(ok, xcorr[:, 0], np.nan)
            valid[chunk] = ok
            if n_null:
                shifts = rng.integers(max(lo, 1), max(length - lo, lo + 1), size=(n_null, len(chunk)))
                r_null[:, chunk] = xcorr[np.arange(len(chunk))[None, :], shifts]

    # Every score is a fixed weighted sum of per-window, per-band r: the weights come from the
    # validity mask, which shifting does not change, so the null uses the same weights.
    window_valid = valid.any(axis=1)
    band_share = valid / np.maximum(valid.sum(axis=1, keepdims=True), 1)
    obs0 = np.where(valid, r_obs, 0.0)
    null0 = np.where(valid, r_null, 0.0) if n_null else np.zeros((0, n_windows, n_mels))

    def score(weights_wm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if not weights_wm.any():
            return np.array(np.nan), np.full(n_null, np.nan)
        return np.einsum("wm,wm->", weights_wm, obs0), np.einsum("nwm,wm->n", null0, weights_wm)

    overall_w = band_share * _nested_mean_weights(window_valid, groups, n_groups)[:, None]
    overall = score(overall_w)
    per_band = [
        score(np.eye(n_mels)[m] * _nested_mean_weights(valid[:, m], groups, n_groups)[:, None]) for m in range(n_mels)
    ]
    per_subject = {}
    for s, name in enumerate(subjects):
        mine = window_valid & (win_subject == s)
        per_subject[name] = score(band_share * _nested_mean_weights(mine, groups, n_groups)[:, None])

    def summarise(pair):
        obs, null = pair
        if n_null == 0:
            return float(obs), np.nan, np.nan
        return tuple(np.asarray(v).item() for v in _summary(obs, null))

    r, chance_r, p_value = summarise(overall)
    bands = [summarise(b) for b in per_band]
    subj = {name: summarise(v) for name, v in per_subject.items()}
    return {
        "r": _to_float(r),
        "chance_r": _to_float(chance_r),
        "p_value": _to_float(p_value),
        "per_band": [_to_float(b[0]) for b in bands],
        "per_band_chance_r": [_to_float(b[1]) for b in bands],
        "per_band_p_value": [_to_float(b[2]) for b in bands],
        "per_subject": {k: _to_float(v[0]) for k, v in subj.items()},
        "per_subject_chance_r": {k: _to_float(v[1]) for k, v in subj.items()},
        "per_subject_p_value": {k: _to_float(v[2]) for k, v in subj.items()},
        "null_mean": _to_float(overall[1].mean()) if n_null else None,
        "null_std": _to_float(overall[1].std()) if n_null else None,
        "n_windows": int(window_valid.sum()),
        "n_failed_windows": int((failed & window_valid).sum()),
        "failed_recordings": sorted(
            {f"{recordings[r].subject} / {recordings[r].stimulus}" for r in windows.recording[failed & window_valid]}
        ),
        "window_samples": int(window),
        "n_null": int(n_null),
    }


def paper_metric(
    recordings: Sequence[RecordingPrediction],
    window_seconds: float = PAPER_WINDOW_SECONDS,
    sfreq: float = SFREQ,
    n_null: int = N_NULL,
    seed: int = 0,
    non_finite: str = "raise",
) -> dict:
    """The paper's score: r within 10 s windows per band -> mean per recording -> mean over recordings.

    See :func:`windowed_score` for the arguments and the returned dict (``r`` is the score).
    """
    window = int(round(window_seconds * sfreq))
    return windowed_score(recordings, window, "recording", n_null=n_null, seed=seed, sfreq=sfreq, non_finite=non_finite)


def challenge_metric(
    recordings: Sequence[RecordingPrediction],
    segment_seconds: float = CHALLENGE_SEGMENT_SECONDS,
    sfreq: float = SFREQ,
    n_null: int = N_NULL,
    seed: int = 0,
    non_finite: str = "raise",
) -> dict:
    """The ICASSP 2024 score: r per 30 s segment per band -> mean bands -> mean per subject -> mean.

    See :func:`windowed_score` for the arguments and the returned dict (``r`` is the score).
    """
    window = int(round(segment_seconds * sfreq))
    return windowed_score(recordings, window, "subject", n_null=n_null, seed=seed, sfreq=sfreq, non_finite=non_finite)


def _seed_by_subject(scores: Mapping[str, float] | Sequence[Mapping[str, float]]) -> list[Mapping[str, float]]:
    """One mapping subject -> score, or one per seed, as a list of mappings."""
    return [scores] if isinstance(scores, Mapping) else list(scores)


def format_p(p: float) -> str:
    """``"p = 0.016"``, or ``"p < 0.001"`` below that (three decimals would print a p-value of 0.0001 as 0.000)."""
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def smallest_sign_flip_p(n_subjects: int) -> float:
    """The smallest two-sided p-value an exact sign-flip test over ``n_subjects`` can give: ``2 / 2**n``."""
    return min(1.0, 2.0 / 2.0**n_subjects)


#: The verdicts :func:`paired_verdict` gives.
VERDICTS = ("above", "below", "no detectable difference", "too few subjects")


def paired_verdict(comparison: Mapping, alpha: float = ALPHA) -> str:
    """The verdict of a :func:`paired_difference` result under :data:`VERDICT_RULE`.

    Returns
    -------
    str
        ``"too few subjects"`` when the sign-flip test cannot reach ``alpha`` with this many subjects; ``"above"``
        (A beats B) or ``"below"`` when the interval excludes 0 on that side *and* ``p < alpha``; else
        ``"no detectable difference"``.
    """
    if smallest_sign_flip_p(comparison["n_subjects"]) >= alpha:
        return "too few subjects"
    if comparison["p_value"] < alpha and comparison["ci_low"] > 0:
        return "above"
    if comparison["p_value"] < alpha and comparison["ci_high"] < 0:
        return "below"
    return "no detectable difference"


def paired_difference(
    scores_a: Mapping[str, float] | Sequence[Mapping[str, float]],
    scores_b: Mapping[str, float] | Sequence[Mapping[str, float]],
    n_boot: int = N_BOOT,
    n_flips: int = N_FLIPS,
    confidence: float = CONFIDENCE,
    seed: int = 0,
) -> dict:
    """Mean difference in r between two models scored on the same subjects, with a bootstrap interval and a p-value.

    Parameters
    ----------
    scores_a, scores_b : mapping subject -> r, or a sequence of them (one per seed)
        Per-subject scores of model A and model B on the same test recordings (e.g. ``per_subject`` of
        :func:`dmf2mel.evaluate.score_predictions`). Only subjects with a finite score in every seed of both
        models are used.
    n_boot : int
        Bootstrap resamples. Each resamples the subjects with replacement (the same subjects for both models: the
        pairing) and, where a model has several seeds, its seeds with replacement.
    n_flips : int
        Random sign flips of the per-subject differences for the p-value; with ``2**n_subjects <= n_flips`` every
        flip is enumerated (an exact test).
    confidence : float
        Coverage of the percentile interval (default 0.95).
    seed : int
        Seed of the resampling; the result is a deterministic function of the inputs and ``seed``.

    Returns
    -------
    dict
        ``difference``: mean over subjects of (A's mean over seeds - B's); ``ci_low``, ``ci_high``: the percentile
        bootstrap interval; ``p_value``: two-sided sign-flip permutation p-value of the paired per-subject
        differences (how often flipping the sign of each subject's difference at random gives a mean at least as far
        from 0); ``detectable``: the interval excludes 0; ``verdict``: :func:`paired_verdict` (interval and test
        must agree); ``n_subjects``, ``n_seeds_a``, ``n_seeds_b``,
        ``subjects``, ``confidence``, ``n_boot``, ``n_flips`` (the flips actually used), ``exact``.

    Raises
    ------
    ValueError
        When no subject has finite scores in both models.
    """
    seeds_a, seeds_b = _seed_by_subject(scores_a), _seed_by_subject(scores_b)
    subjects = sorted(
        subject
        for subject in set.intersection(*(set(scores) for scores in (*seeds_a, *seeds_b)))
        if all(scores[subject] is not None and np.isfinite(scores[subject]) for scores in (*seeds_a, *seeds_b))
    )
    if not subjects:
        raise ValueError("paired_difference: no subject has a finite score in every seed of both models")
    a = np.array([[scores[s] for s in subjects] for scores in seeds_a], dtype=np.float64)  # (seeds_a, subjects)
    b = np.array([[scores[s] for s in subjects] for scores in seeds_b], dtype=np.float64)
    per_subject = a.mean(axis=0) - b.mean(axis=0)
    difference = float(per_subject.mean())
    n_subjects = len(subjects)

    rng = np.random.default_rng(seed)
    pick_subjects = rng.integers(0, n_subjects, size=(n_boot, n_subjects))
    pick_a = rng.integers(0, len(a), size=(n_boot, len(a)))
    pick_b = rng.integers(0, len(b), size=(n_boot, len(b)))
    # mean over resampled seeds of each model's per-subject scores, then over the resampled subjects
    boot_a = a[pick_a].mean(axis=1)  # (n_boot, subjects)
    boot_b = b[pick_b].mean(axis=1)
    rows = np.arange(n_boot)[:, None]
    boot = (boot_a[rows, pick_subjects] - boot_b[rows, pick_subjects]).mean(axis=1)
    tail = (1 - confidence) / 2
    ci_low, ci_high = (float(q) for q in np.quantile(boot, [tail, 1 - tail]))

    exact = 2**n_subjects <= n_flips
    if exact:
        signs = np.array(list(itertools.product((1.0, -1.0), repeat=n_subjects)))
    else:
        signs = rng.choice((1.0, -1.0), size=(n_flips, n_subjects))
    flipped = np.abs((signs * per_subject).mean(axis=1))
    # a tolerance so that the identity flip (and its mirror) always count, whatever the rounding
    extreme = int((flipped >= abs(difference) - 1e-12).sum())
    p_value = extreme / len(signs) if exact else (1 + extreme) / (1 + len(signs))
    result = {
        "difference": difference,
        "ci_low": ci_low,
        "ci_high": ci_high,
        "p_value": float(p_value),
        "detectable": bool(ci_low > 0 or ci_high < 0),
        "n_subjects": n_subjects,
        "n_seeds_a": len(a),
        "n_seeds_b": len(b),
        "subjects": subjects,
        "confidence": confidence,
        "n_boot": n_boot,
        "n_flips": len(signs),
        "exact": exact,
    }
    result["verdict"] = paired_verdict(result)
    return result
