"""Learning-rate sweep: every gradient-trained model at several learning rates, the winner chosen on validation only.

``python benchmarks/sweep.py --preset teaching --runs ~/sweep-runs`` trains each model of ``--models`` (default the
CNN, VLAAI and DMF2Mel) once per learning rate of ``--lrs`` on the quality benchmark's corpus of the preset
(:data:`reports.BENCHMARK_CORPUS`), with the ``quick`` profile and a shortened budget (``--epochs``, default half
the quality benchmark's), one seed, early stopping off and validation after every epoch. It never looks at the
test parts: each run is summed up by its best validation r, the epoch of that best, and its whole learning curve
(validation r against optimiser steps, from ``history.csv``). The learning rate with the highest best validation r
is the model's choice; a choice at the edge of the grid, or a best epoch that is the last one, is flagged, since a
better setting may lie beyond it.

Writes ``benchmarks/results/sweep_<preset>.json`` and a markdown table beside it after every run. The runs survive
a session's end in two ways: a run folder under ``--runs`` resumes from its last checkpoint, and a run already in
the committed report is kept as long as its key (model, learning rate, budget, corpus version, the model's
fingerprint) matches, so the sweep can be finished in several sessions by committing the report as it grows.
Never part of the tests.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import math
import sys
import time
from pathlib import Path
from typing import Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling benchmark scripts, for their helpers

from quality import PROFILE, best_clean_rate, corpus_info, learning_curve  # noqa: E402
from reports import (  # noqa: E402
    RESULTS_DIR,
    benchmark_corpus,
    best_so_far,
    code_state,
    earlier_runs,
    kept_result,
    machine_info,
    resumable,
    same_key,
    set_threads,
    write_report,
)
from stability import guarded_rates, passed_over  # noqa: E402

#: The models whose learning rate is swept (the ablations take DMF2Mel's).
DEFAULT_MODELS = ("cnn", "vlaai", "dmf2mel")
#: A grid in steps of about 3 around the quick profile's 3e-3.
DEFAULT_LRS = (1e-3, 3e-3, 1e-2)
#: A quarter of the 40 epochs the quality benchmark first trained (an eighth of the 80 it trains on ``teaching`` now):
#: enough to rank learning rates, and the two best are trained over the full budget before one is chosen.
DEFAULT_EPOCHS = 10
SEED = 0
#: Where a run folder keeps its result.
RESULT_FILE = "sweep_result.json"


def run_key(model: str, lr: float, epochs: int, corpus_version: str | None, fingerprint: list | None) -> dict:
    """What one run's result depends on: a saved result with another key is trained again."""
    from dmf2mel.train import PROFILES

    profile = dataclasses.replace(PROFILES[PROFILE], epochs=epochs, patience=epochs, val_every=1, lr=lr)
    return json.loads(
        json.dumps(
            {
                "model": model,
                "lr": lr,
                "seed": SEED,
                "train": dataclasses.asdict(profile),
                "corpus": corpus_version,
                "fingerprint": fingerprint,
            }
        )
    )


def train_one(data: Path, run: Path, key: dict) -> dict:
    """Train one model at one learning rate (on from the run's last checkpoint when there is one); its result."""
    from dmf2mel.train import train

    resumed = resumable(run, key)
    started = time.perf_counter()
    summary = train(
        data,
        run,
        model=key["model"],
        profile=PROFILE,
        epochs=key["train"]["epochs"],
        seed=key["seed"],
        device="cpu",
        quiet=True,
        patience=key["train"]["epochs"],
        val_every=1,
        test=False,
        resume=resumed,
        lr=key["lr"],
    )
    curve = learning_curve(run)
    return {
        "key": key,
        "model": key["model"],
        "lr": key["lr"],
        "best_val_r": summary["best_val_r"],
        "best_epoch": summary["best_epoch"],
        "epochs": summary["epochs"],
        "seconds": float(sum(curve["seconds"])) if curve.get("seconds") else time.perf_counter() - started,
        "diverged": any(curve.get("event", [])),
        "curve": curve,
    }


def choose(entries: Sequence[dict]) -> dict:
    """Per model: the learning rate with the highest best validation r, and what to distrust about the choice."""
    out = {}
    for model in dict.fromkeys(entry["model"] for entry in entries):
        mine = sorted((e for e in entries if e["model"] == model), key=lambda e: e["lr"])
        scored = [e for e in mine if e["best_val_r"] is not None and math.isfinite(e["best_val_r"])]
        if not scored:
            out[model] = {"lr": None, "best_val_r": None, "notes": ["no run gave a finite validation r"]}
            continue
        best = max(scored, key=lambda e: e["best_val_r"])
        notes = []
        if len(mine) > 1 and best["lr"] in (mine[0]["lr"], mine[-1]["lr"]):
            notes.append("at the edge of the grid: a learning rate beyond it may do better")
        if best["best_epoch"] == best["epochs"]:
            notes.append("best in the last epoch: still learning at the end of the sweep's budget")
        if best["diverged"]:
            notes.append("the run diverged once and recovered (history.csv, event)")
        out[model] = {
            "lr": best["lr"],
            "best_val_r": best["best_val_r"],
            "best_epoch": best["best_epoch"],
            "notes": notes,
        }
    return out


def commands(report: dict, out: Path | None = None) -> list[str]:
    """The command lines that make this report (at ``out``) again; its runs are kept while their keys hold.

    One line for each set of learning rates: a report that grew by sweeps of different grids (e.g. each model at
    its own chosen rate) is made again by those sweeps, not by one grid of every model at every rate."""
    grids: dict[tuple[float, ...], list[str]] = {}
    for model in report["chosen"]:
        lrs = tuple(sorted({entry["lr"] for entry in report["runs"] if entry["model"] == model}))
        grids.setdefault(lrs, []).append(model)
    suffix = ""
    if out is not None and Path(out).resolve() != (RESULTS_DIR / f"sweep_{report['preset']}.json").resolve():
        out = Path(out).resolve()
        root = RESULTS_DIR.parents[1].resolve()
        suffix = f" --out {out.relative_to(root) if out.is_relative_to(root) else out}"
    return [
        f"python benchmarks/sweep.py --preset {report['preset']} --models {' '.join(models)} "
        f"--lrs {' '.join(f'{lr:g}' for lr in lrs)} --epochs {report['budget']['epochs']}{suffix}"
        for lrs, models in grids.items()
    ]


def progress_lines(report: dict, out: Path | None = None) -> list[str]:
    """Each chosen run's best validation r so far at each quarter of the budget, and the command of the report."""
    epochs = report["budget"]["epochs"]
    lines = []
    for model, choice in report["chosen"].items():
        entry = next((e for e in report["runs"] if e["model"] == model and e["lr"] == choice["lr"]), None)
        if entry is None or not entry.get("curve"):
            continue
        steps = ", ".join(
            f"epoch {end}: {'n/a' if r is None else f'{r:.4f}'}" for end, r in best_so_far(entry["curve"], epochs)
        )
        lines.append(f"- {model} (lr {choice['lr']:g}): {steps}")
    if lines:
        lines = [
            f"The chosen runs, best validation r so far after each quarter of the {epochs} epochs (a run whose last "
            "quarter still adds was still learning):",
            "",
            *lines,
            "",
        ]
    return [*lines, "Made by " + " then ".join(f"`{line}`" for line in commands(report, out)) + "."]


def markdown(report: dict, out: Path | None = None) -> str:
    """The sweep as a table: best validation r (and its epoch) per model and learning rate, the choice in bold; the
    chosen runs' progress over the budget and the command that makes the report (at ``out``) again."""
    lrs = sorted({entry["lr"] for entry in report["runs"]})
    chosen = report["chosen"]
    budget = report["budget"]
    lines = [
        f"# Learning-rate sweep, `{report['preset']}` preset",
        "",
        f"{report['date'][:10]}, {report['machine']['cpu_count']}-core {report['machine']['cpu']}, "
        f"{budget['threads']} torch thread(s), commit {str(report['code']['commit'])[:7]}. Profile `{PROFILE}` with "
        f"{budget['epochs']} epochs, seed {SEED}, validation after every epoch, early stopping off; the corpus is the "
        f"quality benchmark's ({report['corpus']['folder']}). Each cell: the best validation r (paper metric without "
        "its null) and, in brackets, the epoch it was reached in. The test parts are never looked at.",
        "",
        "| model | " + " | ".join(f"lr {lr:g}" for lr in lrs) + " | chosen |",
        "|---|" + "---:|" * (len(lrs) + 1),
    ]
    for model, choice in chosen.items():
        cells = []
        for lr in lrs:
            entry = next((e for e in report["runs"] if e["model"] == model and e["lr"] == lr), None)
            if entry is None:
                cells.append("-")
                continue
            r = entry["best_val_r"]
            text = "n/a" if r is None else f"{r:.4f} ({entry['best_epoch']})"
            text += " diverged" if entry.get("diverged") else ""
            cells.append(f"**{text}**" if lr == choice["lr"] else text)
        lr_text = "-" if choice["lr"] is None else f"{choice['lr']:g}"
        lines.append(f"| {model} | " + " | ".join(cells) + f" | {lr_text} |")
    lines += ["", *progress_lines(report, out)]
    notes = [f"- {model}: {'; '.join(c['notes'])}." for model, c in chosen.items() if c["notes"]]
    # the records of the maths swept here (a report without fingerprints: every record)
    prints = (report.get("code") or {}).get("fingerprint")
    guarded = guarded_rates(report["preset"], RESULTS_DIR if out is None else Path(out).parent, prints)
    for model, choice in chosen.items():
        passed = passed_over(guarded, model)
        if choice["lr"] in passed:
            info = passed[choice["lr"]]
            instead = best_clean_rate(report["runs"], model, set(passed))
            notes.append(
                f"- {model}: at {choice['lr']:g}, {len(info['guarded'])} of {info['runs']} full-budget runs of its "
                f"recipe needed the trainer's guard (stability_{report['preset']}.md), so the quality benchmark passes "
                f"it over and trains {model} at {'-' if instead is None else f'{instead:g}'}, the best of the others."
            )
    if any(entry.get("diverged") for entry in report["runs"]):
        notes.append(
            "- diverged: whole epochs of non-finite losses or gradients; the trainer restored its best state and halved "
            "the learning rate, and stopped after three such recoveries (each event is in the run's curve): a "
            "learning rate too high for the model."
        )
    if notes:
        lines += ["", "Caveats:", "", *notes]
    return "\n".join(lines) + "\n"


def run_sweep(
    preset: str,
    models: Sequence[str] = DEFAULT_MODELS,
    lrs: Sequence[float] = DEFAULT_LRS,
    epochs: int = DEFAULT_EPOCHS,
    data: Path | None = None,
    runs: Path | None = None,
    out: Path | None = None,
    threads: int | None = 1,
    log=print,
    finished_only: bool = False,
) -> dict:
    """Train every model at every learning rate (keeping matching runs of ``out``); the report, written to ``out``
    after every run. ``finished_only``: train nothing, report the runs already finished (in ``out`` or in the run
    folders), e.g. to merge sweeps that ran in parallel processes."""
    from dmf2mel.io import save_json
    from dmf2mel.models.fingerprint import fingerprint

    set_threads(threads)
    runs = Path(runs) if runs is not None else Path.home() / "sweep-runs"
    runs.mkdir(parents=True, exist_ok=True)
    data = Path(data) if data is not None else benchmark_corpus(runs, preset, log)
    corpus = corpus_info(data)
    prints = fingerprint()  # every model's: the swept models' run keys, and which stability records still count
    earlier = earlier_runs(out)
    report = {
        "preset": preset,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "code": {**code_state(), "fingerprint": prints},
        "corpus": corpus,
        "budget": {"profile": PROFILE, "epochs": epochs, "seed": SEED, "threads": threads, "lrs": list(lrs)},
        "runs": [],
    }
    for model in models:
        for lr in lrs:
            key = run_key(model, lr, epochs, corpus["version"], prints.get(model))
            folder = runs / f"{model}-lr{lr:g}"
            saved = folder / RESULT_FILE
            kept = kept_result(key, earlier, saved)
            if kept is not None:
                entry = kept
                log(
                    f"  {model:<8} lr {lr:<7g} kept: best val r {entry['best_val_r']:.4f} in epoch {entry['best_epoch']}"
                )
            elif finished_only:
                continue
            else:
                entry = train_one(data, folder, key)
                save_json(saved, entry)
                log(
                    f"  {model:<8} lr {lr:<7g} best val r {entry['best_val_r']:.4f} in epoch {entry['best_epoch']} "
                    f"of {entry['epochs']} ({entry['seconds']:.0f} s)"
                )
            report["runs"].append(entry)
            report["chosen"] = choose(report["runs"])
            if out is not None:
                write_report(report, out, markdown(report, out))
    # a sweep grows: the report's earlier runs outside this call's grid stay while their key still holds
    grid = {(entry["model"], entry["lr"]) for entry in report["runs"]}
    others = [entry for entry in earlier if (entry["model"], entry["lr"]) not in grid]
    missing = sorted({entry["model"] for entry in others} - set(prints))
    if missing:
        prints.update(fingerprint(missing))
    for entry in others:
        key = run_key(entry["model"], entry["lr"], epochs, corpus["version"], prints.get(entry["model"]))
        if same_key(entry["key"], key):
            log(f"  {entry['model']:<8} lr {entry['lr']:<7g} kept from the report (outside this call's grid)")
            report["runs"].append(entry)
    if others:
        report["runs"].sort(key=lambda entry: (entry["model"], entry["lr"]))
        report["budget"]["lrs"] = sorted({entry["lr"] for entry in report["runs"]})
        report["chosen"] = choose(report["runs"])
        if out is not None:
            write_report(report, out, markdown(report, out))
    return report


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="teaching", choices=("teaching", "sparrkulee"))
    parser.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS))
    parser.add_argument("--lrs", nargs="+", type=float, default=list(DEFAULT_LRS))
    parser.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS)
    parser.add_argument("--runs", type=Path, help="folder of the run folders and the corpus (default ~/sweep-runs)")
    parser.add_argument("--out", type=Path, help="the report (default benchmarks/results/sweep_<preset>.json)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--finished-only", action="store_true", help="train nothing: report the finished runs")
    args = parser.parse_args(argv)
    out = args.out or RESULTS_DIR / f"sweep_{args.preset}.json"
    report = run_sweep(
        args.preset,
        args.models,
        args.lrs,
        args.epochs,
        runs=args.runs,
        out=out,
        threads=args.threads,
        finished_only=args.finished_only,
    )
    for model, choice in report["chosen"].items():
        print(f"{model}: lr {choice['lr']} (best val r {choice['best_val_r']})", *choice["notes"], sep="; ")


if __name__ == "__main__":
    main()
