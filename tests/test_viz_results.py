"""dmf2mel.viz.results: score figures, tables and computed sentences; the static comparison explorer."""

from __future__ import annotations

import numpy as np
import plotly.io as pio
import pytest

from dmf2mel.errors import UserError
from dmf2mel.viz import results as vr
from dmf2mel.viz import style


def result(r, chance=0.05, p=0.01, challenge=None):
    return {
        "paper_r": r,
        "chance_r": chance,
        "p_value": p,
        "challenge_r": challenge if challenge is not None else r / 2,
        "challenge_chance_r": chance / 2,
    }


RESULTS = {
    "dmf2mel": {"known": result(0.20), "unknown": result(0.10)},
    "linear": {"known": result(0.25), "unknown": result(0.04, p=0.3)},
    "cnn": {"known": result(0.15), "unknown": None},
}


def test_protocol_scores_draw_each_model_with_its_chance_level():
    figure = vr.protocol_scores(RESULTS, metric="challenge")
    bars = [trace for trace in figure.data if trace.type == "bar"]
    ticks = [trace for trace in figure.data if trace.type == "scatter"]
    assert [bar.name for bar in bars] == ["known subjects", "unknown subjects"]
    assert list(bars[0].x) == ["dmf2mel", "linear", "cnn"]
    np.testing.assert_allclose(bars[0].y, [0.10, 0.125, 0.075])
    assert np.isnan(bars[1].y[2]), "a protocol that was not evaluated is a gap"
    np.testing.assert_allclose(ticks[0].y, [0.025] * 3)
    with pytest.raises(UserError, match="metric"):
        vr.protocol_scores(RESULTS, metric="other")


def test_grouped_scores_refuses_chance_without_the_series():
    with pytest.raises(UserError, match="series"):
        vr.grouped_scores({"a": {"x": 0.1}}, chance={"b": {"x": 0.0}})


def test_scores_table_has_one_row_per_model_and_protocol():
    lines = vr.scores_table(RESULTS).splitlines()
    assert len(lines) == 2 + 2 * len(RESULTS)
    assert lines[2].startswith("| dmf2mel | known | 0.200 | 0.050 | 0.010 | 0.100 |")
    assert lines[-1] == "| cnn | unknown | – | – | – | – | – |"


def test_comparison_sentences_without_per_subject_scores_do_not_rank():
    known = vr.comparison_sentences(RESULTS, "dmf2mel", "known", names={"dmf2mel": "DMF2Mel"})
    assert known[0] == "On known subjects DMF2Mel reaches r = 0.200, above its chance level of 0.050 (p = 0.010)."
    assert known[1].startswith("Linear is 0.050 above DMF2Mel in the mean, untested")
    assert known[2].startswith("Cnn is 0.050 below DMF2Mel in the mean, untested")
    assert not any("beats" in sentence for sentence in known)
    unknown = vr.comparison_sentences(RESULTS, "dmf2mel", "unknown")
    assert len(unknown) == 2, "cnn was not evaluated on unknown subjects"
    assert "not above its chance level of 0.050 (p = 0.300)" in unknown[1]
    # a report still being written may lack the reference: say so instead of failing
    assert vr.comparison_sentences(RESULTS, "vlaai", "known") == [
        "vlaai is not among these results (dmf2mel, linear, cnn)."
    ]


def test_comparison_sentences_beat_only_when_the_paired_interval_excludes_zero():
    rng = np.random.default_rng(0)
    base = rng.normal(0.2, 0.05, 10)
    subjects = [f"sub-{i:03d}" for i in range(10)]

    def result(offset, noise):
        seeds = [dict(zip(subjects, map(float, base + offset + rng.normal(0, noise, 10)))) for _ in range(3)]
        mean = float(np.mean([list(seed.values()) for seed in seeds]))
        return {
            "known": {
                "paper_r": mean,
                "chance_r": 0.01,
                "p_value": 0.001,
                "per_seed": [{"seed": i, "per_subject": seed} for i, seed in enumerate(seeds)],
            }
        }

    rows = {
        "full": result(0.0, 0.002),
        "far": result(0.03, 0.002),
        "close": result(0.001, 0.01),
        "low": result(-0.02, 0.002),
    }
    far, close, low = vr.comparison_sentences(rows, "full", "known")[1:]
    assert far.startswith("**Far beats full** (+0.03") and "over 10 subjects" in far
    assert close.startswith("No detectable difference between close and full (")
    assert low.startswith("Low stays below full (-0.02")
    # a run's metrics.json: one per-subject mapping, no seeds
    single = {
        m: {"known": {**r["known"], "per_seed": [], "per_subject": r["known"]["per_seed"][0]["per_subject"]}}
        for m, r in rows.items()
    }
    assert vr.comparison_sentences(single, "full", "known")[1].startswith("**Far beats full**")


def test_best_epoch_sentence_reads_the_validation_curve():
    history = {"epoch": np.arange(1, 6), "val_r": np.array([np.nan, 0.1, 0.3, 0.2, 0.25])}
    assert vr.best_epoch_sentence(history) == (
        "Validation r peaked at 0.300 in epoch 3 of 5; the 2 epochs after it did not improve on it."
    )
    history["val_r"][-1] = 0.4
    assert "the last epoch was the best" in vr.best_epoch_sentence(history)
    history["val_r"][-1], history["val_r"][-2] = 0.25, 0.4
    assert "in epoch 4 of 5; the epoch after it did not" in vr.best_epoch_sentence(history)
    history["val_r"][-1] = 0.5
    assert "the last epoch was the best" in vr.best_epoch_sentence(history)


def test_a_diverged_epoch_is_never_the_kept_one():
    history = {
        "epoch": np.arange(1, 5),
        "val_r": np.array([0.1, 0.3, 0.5, 0.2]),
        "event": np.array(["", "", "epoch 3 diverged (...): restored the state of epoch 2", ""]),
    }
    assert vr.kept_epoch(history) == 2
    assert vr.best_epoch_sentence(history).startswith("Validation r peaked at 0.300 in epoch 2 of 4")
    assert vr.kept_epoch({"epoch": np.arange(1, 3), "val_r": np.full(2, np.nan)}) is None


def test_guard_sentence_reports_norms_clipping_skips_and_events():
    history = {
        "grad_norm": np.array([0.41, 0.3, np.nan]),
        "grad_norm_max": np.array([1.7, 0.5, np.nan]),
        "clipped_steps": np.array([2.0, 0.0, 0.0]),
        "skipped_steps": np.array([0.0, 1.0, 3.0]),
        "event": np.array(["", "", "epoch 3 diverged (3 of 3 steps had a non-finite loss or gradient): restored"]),
    }
    assert vr.guard_sentence(history, 1.0) == (
        "Averaged over an epoch, the gradient norm of a step ranged from 0.30 to 0.41 (the largest single step: 1.70); "
        "2 steps went above the bound of 1 and were scaled down to it; 4 steps had a non-finite loss or gradient and "
        "never updated the weights. Epoch 3 diverged (3 of 3 steps had a non-finite loss or gradient): restored."
    )
    quiet = {**history, "clipped_steps": np.zeros(3), "skipped_steps": np.zeros(3), "event": np.array(["", "", ""])}
    assert vr.guard_sentence(quiet, 1.0).endswith(
        "no step went above the bound of 1; no step had a non-finite loss or gradient. No epoch diverged."
    )
    assert "was not clipped" in vr.guard_sentence(quiet, None)
    assert "before the trainer recorded" in vr.guard_sentence({"epoch": np.arange(3)}, 1.0)


def make_entries(n_frames=(200, 260), models=("m1", "m2")):
    rng = np.random.default_rng(0)
    targets = {f"rec{i}": rng.random((n, 10)) + 0.1 for i, n in enumerate(n_frames)}
    predictions = {
        model: {label: mel + k * rng.standard_normal(mel.shape) for label, mel in targets.items()}
        for k, model in enumerate(models, start=1)
    }
    return targets, predictions


def test_comparison_explorer_menus_swap_data_models_and_window():
    targets, predictions = make_entries()
    figure = vr.comparison_explorer_figure(targets, predictions, sfreq=64, window_seconds=1.0)
    assert [trace.visible for trace in figure.data] == [None, True, False]
    recordings, models = figure.layout.updatemenus
    # the second recording's button carries its own true and predicted data, for every trace
    restyle, relayout, traces = recordings.buttons[1].args
    assert list(traces) == [0, 1, 2]
    np.testing.assert_allclose(restyle["z"][0], np.round(vr.zscore_bands(targets["rec1"]).T, vr.Z_DECIMALS))
    np.testing.assert_allclose(restyle["z"][2], np.round(vr.zscore_bands(predictions["m2"]["rec1"]).T, vr.Z_DECIMALS))
    assert len(restyle["x"][0]) == 260
    r1 = np.nanmean(vr.band_correlations(targets["rec1"], predictions["m1"]["rec1"]))
    assert relayout["title.text"].startswith(f"rec1: mean r over bands: m1 {r1:.3f} · m2 ")
    # the model menu only switches visibility, so it composes with the recording menu
    assert list(models.buttons[1].args[0]["visible"]) == [True, False, True]
    assert models.buttons[1].args[1] == {"annotations[1].text": "predicted by m2"}
    # window starts every 2.5 s ... here the longest recording is 260 / 64 s = 4.06 s, window 1 s: 0, 2.5
    steps = figure.layout.sliders[0].steps
    assert [step.args[0]["xaxis2.range"] for step in steps] == [[0.0, 1.0], [2.5, 3.5]]
    pio.to_json(figure)  # serialisable as the page embeds it


def test_comparison_explorer_refuses_missing_or_mismatched_predictions():
    targets, predictions = make_entries()
    del predictions["m2"]["rec1"]
    with pytest.raises(UserError, match="m2"):
        vr.comparison_explorer_figure(targets, predictions)
    targets, predictions = make_entries()
    predictions["m1"]["rec0"] = predictions["m1"]["rec0"][:-1]
    with pytest.raises(UserError, match="shape"):
        vr.comparison_explorer_figure(targets, predictions)


def test_models_above_lists_every_model_that_beats_the_reference_best_first():
    assert vr.models_above(RESULTS, "dmf2mel", "known") == ["linear"]
    assert vr.models_above(RESULTS, "cnn", "known") == ["linear", "dmf2mel"]
    assert vr.models_above(RESULTS, "cnn", "unknown") == [], "cnn has no unknown-subject result to compare with"
    assert vr.models_above(RESULTS, "vlaai", "known") == []


def test_quality_budget_sentence_reads_the_report():
    report = {
        "preset": "teaching",
        "date": "2026-11-25T16:50:00+00:00",
        "budget": {"profile": "quick", "epochs": 3, "seeds": [0], "n_null": 1000},
        "corpus": {"subjects": [f"sub-00{i}" for i in range(1, 9)], "held_out": ["sub-007", "sub-008"]},
    }
    assert vr.quality_budget_sentence(report) == (
        "`teaching` corpus (6 training subjects, 2 held out); profile `quick`, 3 epochs per gradient-trained model "
        "(early stopping off, best validation epoch kept), seed 0; chance levels from 1000 null draws; run on 2026-11-25."
    )
    report["learning_rates"] = {"cnn": {"lr": 1e-3}, "dmf2mel": {"lr": 3e-3}, "dmf2mel-no-mamba": {"lr": 3e-3}}
    assert vr.quality_budget_sentence(report).endswith(
        "run on 2026-11-25. Each model trained at its own learning rate, chosen on the validation parts by the "
        "learning-rate sweep (cnn 0.001, dmf2mel 0.003; the ablations take DMF2Mel's)."
    )


def test_step_cost_sentence_reads_the_speedup_report():
    row = {
        "preset": "small",
        "batch": 8,
        "speedup": 1.85 / 0.95,
        "now": {"step_s": 0.95, "peak_rss_mb": 960.0},
        "baseline": {"step_s": 1.85, "peak_rss_mb": 1536.0},
    }
    report = {
        "date": "2026-11-27T00:10:00+00:00",
        "window": 640,
        "baseline_commit": "083b7f6" + "0" * 33,
        "rows": [row],
    }
    assert vr.step_cost_sentence(report) == (
        "`benchmarks/speedup.py` timed this step (small config, batch 8 x 640 samples, one thread, 2026-11-27): "
        "0.95 s, against 1.85 s for the code before the speed work (commit `083b7f6`), 1.95x faster, with a peak of "
        "0.94 GB instead of 1.50 GB."
    )
    assert vr.step_cost_sentence(report, "paper", 16) == ""  # not measured
    assert vr.step_cost_sentence({**report, "rows": [{**row, "speedup": None}]}) == ""  # a failed measurement


def test_a_report_from_older_trained_code_says_so(tmp_path):
    import subprocess

    from dmf2mel.viz import results as res

    def git(*args):
        return subprocess.run(["git", *args], cwd=tmp_path, capture_output=True, text=True, check=True).stdout.strip()

    git("init", "-q")
    git("config", "user.email", "t@example.org")
    git("config", "user.name", "t")
    (tmp_path / "dmf2mel" / "models").mkdir(parents=True)
    (tmp_path / "dmf2mel" / "models" / "hams.py").write_text("A = 1\n")
    (tmp_path / "dmf2mel" / "models" / "fingerprint.py").write_text("RTOL = 1e-7\n")
    (tmp_path / "README.md").write_text("x\n")
    git("add", "-A")
    git("commit", "-qm", "measured here")
    report = {"code": {"commit": git("rev-parse", "HEAD")}}
    assert res.trained_code_changes(report, tmp_path) == []
    (tmp_path / "README.md").write_text("y\n")  # not trained code
    assert res.trained_code_changes(report, tmp_path) == []
    (tmp_path / "dmf2mel" / "models" / "fingerprint.py").write_text("RTOL = 1e-4\n")  # measures the models
    assert res.trained_code_changes(report, tmp_path) == []
    (tmp_path / "dmf2mel" / "models" / "hams.py").write_text("A = 2\n")
    assert res.trained_code_changes(report, tmp_path) == ["dmf2mel/models/hams.py"]
    assert res.trained_code_changes({"code": {"commit": "0" * 40}}, tmp_path) is None
    assert res.trained_code_changes({}, tmp_path) is None


def test_changed_models_with_the_same_fingerprint_are_not_stale(monkeypatch):
    """Only a report that recorded a fingerprint, only changes the fingerprint covers, and only the same numbers."""
    from dmf2mel.viz import results as res

    recorded = {"dmf2mel": [0.5, 10.0, 3.0]}
    report = {"code": {"commit": "a" * 40, "fingerprint": recorded}}
    monkeypatch.setattr(res, "current_fingerprint", lambda: {"dmf2mel": [0.5, 10.0 * (1 + 1e-9), 3.0]})
    monkeypatch.setattr(res, "trained_code_changes", lambda report: ["dmf2mel/models/attention.py"])
    assert res.stale_results_sentence(report) == ""
    assert res.same_maths_sentence(report).startswith("The models' code has changed since commit aaaaaaa")
    assert res.results_currency(report) == " " + res.same_maths_sentence(report)

    stale = res.stale_results_sentence({"code": {"commit": "a" * 40}})  # no fingerprint recorded
    assert stale.startswith("These numbers were measured at commit aaaaaaa")
    assert res.results_currency({"code": {"commit": "a" * 40}}) == f" **{stale}**"
    monkeypatch.setattr(res, "trained_code_changes", lambda report: ["dmf2mel/train.py"])  # not covered
    assert res.stale_results_sentence(report) == stale and res.same_maths_sentence(report) == ""
    monkeypatch.setattr(res, "trained_code_changes", lambda report: ["dmf2mel/models/hams.py"])
    monkeypatch.setattr(res, "current_fingerprint", lambda: {"dmf2mel": [0.5, 10.01, 3.0]})  # new maths
    assert res.stale_results_sentence(report) == stale
    monkeypatch.setattr(res, "trained_code_changes", lambda report: [])
    assert res.results_currency(report) == ""


def test_fingerprint_is_reproducible_and_moves_with_the_maths(monkeypatch):
    """The same code gives the same numbers (whatever the kernels switch says, random state untouched); another
    initialisation, another dropout mask and another layer change them far beyond the tolerance."""
    import torch

    from dmf2mel.models import fingerprint as fp
    from dmf2mel.models import kernels

    names = ["cnn", "dmf2mel-no-splinemap"]
    torch.manual_seed(11)
    first = fp.fingerprint(names)
    after = torch.rand(1)
    torch.manual_seed(11)
    assert torch.equal(torch.rand(1), after)  # the caller's random state is left alone
    monkeypatch.setattr(kernels, "_backend", "torch")
    second = fp.fingerprint(names)
    assert kernels.backend() == "torch"
    assert fp.same_fingerprint(first, second)
    assert not fp.same_fingerprint(first, {"cnn": first["cnn"]})

    def shifted(where, by):
        return {**first, where[0]: [x * (1 + by) if i == where[1] else x for i, x in enumerate(first[where[0]])]}

    assert fp.same_fingerprint(first, shifted(("cnn", 2), 1e-9))  # summation-order noise
    # the largest noise measured: the same code on two machines (DMF2Mel without DC-FAM, its gradient projection)
    assert fp.same_fingerprint(first, shifted(("cnn", 2), 3.2e-7))
    assert not fp.same_fingerprint(first, shifted(("cnn", 2), 1e-3))

    def moved(name):
        return not fp.same_fingerprint({name: first[name]}, fp.fingerprint([name]))

    assert not moved("dmf2mel-no-splinemap")
    from dmf2mel.models import dropout

    real_dropout = dropout.dropout  # another dropout rate: other masks
    with monkeypatch.context() as patch:
        patch.setattr(dropout, "dropout", lambda x, p, training=True: real_dropout(x, p / 2, training))
        assert moved("dmf2mel-no-splinemap")
    with monkeypatch.context() as patch:
        patch.setattr(torch.nn.functional, "silu", torch.nn.functional.gelu)  # another activation
        assert moved("dmf2mel-no-splinemap")
    with monkeypatch.context() as patch:  # another initialisation
        patch.setattr(torch.nn.init, "kaiming_uniform_", lambda w, *a, **k: torch.nn.init.normal_(w, 0.0, 0.05))
        assert moved("cnn")


def test_the_fingerprint_of_a_splinemap_model_is_the_same_at_one_and_two_threads():
    """DMF2Mel's float64 fingerprint once moved with torch's thread count (3e-7 relative): its SplineMap attention
    drew orthogonal weights with a float32 QR whose rounding follows the thread count. With the QR in float64
    (:func:`dmf2mel.models.kan.orthogonal_`) only float64 rounding is left; the same code must count as the same
    maths, or a run trained at another thread count would be thrown away as earlier code."""
    import numpy as np
    import torch

    from dmf2mel.models import fingerprint as fp

    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = fp.fingerprint(["dmf2mel"])
        torch.set_num_threads(2)
        two = fp.fingerprint(["dmf2mel"])
    finally:
        torch.set_num_threads(threads)
    assert fp.same_fingerprint(one, two)
    assert np.allclose(one["dmf2mel"], two["dmf2mel"], rtol=1e-12, atol=0)


def curve(steps, val_r):
    return {"epoch": list(range(1, len(steps) + 1)), "step": steps, "val_r": val_r}


def test_learning_curves_show_each_seed_range_and_the_closed_form_model_as_a_line():
    report = {
        "rows": [
            {"model": "linear", "curves": [curve([0], [0.24]), curve([0], [0.26])]},
            {
                "model": "dmf2mel",
                # validation every second epoch: epochs without it are None and are not drawn
                "curves": [
                    curve([10, 20, 30, 40], [None, 0.1, None, 0.3]),
                    curve([10, 20, 30, 40], [None, 0.2, None, 0.28]),
                ],
            },
        ]
    }
    figure = vr.learning_curves_figure(report, ("linear", "dmf2mel"), {"dmf2mel": "DMF2Mel"})
    high, low, mean, line = figure.data
    assert list(high.x) == [20, 40] and list(high.y) == [0.2, 0.3] and list(low.y) == [0.1, 0.28]
    assert low.fill == "tonexty" and np.allclose(mean.y, [0.15, 0.29]) and mean.name == "DMF2Mel (2 seeds)"
    assert list(line.x) == [0, 40] and np.allclose(line.y, [0.25, 0.25]) and line.line.dash == "dash"
    assert "DMF2Mel ends highest (0.290)" in figure.layout.title.text
    pio.to_json(figure)
    # a report from before the curves were kept draws nothing rather than a wrong figure
    old = {"rows": [{"model": "dmf2mel", "best_val_r": [0.2]}]}
    assert vr.learning_curves_figure(old, ("dmf2mel",)) is None
    with pytest.raises(UserError, match="no row for vlaai"):
        vr.learning_curves_figure(report, ("vlaai",))


def test_explanation_sentence_reads_the_study_report():
    known = {"difference": 0.0807, "ci_low": 0.0592, "ci_high": 0.1041, "p_value": 0.0004, "verdict": "above"}
    unknown = {
        "difference": -0.01,
        "ci_low": -0.03,
        "ci_high": 0.01,
        "p_value": 0.4,
        "verdict": "no detectable difference",
    }
    report = {"comparisons": {"last-residual": {"known": known, "unknown": unknown, "seeds": [0, 1, 2]}}}
    assert vr.explanation_sentence(report, "last-residual", "a residual around the pass") == (
        "A residual around the pass: Δr = +0.081 on known subjects (95 % CI [+0.059, +0.104], p < 0.001: higher) "
        "and Δr = -0.010 on unknown subjects (95 % CI [-0.030, +0.010], p = 0.400: no detectable difference), "
        "over 3 seeds."
    )
    assert "not measured yet" in vr.explanation_sentence(report, "no-infonce", "no InfoNCE")


def test_comparison_explorer_menus_are_stacked_above_the_plot_not_side_by_side():
    """At phone width (390 px) two menus side by side overlap; stacked and left-aligned they do not."""
    targets, predictions = make_entries()
    figure = vr.comparison_explorer_figure(targets, predictions, sfreq=64, window_seconds=1.0)
    recording, model = figure.layout.updatemenus
    assert recording.xanchor == model.xanchor == "left" and recording.x == model.x == 0.0
    plot_px = figure.layout.height - figure.layout.margin.t - figure.layout.margin.b
    assert (model.y - 1) * plot_px >= style.MENU_GAP_PX - 1e-6  # above the top heatmap's title
    assert (recording.y - model.y) * plot_px >= style.MENU_ROW_PX - 1e-6  # a row of its own
    assert (recording.y - 1) * plot_px + style.MENU_ROW_PX <= figure.layout.margin.t  # inside the top margin


def test_stability_sentence_counts_the_guarded_runs_per_rate():
    def record(model, lr, seed, epochs=()):
        guard = ["..."] * len(epochs)
        return {
            "model": model,
            "recipe": model.split("-")[0],
            "lr": lr,
            "seed": seed,
            "epochs": 40,
            "guard": guard,
            "guard_epochs": list(epochs),
        }

    stability = {
        "records": [
            record("dmf2mel", 1e-2, 0),
            record("dmf2mel", 1e-2, 2, (26, 27)),
            record("dmf2mel-no-mamba", 1e-2, 0, (12,)),
            record("dmf2mel", 3e-3, 0),
            record("cnn", 1e-3, 0),
        ]
    }
    assert vr.stability_sentence(stability) == (
        "Full-budget runs of dmf2mel's recipe (its ablations included): at 0.01, 2 of 3 runs of 40 epochs needed the "
        "guard (dmf2mel seed 2 in epochs 26 and 27, dmf2mel-no-mamba seed 0 in epoch 12); at 0.003, 0 of 1 runs of "
        "40 epochs needed the guard."
    )
    assert vr.stability_sentence({"records": []}) == "No full-budget run of dmf2mel's recipe is recorded yet."


def test_activation_sentence_gives_the_range_per_learning_rate():
    def run(lr, epoch, hams, score):
        return {"lr": lr, "epoch": epoch, "largest_hams_output": hams, "largest_position_score": score}

    scale = {
        "runs": [
            run(1e-2, 36, 5e6, 3.9e9),
            run(1e-2, 40, 2.3e10, 3e15),
            run(3e-3, 40, 26.0, 12.0),
            run(1e-3, 40, None, None),
        ]
    }
    assert vr.activation_sentence(scale) == (
        "On the same validation windows, at 0.003 (1 checkpoint, epoch 40) the largest HAMS-Net value was 26 and "
        "the largest position score 12; at 0.01 (2 checkpoints, epoch 36 to 40) the largest HAMS-Net value was "
        "5.0e+06 to 2.3e+10 and the largest position score 3.9e+09 to 3.0e+15."
    )
    assert vr.activation_sentence({"runs": []}) == "No probed checkpoint has a HAMS-Net."
    changed = {"runs": [{**run(3e-3, 36, 2e5, 2.5), "hams_scale_change": 0.0029}, run(3e-3, 40, 6e5, 2.4)]}
    assert "changed the prediction" not in vr.activation_sentence(changed), "only when every checkpoint has it"
    changed["runs"][1]["hams_scale_change"] = 0.0005
    assert vr.activation_sentence(changed).endswith(
        "the largest position score 2, and multiplying HAMS-Net's output by ten changed the prediction by at most 0.3%."
    )


def test_watch_sentence_reads_the_replay_of_a_failing_epoch():
    def step(norm, output):
        return {"grad_norm": norm, "largest_outputs": [["hams", output, True]]}

    watched = {
        "summary": {
            "threshold": 100.0,
            "grad_norms": [0.4, 0.5, 3.6e5, float("inf")],
            "first_step_over": 2,
            "largest_parameter_gradients": [["q", 5e4, True], ["k", 4e4, True], ["v", 1.0, True], ["w", 0.5, True]],
            "largest_outputs": [["hams", 1.2e7, True]],
        },
        "steps": [step(0.4, 7.5e6), step(0.5, 8e6), step(3.6e5, 1.2e7), step(float("inf"), float("inf"))],
    }
    assert vr.watch_sentence(watched) == (
        "Replayed step by step, the gradient norm was 0.40 to 0.50 for 2 steps, then 3.6e+05 at step 3, and the first "
        "infinite one came 1 steps later. At that step the largest gradients were those of `q`, `k`, `v`; the largest "
        "output, already in the epoch's first step, was `hams`'s, 7.5e+06."
    )
    watched["summary"]["first_step_over"] = None
    assert vr.watch_sentence(watched) == "Replayed step by step, every gradient norm stayed below 100."


def test_ceilings_sentences_give_each_condition_and_its_change_from_the_recorded_eeg():
    def run(model, condition, n, known, unknown):
        return {
            "model": model,
            "condition": condition,
            "n_training_subjects": n,
            "known": {"paper_r": known},
            "unknown": None if unknown is None else {"paper_r": unknown},
        }

    report = {
        "runs": [
            run("linear", "recorded", 14, 0.243, 0.219),
            run("linear", "noise-free", 14, 0.581, 0.046),
            run("dmf2mel", "noise-free", 14, 0.7, 0.1),
            run("linear", "2 x subjects", 28, 0.25, 0.23),
        ]
    }
    linear, dmf2mel = vr.ceilings_sentences(report, {"linear": "the linear decoder"})
    assert linear == (
        "The linear decoder: on the EEG as recorded (14 training subjects) 0.243 on known subjects and 0.219 on "
        "held-out subjects; on the noise-free EEG 0.581 on known subjects (+0.338) and 0.046 on held-out subjects "
        "(-0.173); with 2 times the training subjects (28) 0.250 on known subjects (+0.007) and 0.230 on held-out "
        "subjects (+0.011)."
    )
    # no recorded run of the model: no change to give
    assert dmf2mel == "Dmf2mel: on the noise-free EEG 0.700 on known subjects and 0.100 on held-out subjects."
    assert vr.ceilings_sentences({"runs": []}) == ["The ceilings report holds no finished run."]
    # with the paired comparison of the report, the change is the paired one, with its interval
    paired = {"difference": 0.004, "ci_low": -0.002, "ci_high": 0.011, "n_subjects": 14}
    report["runs"][3]["vs_recorded"] = {"known": paired, "unknown": None}
    linear, _ = vr.ceilings_sentences(report, {"linear": "the linear decoder"})
    assert linear.endswith(
        "with 2 times the training subjects (28) 0.250 on known subjects (+0.004, 95 % CI [-0.002, +0.011] over the 14 "
        "subjects both runs scored) and 0.230 on held-out subjects (+0.011)."
    )
    # a larger corpus scores more known subjects than the recorded run: its mean over all of them, and over the ones
    # the paired change compares (a change of 0.250 - 0.243 would not be the change of the same subjects)
    report["runs"][0]["known"]["per_subject"] = {"s1": 0.2, "s2": 0.286}
    report["runs"][3]["known"]["per_subject"] = {"s1": 0.21, "s2": 0.29, "s3": 0.25}
    linear, _ = vr.ceilings_sentences(report, {"linear": "the linear decoder"})
    assert linear.endswith(
        "with 2 times the training subjects (28) 0.250 on all its 3 known subjects and 0.250 on the 2 of the recorded "
        "run (+0.004, 95 % CI [-0.002, +0.011] over the 14 subjects both runs scored) and 0.230 on held-out subjects "
        "(+0.011)."
    )
    report["runs"][3]["known"]["per_subject"] = {"s1": 0.21, "s2": 0.31, "s3": 0.25}
    assert "and 0.260 on the 2 of the recorded run" in vr.ceilings_sentences(report)[0]
    # the noise-free run scored the same subjects: one mean, as before
    report["runs"][1]["known"]["per_subject"] = {"s1": 0.5, "s2": 0.662}
    report["runs"][1]["vs_recorded"] = {"known": paired, "unknown": None}
    assert "on the noise-free EEG 0.581 on known subjects (+0.004," in vr.ceilings_sentences(report)[0]
    # a paired change whose recorded run is not in the report (a report cut by hand): the change, no shared mean
    alone = {"runs": [report["runs"][3]]}
    assert "(28) 0.250 on known subjects (+0.004, 95 % CI" in vr.ceilings_sentences(alone)[0]
