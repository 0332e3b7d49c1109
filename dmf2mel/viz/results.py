"""Figures, tables and computed sentences of the results chapters (training, evaluation, ablations).

Scores in these chapters come from files the package writes (a run's ``metrics.json``, the quality
benchmark's ``quality_<preset>.json``), and every sentence that states a number or a comparison is
computed from them here, so the prose can never disagree with the figures.

A *protocol result* is the dict :func:`dmf2mel.evaluate.score_predictions` returns (or a row of the
quality benchmark): ``paper_r``, ``chance_r``, ``p_value``, ``challenge_r``, ``challenge_chance_r``,
``per_band``, ... ; None stands for a protocol that was not evaluated (no held-out subjects).
"""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path

from collections.abc import Mapping

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from dmf2mel.data.features import TARGET_SFREQ
from dmf2mel.errors import UserError
from dmf2mel.metrics import format_p, paired_difference, paired_verdict
from dmf2mel.viz.mel import ZSCORE_RANGE, _heatmap, band_correlations, check_pair, zscore_bands
from dmf2mel.viz.scores import CHANCE_MARKER, _as_floats
from dmf2mel.viz.style import MEL_COLORSCALE, PREDICTED_COLOR, SERIES_COLORS, TRUE_COLOR, menu_rows

PROTOCOLS = ("known", "unknown")
#: Heatmap values sent to the page are rounded to this many decimals (z-scores: 0.01 is far below what a colour shows).
Z_DECIMALS = 2
#: The window slider moves in steps of this many seconds.
WINDOW_STEP_SECONDS = 2.5
#: A p-value below this is called significant in computed sentences.
ALPHA = 0.05


# --- scores -------------------------------------------------------------------------------------


def grouped_scores(
    scores: Mapping[str, Mapping[str, float | None]],
    chance: Mapping[str, Mapping[str, float | None]] | None = None,
    title: str = "Pearson r",
    x_title: str = "",
    y_title: str = "Pearson r",
    colors: Mapping[str, str] | None = None,
) -> go.Figure:
    """Grouped bars: one group per label (model), one bar per series (protocol), each with its chance tick.

    Parameters
    ----------
    scores : mapping series -> mapping label -> r
        E.g. ``{"known subjects": {"linear": 0.2, "dmf2mel": 0.25}, "unknown subjects": {...}}``;
        labels are drawn in the order of the first series, None as a gap.
    chance : mapping series -> mapping label -> r, optional
        The chance level (95th percentile of the null) of each score.
    title, x_title, y_title : str
        Title (state the finding) and axis titles.
    colors : mapping series -> colour, optional
        Defaults to the book's series colours in order.
    """
    if not scores:
        raise UserError("scores is empty: give at least one series -> {label: r}")
    labels = list(next(iter(scores.values())))
    colors = dict(colors or {})
    palette = iter(SERIES_COLORS * (1 + len(scores) // len(SERIES_COLORS)))
    figure = go.Figure()
    for series, values in scores.items():
        colour = colors.get(series) or next(palette)
        y = _as_floats([values.get(label) for label in labels])
        figure.add_trace(go.Bar(x=labels, y=y, name=series, marker_color=colour, offsetgroup=series))
        if chance is not None:
            if series not in chance:
                raise UserError(f"chance has no series {series!r}")
            ticks = _as_floats([chance[series].get(label) for label in labels])
            figure.add_trace(
                go.Scatter(
                    x=labels,
                    y=ticks,
                    mode="markers",
                    marker=CHANCE_MARKER,
                    offsetgroup=series,
                    name="chance (95th percentile of the null)",
                    showlegend=series == next(iter(scores)),
                )
            )
    figure.update_layout(
        title=title,
        barmode="group",
        scattermode="group",
        xaxis_title=x_title,
        yaxis_title=y_title,
        legend=dict(orientation="h", x=1.0, xanchor="right", y=1.0, yanchor="bottom"),
    )
    return figure


def protocol_scores(
    results: Mapping[str, Mapping[str, dict | None]],
    metric: str = "paper",
    title: str = "Pearson r per model",
) -> go.Figure:
    """:func:`grouped_scores` of models on both protocols, from their protocol results.

    Parameters
    ----------
    results : mapping model -> {"known": result or None, "unknown": result or None}
    metric : {"paper", "challenge"}
        Which score (and which chance level) to draw.
    title : str
    """
    score_key, chance_key = _metric_keys(metric)
    scores, chance = {}, {}
    for protocol in PROTOCOLS:
        series = f"{protocol} subjects"
        scores[series] = {
            model: (by_protocol.get(protocol) or {}).get(score_key) for model, by_protocol in results.items()
        }
        chance[series] = {
            model: (by_protocol.get(protocol) or {}).get(chance_key) for model, by_protocol in results.items()
        }
    return grouped_scores(scores, chance, title=title, x_title="model", y_title=f"Pearson r ({metric} metric)")


def _metric_keys(metric: str) -> tuple[str, str]:
    if metric not in ("paper", "challenge"):
        raise UserError(f"metric must be 'paper' or 'challenge', got {metric!r}")
    return (f"{metric}_r", "chance_r" if metric == "paper" else "challenge_chance_r")


def _fmt(value: float | None, spec: str = ".3f") -> str:
    return "–" if value is None else format(value, spec)


def scores_table(results: Mapping[str, Mapping[str, dict | None]]) -> str:
    """A markdown table: one row per model and protocol with both metrics, their chance levels and p-values.

    Parameters
    ----------
    results : mapping model -> {"known": result or None, "unknown": result or None}
    """
    lines = [
        "| model | subjects | paper r | chance | p | challenge r | chance |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for model, by_protocol in results.items():
        for protocol in PROTOCOLS:
            result = by_protocol.get(protocol)
            if result is None:
                lines.append(f"| {model} | {protocol} | – | – | – | – | – |")
                continue
            lines.append(
                f"| {model} | {protocol} | {_fmt(result.get('paper_r'))} | {_fmt(result.get('chance_r'))} | "
                f"{_fmt(result.get('p_value'))} | {_fmt(result.get('challenge_r'))} | "
                f"{_fmt(result.get('challenge_chance_r'))} |"
            )
    return "\n".join(lines)


# --- computed sentences -------------------------------------------------------------------------


def significance(result: dict | None) -> str:
    """E.g. ``"r = 0.213, above its chance level of 0.041 (p = 0.001)"`` for one protocol result."""
    if result is None or result.get("paper_r") is None:
        return "not evaluated"
    r, chance, p = result["paper_r"], result.get("chance_r"), result.get("p_value")
    if chance is None or p is None:
        return f"r = {r:.3f}"
    where = "above" if r > chance else "not above"
    return f"r = {r:.3f}, {where} its chance level of {chance:.3f} (p = {p:.3f})"


def per_subject_scores(result: dict | None) -> list[Mapping[str, float]] | None:
    """Per-subject paper r of a protocol result: one mapping per seed (benchmark rows) or one (a run's metrics).

    None when the result has none (e.g. a benchmark report written before per-subject scores were kept).
    """
    if not result:
        return None
    seeds = [seed.get("per_subject") for seed in result.get("per_seed", [])]
    if seeds and all(seeds):
        return seeds
    return [result["per_subject"]] if result.get("per_subject") else None


def paired_comparison(result: dict | None, reference: dict | None) -> dict | None:
    """:func:`dmf2mel.metrics.paired_difference` of ``result`` minus ``reference`` (None without per-subject scores)."""
    a, b = per_subject_scores(result), per_subject_scores(reference)
    if a is None or b is None:
        return None
    try:
        return paired_difference(a, b)
    except ValueError:  # no subject in common
        return None


def comparison_sentences(
    results: Mapping[str, Mapping[str, dict | None]],
    reference: str,
    protocol: str,
    names: Mapping[str, str] | None = None,
) -> list[str]:
    """Sentences comparing every model with ``reference`` on one protocol (paper metric), best first.

    Each sentence gives the model's r, chance level and p-value and a verdict from the paired comparison
    (:func:`paired_comparison`, subject by subject on the same test recordings) under
    :data:`dmf2mel.metrics.VERDICT_RULE`: the model **beats** the reference, or stays below it, only when the 95 %
    bootstrap interval of the difference excludes 0 and the sign-flip test gives p < 0.05; with 5 subjects or fewer
    the sentence says there are too few subjects to tell; otherwise, that there is no detectable difference. Results
    without per-subject scores get the difference of the means and the remark that it was not tested. Models not
    evaluated on the protocol are left out.

    Parameters
    ----------
    results : mapping model -> {"known": result or None, "unknown": result or None}
    reference : str
        The model the others are compared with (e.g. ``"dmf2mel"``).
    protocol : {"known", "unknown"}
    names : mapping model -> display name, optional
    """
    if protocol not in PROTOCOLS:
        raise UserError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    names = dict(names or {})
    if reference not in results:  # e.g. a benchmark report that is still being written
        return [f"{names.get(reference, reference)} is not among these results ({', '.join(results)})."]

    def name(model: str) -> str:
        return names.get(model, model)

    ref = results[reference].get(protocol)
    if ref is None or ref.get("paper_r") is None:
        return [f"{name(reference)} was not evaluated on {protocol} subjects."]
    sentences = [f"On {protocol} subjects {name(reference)} reaches {significance(ref)}."]
    others = [
        (m, r[protocol])
        for m, r in results.items()
        if m != reference and (r.get(protocol) or {}).get("paper_r") is not None
    ]
    for model, result in sorted(others, key=lambda item: -item[1]["paper_r"]):
        model_name, ref_name = _capitalised(name(model)), name(reference)
        paired = paired_comparison(result, ref)
        if paired is None:
            difference = result["paper_r"] - ref["paper_r"]
            verdict = (
                f"{model_name} is {abs(difference):.3f} {'above' if difference >= 0 else 'below'} {ref_name} "
                "in the mean, untested (no per-subject scores for a paired comparison)"
            )
        else:
            interval = (
                f"{paired['difference']:+.3f}, 95 % CI [{paired['ci_low']:+.3f}, {paired['ci_high']:+.3f}] "
                f"over {paired['n_subjects']} subjects, {format_p(paired['p_value'])}"
            )
            decision = paired_verdict(paired)
            if decision == "above":
                verdict = f"**{model_name} beats {ref_name}** ({interval})"
            elif decision == "below":
                verdict = f"{model_name} stays below {ref_name} ({interval})"
            elif decision == "too few subjects":
                verdict = f"Too few subjects to tell {name(model)} from {ref_name} ({interval})"
            else:
                verdict = f"No detectable difference between {name(model)} and {ref_name} ({interval})"
        sentences.append(f"{verdict}: {significance(result)}.")
    return sentences


def _capitalised(text: str) -> str:
    """``text`` with its first letter upper-cased (display names may start a sentence)."""
    return text[:1].upper() + text[1:]


def models_above(results: Mapping[str, Mapping[str, dict | None]], reference: str, protocol: str) -> list[str]:
    """The models whose paper r on ``protocol`` is above ``reference``'s, best first ([] without a reference score)."""
    ref = (results.get(reference, {}).get(protocol) or {}).get("paper_r")
    if ref is None:
        return []
    scored = {model: (by_protocol.get(protocol) or {}).get("paper_r") for model, by_protocol in results.items()}
    above = [model for model, r in scored.items() if model != reference and r is not None and r > ref]
    return sorted(above, key=lambda model: -scored[model])


#: The code a quality report's numbers depend on: a change here since the report's commit makes it stale.
TRAINED_CODE = ("dmf2mel/models", "dmf2mel/losses.py", "dmf2mel/train.py", "dmf2mel/data/datasets.py")
#: Files under :data:`TRAINED_CODE` that no training runs: the fingerprint measures the models, and a change of its
#: documentation or tolerance changes nothing a report measured.
NOT_TRAINED = ("dmf2mel/models/fingerprint.py",)


def trained_code_changes(report: dict, root: str | Path | None = None) -> list[str] | None:
    """The files of :data:`TRAINED_CODE` (less :data:`NOT_TRAINED`) that changed since the commit a benchmark report
    was measured at.

    ``[]``: the report measured the code as it is; None: unknown (no git, or the commit is not in this history).
    """
    commit = (report.get("code") or {}).get("commit")
    if not commit:
        return None
    root = Path(root) if root is not None else Path(__file__).resolve().parents[2]
    try:
        diff = subprocess.run(
            ["git", "diff", "--name-only", commit, "--", *TRAINED_CODE, *(f":(exclude){path}" for path in NOT_TRAINED)],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if diff.returncode != 0:
        return None
    return sorted(line for line in diff.stdout.splitlines() if line)


def stale_results_sentence(report: dict, rerun: str = "make bench-quality") -> str:
    """A warning when a report's numbers come from an earlier version of the trained code, else ``""``.

    A report that recorded the models' fingerprint (:mod:`dmf2mel.models.fingerprint`, the quality benchmark's do)
    is not stale when only code the fingerprint covers changed and the fingerprint of the code as it is now is the
    same: a faster kernel or a refactor computes the same functions (:func:`same_maths_sentence` says so instead).
    """
    return _currency(report, rerun)[0]


def same_maths_sentence(report: dict) -> str:
    """A note when the trained code changed since a report's commit without changing what the models compute."""
    return _currency(report)[1]


def results_currency(report: dict, rerun: str = "make bench-quality") -> str:
    """Markdown after a report's description: the staleness warning in bold, or the same-maths note, or ``""``."""
    stale, same = _currency(report, rerun)
    return f" **{stale}**" if stale else f" {same}" if same else ""


def _currency(report: dict, rerun: str = "make bench-quality") -> tuple[str, str]:
    """(staleness warning, same-maths note) of a report, at most one of them not empty; one ``git diff``."""
    changed = trained_code_changes(report)
    if not changed:
        return "", ""
    commit = report["code"]["commit"][:7]
    if _same_maths(report, changed):
        return "", (
            f"The models' code has changed since commit {commit}, where these numbers were measured, without "
            "changing what the models compute (the same fingerprint, `dmf2mel.models.fingerprint`)."
        )
    return (
        f"These numbers were measured at commit {commit}; the trained code has changed since "
        f"(`git diff {commit} -- dmf2mel/models`), so they describe the model as it was then, not as it is now "
        f"(rerun `{rerun}`).",
        "",
    )


def _same_maths(report: dict, changed: list[str]) -> bool:
    from dmf2mel.models.fingerprint import COVERED, same_fingerprint

    recorded = (report.get("code") or {}).get("fingerprint")
    if not recorded or not all(path.startswith(COVERED) for path in changed):
        return False
    return same_fingerprint(recorded, current_fingerprint())


@functools.lru_cache(maxsize=1)
def current_fingerprint() -> dict[str, list[float]]:
    """The fingerprint of the models as they are (computed once per process: about 15 s)."""
    from dmf2mel.models.fingerprint import fingerprint

    return fingerprint()


def quality_budget_sentence(report: dict) -> str:
    """What a quality benchmark report (``benchmarks/results/quality_<preset>.json``) trained, and how long, with a
    warning when the trained code has changed since (:func:`stale_results_sentence`)."""
    budget, corpus = report["budget"], report["corpus"]
    n_train = len(corpus["subjects"]) - len(corpus["held_out"])
    seeds = ", ".join(map(str, budget["seeds"]))
    text = (
        f"`{report['preset']}` corpus ({n_train} training subjects, {len(corpus['held_out'])} held out); profile "
        f"`{budget['profile']}`, {budget['epochs']} epochs per gradient-trained model (early stopping off, best "
        f"validation epoch kept), seed{'s' if len(budget['seeds']) > 1 else ''} {seeds}; chance levels from "
        f"{budget['n_null']} null draws; run on {report['date'][:10]}."
    )
    rates = report.get("learning_rates")
    if rates:
        chosen = ", ".join(
            f"{model} {rate['lr']:g}" for model, rate in rates.items() if not model.startswith("dmf2mel-")
        )
        text += (
            f" Each model trained at its own learning rate, chosen on the validation parts by the learning-rate sweep "
            f"({chosen}; the ablations take DMF2Mel's)."
        )
    return text + results_currency(report)


def step_cost_sentence(report: dict, preset: str = "small", batch: int = 8) -> str:
    """The training step of one configuration in a speed-up report (``benchmarks/results/speedup.json``), now and at
    the baseline commit, with a warning when the trained code has changed since; ``""`` if the report lacks it."""
    row = next((r for r in report["rows"] if (r["preset"], r["batch"]) == (preset, batch)), None)
    if row is None or row.get("speedup") is None:
        return ""
    return (
        f"`benchmarks/speedup.py` timed this step ({preset} config, batch {batch} x {report['window']} samples, one "
        f"thread, {report['date'][:10]}): {row['now']['step_s']:.2f} s, against {row['baseline']['step_s']:.2f} s "
        f"for the code before the speed work (commit `{report['baseline_commit'][:7]}`), {row['speedup']:.2f}x "
        f"faster, with a peak of {row['now']['peak_rss_mb'] / 1024:.2f} GB instead of "
        f"{row['baseline']['peak_rss_mb'] / 1024:.2f} GB." + results_currency(report, rerun="make bench")
    )


def gpu_step_sentence(report: dict, reference: dict | None = None) -> str:
    """A GPU training step (``benchmarks/results/gpu.json`` of ``benchmarks/gpu_check.sh``): time, peak memory and
    the profile's busy time; with ``reference``, a report of the same code on the same kind of GPU with the reference
    scan, the step without mamba-ssm too."""
    scan = f"mamba-ssm {report['mamba_ssm_version']}" if report.get("mamba_ssm") else "the reference scan"
    text = (
        f"On a GPU ({report['device_name']}, {report['date'][:10]}, torch {report['torch']}, {scan}; "
        f"`benchmarks/gpu_check.sh`): a `{report['preset']}`-config training step at batch {report['batch']} takes "
        f"{report['step_s']:.2f} s (fastest of {len(report['step_times_s'])}) and peaks at "
        f"{report['peak_memory_gb']:.2f} GB of GPU memory."
    )
    profile = report.get("profile")
    if profile and profile.get("kernels_per_step"):
        busy_ms = profile["device_busy_ms_per_step"]
        text += (
            f" The GPU is busy for {busy_ms:.0f} ms of each step ({profile['kernels_per_step']:,} kernels per step, "
            f"`torch.profiler` over {profile['steps']} steps)"
        )
        # busy for under half the step: the rest is the CPU launching kernels
        launch_bound = busy_ms / 1e3 < report["step_s"] / 2
        text += ": the step waits on kernel launches, not on the GPU." if launch_bound else "."
    same = (
        reference is not None
        and reference.get("scan_backend") == "reference"
        and reference["device_name"] == report["device_name"]
        and reference["code"]["commit"] == report["code"]["commit"]
        and (reference["preset"], reference["batch"]) == (report["preset"], report["batch"])
    )
    if same:
        text += (
            " Without mamba-ssm (the reference loop over time; a separate run of the same code on an "
            f"{reference['device_name']}) it takes {reference['step_s']:.2f} s and "
            f"{reference['peak_memory_gb']:.2f} GB."
        )
    return text


def gpu_step_text(results_dir: Path | str) -> str:
    """:func:`gpu_step_sentence` of ``gpu.json`` in ``results_dir``, with ``gpu_reference_scan.json`` beside it when
    there is one; ``""`` when there is no GPU report (no GPU has run ``benchmarks/gpu_check.sh``)."""
    import json

    results_dir = Path(results_dir)
    if not (results_dir / "gpu.json").is_file():
        return ""
    report, reference = (
        json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
        for path in (results_dir / "gpu.json", results_dir / "gpu_reference_scan.json")
    )
    return gpu_step_sentence(report, reference)


def gpu_step_note(results_dir: Path | str):
    """:func:`gpu_step_text` as Markdown for a notebook cell to show, or None when there is no GPU report."""
    from IPython.display import Markdown

    text = gpu_step_text(results_dir)
    return Markdown(text) if text else None


def seed_curves(row: Mapping) -> tuple[np.ndarray, np.ndarray] | None:
    """A quality-report row's validation curves over seeds: (optimiser steps (n,), val r (seeds, n)) on the
    validated steps every seed has; None when the row kept no curves (reports before they were kept)."""
    curves = [c for c in row.get("curves") or [] if c and c.get("step") and c.get("val_r")]
    if not curves or len(curves) < len(row.get("curves") or []):
        return None
    per_seed = [
        {int(step): float(r) for step, r in zip(c["step"], c["val_r"]) if r is not None and np.isfinite(r)}
        for c in curves
    ]
    steps = sorted(set.intersection(*(set(points) for points in per_seed)))
    if not steps:
        return None
    return np.asarray(steps), np.asarray([[points[s] for s in steps] for points in per_seed])


def _fill_rgba(colour: str, alpha: float = 0.2) -> str:
    red, green, blue = (int(colour[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgba({red}, {green}, {blue}, {alpha})"


def learning_curves_figure(
    report: Mapping, models: tuple[str, ...], names: Mapping[str, str] | None = None
) -> go.Figure | None:
    """Validation r against optimiser steps for ``models`` of a quality report: each gradient-trained model's mean
    over seeds with the range between its lowest and highest seed shaded; a closed-form model (one point per
    seed) as a dashed line at its mean validation r. None when a gradient-trained model's row kept no curves.

    The title names the model with the highest mean validation r at the last validated step; the test parts are
    not in this figure (model selection never sees them).
    """
    names = dict(names or {})
    rows = {row["model"]: row for row in report["rows"]}
    missing = [m for m in models if m not in rows]
    if missing:
        raise UserError(f"the quality report has no row for {', '.join(missing)}; it has {', '.join(rows)}")
    figure = go.Figure()
    palette = iter(SERIES_COLORS * (1 + len(models) // len(SERIES_COLORS)))
    last_r, flat, x_max = {}, {}, 0
    for model in models:
        row, colour, label = rows[model], next(palette), names.get(model, model)
        curves = row.get("curves") or []
        if curves and all(c and len(c.get("val_r") or []) == 1 for c in curves):  # fitted once: one point a seed
            flat[model] = (label, colour, float(np.mean([c["val_r"][0] for c in curves])))
            continue
        curve = seed_curves(row)
        if curve is None:
            return None
        steps, r = curve
        x_max = max(x_max, int(steps[-1]))
        low, high = r.min(axis=0), r.max(axis=0)
        band = dict(mode="lines", line=dict(width=0, color=colour), hoverinfo="skip", showlegend=False)
        figure.add_trace(go.Scatter(x=steps, y=high, legendgroup=label, **band))
        figure.add_trace(
            go.Scatter(x=steps, y=low, fill="tonexty", fillcolor=_fill_rgba(colour), legendgroup=label, **band)
        )
        n_seeds = r.shape[0]
        figure.add_trace(
            go.Scatter(
                x=steps, y=r.mean(axis=0), mode="lines+markers", name=f"{label} ({n_seeds} seeds)",
                legendgroup=label, line=dict(color=colour),
            )
        )  # fmt: skip
        last_r[label] = float(r.mean(axis=0)[-1])
    for label, colour, value in flat.values():
        figure.add_trace(
            go.Scatter(
                x=[0, x_max], y=[value, value], mode="lines", name=f"{label} (closed form)",
                line=dict(color=colour, dash="dash"),
            )
        )  # fmt: skip
        last_r[label] = value
    top = max(last_r, key=last_r.get)
    figure.update_layout(
        title=f"Validation r while training: {top} ends highest ({last_r[top]:.3f}); shading: lowest to highest seed",
        xaxis_title="optimiser steps",
        yaxis_title="validation r (paper metric, no null)",
    )
    return figure


#: How an explanation's verdict reads in a sentence (``"above"``: the variant scores higher than its reference).
_EXPLANATION_VERDICTS = {
    "above": "higher",
    "below": "lower",
    "no detectable difference": "no detectable difference",
    "too few subjects": "too few subjects to tell",
}


def explanation_sentence(report: Mapping, name: str, label: str) -> str:
    """One sentence from the explanations study's report (``benchmarks/results/explanations_<preset>.json``): the
    paired difference of variant ``name`` from its reference on known and on unknown subjects, with intervals,
    p-values and verdicts (:data:`dmf2mel.metrics.VERDICT_RULE`); ``label`` says what the variant changes."""
    comparison = report.get("comparisons", {}).get(name)
    if comparison is None:
        return f"{_capitalised(label)}: not measured yet (no finished runs of `{name}` in the report)."
    parts = []
    for protocol in PROTOCOLS:
        c = comparison.get(protocol)
        if c is None:
            parts.append(f"no paired test on {protocol} subjects")
            continue
        parts.append(
            f"Δr = {c['difference']:+.3f} on {protocol} subjects (95 % CI [{c['ci_low']:+.3f}, {c['ci_high']:+.3f}], "
            f"{format_p(c['p_value'])}: {_EXPLANATION_VERDICTS[c['verdict']]})"
        )
    n_seeds = len(comparison["seeds"])
    return f"{_capitalised(label)}: {' and '.join(parts)}, over {n_seeds} seed{'s' if n_seeds > 1 else ''}."


def stability_sentence(stability: Mapping, recipe: str = "dmf2mel") -> str:
    """What the full-budget runs of ``recipe`` say about its learning rates, from the stability record
    (``benchmarks/results/stability_<preset>.json``): per rate, how many runs the trainer's guard had to save."""
    rates: dict[float, list[dict]] = {}
    for entry in stability.get("records", []):
        if entry["recipe"] == recipe:
            rates.setdefault(entry["lr"], []).append(entry)
    if not rates:
        return f"No full-budget run of {recipe}'s recipe is recorded yet."
    parts = []
    for lr, entries in sorted(rates.items(), reverse=True):
        guarded = [e for e in entries if e["guard"]]
        where = ", ".join(
            f"{e['model']} seed {e['seed']} in epoch{'s' if len(e['guard_epochs']) > 1 else ''} "
            + " and ".join(map(str, e["guard_epochs"]))
            for e in guarded
        )
        epochs = "/".join(map(str, sorted({e["epochs"] for e in entries})))
        parts.append(
            f"at {lr:g}, {len(guarded)} of {len(entries)} runs of {epochs} epochs needed the guard"
            + (f" ({where})" if where else "")
        )
    return f"Full-budget runs of {recipe}'s recipe (its ablations included): " + "; ".join(parts) + "."


def _magnitude(value: float) -> str:
    return f"{value:.0f}" if value < 1000 else f"{value:.1e}"


def _span(values: list[float]) -> str:
    low, high = min(values), max(values)
    return _magnitude(low) if _magnitude(low) == _magnitude(high) else f"{_magnitude(low)} to {_magnitude(high)}"


def watch_sentence(watched: Mapping) -> str:
    """What a step-by-step replay of a failing epoch saw (``benchmarks/watch_steps.py``'s JSON): the gradient norms
    before the first step over the threshold, that step's norm, the first non-finite one, the parameters with the
    largest gradients at that step and the largest output of the epoch's first step."""
    summary = watched["summary"]
    norms = np.asarray(summary["grad_norms"], dtype=np.float64)
    first = summary["first_step_over"]
    if first is None:
        return f"Replayed step by step, every gradient norm stayed below {summary['threshold']:g}."
    calm = norms[:first]
    infinite = np.flatnonzero(~np.isfinite(norms))
    later = f", and the first infinite one came {int(infinite[0]) - first} steps later" if infinite.size else ""
    gradients = ", ".join(f"`{name}`" for name, *_ in summary["largest_parameter_gradients"][:3])
    name, value, _ = watched["steps"][0]["largest_outputs"][0]
    return (
        f"Replayed step by step, the gradient norm was {calm.min():.2f} to {calm.max():.2f} for {first} steps, then "
        f"{_magnitude(norms[first])} at step {first + 1}{later}. At that step the largest gradients were those of "
        f"{gradients}; the largest output, already in the epoch's first step, was `{name}`'s, {_magnitude(value)}."
    )


def activation_sentence(scale: Mapping) -> str:
    """How large HAMS-Net's numbers grew in trained checkpoints, by learning rate, from the activation probe
    (``benchmarks/results/activation_scale_<preset>.json``): the range over runs of the largest HAMS-Net output and of
    the largest position-attention score, and, where the probe measured it, the largest change of the prediction when
    HAMS-Net's output is multiplied by ten."""
    by_lr: dict[float, list[dict]] = {}
    for entry in scale.get("runs", []):
        if entry.get("largest_hams_output") is not None and entry.get("lr") is not None:
            by_lr.setdefault(entry["lr"], []).append(entry)
    if not by_lr:
        return "No probed checkpoint has a HAMS-Net."
    parts = []
    for lr, entries in sorted(by_lr.items()):
        hams = [e["largest_hams_output"] for e in entries]
        scores = [e["largest_position_score"] for e in entries]
        epochs = _span([e["epoch"] for e in entries])
        part = (
            f"at {lr:g} ({len(entries)} checkpoint{'s' if len(entries) > 1 else ''}, epoch {epochs}) the largest "
            f"HAMS-Net value was {_span(hams)} and the largest position score {_span(scores)}"
        )
        changes = [e["hams_scale_change"] for e in entries if e.get("hams_scale_change") is not None]
        if len(changes) == len(entries):  # probes made before the measurement lack it
            part += f", and multiplying HAMS-Net's output by ten changed the prediction by at most {max(changes):.1%}"
        parts.append(part)
    return "On the same validation windows, " + "; ".join(parts) + "."


def _condition_label(condition: str, n_training: int) -> str:
    """A condition of the ceilings study in words: ``"recorded"``, ``"noise-free"`` or ``"N x subjects"``."""
    if condition == "recorded":
        return f"on the EEG as recorded ({n_training} training subjects)"
    if condition == "noise-free":
        return "on the noise-free EEG"
    factor = condition.split(" x ")[0]
    return f"with {factor} times the training subjects ({n_training})"


def _shared_mean(result: Mapping | None, reference: Mapping | None) -> tuple[int, float, int] | None:
    """(subjects of ``result``, its mean paper r over the subjects ``reference`` scored too, how many) when
    ``result`` scored subjects that ``reference`` did not (a ceilings run on a larger corpus), else None."""
    scores = (result or {}).get("per_subject") or {}
    shared = [subject for subject in scores if subject in ((reference or {}).get("per_subject") or {})]
    if not shared or len(shared) == len(scores):
        return None
    return len(scores), float(np.mean([scores[subject] for subject in shared])), len(shared)


def ceilings_sentences(report: Mapping, names: Mapping[str, str] | None = None) -> list[str]:
    """One sentence per model of the ceilings study (``benchmarks/results/ceilings_<preset>.json``): its paper r on
    known and on held-out subjects under each condition of the report, in the report's order, each condition after
    the recorded EEG with its change from the recorded EEG (when the report has the recorded run): paired over the
    subjects both runs scored, with its interval, when the report has the paired comparison (``vs_recorded``), else
    the difference of the two means."""
    names = names or {}
    by_model: dict[str, list[dict]] = {}
    for entry in report.get("runs", []):
        by_model.setdefault(entry["model"], []).append(entry)
    sentences = []
    for model, entries in by_model.items():
        recorded = next((e for e in entries if e["condition"] == "recorded"), None)
        parts = []
        for entry in entries:
            scores = []
            for protocol, word in (("known", "known"), ("unknown", "held-out")):
                r = (entry.get(protocol) or {}).get("paper_r")
                if r is None:
                    continue
                text = f"{r:.3f} on {word} subjects"
                base = None if recorded is None or entry is recorded else (recorded.get(protocol) or {}).get("paper_r")
                paired = (entry.get("vs_recorded") or {}).get(protocol)
                if paired is not None:
                    both = _shared_mean(entry.get(protocol), (recorded or {}).get(protocol))
                    if both is not None:  # a larger corpus: give the mean the paired change is a change of
                        text = f"{r:.3f} on all its {both[0]} {word} subjects and {both[1]:.3f} on the {both[2]} of the recorded run"
                    text += (
                        f" ({paired['difference']:+.3f}, 95 % CI [{paired['ci_low']:+.3f}, {paired['ci_high']:+.3f}] "
                        f"over the {paired['n_subjects']} subjects both runs scored)"
                    )
                elif base is not None:
                    text += f" ({r - base:+.3f})"
                scores.append(text)
            if scores:
                parts.append(
                    f"{_condition_label(entry['condition'], entry['n_training_subjects'])} {' and '.join(scores)}"
                )
        if parts:
            sentences.append(f"{_capitalised(names.get(model, model))}: {'; '.join(parts)}.")
    return sentences or ["The ceilings report holds no finished run."]


def best_epoch_sentence(history: Mapping[str, np.ndarray]) -> str:
    """What the validation curve of a run says: the best epoch, its r, and whether training stopped early.

    Parameters
    ----------
    history : mapping column -> (n_epochs,) array
        :func:`dmf2mel.runs.history_table` of the run.
    """
    val_r = _selectable_val_r(history)
    if not np.any(np.isfinite(val_r)):
        return "No validation gave a finite r."
    best = int(np.nanargmax(val_r))
    epochs = np.asarray(history["epoch"])
    last = int(epochs[-1])
    after = last - int(epochs[best])
    if after == 0:
        tail = "the last epoch was the best, so more epochs would probably still help"
    else:
        tail = f"the {'epoch' if after == 1 else f'{after} epochs'} after it did not improve on it"
    return f"Validation r peaked at {val_r[best]:.3f} in epoch {int(epochs[best])} of {last}; {tail}."


def _selectable_val_r(history: Mapping[str, np.ndarray]) -> np.ndarray:
    """The validation r of each epoch that model selection could keep: NaN for an epoch that diverged."""
    val_r = np.asarray(history["val_r"], dtype=np.float64).copy()
    if "event" in history:
        val_r[np.asarray([bool(event) for event in history["event"]])] = np.nan
    return val_r


def kept_epoch(history: Mapping[str, np.ndarray]) -> int | None:
    """The epoch whose state ``best.pt`` holds: the best validation r of an epoch that did not diverge (None: none)."""
    val_r = _selectable_val_r(history)
    if not np.any(np.isfinite(val_r)):
        return None
    return int(np.asarray(history["epoch"])[int(np.nanargmax(val_r))])


def _steps(n: int) -> str:
    return "1 step" if n == 1 else f"{n} steps"


def guard_sentence(history: Mapping[str, np.ndarray], clip_grad_norm: float | None) -> str:
    """What the trainer's guard did in a run: gradient norms, clipped and skipped steps, diverged epochs.

    Parameters
    ----------
    history : mapping column -> (n_epochs,) array
        :func:`dmf2mel.runs.history_table` of a run trained by gradient descent.
    clip_grad_norm : float or None
        The run's bound on the gradient norm (its profile's ``clip_grad_norm``).
    """
    if "grad_norm" not in history:
        return "This run was trained before the trainer recorded gradient norms."
    norms = np.asarray(history["grad_norm"], dtype=np.float64)
    largest = np.asarray(history["grad_norm_max"], dtype=np.float64)
    if not np.any(np.isfinite(norms)):
        return "No step of this run had a finite gradient."
    clipped = int(np.nansum(history["clipped_steps"]))
    skipped = int(np.nansum(history["skipped_steps"]))
    events = [str(event) for event in history["event"] if event]
    if clip_grad_norm is None:
        bound = "the gradient was not clipped"
    elif clipped == 0:
        bound = f"no step went above the bound of {clip_grad_norm:g}"
    else:
        verb = "was" if clipped == 1 else "were"
        bound = f"{_steps(clipped)} went above the bound of {clip_grad_norm:g} and {verb} scaled down to it"
    skips = (
        "no step had a non-finite loss or gradient"
        if skipped == 0
        else f"{_steps(skipped)} had a non-finite loss or gradient and never updated the weights"
    )
    text = (
        f"Averaged over an epoch, the gradient norm of a step ranged from {np.nanmin(norms):.2f} to "
        f"{np.nanmax(norms):.2f} (the largest single step: {np.nanmax(largest):.2f}); {bound}; {skips}."
    )
    if not events:
        return text + " No epoch diverged."
    return text + " " + " ".join(f"{event[0].upper()}{event[1:]}." for event in events)


# --- the static comparison explorer -------------------------------------------------------------


def _z(mel: np.ndarray) -> np.ndarray:
    # rounded: every button carries its arrays into the page, and two decimals of a z-score are plenty
    return np.round(zscore_bands(mel).T, Z_DECIMALS)


def comparison_explorer_figure(
    targets: Mapping[str, np.ndarray],
    predictions: Mapping[str, Mapping[str, np.ndarray]],
    sfreq: float = TARGET_SFREQ,
    window_seconds: float = 10.0,
) -> go.Figure:
    """True vs. predicted mel with plotly's own controls: recording and model menus and a window slider.

    Works in the static HTML book with no kernel. The three controls compose: the recording menu
    swaps the data of every trace (the true heatmap and one predicted heatmap per model), the
    model menu shows one model's heatmap, the slider moves the 10 s view window along the recording.
    The title names the recording and each model's mean over bands of the per-band Pearson r over
    the whole recording.

    Parameters
    ----------
    targets : mapping recording label -> (time, n_mels) array
        The true mel of each recording (labels e.g. ``"sub-001 · audiobook_1 (known)"``).
    predictions : mapping model -> mapping recording label -> (time, n_mels) array
        Every model must predict every recording (same shapes as the targets).
    sfreq : float
        Frame rate in Hz.
    window_seconds : float
        Width of the view window in s.

    Returns
    -------
    plotly Figure: traces ``[true, predicted by model 1, ..., predicted by model M]``;
    ``updatemenus[0]`` the recordings (method ``update``), ``updatemenus[1]`` the models;
    ``sliders[0]`` the window start.
    """
    if not targets or not predictions:
        raise UserError("targets and predictions must each hold at least one entry")
    models = list(predictions)
    labels = list(targets)
    for model, by_label in predictions.items():
        missing = [label for label in labels if label not in by_label]
        if missing:
            raise UserError(f"model {model!r} has no prediction for {missing}")
    pairs = {
        (model, label): check_pair(targets[label], predictions[model][label], label=f"{model}, {label}")
        for model in models
        for label in labels
    }

    def recording_title(label: str) -> str:
        scores = " · ".join(f"{model} {np.nanmean(band_correlations(*pairs[model, label])):.3f}" for model in models)
        return f"{label}: mean r over bands: {scores}"

    first = labels[0]
    n_first = targets[first].shape[0]
    times = np.arange(n_first) / sfreq
    figure = make_subplots(
        rows=2,
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.1,
        subplot_titles=("true mel", f"predicted by {models[0]}"),
    )
    true_trace = _heatmap(targets[first], sfreq, 0.0, "true", True, coloraxis="coloraxis")
    true_trace.z = _z(targets[first])
    figure.add_trace(true_trace, row=1, col=1)
    for index, model in enumerate(models):
        trace = _heatmap(predictions[model][first], sfreq, 0.0, model, True, coloraxis="coloraxis", visible=index == 0)
        trace.z = _z(predictions[model][first])
        figure.add_trace(trace, row=2, col=1)
    for row, colour in ((1, TRUE_COLOR), (2, PREDICTED_COLOR)):
        figure.update_yaxes(title_text="mel band", row=row, col=1)
        figure.layout.annotations[row - 1].font = dict(color=colour, size=14)
    figure.update_xaxes(title_text="time (s)", row=2, col=1)

    traces = list(range(1 + len(models)))
    recording_buttons = [
        dict(
            label=label,
            method="update",
            args=[
                {
                    "z": [_z(targets[label])] + [_z(predictions[m][label]) for m in models],
                    "x": [np.arange(targets[label].shape[0]) / sfreq] * len(traces),
                },
                {"title.text": recording_title(label)},
                traces,
            ],
        )
        for label in labels
    ]
    model_buttons = [
        dict(
            label=model,
            method="update",
            args=[
                {"visible": [True] + [m == model for m in models]},
                {"annotations[1].text": f"predicted by {model}"},
                traces,
            ],
        )
        for model in models
    ]
    longest = max(mel.shape[0] for mel in targets.values()) / sfreq
    starts = np.arange(0.0, max(longest - window_seconds, 0.0) + 1e-9, WINDOW_STEP_SECONDS)
    slider_steps = [
        dict(
            label=f"{start:g}",
            method="relayout",
            args=[{"xaxis.range": [start, start + window_seconds], "xaxis2.range": [start, start + window_seconds]}],
        )
        for start in starts
    ]
    view = [0.0, min(window_seconds, times[-1])]
    figure.update_xaxes(range=view)
    # Both menus left-aligned, the model menu above the top heatmap's title, the recordings above it: side by side
    # they overlap at phone width.
    height, margin = 680, dict(t=170, b=40)
    model_y, recording_y = menu_rows(2, height, margin["t"], margin["b"])
    menu_style = dict(direction="down", showactive=True, yanchor="bottom", x=0.0, xanchor="left")
    figure.update_layout(
        coloraxis=dict(colorscale=MEL_COLORSCALE, colorbar=dict(title="z"), cmin=-ZSCORE_RANGE, cmax=ZSCORE_RANGE),
        title=dict(text=recording_title(first), y=0.98, yanchor="top", font=dict(size=15)),
        updatemenus=[
            dict(buttons=recording_buttons, y=recording_y, **menu_style),
            dict(buttons=model_buttons, y=model_y, **menu_style),
        ],
        sliders=[
            dict(
                steps=slider_steps,
                active=0,
                pad=dict(t=50),
                currentvalue=dict(prefix="window starts at (s): "),
                len=1.0,
                x=0.0,
            )
        ],
        margin=margin,
        height=height,
    )
    return figure
