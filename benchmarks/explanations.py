"""Why DMF2Mel ranks where it does: the reviewed differences from the official code, tested one at a time.

``python benchmarks/explanations.py --preset teaching --runs ~/explanation-runs`` trains DMF2Mel as it was before
this study (:data:`BASELINE`: the quick profile's small config without convMamba's second dropout) and one variant
per explanation (:data:`VARIANTS`), each with the same seeds, the quality benchmark's budget and corpus, and the
learning rate chosen for DMF2Mel by the sweep (``benchmarks/results/sweep_<preset>.json``; the profile's when the
sweep has no choice yet). Each variant is compared with the baseline subject by subject on the same test recordings
(:func:`dmf2mel.metrics.paired_difference` over subjects and seeds, verdicts by
:data:`dmf2mel.metrics.VERDICT_RULE`). One explanation needs no training: the baseline's runs are scored again with
10 s forward passes, the paper metric's window, instead of the 5 s training window (``predict-10s``).

Writes ``benchmarks/results/explanations_<preset>.json`` and a markdown table beside it after every run. As in the
sweep, a finished run in the committed report is kept while its key (variant, seed, recipe, corpus, fingerprint)
matches, and a run folder resumes from its last checkpoint, so the study can be spread over several sessions.
Never part of the tests.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import sys
from pathlib import Path
from typing import Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling benchmark scripts, for their helpers

from quality import (  # noqa: E402
    STUDY_EPOCHS,
    DEFAULT_SEEDS,
    DEFAULT_VAL_EVERY,
    PROFILE,
    corpus_info,
    paired,
    train_and_score,
)
from reports import (  # noqa: E402
    RESULTS_DIR,
    benchmark_corpus,
    code_state,
    earlier_runs,
    kept_result,
    machine_info,
    resumable,
    set_threads,
    write_report,
)

from dmf2mel.metrics import VERDICT_RULE, format_p, paired_verdict  # noqa: E402

#: DMF2Mel as the quality reports trained it, before this study: convMamba's feed-forward without its second dropout.
BASELINE = {"convmamba_output_dropout": False}
#: The ``small`` config's defaults that this study changed, as they were before it: every variant starts from them,
#: so the study keeps comparing with the model it set out to explain. Not part of a run's key: the key's model
#: fingerprint already pins the maths, and the runs trained before the defaults changed stay valid.
BEFORE_THE_STUDY = {"convmamba_last_residual": False, "hams_qk_norm": False}
#: Each explanation: (DMF2MelConfig switches on top of the baseline, TrainProfile changes, what it tests).
VARIANTS: dict[str, tuple[dict, dict, str]] = {
    "output-dropout": (
        {"convmamba_output_dropout": True},
        {},
        "the official second dropout in convMamba's feed-forward (now the default)",
    ),
    "last-residual": (
        {"convmamba_last_residual": True},
        {},
        "a residual around the small config's single convMamba pass (the official two-pass model keeps one around "
        "its first pass)",
    ),
    "no-infonce": ({}, {"loss_weights": (1.0, 0.5, 0.0)}, "InfoNCE weight 0 (-r + 0.5 L1 only)"),
    "last-residual-no-infonce": (
        {"convmamba_last_residual": True},
        {"loss_weights": (1.0, 0.5, 0.0)},
        "both of the two above",
    ),
    "no-subject-dropout": (
        {"subject_dropout": 0.0},
        {},
        "no subject dropout (the book hides the subject of 10 % of training windows; the official code does not)",
    ),
    "default": (
        {"convmamba_last_residual": True, "convmamba_output_dropout": True},
        {},
        "the small config's defaults after this study's first round: the residual around the single pass and the "
        "official second dropout (with the official position attention)",
    ),
    "hams-qk-norm": (
        {"convmamba_last_residual": True, "convmamba_output_dropout": True, "hams_qk_norm": True},
        {},
        "the above with QK-norm in HAMS-Net's position attention (queries and keys layer-normalised, scores scaled "
        "by 1/sqrt(channels); now the default): the official scores grow with the square of HAMS-Net's "
        "unnormalised activations",
    ),
}
#: Variants also compared with another variant than the baseline: what the second dropout does on top of the
#: residual; what QK-norm does on top of the defaults.
ALSO_AGAINST = {"default": "last-residual", "hams-qk-norm": "default"}
#: Forward passes of the paper metric's window (10 s at 64 Hz) for the no-training explanation.
SCORING_WINDOW = 640
RESULT_FILE = "explanation_result.json"


def register_variant(name: str) -> tuple[str, str]:
    """Register the model and the profile of ``name`` (``"baseline"`` or a key of :data:`VARIANTS`) with the
    package, for this process; returns (model name, profile name)."""
    from dmf2mel.models.registry import dmf2mel_variant, register
    from dmf2mel.train import PROFILES

    switches, profile_changes, _ = ({}, {}, "") if name == "baseline" else VARIANTS[name]
    model = f"dmf2mel-study-{name}"
    register(model, dmf2mel_variant({**BEFORE_THE_STUDY, **BASELINE, **switches}, f"DMF2Mel ({name})"))
    profile = f"{PROFILE}-study-{name}"
    PROFILES[profile] = dataclasses.replace(PROFILES[PROFILE], name=profile, **profile_changes)
    return model, profile


def chosen_lr(preset: str, out: Path | None = None) -> tuple[float | None, str]:
    """DMF2Mel's learning rate, and where it came from: the one the study in ``out`` started with (a study keeps
    its recipe, also after the sweep has moved on to DMF2Mel's new defaults), else the sweep report's choice."""
    if out is not None and Path(out).is_file():
        budget = json.loads(Path(out).read_text(encoding="utf-8")).get("budget", {})
        if budget.get("lr") is not None:
            return budget["lr"], budget["lr_text"].split(", ", 1)[-1]
    path = RESULTS_DIR / f"sweep_{preset}.json"
    if path.is_file():
        choice = json.loads(path.read_text(encoding="utf-8")).get("chosen", {}).get("dmf2mel", {})
        if choice.get("lr") is not None:
            return choice["lr"], f"chosen by the sweep ({path.name})"
    return None, f"the {PROFILE} profile's (no sweep choice for dmf2mel yet)"


def _key(name: str, seed: int, epochs: int, lr: float | None, corpus: str | None, fingerprint: list) -> dict:
    from dmf2mel.train import PROFILES

    switches, changes, _ = ({}, {}, "") if name == "baseline" else VARIANTS[name]
    profile = dataclasses.asdict(dataclasses.replace(PROFILES[PROFILE], **changes))
    return json.loads(
        json.dumps(
            {
                "variant": name,
                "switches": {**BASELINE, **switches},
                "profile": profile,
                "seed": seed,
                "epochs": epochs,
                "lr": lr,
                "corpus": corpus,
                "fingerprint": fingerprint,
            }
        )
    )


def _one_run(name, seed, data, runs, epochs, lr, key, earlier, n_null, log, finished_only=False) -> dict | None:
    from dmf2mel.io import save_json

    folder = runs / f"{name}-seed{seed}"
    saved = folder / RESULT_FILE
    kept = kept_result(key, earlier, saved)
    if kept is not None:
        log(f"  {name:<26} seed {seed}: kept (known r {kept['known']['paper_r']:.4f})")
        return kept
    if finished_only:
        return None
    model, profile = register_variant(name)
    resumed = resumable(folder, key)
    result = train_and_score(
        model, data, folder, seed, epochs, min(DEFAULT_VAL_EVERY, epochs), n_null, resumed, profile, lr
    )
    entry = {"key": key, "variant": name, "seed": seed, **result}
    if name == "baseline":
        from dmf2mel.evaluate import evaluate_run

        windowed = evaluate_run(folder, data, n_null=n_null, seed=seed, write=False, window=SCORING_WINDOW)
        entry["predict_10s"] = {"known": windowed["known"], "unknown": windowed["unknown"]}
    save_json(saved, entry)
    log(f"  {name:<26} seed {seed}: known r {entry['known']['paper_r']:.4f} ({entry['train_seconds']:.0f} s)")
    return entry


def _row(name: str, entries: Sequence[dict], protocol_key=None) -> dict:
    """A variant's results in the layout :func:`quality.paired` reads: per protocol, per seed per-subject scores."""
    row = {"model": name, "seeds": [e["seed"] for e in entries]}
    for protocol in ("known", "unknown"):
        results = [(protocol_key(e) if protocol_key else e)[protocol] for e in entries]
        if any(r is None for r in results):
            row[protocol] = None
            continue
        row[protocol] = {
            "paper_r": sum(r["paper_r"] for r in results) / len(results),
            "per_seed": [{"seed": e["seed"], "per_subject": r["per_subject"]} for e, r in zip(entries, results)],
        }
    return row


def _comparison(mine: dict, theirs: dict) -> dict:
    """``mine`` minus ``theirs`` (rows of :func:`_row`) per protocol, with verdicts, seeds and mean r."""
    out = {}
    for protocol in ("known", "unknown"):
        comparison = paired(mine, theirs, protocol)
        out[protocol] = None if comparison is None else {**comparison, "verdict": paired_verdict(comparison)}
    out["seeds"] = mine["seeds"]
    out["r"] = {p: (mine[p] or {}).get("paper_r") for p in ("known", "unknown")}
    return out


def compare(report: dict) -> dict:
    """Every variant against the baseline (and those of :data:`ALSO_AGAINST` against their second reference, as
    ``"<variant> vs <reference>"``), per protocol, on the seeds both have finished."""
    by_variant: dict[str, list[dict]] = {}
    for entry in report["runs"]:
        by_variant.setdefault(entry["variant"], []).append(entry)
    out = {}
    baseline = by_variant.get("baseline", [])
    pairs = [(name, "baseline") for name in by_variant if name != "baseline"]
    pairs += [(name, ref) for name, ref in ALSO_AGAINST.items() if name in by_variant]
    for name, ref in pairs:
        entries, references = by_variant[name], by_variant.get(ref, [])
        seeds = sorted({e["seed"] for e in entries} & {e["seed"] for e in references})
        if not seeds:
            continue
        mine = _row(name, [e for e in entries if e["seed"] in seeds])
        theirs = _row(ref, [e for e in references if e["seed"] in seeds])
        out[name if ref == "baseline" else f"{name} vs {ref}"] = _comparison(mine, theirs)
    if baseline and all("predict_10s" in e for e in baseline):
        mine = _row("predict-10s", baseline, lambda e: e["predict_10s"])
        out["predict-10s"] = _comparison(mine, _row("baseline", baseline))
    return out


def markdown(report: dict) -> str:
    lines = [
        f"# Explanations tested one at a time, `{report['preset']}` preset",
        "",
        f"{report['date'][:10]}, {report['machine']['cpu_count']}-core {report['machine']['cpu']}, commit "
        f"{str(report['code']['commit'])[:7]}. Every variant is the baseline (DMF2Mel's small config as it was "
        f"before this study: a single convMamba pass with no residual around it, no second dropout in its "
        f"feed-forward) with one change (`default`: the two that became the small config's defaults); profile `{PROFILE}`, {report['budget']['epochs']} epochs, "
        f"learning rate {report['budget']['lr_text']}, best validation epoch, seeds "
        f"{', '.join(map(str, report['budget']['seeds']))}; the quality benchmark's corpus. Δr: variant minus "
        f"baseline, paired over subjects and seeds. {VERDICT_RULE}",
        "",
        "| variant | what it tests | seeds | known r | Δr known (95 % CI, p) | verdict | unknown r | Δr unknown | verdict |",
        "|---|---|---:|---:|---|---|---:|---|---|",
    ]
    base = [e for e in report["runs"] if e["variant"] == "baseline"]
    if base:
        mean = lambda p: sum(e[p]["paper_r"] for e in base) / len(base)  # noqa: E731
        lines.append(
            f"| baseline | DMF2Mel before this study | {len(base)} | {mean('known'):.4f} | | | {mean('unknown'):.4f} | | |"
        )
    descriptions = {name: text for name, (_, _, text) in VARIANTS.items()}
    descriptions["predict-10s"] = "the baseline's runs predicted in 10 s passes (the scoring window) instead of 5 s"
    for name, ref in ALSO_AGAINST.items():
        descriptions[f"{name} vs {ref}"] = f"Δr of {name} against {ref} instead of the baseline"

    def cell(c):
        if c is None:
            return "-", "-"
        return (
            f"{c['difference']:+.4f} [{c['ci_low']:+.4f}, {c['ci_high']:+.4f}], {format_p(c['p_value'])}",
            c["verdict"],
        )

    for name, c in report["comparisons"].items():
        known, known_verdict = cell(c["known"])
        unknown, unknown_verdict = cell(c["unknown"])
        r = c["r"]
        lines.append(
            f"| {name} | {descriptions.get(name, '')} | {len(c['seeds'])} | {r['known'] or float('nan'):.4f} | {known} | "
            f"{known_verdict} | {r['unknown'] or float('nan'):.4f} | {unknown} | {unknown_verdict} |"
        )
    return "\n".join(lines) + "\n"


def run_study(
    preset: str,
    variants: Sequence[str] = ("baseline", *VARIANTS),
    seeds: Sequence[int] = DEFAULT_SEEDS,
    epochs: int = STUDY_EPOCHS,
    data: Path | None = None,
    runs: Path | None = None,
    out: Path | None = None,
    n_null: int | None = None,
    threads: int | None = 1,
    lr: float | None = None,
    log=print,
    finished_only: bool = False,
) -> dict:
    """Train the baseline and the variants, seed by seed (keeping matching runs of ``out``); the report.
    ``finished_only``: train nothing, report the runs already finished (to merge studies run in parallel)."""
    from dmf2mel.metrics import N_NULL
    from dmf2mel.models.fingerprint import model_fingerprint

    set_threads(threads)
    n_null = N_NULL if n_null is None else n_null
    runs = Path(runs) if runs is not None else Path.home() / "explanation-runs"
    runs.mkdir(parents=True, exist_ok=True)
    data = Path(data) if data is not None else benchmark_corpus(runs, preset, log)
    lr_text = f"{lr:g} (given)" if lr is not None else None
    if lr is None:
        lr, source = chosen_lr(preset, out)
        lr_text = f"{lr:g}, {source}" if lr is not None else source
    corpus = corpus_info(data)
    earlier = earlier_runs(out)
    report = {
        "preset": preset,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "code": code_state(),
        "corpus": corpus,
        "budget": {"profile": PROFILE, "epochs": epochs, "seeds": list(seeds), "lr": lr, "lr_text": lr_text},
        "runs": [],
        "comparisons": {},
    }
    # a study grows: the report's runs outside this call's variants and seeds stay while their key still holds
    grid = {(name, seed) for name in variants for seed in seeds}
    reported = {(entry["variant"], entry["seed"]) for entry in earlier if entry["variant"] in ("baseline", *VARIANTS)}
    all_seeds = sorted(set(seeds) | {seed for _, seed in reported})
    report["budget"]["seeds"] = all_seeds
    for seed in all_seeds:  # seed by seed: a cut-short study has whole comparisons on its first seeds
        for name in ("baseline", *VARIANTS):
            if (name, seed) not in grid | reported:
                continue
            model, _ = register_variant(name)
            key = _key(name, seed, epochs, lr, corpus["version"], model_fingerprint(model))
            outside = (name, seed) not in grid
            entry = _one_run(name, seed, data, runs, epochs, lr, key, earlier, n_null, log, finished_only or outside)
            if entry is None:
                continue
            report["runs"].append(entry)
            report["comparisons"] = compare(report)
            if out is not None:
                write_report(report, out, markdown(report))
    return report


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="teaching", choices=("teaching", "sparrkulee"))
    parser.add_argument("--variants", nargs="+", default=["baseline", *VARIANTS], choices=["baseline", *VARIANTS])
    parser.add_argument("--seeds", nargs="+", type=int, default=list(DEFAULT_SEEDS))
    parser.add_argument("--epochs", type=int, default=STUDY_EPOCHS)
    parser.add_argument("--lr", type=float, help="DMF2Mel's learning rate (default: the sweep's choice)")
    parser.add_argument("--runs", type=Path, help="run folders and the corpus (default ~/explanation-runs)")
    parser.add_argument("--out", type=Path, help="the report (default benchmarks/results/explanations_<preset>.json)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--finished-only", action="store_true", help="train nothing: report the finished runs")
    args = parser.parse_args(argv)
    out = args.out or RESULTS_DIR / f"explanations_{args.preset}.json"
    report = run_study(
        args.preset,
        args.variants,
        args.seeds,
        args.epochs,
        runs=args.runs,
        out=out,
        threads=args.threads,
        lr=args.lr,
        finished_only=args.finished_only,
    )
    print(markdown(report))


if __name__ == "__main__":
    main()
