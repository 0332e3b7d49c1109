"""Which learning rates train cleanly at the full budget: the quality runs the trainer's guard had to save.

The sweep (:mod:`sweep`) picks each model's learning rate on validation after a short budget (10 epochs). An
instability can show only later: at 40 epochs DMF2Mel's chosen 1e-2 sent three of nine runs of its family to a
non-finite loss. The trainer's guard keeps such a run alive (a step with a non-finite loss or gradient does not
update the weights; an epoch where most steps were skipped is undone: best state restored, learning rate halved),
but a run the guard had to save is not a clean result of its recipe, and the rate that caused it is not a recipe to
report. This script reads the finished seeds of the quality benchmark (``quality_<preset>_seeds/``), records each
run with what the guard did in it, and keeps every record in ``benchmarks/results/stability_<preset>.json`` (earlier
records stay: the seeds of a rate that was passed over are overwritten by the next rate's).

:func:`guarded_rates` tells :func:`quality.learning_rates` which rates to pass over, per recipe: a rate is passed
over when any full-budget run at it needed the guard; the ablations train with DMF2Mel's recipe, so their runs count
for it. :func:`full_budget_scores` gives it the best validation r of each model's clean seed-0 runs at the full
budget, with which it settles the sweep's two best rates (the finalists). The rules are the same for every model,
and a record counts only while its model's maths are those it was trained with (the fingerprint).

The quality benchmark updates the record itself as each model's seeds finish; the command records seeds saved by
other means (or before it did): ``python benchmarks/stability.py --preset teaching [--seeds-dir FOLDER ...]``
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from pathlib import Path
from typing import Iterable

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling benchmark script, for its helpers

from reports import RESULTS_DIR, write_report  # noqa: E402


def recipe_of(model: str) -> str:
    """The model whose learning rate ``model`` trains with: DMF2Mel's for its ablations, else its own."""
    return "dmf2mel" if model.startswith("dmf2mel-") else model


def _guarded_epochs(curve: dict) -> list[tuple[int, str]]:
    """``(epoch, sentence)`` for each epoch the trainer's guard acted in: its event (a diverged epoch undone), else
    the steps it skipped for a non-finite loss or gradient."""
    skipped, events = curve.get("skipped_steps") or [], curve.get("event") or []
    out = []
    for i, epoch in enumerate(curve.get("epoch") or []):
        event = events[i] if i < len(events) else ""
        steps = skipped[i] if i < len(skipped) and skipped[i] else 0
        if event or steps:
            out.append(
                (int(epoch), event or f"epoch {int(epoch)}: {int(steps)} steps skipped (non-finite loss or gradient)")
            )
    return out


def guard_epochs(curve: dict) -> list[int]:
    """The epochs the trainer's guard acted in (see :func:`guard_actions`)."""
    return [epoch for epoch, _ in _guarded_epochs(curve)]


def guard_actions(curve: dict) -> list[str]:
    """What the trainer's guard did in a run, from its learning curve: one sentence per epoch it acted in (an
    event: a diverged epoch undone; or steps skipped for a non-finite loss or gradient). Empty for a clean run."""
    return [sentence for _, sentence in _guarded_epochs(curve)]


def run_sentence(entry: dict) -> str:
    """One guarded run of the record, in words."""
    return f"{entry['model']} seed {entry['seed']}: {' / '.join(entry['guard'])}"


def passed_over(guarded: dict, recipe: str) -> dict:
    """The rates of ``recipe`` that a full-budget run needed the guard at (from :func:`guarded_rates`)."""
    return {lr: info for lr, info in guarded.get(recipe, {}).items() if info["guarded"]}


def record(seed_file: Path) -> dict | None:
    """The stability record of one saved quality seed (None for a closed-form fit, which has no learning rate)."""
    saved = json.loads(Path(seed_file).read_text(encoding="utf-8"))
    key, result = saved["key"], saved["result"]
    if key.get("lr") is None:
        return None
    model = Path(seed_file).stem.rsplit("-seed", 1)[0]
    fingerprint = key.get("fingerprint")
    return {
        "model": model,
        "recipe": recipe_of(model),
        "lr": key["lr"],
        "seed": result["seed"],
        "epochs": key["budget"]["epochs"],
        "corpus": key["corpus"],
        "fingerprint": fingerprint.get(model) if isinstance(fingerprint, dict) else fingerprint,
        "best_val_r": result.get("best_val_r"),
        "guard": guard_actions(result.get("curve") or {}),
        "guard_epochs": guard_epochs(result.get("curve") or {}),
    }


def _same_run(a: dict, b: dict) -> bool:
    """Whether two records are of one run: the same model, rate, seed, budget and corpus, and the same maths (the
    fingerprint's tolerance: the same maths computed on another machine or thread count is the same run, while a
    run of the model after a change of its maths is another)."""
    from dmf2mel.models.fingerprint import same_fingerprint

    fields = ("model", "lr", "seed", "epochs", "corpus")
    if any(a[field] != b[field] for field in fields):
        return False
    if a["fingerprint"] is None or b["fingerprint"] is None:
        return a["fingerprint"] is None and b["fingerprint"] is None
    return same_fingerprint({"m": a["fingerprint"]}, {"m": b["fingerprint"]})


def _is_current(entry: dict, fingerprint: dict | None) -> bool:
    """Whether a record's model computes the same maths as ``fingerprint`` says it does now (True without one)."""
    from dmf2mel.models.fingerprint import same_fingerprint

    if fingerprint is None:
        return True
    current = fingerprint.get(entry["model"])
    if current is None or entry["fingerprint"] is None:
        return False
    return same_fingerprint({"m": current}, {"m": entry["fingerprint"]})


def merge(earlier: Iterable[dict], new: Iterable[dict]) -> list[dict]:
    """Every record of ``earlier`` and ``new``, one per run (:func:`_same_run`), the new one winning."""
    merged: list[dict] = []
    for entry in [*earlier, *new]:
        merged = [kept for kept in merged if not _same_run(kept, entry)]
        merged.append(entry)
    return sorted(merged, key=lambda e: (e["recipe"], e["lr"], e["model"], e["seed"], e["epochs"]))


def report_path(preset: str, results: Path = RESULTS_DIR) -> Path:
    return Path(results) / f"stability_{preset}.json"


def recorded(preset: str, results: Path = RESULTS_DIR) -> list[dict]:
    """The records of ``preset`` kept so far (none before the first)."""
    path = report_path(preset, results)
    return json.loads(path.read_text(encoding="utf-8"))["records"] if path.is_file() else []


def guarded_rates(preset: str, results: Path = RESULTS_DIR, fingerprint: dict | None = None) -> dict[str, dict]:
    """``{recipe: {lr: {"runs": n, "guarded": [one sentence per guarded run]}}}`` over the recorded full-budget runs; a rate with
    any guarded run is one to pass over. With ``fingerprint`` (the models' fingerprints, by model) a record counts
    only while its model's maths are the same (:func:`dmf2mel.models.fingerprint.same_fingerprint`)."""
    records = recorded(preset, results)
    out: dict[str, dict] = {}
    for entry in records:
        if not _is_current(entry, fingerprint):
            continue
        rate = out.setdefault(entry["recipe"], {}).setdefault(entry["lr"], {"runs": 0, "guarded": []})
        rate["runs"] += 1
        if entry["guard"]:
            rate["guarded"].append(run_sentence(entry))
    return out


def full_budget_scores(
    preset: str,
    results: Path = RESULTS_DIR,
    fingerprint: dict | None = None,
    epochs: int | None = None,
    corpus: str | None = None,
) -> dict[str, dict[float, float]]:
    """``{model: {lr: best validation r}}`` of the clean seed-0 runs of each model recorded at the full budget
    (``epochs``, on ``corpus``, of the same maths when ``fingerprint`` is given): the evidence
    :func:`quality.learning_rates` settles a sweep's near tie with. Only a model's own runs count (an ablation's
    validation r is another model's)."""
    records = recorded(preset, results)
    out: dict[str, dict[float, float]] = {}
    for entry in records:
        if entry["seed"] != 0 or entry["guard"] or entry.get("best_val_r") is None:
            continue
        if (epochs is not None and entry["epochs"] != epochs) or (corpus is not None and entry["corpus"] != corpus):
            continue
        if _is_current(entry, fingerprint):
            out.setdefault(entry["model"], {})[entry["lr"]] = entry["best_val_r"]
    return out


def markdown(report: dict) -> str:
    lines = [
        f"# Training stability at the full budget, `{report['preset']}` preset",
        "",
        f"{report['date']}. Every quality run recorded so far, by recipe (the ablations train with DMF2Mel's) and "
        "learning rate: a run is clean when the trainer's guard never acted in it (no step skipped for a non-finite "
        "loss or gradient, no epoch undone). A rate with a guarded run is passed over when the quality benchmark "
        "takes each model's rate from the sweep. Runs of a model whose maths have changed since (another "
        "fingerprint) are kept as *earlier code*: they no longer count.",
        "",
        "| recipe | lr | epochs | runs | clean | guarded runs |",
        "|---|---:|---:|---:|---:|---|",
    ]
    groups: dict[tuple, list[dict]] = {}
    for entry in report["records"]:
        current = _is_current(entry, report.get("fingerprint"))
        groups.setdefault((entry["recipe"], not current, entry["lr"], entry["epochs"]), []).append(entry)
    for (recipe, earlier, lr, epochs), entries in sorted(groups.items(), key=lambda item: item[0]):
        recipe = f"{recipe} (earlier code)" if earlier else recipe
        guarded = [e for e in entries if e["guard"]]
        details = "; ".join(run_sentence(e) for e in guarded) or "-"
        lines.append(f"| {recipe} | {lr:g} | {epochs} | {len(entries)} | {len(entries) - len(guarded)} | {details} |")
    lines += [
        "",
        f"Kept up to date by `python benchmarks/quality.py` as its seeds finish; seeds saved by other means are added "
        f"with `python benchmarks/stability.py --preset {report['preset']} --seeds-dir FOLDER`.",
        "",
    ]
    return "\n".join(lines)


def update(
    preset: str, seed_dirs: Iterable[Path], results: Path = RESULTS_DIR, fingerprint: dict | None = None
) -> dict:
    """Record the seeds in ``seed_dirs`` (each a ``quality_<preset>_seeds`` folder) beside the earlier records;
    ``fingerprint`` (the models' now) tells the report's table which records are of earlier code."""
    path = report_path(preset, results)
    earlier = recorded(preset, results)
    new = [record(file) for folder in seed_dirs for file in sorted(Path(folder).glob("*-seed*.json"))]
    report = {
        "preset": preset,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "records": merge(earlier, [entry for entry in new if entry is not None]),
        "fingerprint": fingerprint,
    }
    write_report(report, path, markdown(report))
    return report


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", required=True)
    parser.add_argument(
        "--seeds-dir",
        type=Path,
        nargs="+",
        help="folders of saved quality seeds (default: benchmarks/results/quality_<preset>_seeds)",
    )
    args = parser.parse_args(argv)
    dirs = args.seeds_dir or [RESULTS_DIR / f"quality_{args.preset}_seeds"]
    missing = [str(folder) for folder in dirs if not folder.is_dir()]
    if missing:
        parser.error(f"no such folder of quality seeds: {', '.join(missing)}")
    from dmf2mel.models.fingerprint import fingerprint

    report = update(args.preset, dirs, fingerprint=fingerprint())
    print(markdown(report))


if __name__ == "__main__":
    main()
