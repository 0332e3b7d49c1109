"""Metrics against loops over scipy.stats.pearsonr; the null distribution and its chance level."""

import numpy as np
import pytest
import scipy.stats

from dmf2mel.errors import DataError, NonFinitePrediction
from dmf2mel.metrics import (
    RecordingPrediction,
    _circular_xcorr,
    challenge_metric,
    paired_difference,
    paper_metric,
    pearsonr_time,
)

SFREQ = 64
N_MELS = 10


def _corpus(signal=0.0, seed=0, lengths=((4000, 2500), (3000,), (5000, 2100))):
    """Recordings of 3 subjects; pred = signal * true + noise."""
    rng = np.random.default_rng(seed)
    recs = []
    for s, subject_lengths in enumerate(lengths):
        for k, n in enumerate(subject_lengths):
            true = rng.standard_normal((n, N_MELS)).cumsum(axis=0) * 0.1 + rng.standard_normal((n, N_MELS))
            pred = signal * true + rng.standard_normal((n, N_MELS))
            recs.append(RecordingPrediction(f"sub-{s:03d}", f"story_{k}", pred, true))
    return recs


def _scipy_window_r(pred, true, window):
    """(n_windows, n_mels) r of full windows by scipy."""
    out = []
    for start in range(0, len(pred) - window + 1, window):
        out.append(
            [
                scipy.stats.pearsonr(pred[start : start + window, m], true[start : start + window, m])[0]
                for m in range(N_MELS)
            ]
        )
    return np.array(out)


def test_pearsonr_time_matches_scipy_and_gives_nan_for_constant():
    rng = np.random.default_rng(0)
    pred, true = rng.standard_normal((2, 100, N_MELS))
    pred[:, 3] = 1.5
    r = pearsonr_time(pred, true)
    for m in range(N_MELS):
        if m == 3:
            assert np.isnan(r[m])
        else:
            assert r[m] == pytest.approx(scipy.stats.pearsonr(pred[:, m], true[:, m])[0], abs=1e-12)


def test_circular_xcorr_equals_pearsonr_of_rolled_targets():
    rng = np.random.default_rng(1)
    pred, true = rng.standard_normal((2, 3, 40, 4))
    xcorr, valid = _circular_xcorr(pred, true)
    assert valid.all()
    for lag in (0, 1, 17, 39):
        for i in range(3):
            for m in range(4):
                expected = scipy.stats.pearsonr(pred[i, :, m], np.roll(true[i, :, m], -lag))[0]
                assert xcorr[i, lag, m] == pytest.approx(expected, abs=1e-12)


def test_challenge_metric_matches_scipy_loop():
    recs = _corpus(signal=0.2, lengths=((4000, 1000), (3000,), (5000, 2100)))
    window = int(30 * SFREQ)
    got = challenge_metric(recs, n_null=50)
    by_subject = {}
    for rec in recs:
        r = _scipy_window_r(rec.pred, rec.true, window)
        if len(r) == 0:  # shorter than one segment: scored as one window of its own length
            r = np.array([[scipy.stats.pearsonr(rec.pred[:, m], rec.true[:, m])[0] for m in range(N_MELS)]])
        by_subject.setdefault(rec.subject, []).append(r)
    per_subject = {s: np.concatenate(v).mean(axis=1).mean() for s, v in by_subject.items()}
    assert got["r"] == pytest.approx(np.mean(list(per_subject.values())), abs=1e-10)
    for s, value in per_subject.items():
        assert got["per_subject"][s] == pytest.approx(value, abs=1e-10)
    all_r = {s: np.concatenate(v) for s, v in by_subject.items()}
    per_band = np.mean([all_r[s].mean(axis=0) for s in all_r], axis=0)
    np.testing.assert_allclose(got["per_band"], per_band, atol=1e-10)


def test_paper_metric_matches_scipy_loop():
    recs = _corpus(signal=0.2, seed=2)
    window = int(10 * SFREQ)
    got = paper_metric(recs, n_null=50)
    per_rec = [_scipy_window_r(rec.pred, rec.true, window).mean() for rec in recs]
    assert got["r"] == pytest.approx(np.mean(per_rec), abs=1e-10)
    assert got["n_windows"] == sum(len(rec.pred) // window for rec in recs)
    # per subject: mean over that subject's recordings
    assert got["per_subject"]["sub-000"] == pytest.approx(np.mean(per_rec[:2]), abs=1e-10)
    assert len(got["per_band"]) == N_MELS


@pytest.mark.filterwarnings("ignore::scipy.stats.ConstantInputWarning")
def test_constant_windows_are_left_out_like_scipy_nan():
    recs = _corpus(signal=0.3, seed=3, lengths=((1280,),))
    pred = recs[0].pred.copy()
    pred[:640, 0] = 0.0  # band 0 of the first window is constant
    rec = recs[0]._replace(pred=pred)
    got = paper_metric([rec], n_null=20)
    r = _scipy_window_r(rec.pred, rec.true, 640)
    assert np.isnan(r[0, 0])
    assert got["r"] == pytest.approx(np.mean([np.nanmean(r[0]), np.nanmean(r[1])]), abs=1e-10)
    assert got["per_band"][0] == pytest.approx(r[1, 0], abs=1e-10)


def test_null_is_centred_near_zero_and_random_predictions_are_not_significant():
    got = paper_metric(_corpus(signal=0.0, seed=4), n_null=400, seed=1)
    assert abs(got["null_mean"]) < 0.01
    assert got["null_std"] < 0.05
    assert 0 < got["chance_r"] < 0.1
    assert got["p_value"] > 0.01
    assert abs(got["r"]) < got["chance_r"] + 3 * got["null_std"]


def test_a_real_signal_is_far_above_chance_with_the_smallest_p():
    n_null = 200
    got = challenge_metric(_corpus(signal=0.3, seed=5), n_null=n_null)
    assert got["r"] > 0.15 > got["chance_r"]
    assert got["p_value"] == pytest.approx(1 / (n_null + 1))
    assert all(p == pytest.approx(1 / (n_null + 1)) for p in got["per_band_p_value"])
    assert all(p == pytest.approx(1 / (n_null + 1)) for p in got["per_subject_p_value"].values())


@pytest.mark.parametrize("value", [np.nan, np.inf])
@pytest.mark.parametrize("metric", [paper_metric, challenge_metric])
def test_a_non_finite_prediction_is_refused_naming_the_recording(metric, value):
    """The failure that used to vanish: the windows holding NaN were left out of the score without a word."""
    recs = _corpus(signal=0.2, seed=7)
    pred = recs[1].pred.copy()
    pred[2000:2320, 4] = value
    recs[1] = recs[1]._replace(pred=pred)
    with pytest.raises(
        NonFinitePrediction, match=r"sub-000 / story_1\) has 320 NaN or infinite values in rows 2000-2319"
    ) as err:
        metric(recs, n_null=10)
    assert (err.value.subject, err.value.stimulus, err.value.rows) == ("sub-000", "story_1", (2000, 2319))
    assert "dmf2mel run X" in str(err.value.for_model("dmf2mel run X"))


def test_a_non_finite_prediction_counts_as_failed_windows_scored_zero():
    recs = _corpus(signal=0.3, seed=8)
    window = int(10 * SFREQ)
    pred = recs[0].pred.copy()
    pred[700, 2] = np.nan  # inside the second window of the first recording
    pred[-1, 0] = np.inf  # in the trailing remainder, which no score reads
    recs[0] = recs[0]._replace(pred=pred)
    got = paper_metric(recs, n_null=50, non_finite="fail")
    per_window = [_scipy_window_r(rec.pred, rec.true, window) for rec in recs]
    per_window[0][1] = 0.0  # the failure scores r = 0 in every band
    assert got["r"] == pytest.approx(np.mean([r.mean() for r in per_window]), abs=1e-10)
    assert got["n_failed_windows"] == 1 and got["failed_recordings"] == ["sub-000 / story_0"]
    assert got["n_windows"] == sum(len(r) for r in per_window)
    assert np.isfinite(got["chance_r"]) and got["p_value"] > 0
    assert paper_metric(_corpus(signal=0.3, seed=8), n_null=0)["n_failed_windows"] == 0


def test_a_non_finite_true_mel_is_bad_data_and_the_option_is_checked():
    recs = _corpus(signal=0.2, seed=9)
    true = recs[2].true.copy()
    true[5, 5] = np.nan
    bad = recs[:2] + [recs[2]._replace(true=true)]
    with pytest.raises(DataError, match="true mel of sub-001 / story_0"):
        paper_metric(bad, non_finite="fail")
    with pytest.raises(ValueError, match="non_finite must be one of raise, fail"):
        paper_metric(recs, non_finite="drop")


def test_null_is_deterministic_for_a_seed_and_validates_shapes():
    recs = _corpus(signal=0.1, seed=6)
    assert paper_metric(recs, n_null=30, seed=3) == paper_metric(recs, n_null=30, seed=3)
    bad = [recs[0]._replace(pred=recs[0].pred[:-1])]
    with pytest.raises(ValueError, match="sub-000"):
        paper_metric(bad)


# --- paired comparison of two models -------------------------------------------------------------


def _subject_scores(values, prefix="sub"):
    return {f"{prefix}-{i:03d}": float(v) for i, v in enumerate(values)}


def test_paired_difference_detects_a_known_difference():
    rng = np.random.default_rng(0)
    base = rng.normal(0.1, 0.05, size=20)  # subjects differ a lot from one another ...
    a = _subject_scores(base + 0.02 + rng.normal(0, 0.005, 20))  # ... but A is 0.02 above B in every one
    b = _subject_scores(base)
    result = paired_difference(a, b, seed=1)
    assert result["difference"] == pytest.approx(0.02, abs=0.004)
    assert 0 < result["ci_low"] < result["difference"] < result["ci_high"]
    assert result["detectable"] and result["p_value"] < 0.001
    assert result["n_subjects"] == 20 and not result["exact"]
    assert paired_difference(a, b, seed=1) == result
    assert paired_difference(a, b, seed=2)["ci_low"] != result["ci_low"]  # the seed drives the resampling
    reverse = paired_difference(b, a, seed=1)
    assert reverse["difference"] == pytest.approx(-result["difference"]) and reverse["ci_high"] < 0


def test_paired_difference_without_a_difference_includes_zero():
    rng = np.random.default_rng(2)
    base = rng.normal(0.1, 0.05, size=12)
    seeds_a = [_subject_scores(base + rng.normal(0, 0.01, 12)) for _ in range(3)]
    seeds_b = [_subject_scores(base + rng.normal(0, 0.01, 12)) for _ in range(3)]
    result = paired_difference(seeds_a, seeds_b, seed=3)
    assert result["ci_low"] < 0 < result["ci_high"]
    assert not result["detectable"] and result["p_value"] > 0.05
    assert (result["n_seeds_a"], result["n_seeds_b"]) == (3, 3)
    assert result["exact"] and result["n_flips"] == 2**12  # few subjects: every sign flip enumerated


def test_paired_difference_is_deterministic_given_a_seed_and_uses_common_finite_subjects():
    a = {"sub-001": 0.10, "sub-002": 0.20, "sub-003": 0.15, "sub-004": float("nan"), "sub-005": 0.3}
    b = {"sub-001": 0.05, "sub-002": 0.12, "sub-003": 0.16, "sub-004": 0.2}
    first = paired_difference(a, b, seed=7)
    assert first == paired_difference(a, b, seed=7)
    assert first["subjects"] == ["sub-001", "sub-002", "sub-003"]
    assert first["difference"] == pytest.approx((0.05 + 0.08 - 0.01) / 3)
    # exact over the 8 flips: the identity, its mirror, and flipping the negative subject (and its mirror)
    assert first["p_value"] == pytest.approx(4 / 8)
    with pytest.raises(ValueError, match="no subject"):
        paired_difference({"sub-001": 0.1}, {"sub-002": 0.1})


@pytest.mark.parametrize("n_subjects", [1, 2, 5])
def test_a_verdict_needs_enough_subjects_for_the_sign_flip_test(n_subjects):
    """Chapter 12 printed "The linear decoder beats DMF2Mel (... over 2 subjects, p = 0.500)": the bootstrap interval
    of 2 subjects that agree in sign always excludes 0, while no test over 2 subjects can reach p < 0.05."""
    from dmf2mel.metrics import paired_verdict, smallest_sign_flip_p

    a = _subject_scores(0.2 + 0.01 * np.arange(n_subjects))
    b = _subject_scores(0.1 + 0.01 * np.arange(n_subjects))
    result = paired_difference(a, b)
    assert result["ci_low"] > 0  # the interval alone would call it
    assert result["p_value"] == pytest.approx(smallest_sign_flip_p(n_subjects)) and result["p_value"] >= 0.05
    assert result["verdict"] == paired_verdict(result) == "too few subjects"


def test_a_verdict_needs_both_the_interval_and_the_test():
    from dmf2mel.metrics import paired_verdict

    six = {"n_subjects": 6, "p_value": 0.031, "ci_low": -0.01, "ci_high": 0.05}
    assert paired_verdict(six) == "no detectable difference"  # p < 0.05, but the interval includes 0
    assert paired_verdict({**six, "ci_low": 0.001}) == "above"
    assert paired_verdict({**six, "ci_low": -0.05, "ci_high": -0.001}) == "below"
    assert paired_verdict({**six, "ci_low": 0.001, "p_value": 0.06}) == "no detectable difference"  # and vice versa
    # six subjects that all agree: the exact test's smallest p, 2/64 = 0.031, is enough
    result = paired_difference(_subject_scores(0.2 + 0.01 * np.arange(6)), _subject_scores(0.1 + 0.01 * np.arange(6)))
    assert result["p_value"] == pytest.approx(2 / 64) and result["verdict"] == "above"


def test_format_p_never_prints_a_p_value_of_zero():
    from dmf2mel.metrics import format_p

    assert format_p(0.03125) == "p = 0.031"
    assert format_p(0.001) == "p = 0.001"
    assert format_p(1 / 10_001) == "p < 0.001"  # the smallest random-flip p-value, not "p = 0.000"
