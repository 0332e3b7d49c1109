"""Quality benchmark: DMF2Mel, its ablations and the baselines on the built-in corpora, known and unknown subjects.

Run ``python benchmarks/quality.py`` (``make bench-quality``); for each preset it writes
``benchmarks/results/quality_<preset>.json`` and a markdown table beside it. Never part of the tests.

Every model is trained and scored by the package itself - :func:`dmf2mel.train.train` (the ``quick`` profile:
``DMF2MelConfig.small()``, batches of 8 windows of 5 s, Adam, validation every epoch, best-on-val checkpoint) and
:func:`dmf2mel.evaluate.evaluate_run` (test parts only, once; paper and challenge metrics with a circular-shift
null giving ``chance_r`` and ``p_value``) - under one fixed budget stated in the output: the same number of
epochs for every gradient-trained model (early stopping off, the best val epoch kept) and the same seeds; the
lagged ridge decoder (``linear``) is fitted in closed form.

Models: ``linear``, ``cnn``, ``vlaai``, ``dmf2mel`` and the ablations of DMF2Mel, each one switch of
:class:`~dmf2mel.models.DMF2MelConfig`:

=========================  ==================================================================================
``dmf2mel-no-dcfam``       ``use_dcfam=False``: the DC-FAM branch is the identity
``dmf2mel-no-hams``        ``use_hams=False``: the HAMS-Net branch is the identity
``dmf2mel-no-splinemap``   ``use_splinemap=False``: linear projections instead of AGKAN in every attention
``dmf2mel-no-mamba``       ``use_mamba=False``: convMamba without its BiMamba
``dmf2mel-single-head``    ``head="single"``: the official one-channel output, broadcast to the 10 bands as the
                           official code compares it (:class:`dmf2mel.models.SingleHeadBroadcast`)
=========================  ==================================================================================

They are defined in :data:`dmf2mel.models.registry.ABLATIONS` and registered in :data:`~dmf2mel.models.registry.MODELS`, so the
trainer, the checkpoints, ``python -m dmf2mel evaluate`` and the book treat them like any other model.

Several seeds: every model is trained once per seed; a row reports the mean over seeds (and the standard
deviation), the mean chance level, the largest p-value over seeds, and every seed's numbers (with its per-subject
paper r) under ``per_seed``.

Comparisons are paired: two models scored on the same test recordings are compared subject by subject
(:func:`dmf2mel.metrics.paired_difference`: mean difference in r, 95 % bootstrap interval over subjects and seeds,
sign-flip p-value). A model "beats" another only when the interval excludes 0; otherwise the report says "no
detectable difference". Reports written before per-subject scores were kept have no paired test, and say so.

The corpus: the book's built-in corpora are small (each recording's test part is one 10 s window, 24 windows in
all). The benchmark simulates its own, larger corpus of each preset (:data:`reports.BENCHMARK_CORPUS`: more subjects, more
held out, 10-minute stories), whose test parts hold about ten times as many windows for each protocol.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling benchmark script, for its helpers

from corpus_identity import canonical_version  # noqa: E402
from stability import (  # noqa: E402
    full_budget_scores,
    guard_actions,
    guarded_rates,
    passed_over,
    recipe_of,
    run_sentence,
)
from stability import update as update_stability  # noqa: E402
from reports import (  # noqa: E402
    RESULTS_DIR,
    benchmark_corpus,
    best_so_far,
    code_state,
    machine_info,
    resumable,
    same_key,
    set_threads,
    update_readme,
    write_report,
)

from dmf2mel.metrics import VERDICT_RULE, format_p, paired_verdict  # noqa: E402
from dmf2mel.models.registry import model_names  # noqa: E402

PRESETS = ("teaching", "sparrkulee")
MODELS = model_names()  # the baselines, dmf2mel and its ablations, in table order
#: The trainer's profile every model trains with.
PROFILE = "quick"
#: Epochs of the shorter studies (explanations, ceilings): twice the quick profile's 10, which left the deep models
#: visibly under-trained.
STUDY_EPOCHS = 20
#: Epochs per gradient-trained model in the benchmark, per preset. On ``teaching`` DMF2Mel was still rising at 40
#: epochs: trained for 80 at its chosen rate (``results/plateau80_teaching.md``) its best validation r went on from
#: 0.335 at epoch 40 to 0.347 at epoch 64 and no further, so that report gives every model 80 epochs (its 40-epoch
#: predecessor is kept in ``results/quality_teaching_40_epochs/`` for the paired comparison of the two budgets).
#: ``sparrkulee`` keeps 40, the budget its report and finalists were trained at (no plateau study has run there).
#: This is a long benchmark: on the benchmark corpus one seed of VLAAI took 135 minutes on average for the 80 epochs
#: of ``teaching`` (one thread, two runs sharing the 2-core machine), and the nine models and three seeds of that
#: preset took about twenty hours of one core. Run it in several processes (disjoint ``--models``, the same ``--runs``)
#: and rerun the same command to go on where a cut-short run stopped; every finished seed is kept beside the report
#: (``quality_<preset>_seeds/``).
DEFAULT_EPOCHS = {"teaching": 80, "sparrkulee": 40}
#: Validate (and keep the best checkpoint) every this many epochs.
DEFAULT_VAL_EVERY = 2
#: Three seeds: the spread between them is the noise floor of every comparison in the table.
DEFAULT_SEEDS = (0, 1, 2)
#: torch threads: one, because the machine is shared (see train_speed.set_threads).
DEFAULT_THREADS = 1
#: Where each run folder keeps its seed's result (:func:`seed_result`).
RESULT_FILE = "quality_result.json"
#: Seed of the bootstrap and the sign flips of the paired comparisons.
PAIRED_SEED = 0
#: Score fields averaged over seeds.
SCORES = ("paper_r", "challenge_r", "chance_r", "challenge_chance_r")
#: p-values: the largest over seeds is reported.
P_VALUES = ("p_value", "challenge_p_value")


# --- one model ----------------------------------------------------------------------------------


def learning_rates(
    preset: str,
    models: Sequence[str],
    sweep: Path | None = None,
    fingerprint: dict | None = None,
    epochs: int | None = None,
    corpus: str | None = None,
) -> dict[str, dict]:
    """Each gradient-trained model's learning rate, chosen on validation by the sweep of ``preset``
    (``benchmarks/results/sweep_<preset>.json``, :mod:`sweep`): ``{model: {"lr": ..., "source": ...}}``.

    The ablations take DMF2Mel's (the sweep does not sweep them: each is one switch of DMF2Mel, trained with its
    recipe); a model the sweep has no choice for keeps the profile's learning rate, and says so; the closed-form
    linear decoder has none. A rate that needed the trainer's guard in a full-budget run of the recipe (recorded by
    :mod:`stability` beside the sweep; with ``fingerprint``, only records of the same maths count) is passed over:
    the recipe takes the sweep's best validation r among the other rates, and the source says why.

    The sweep's budget is short, and it favours fast rates: two rates within its noise can part over the full
    budget. So the sweep's two best (clean) rates are finalists: when a clean seed-0 run of the model itself at each
    of them is recorded at the full budget (``epochs`` on ``corpus``, :func:`stability.full_budget_scores`), the one
    with the higher best validation r is taken; until the runner-up has trained (``quality.py --models M --seeds 0
    --lr RATE --out FOLDER``, then ``stability.py --seeds-dir``), the source says so.
    """
    from dmf2mel.models.registry import model_spec
    from dmf2mel.train import PROFILES

    sweep = RESULTS_DIR / f"sweep_{preset}.json" if sweep is None else Path(sweep)
    swept_report = json.loads(sweep.read_text(encoding="utf-8")) if sweep.is_file() else {}
    chosen = swept_report.get("chosen", {})
    guarded = guarded_rates(preset, sweep.parent, fingerprint)
    full = full_budget_scores(preset, sweep.parent, fingerprint, epochs, corpus)
    out = {}
    for model in models:
        if model_spec(model).closed_form:
            continue
        swept = model if model in chosen else recipe_of(model)
        lr = chosen.get(swept, {}).get("lr")
        if lr is None:
            out[model] = {"lr": PROFILES[PROFILE].lr, "source": f"the {PROFILE} profile's (no sweep choice)"}
            continue
        whose = "chosen on validation" if swept == model else "DMF2Mel's, chosen on validation"
        source = f"{whose} by the sweep ({sweep.name})"
        passed = passed_over(guarded, swept)
        if lr in passed:
            lr = best_clean_rate(swept_report.get("runs", []), swept, set(passed))
            why = ", ".join(
                f"{rate:g} in {len(info['guarded'])} of {info['runs']} runs" for rate, info in passed.items()
            )
            source += (
                f" among the rates no full-budget run needed the guard at (it did at {why}; stability_{preset}.md)"
            )
            if lr is None:
                lr, source = PROFILES[PROFILE].lr, f"the {PROFILE} profile's: every swept rate needed the guard ({why})"
                out[model] = {"lr": lr, "source": source}
                continue
        runner_up = best_clean_rate(swept_report.get("runs", []), swept, set(passed) | {lr})
        scores = full.get(swept, {})
        if runner_up is not None and lr in scores and runner_up in scores:
            both = f"{lr:g}: {scores[lr]:.4f}, {runner_up:g}: {scores[runner_up]:.4f}"
            lr = runner_up if scores[runner_up] > scores[lr] else lr
            source += f"; of its two best rates, the higher best validation r at the full budget (seed 0, {both})"
        elif runner_up is not None:
            source += f"; its runner-up {runner_up:g} has not trained the full budget yet"
        out[model] = {"lr": lr, "source": source}
    return out


def best_clean_rate(runs: Sequence[dict], model: str, passed: set) -> float | None:
    """The sweep's learning rate for ``model`` with the best validation r, leaving out ``passed`` and the sweep's
    own diverged runs (None when no rate is left)."""
    clean = [
        run
        for run in runs
        if run["model"] == model
        and run["lr"] not in passed
        and not run.get("diverged")
        and run.get("best_val_r") is not None
        and math.isfinite(run["best_val_r"])
    ]
    return max(clean, key=lambda run: run["best_val_r"])["lr"] if clean else None


def _mean(values: Sequence) -> float | None:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return sum(finite) / len(finite) if finite else None


def _std(values: Sequence) -> float | None:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if len(finite) < 2:
        return None
    mean = sum(finite) / len(finite)
    return math.sqrt(sum((v - mean) ** 2 for v in finite) / (len(finite) - 1))


def aggregate(per_seed: list[dict | None], seeds: Sequence[int]) -> dict | None:
    """One protocol's results over seeds: means, std of paper r, largest p-values, per band, per seed."""
    if all(result is None for result in per_seed):
        return None
    results = [r for r in per_seed if r is not None]
    out: dict = {name: _mean([r[name] for r in results]) for name in SCORES}
    out["paper_r_std"] = _std([r["paper_r"] for r in results])
    out.update({name: max((r[name] for r in results if r[name] is not None), default=None) for name in P_VALUES})
    bands = [r["per_band"] for r in results]
    out["per_band"] = [_mean([b[i] for b in bands]) for i in range(len(bands[0]))]
    out["subjects"] = results[0]["subjects"]
    out["n_recordings"] = results[0]["n_recordings"]
    out["per_seed"] = [
        {"seed": seed, **({name: r.get(name) for name in (*SCORES, *P_VALUES, "per_subject")} if r is not None else {})}
        for seed, r in zip(seeds, per_seed)
    ]
    return out


def train_and_score(
    model: str,
    data: Path,
    run: Path,
    seed: int,
    epochs: int,
    val_every: int,
    n_null: int,
    resume: bool = False,
    profile: str = PROFILE,
    lr: float | None = None,
) -> dict:
    """Train ``model`` with the package's trainer (on from the run's last checkpoint with ``resume``) and score its
    best checkpoint; times and metrics. ``profile`` and ``lr`` (default: the profile's) set the recipe."""
    from dmf2mel.checkpoint import load_model
    from dmf2mel.evaluate import evaluate_run
    from dmf2mel.train import train

    start = time.perf_counter()
    # patience = epochs: early stopping never fires, so every model gets the whole budget
    summary = train(
        data,
        run,
        model=model,
        profile=profile,
        epochs=epochs,
        seed=seed,
        device="cpu",
        quiet=True,
        patience=epochs,
        val_every=val_every,
        test=False,
        resume=resume,
        lr=lr,
    )
    train_seconds = time.perf_counter() - start
    start = time.perf_counter()
    metrics = evaluate_run(run, data, device="cpu", n_null=n_null, seed=seed, write=False)
    _, fitted = load_model(run)
    return {
        "seed": seed,
        "machine": trained_on(),
        "train_seconds": train_seconds,
        "eval_seconds": time.perf_counter() - start,
        "epochs_run": summary["epochs"],
        "best_epoch": summary["best_epoch"],
        "best_val_r": summary["best_val_r"],
        "params": sum(p.numel() for p in fitted.parameters()),
        "curve": learning_curve(run),
        "known": metrics["known"],
        "unknown": metrics["unknown"],
    }


def trained_on(machine: dict | None = None) -> str:
    """The machine a seed is trained on, as a report names it: ``"2-core <CPU model>"``."""
    machine = machine_info() if machine is None else machine
    return f"{machine['cpu_count']}-core {machine['cpu']}"


def machines_sentence(report: dict) -> str:
    """Where the seeds of a report were trained, when not all on the machine that assembled it (a benchmark resumed
    in another session reuses the seeds saved before): the training times are each seed's own machine's. ``""`` when
    every seed was trained on the report's machine."""
    here = trained_on(report["machine"])
    counts: dict[str, int] = {}
    for row in report["rows"]:
        for machine in row.get("trained_on") or []:
            name = machine or "not recorded (saved before the seeds recorded their machine)"
            counts[name] = counts.get(name, 0) + 1
    if set(counts) <= {here}:
        return ""
    listed = "; ".join(f"{name}: {n} {'seed' if n == 1 else 'seeds'}" for name, n in counts.items())
    return f"Each train time is that of the machine its seed was trained on, not always this one: {listed}."


#: The columns of a run's ``history.csv`` a report keeps as its learning curve.
CURVE_COLUMNS = ("epoch", "step", "loss", "train_r", "val_r", "grad_norm", "skipped_steps", "seconds", "event")


def learning_curve(run: Path) -> dict:
    """A run's learning curve from its ``history.csv``: ``{column: [one value per epoch]}`` for
    :data:`CURVE_COLUMNS` (NaN, e.g. an epoch without validation, as None), so the report keeps it after the run
    folders are deleted."""
    from dmf2mel.runs import history_table

    table = history_table(run)
    curve = {}
    for column in CURVE_COLUMNS:
        if column not in table:
            continue
        values = table[column].tolist()
        curve[column] = [v if isinstance(v, str) or math.isfinite(v) else None for v in values]
    return curve


def longer_budget(old: dict, new: dict) -> bool:
    """Whether a run started for key ``old`` goes on as the run of key ``new``: everything the same but the number of
    epochs (and the patience, which equals it: early stopping is off), ``new`` the longer. The schedule does not
    depend on the budget, so the first epochs of a longer run are the shorter run; a 40-epoch benchmark can be
    extended to 80 without training the first 40 again."""

    def rest(key: dict) -> dict:
        key = json.loads(json.dumps(key))
        budget = key.get("budget") or {}
        budget.pop("epochs", None)
        for field in ("epochs", "patience"):
            (budget.get("train") or {}).pop(field, None)
        return key

    try:
        shorter = old["budget"]["epochs"] <= new["budget"]["epochs"]
    except (KeyError, TypeError):
        return False
    return shorter and same_key(rest(old), rest(new))


def own_maths(saved: dict, key: dict) -> dict:
    """A saved run key with only the fingerprints of the models ``key`` holds: seeds saved with every model's
    fingerprint (before a run's key held its own model's only) stay valid while their own model's maths are the same,
    whatever changed in the others."""
    prints, mine = saved.get("fingerprint"), key.get("fingerprint")
    if not isinstance(prints, dict) or not isinstance(mine, dict):
        return saved
    return {**saved, "fingerprint": {model: prints[model] for model in mine if model in prints}}


def seed_result(
    model: str,
    data: Path,
    run: Path,
    seed: int,
    epochs: int,
    val_every: int,
    n_null: int,
    key: dict,
    lr: float | None = None,
    kept: Path | None = None,
) -> dict:
    """One seed of one model, resumable: the result saved in the run folder (or in ``kept``) when its ``key``
    matches, else the training continued from the run's last checkpoint (or started), scored and saved.

    ``kept`` is a folder of finished seeds beside the report (``quality_<preset>_seeds/<model>-seed<k>.json``):
    committed as they come, they carry a benchmark that takes longer than a session over to the next one, where
    the run folders are gone.

    ``key`` holds what the result depends on besides the run folder (budget, the model's learning rate ``lr``,
    corpus version and the model's own fingerprint, :mod:`dmf2mel.models.fingerprint`); a saved result is kept only
    when the budget and corpus are the same and the fingerprint matches (:func:`own_maths`), so a benchmark cut
    short (a closed session, Ctrl+C) goes on where it stopped, also after changes of the code that leave the maths
    alone, and a change of one model retrains that model only. A run folder of a shorter budget of the same run is
    continued to the longer one (:func:`longer_budget`), not trained again.
    """
    from dmf2mel.io import save_json
    from dmf2mel.runs import history_table

    saved_path = run / RESULT_FILE
    kept_path = None if kept is None else Path(kept) / f"{run.name}.json"
    for path in (saved_path, kept_path):
        if path is not None and path.is_file():
            saved = json.loads(path.read_text(encoding="utf-8"))
            if same_key(own_maths(saved["key"], key), json.loads(json.dumps(key))):
                return {**saved["result"], "reused": True}
    resumed = resumable(run, key, continues=longer_budget)  # another corpus, maths or a shorter budget: again
    result = train_and_score(model, data, run, seed, epochs, val_every, n_null, resume=resumed, lr=lr)
    if resumed:  # the training time of all the run's epochs, not only of those after the resume
        result["train_seconds"] = float(sum(history_table(run)["seconds"]))
        result["resumed"] = True
    save_json(saved_path, {"key": key, "result": result})
    if kept_path is not None:
        save_json(kept_path, {"key": key, "result": result})
    return result


def model_row(
    model: str,
    data: Path,
    runs: Path,
    seeds: Sequence[int],
    epochs: int,
    val_every: int,
    n_null: int,
    key: dict,
    log=print,
    lr: float | None = None,
    kept: Path | None = None,
) -> dict:
    """Train and score ``model`` once per seed at learning rate ``lr`` (:func:`seed_result`: resumable, ``key`` and
    ``kept`` as there); the row of the quality table."""
    per_seed = []
    # a model's runs depend on its own learning rate and its own maths only
    prints = key.get("fingerprint")
    own = {model: prints[model]} if isinstance(prints, dict) and model in prints else prints
    key = {**key, "lr": lr, "fingerprint": own}
    for seed in seeds:
        folder = runs / f"{model}-seed{seed}"
        result = seed_result(model, data, folder, seed, epochs, val_every, n_null, key, lr, kept)
        per_seed.append(result)
        unknown = result["unknown"] or {}
        how = " (saved earlier)" if result.get("reused") else " (resumed)" if result.get("resumed") else ""
        log(
            f"  {model:<22} seed {seed}: known r {_fmt(result['known']['paper_r'])} (chance "
            f"{_fmt(result['known']['chance_r'])}), unknown r {_fmt(unknown.get('paper_r'))}, "
            f"train {result['train_seconds']:.0f} s, eval {result['eval_seconds']:.0f} s{how}"
        )
    return {
        "model": model,
        "lr": lr,
        "params": per_seed[0]["params"],
        "seeds": list(seeds),
        "epochs": per_seed[0]["epochs_run"],
        "best_epoch": [r["best_epoch"] for r in per_seed],
        "best_val_r": [r["best_val_r"] for r in per_seed],
        # every seed's learning curve (val r against optimiser steps), kept after the run folders are gone
        "curves": [r.get("curve") for r in per_seed],
        "train_seconds": _mean([r["train_seconds"] for r in per_seed]),
        "eval_seconds": _mean([r["eval_seconds"] for r in per_seed]),
        "trained_on": [r.get("machine") for r in per_seed],
        "known": aggregate([r["known"] for r in per_seed], seeds),
        "unknown": aggregate([r["unknown"] for r in per_seed], seeds),
    }


# --- one preset ---------------------------------------------------------------------------------


def budget(epochs: int, seeds: Sequence[int], n_null: int, val_every: int, threads: int | None) -> dict:
    """The training budget every model gets, as written in the report."""
    from dmf2mel.train import PROFILES

    profile = dataclasses.asdict(
        dataclasses.replace(PROFILES[PROFILE], epochs=epochs, patience=epochs, val_every=val_every)
    )
    return {
        "profile": PROFILE,
        "epochs": epochs,
        "seeds": list(seeds),
        "early_stopping": "off (patience = epochs); the best val epoch is evaluated",
        "val_every": val_every,
        "threads": threads,
        "closed_form": "linear: ridge fitted once in closed form, alpha picked on val (epochs do not apply)",
        "train": profile,
        "model_preset": profile["model_preset"],
        "n_null": n_null,
    }


def corpus_info(data: Path) -> dict:
    """Preset, seed, version and subjects of a corpus folder (from its metadata)."""
    from dmf2mel.data.sparrkulee import SplitData
    from dmf2mel.evaluate import default_held_out

    split = SplitData(data)
    meta = split.metadata or {}
    return {
        "preset": meta.get("preset"),
        "seed": meta.get("seed"),
        # the studies key their runs by it: a version verified to simulate the same data as an earlier one counts
        # as that one (benchmarks/corpus_identity.py)
        "version": canonical_version(meta.get("version"), meta.get("preset")),
        "simulated_by": meta.get("version"),
        "folder": Path(data).name,  # the name only: a committed report must not record the machine's paths
        "subjects": split.subjects,
        "held_out": default_held_out(split),
        "recordings": split.summary()["recordings"],
    }


def run_preset(
    preset: str,
    models: Sequence[str] = MODELS,
    seeds: Sequence[int] = DEFAULT_SEEDS,
    epochs: int | None = None,
    data: Path | None = None,
    runs: Path | None = None,
    n_null: int | None = None,
    out: Path | None = None,
    reuse: bool = False,
    val_every: int | None = None,
    threads: int | None = DEFAULT_THREADS,
    log=print,
    sweep: Path | None = None,
    lr: float | None = None,
) -> dict:
    """Train and score every model on the corpus of ``preset``; the report (written to ``out`` as it grows).

    Parameters
    ----------
    preset : str
        ``"teaching"`` or ``"sparrkulee"``; the corpus is the benchmark's corpus of that preset unless ``data`` is
        given.
    models, seeds, epochs : the models, the seeds and the epochs of each gradient-trained model (default: the
        preset's, :data:`DEFAULT_EPOCHS`).
    data : Path, optional
        A split_data folder to use instead of the benchmark's corpus of ``preset`` (:data:`reports.BENCHMARK_CORPUS`).
    runs : Path, optional
        Where the run folders (and the benchmark's corpus, generated on first use) go (default: a temporary
        folder, deleted at the end). Given, a second call with the same arguments goes on where the first stopped:
        every finished seed is kept and a cut-short training resumes from its last epoch (:func:`seed_result`).
    n_null : int, optional
        Null draws of the chance levels (default: the package's, :data:`dmf2mel.metrics.N_NULL`).
    out : Path, optional
        The JSON report (and a ``.md`` beside it), rewritten after every model; every finished seed is also saved
        in ``<out stem>_seeds/`` beside it, where a later call finds it even without ``runs`` (commit the folder
        to carry a long benchmark over sessions).
    reuse : bool
        Keep the rows of models already in ``out`` when its budget and corpus match (finish a cut-short run).
    val_every : int, optional
        Validate every this many epochs (default :data:`DEFAULT_VAL_EVERY`, at most ``epochs``); the
        trainer also validates after the last epoch.
    threads : int, optional
        torch threads (default 1; None keeps torch's default).
    sweep : Path, optional
        The learning-rate sweep report the models' learning rates come from (:func:`learning_rates`; default
        ``benchmarks/results/sweep_<preset>.json``).
    lr : float, optional
        One learning rate for every gradient-trained model of the call instead (to train a finalist of the sweep,
        :func:`learning_rates`); the report says it was given.
    """
    from dmf2mel.metrics import N_NULL

    unknown = sorted(set(models) - set(MODELS))
    if unknown:
        raise SystemExit(f"--models: unknown {', '.join(unknown)}; choose from {', '.join(MODELS)}")
    n_null = N_NULL if n_null is None else n_null
    epochs = DEFAULT_EPOCHS[preset] if epochs is None else epochs
    val_every = min(DEFAULT_VAL_EVERY if val_every is None else val_every, epochs)
    set_threads(threads)
    temporary = runs is None
    runs = Path(tempfile.mkdtemp(prefix=f"quality-{preset}-")) if temporary else Path(runs)
    runs.mkdir(parents=True, exist_ok=True)
    source = data
    if data is None:
        # the benchmark's own, larger corpus (deterministic: seed 0), in the run folder
        data = source = benchmark_corpus(runs, preset, log)
    data = Path(data)
    from dmf2mel.models.fingerprint import fingerprint

    prints = fingerprint()
    corpus = {**corpus_info(data), "folder": Path(source).name}
    rates = learning_rates(preset, models, sweep, prints, epochs, corpus["version"])
    if lr is not None:  # a rate given for every model of the call (a finalist of the sweep, for one)
        rates = {model: {"lr": lr, "source": "given (--lr)"} for model in rates}
    report = {
        "preset": preset,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(),
        # the fingerprint lets a later change of the code that leaves the maths alone keep these numbers current
        "code": {**code_state(), "fingerprint": prints},
        "budget": budget(epochs, seeds, n_null, val_every, threads),
        # every model's own learning rate, chosen on validation (the profile's lr in "budget" is not used)
        "learning_rates": rates,
        "corpus": corpus,
        "rows": [],
    }
    key = {  # what a seed's saved result depends on (seed_result)
        "budget": json.loads(json.dumps(report["budget"])),
        "corpus": report["corpus"]["version"],
        "fingerprint": report["code"]["fingerprint"],
    }
    done = {}
    if reuse and out is not None and out.is_file():
        old = json.loads(out.read_text(encoding="utf-8"))
        same_budget = old.get("budget") == json.loads(json.dumps(report["budget"]))  # tuples come back as lists
        if same_budget and old.get("corpus", {}).get("version") == report["corpus"]["version"]:
            lr_of = lambda model: report["learning_rates"].get(model, {}).get("lr")  # noqa: E731
            done = {row["model"]: row for row in old["rows"] if row.get("lr") == lr_of(row["model"])}
    started = time.perf_counter()
    try:
        for model in models:
            if model in done:
                log(f"  {model:<22} kept from {out}")
                report["rows"].append(done[model])
            else:
                lr = report["learning_rates"].get(model, {}).get("lr")
                kept = None if out is None else out.with_name(f"{out.stem}_seeds")
                row = model_row(model, data, runs, seeds, epochs, val_every, n_null, key, log, lr, kept)
                report["rows"].append(row)
                if kept is not None:  # what the guard did in each run, kept beside the report (stability)
                    update_stability(preset, [kept], out.parent, prints)
            report["wall_seconds"] = time.perf_counter() - started
            if out is not None:
                write(report, out)
    finally:
        if temporary:
            shutil.rmtree(runs, ignore_errors=True)
    report["machine"]["load_average_at_end"] = list(os.getloadavg())
    report["comparisons"] = comparisons(report)
    if out is not None:
        write(report, out)
    return report


def per_subject_scores(result: dict | None) -> list[dict] | None:
    """The per-subject paper r of each seed of a protocol result, or None when the report does not have them."""
    if result is None:
        return None
    scores = [seed.get("per_subject") for seed in result.get("per_seed", [])]
    return scores if scores and all(scores) else None


def paired(row: dict | None, reference: dict | None, protocol: str) -> dict | None:
    """:func:`dmf2mel.metrics.paired_difference` of ``row`` minus ``reference`` on ``protocol`` (None: not possible)."""
    from dmf2mel.metrics import paired_difference

    if row is None or reference is None:
        return None
    a, b = per_subject_scores(row.get(protocol)), per_subject_scores(reference.get(protocol))
    if a is None or b is None:
        return None
    try:
        result = paired_difference(a, b, seed=PAIRED_SEED)
    except ValueError:  # no subject in common
        return None
    result.pop("subjects")
    return result


def verdict(comparison: dict | None) -> str:
    """``"beats"``, ``"below"``, ``"no detectable difference"``, ``"too few subjects"`` (the rule of
    :data:`dmf2mel.metrics.VERDICT_RULE`) or ``"untested"`` (no per-subject scores)."""
    if comparison is None:
        return "untested"
    decision = paired_verdict(comparison)
    return "beats" if decision == "above" else decision


def comparisons(report: dict) -> dict:
    """Paired comparisons per protocol: DMF2Mel against the linear decoder, every other model against DMF2Mel.

    Computed from the rows, so a report written before per-subject scores were kept gets ``"untested"`` verdicts.
    """
    rows = {row["model"]: row for row in report["rows"]}
    out = {}
    for protocol in ("known", "unknown"):
        vs_linear = paired(rows.get("dmf2mel"), rows.get("linear"), protocol)
        vs_full = {m: paired(row, rows.get("dmf2mel"), protocol) for m, row in rows.items() if m != "dmf2mel"}
        verdicts = {m: verdict(c) for m, c in vs_full.items()}
        out[protocol] = {
            "dmf2mel_vs_linear": vs_linear,
            "dmf2mel_vs_linear_verdict": verdict(vs_linear),
            "vs_dmf2mel": vs_full,
            "vs_dmf2mel_verdict": verdicts,
            "beat_dmf2mel": sorted(m for m, v in verdicts.items() if v == "beats"),
        }
    return out


def difference_sentence(model: str, reference: str, comparison: dict | None) -> str:
    """One sentence: whether ``model`` beats ``reference``, with the paired difference and its interval."""
    if comparison is None:
        return f"{model} vs {reference}: no paired test (the report has no per-subject scores of both)"
    c = comparison
    numbers = (
        f"Δr = {c['difference']:+.4f}, {c['confidence']:.0%} CI [{c['ci_low']:+.4f}, {c['ci_high']:+.4f}], "
        f"{format_p(c['p_value'])}, {c['n_subjects']} subjects x {c['n_seeds_a']}/{c['n_seeds_b']} seeds"
    )
    decision = verdict(c)
    if decision == "beats":
        return f"{model} beats {reference} ({numbers})"
    if decision == "below":
        return f"{model} is below {reference} ({numbers})"
    if decision == "too few subjects":
        return f"too few subjects to tell {model} from {reference} ({numbers})"
    return f"no detectable difference between {model} and {reference} ({numbers})"


# --- output -------------------------------------------------------------------------------------


def _fmt(value, spec: str = ".4f") -> str:
    return "-" if value is None else format(value, spec)


def plateau_lines(report: dict) -> list[str]:
    """Whether the budget was long enough: per gradient-trained model, the best validation r so far after each quarter
    of the epochs (mean over seeds; :func:`reports.best_so_far`) and what the last quarter added."""
    epochs = report["budget"]["epochs"]
    lines = []
    for row in report["rows"]:
        curves = [curve for curve in row.get("curves") or [] if curve and len(curve.get("epoch", [])) > 1]
        if not curves:
            continue
        per_seed = [best_so_far(curve, epochs) for curve in curves]
        ends = [end for end, _ in per_seed[0]]
        means = [_mean([seed[k][1] for seed in per_seed]) for k in range(len(ends))]
        if None in means:
            continue
        quarters = ", ".join(f"epoch {end}: {r:.4f}" for end, r in zip(ends, means))
        lines.append(f"- {row['model']}: {quarters}; the last quarter added {means[-1] - means[-2]:+.4f}")
    if not lines:
        return []
    return [
        "",
        f"Was {epochs} epochs enough? Best validation r so far after each quarter of the budget, mean over seeds "
        "(a model whose last quarter still adds was still learning when the budget ended):",
        "",
        *lines,
    ]


def markdown(report: dict) -> str:
    """The quality table of one preset as markdown."""
    b, corpus, machine = report["budget"], report["corpus"], report["machine"]
    train = b["train"]
    by_source: dict[str, list[str]] = {}  # each source once, with the models it speaks for
    for model, rate in report.get("learning_rates", {}).items():
        by_source.setdefault(rate["source"], []).append(model)
    lr_text = "; ".join(f"{', '.join(models)}: {source}" for source, models in by_source.items())
    lr_text = lr_text or f"the profile's {train['lr']:g} for every model"
    lines = [
        f"# Quality on the `{report['preset']}` corpus",
        "",
        f"{report['date']} · corpus `{corpus['preset']}` seed {corpus['seed']} version `{corpus['version']}` "
        f"({len(corpus['subjects']) - len(corpus['held_out'])} training subjects, held out: {', '.join(corpus['held_out'])}) · "
        f"{machine['cpu']}, {machine['cpu_count']} cores, torch {machine['torch']}.",
        "",
        f"Budget per model: profile `{b['profile']}` (DMF2Mel `{b['model_preset']}` config), {b['epochs']} epochs of "
        f"{train['windows_per_recording']} random {train['window_seconds']:g} s windows per training recording, "
        f"batch {train['batch_size']}, Adam at each model's learning rate (column lr: {lr_text}); validation every {b['val_every']} epochs, early stopping off, best val epoch evaluated; "
        f"seeds {', '.join(map(str, b['seeds']))}; {b['closed_form']}. Chance = 95th percentile of a "
        f"circular-shift null ({b['n_null']} draws); p = permutation p-value (largest over seeds).",
        *(["", text, ""] if (text := machines_sentence(report)) else [""]),
        "| model | params | lr | known paper r | known challenge r | known chance r | known p | unknown paper r "
        "| unknown challenge r | unknown chance r | unknown p | train s / seed |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in report["rows"]:
        known, unknown = row["known"] or {}, row["unknown"] or {}

        def r_cell(result):
            text = _fmt(result.get("paper_r"))
            std = result.get("paper_r_std")
            return text if std is None else f"{text} ± {std:.4f}"

        lines.append(
            f"| {row['model']} | {row['params']:,d} | {_fmt(row.get('lr'), 'g')} | {r_cell(known)} | {_fmt(known.get('challenge_r'))} | "
            f"{_fmt(known.get('chance_r'))} | {_fmt(known.get('p_value'), '.3f')} | {r_cell(unknown)} | "
            f"{_fmt(unknown.get('challenge_r'))} | {_fmt(unknown.get('chance_r'))} | {_fmt(unknown.get('p_value'), '.3f')} | "
            f"{_fmt(row.get('train_seconds'), '.0f')} |"
        )
    lines += plateau_lines(report)
    guarded = [
        run_sentence({"model": row["model"], "seed": seed, "guard": actions})
        for row in report["rows"]
        for seed, curve in zip(row.get("seeds") or [], row.get("curves") or [])
        if (actions := guard_actions(curve or {}))
    ]
    if guarded:
        lines += [
            "",
            "**Not clean results.** The trainer's guard had to save these runs (a step with a non-finite loss or "
            "gradient skipped, a diverged epoch undone); their rows mix a recovered run with clean ones: "
            + "; ".join(guarded)
            + ".",
        ]
    names = {row["model"] for row in report["rows"]}
    if "dmf2mel" in names:
        lines += [
            "",
            "Paired comparisons (subject by subject on the same test recordings; the bootstrap interval resamples "
            "subjects and seeds, p is a two-sided sign-flip test of the per-subject mean differences). " + VERDICT_RULE,
        ]
        for protocol, comparison in comparisons(report).items():
            lines.append("")
            lines.append(
                f"- {protocol.capitalize()} subjects: "
                + difference_sentence("dmf2mel", "linear", comparison["dmf2mel_vs_linear"])
                + "."
            )
            for model, result in comparison["vs_dmf2mel"].items():
                if model != "linear":
                    lines.append(f"  - {difference_sentence(model, 'dmf2mel', result)}.")
            widths = [
                c["ci_high"] - c["ci_low"]
                for c in (comparison["dmf2mel_vs_linear"], *comparison["vs_dmf2mel"].values())
                if c is not None
            ]
            if widths:
                lines.append(
                    f"  - Width of the 95 % intervals on {protocol} subjects: median {statistics.median(widths):.4f} "
                    f"(from {min(widths):.4f} to {max(widths):.4f})."
                )
    lines += [
        "",
        f"Wall-clock time of the whole table: {_fmt(report.get('wall_seconds'), '.0f')} s "
        f"(load average {machine['load_average'][0]:.1f} at the start).",
        "",
    ]
    return "\n".join(lines)


def write(report: dict, out: Path) -> None:
    """``out`` (JSON) and the markdown table beside it, atomically."""
    write_report(report, out, markdown(report))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", nargs="+", default=list(PRESETS), choices=PRESETS)
    parser.add_argument(
        "--budget-epochs",
        type=int,
        help="epochs of every gradient-trained model (default: the preset's, "
        + ", ".join(f"{preset} {epochs}" for preset, epochs in DEFAULT_EPOCHS.items())
        + ")",
    )
    parser.add_argument("--seeds", nargs="+", type=int, default=list(DEFAULT_SEEDS), help="one run per seed and model")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="folder of quality_<preset>.json/.md")
    parser.add_argument(
        "--runs",
        type=Path,
        help="keep the run folders here (default: a temporary folder); run again with the same --runs to go on "
        "where a cut-short benchmark stopped",
    )
    parser.add_argument("--n-null", type=int, help="null draws of the chance levels (default: the package's)")
    parser.add_argument("--val-every", type=int, help=f"validate every N epochs (default {DEFAULT_VAL_EVERY})")
    parser.add_argument(
        "--threads",
        type=int,
        default=DEFAULT_THREADS,
        help="torch threads (default 1: on a shared machine one thread is much faster)",
    )
    parser.add_argument(
        "--reuse", action="store_true", help="keep rows already in the output files when budget and corpus match"
    )
    parser.add_argument(
        "--lr",
        type=float,
        help="one learning rate for every model of the call (default: each model's, from the sweep); to train a "
        "finalist of the sweep, give an --out of its own",
    )
    args = parser.parse_args(argv)
    if args.lr is not None and not (math.isfinite(args.lr) and args.lr > 0):
        parser.error(f"--lr must be a positive number, got {args.lr!r}")
    if args.lr is not None and args.out.resolve() == RESULTS_DIR.resolve():
        parser.error(f"--lr trains at a rate of your choice: give it an --out of its own ({RESULTS_DIR} holds the "
                     "benchmark's seeds, which it would replace)")  # fmt: skip
    os.environ.setdefault("TQDM_DISABLE", "1")
    for preset in args.preset:
        epochs = DEFAULT_EPOCHS[preset] if args.budget_epochs is None else args.budget_epochs
        print(f"{preset}: {len(args.models)} models x seeds {args.seeds}, {epochs} epochs", flush=True)
        out = args.out / f"quality_{preset}.json"
        runs = None if args.runs is None else args.runs / preset
        report = run_preset(
            preset,
            args.models,
            args.seeds,
            epochs,
            runs=runs,
            n_null=args.n_null,
            out=out,
            reuse=args.reuse,
            val_every=args.val_every,
            threads=args.threads,
            log=lambda text: print(text, flush=True),
            lr=args.lr,
        )
        print(markdown(report), flush=True)
        print(f"wrote {out} and {out.with_suffix('.md')}", flush=True)
    if args.out.resolve() == RESULTS_DIR.resolve():
        update_readme()


if __name__ == "__main__":
    main()
