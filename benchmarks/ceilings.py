"""Ceilings: what a decoder could reach on the built-in corpora if the EEG held no noise, or if there were more data.

``python benchmarks/ceilings.py --preset teaching --runs ~/study`` trains the models of ``--models`` (default the
linear decoder, which fits in closed form in seconds; add ``cnn`` or ``dmf2mel`` for the deep decoders) twice on the
quality benchmark's corpus of the preset: on its EEG as recorded (the usual benchmark), and on the noise-free EEG
the simulation keeps beside it (``clean/``: the simulated auditory response through the same filters, without the
background EEG, the artefacts and the sensor noise). Both are scored on the test parts of their own EEG, with the
same chance levels. The gap says how much the noise costs: a decoder far below its clean-EEG ceiling is limited by
the data, not by the model. ``--subject-factors 2 4`` adds corpora with 2 and 4 times the training subjects
(generated on first use, about a quarter of a minute per subject on one core), each holding out the benchmark
corpus's own held-out subjects (:func:`held_out_view`): how the decoders scale with data, paired subject by subject
with the recorded condition on the same held-out listeners. With the linear decoder among the models, the report
also scores it at every ridge strength of its grid in each condition (:func:`ridge_path_scores`): how much its
choice of alpha on the known subjects' validation parts costs on held-out subjects.

Writes ``benchmarks/results/ceilings_<preset>.json`` and a markdown table beside it after every run; finished runs
are kept across sessions as in the other studies. Never part of the tests.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
from pathlib import Path
from typing import Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling benchmark scripts, for their helpers

from quality import STUDY_EPOCHS, DEFAULT_VAL_EVERY, corpus_info, difference_sentence, train_and_score  # noqa: E402
from reports import (  # noqa: E402
    BENCHMARK_CORPUS,
    RESULTS_DIR,
    benchmark_corpus,
    code_state,
    earlier_runs,
    kept_result,
    machine_info,
    resumable,
    set_threads,
    simulation_minutes,
    write_report,
)

SEED = 0
RESULT_FILE = "ceiling_result.json"


def _view(corpus: Path, folder: Path, eeg_folder: Path, metadata: dict) -> Path:
    """A ``split_data`` folder of symbolic links to the corpus's files (nothing is copied), its EEG taken from
    ``eeg_folder`` and ``metadata`` as its metadata (rewritten only when it differs)."""
    from dmf2mel.data.sparrkulee import read_metadata, write_metadata

    folder.mkdir(parents=True, exist_ok=True)
    for path in corpus.glob("*.npy"):
        source = eeg_folder / path.name if path.name.endswith("_-_eeg.npy") else path
        link = folder / path.name
        if not link.is_symlink():
            os.symlink(source, link)
    if read_metadata(folder) != metadata:
        write_metadata(folder, metadata)
    return folder


def clean_view(corpus: Path, folder: Path) -> Path:
    """A ``split_data`` folder whose EEG is the corpus's noise-free EEG (``clean/``) and whose other features and
    metadata are the corpus's own, as symbolic links (nothing is copied)."""
    from dmf2mel.data.corpus import CLEAN_FOLDER
    from dmf2mel.data.sparrkulee import read_metadata

    corpus = Path(corpus).resolve()
    clean = corpus / CLEAN_FOLDER
    if not clean.is_dir():
        raise SystemExit(f"{corpus}: no {CLEAN_FOLDER}/ folder (a corpus simulated by dmf2mel keeps one)")
    metadata = read_metadata(corpus)
    return _view(corpus, folder, clean, {**metadata, "version": f"{metadata.get('version')}+clean"})


def held_out_view(corpus: Path, held_out: Sequence[str], folder: Path) -> Path:
    """A view of ``corpus`` (symbolic links) that holds out ``held_out`` instead of its own held-out subjects.

    The simulation draws each subject and each recording from its own index, so a larger corpus of the same seed
    starts with the very subjects and files of the benchmark corpus. Holding out the benchmark's held-out subjects
    there makes the scaling study paired: the same held-out listeners and test recordings in every condition, and
    every other subject (the benchmark's known ones and the new ones) trains."""
    from dmf2mel.data.sparrkulee import read_metadata

    corpus = Path(corpus).resolve()
    metadata = read_metadata(corpus)
    missing = sorted(set(held_out) - set(metadata["subjects"]))
    if missing:
        raise SystemExit(f"{corpus}: cannot hold out {', '.join(missing)}: not subjects of this corpus")
    held_out = list(held_out)
    version = f"{metadata.get('version')}+held-out:{','.join(held_out)}"
    return _view(corpus, folder, corpus, {**metadata, "version": version, "held_out_subjects": held_out})


def scaled_corpus(runs: Path, preset: str, factor: int, log=print) -> Path:
    """The benchmark corpus with ``factor`` times the training subjects (and the same number held out)."""
    from dmf2mel.data.corpus import simulate_corpus

    held = BENCHMARK_CORPUS["n_held_out"]
    n_subjects = held + factor * (BENCHMARK_CORPUS["n_subjects"] - held)
    data = Path(runs) / f"corpus-{preset}-x{factor}"
    if not data.is_dir():
        log(f"generating {data}: {n_subjects} subjects (about {simulation_minutes(n_subjects)} minutes on one core)")
        simulate_corpus(data, preset=preset, seed=0, progress=False, **{**BENCHMARK_CORPUS, "n_subjects": n_subjects})
    return data


def scaled_view(runs: Path, preset: str, factor: int, base: Path, log=print) -> Path:
    """:func:`scaled_corpus` seen through :func:`held_out_view` with the held-out subjects of the corpus ``base``."""
    from dmf2mel.data.sparrkulee import read_metadata

    held_out = read_metadata(base)["held_out_subjects"]
    data = scaled_corpus(runs, preset, factor, log)
    return held_out_view(data, held_out, Path(runs) / f"{data.name}-held-out-as-benchmark")


def ridge_path_scores(folder: Path) -> list[dict]:
    """The linear decoder at every ridge strength of its grid, fitted on the training parts of the known subjects of
    the corpus ``folder``: ``val_r`` (the score its choice of alpha sees: the known subjects' validation parts), and
    ``known_r`` and ``unknown_r`` on the test parts of the known and of the held-out subjects. Each score is Pearson r
    per band over a whole part, averaged over bands and recordings (the score the fit picks alpha by, not the paper's
    10 s windows). ``chosen`` marks the alpha validation picks."""
    from dmf2mel.data.sparrkulee import SplitData
    from dmf2mel.models.linear import LinearDecoder, mean_pearson

    data = SplitData(folder)
    held = set(data.held_out_subjects)

    def pairs(split, held_out):
        return [
            data.pair(split, r.subject, r.stimulus)
            for r in data.recordings_in(split)
            if (r.subject in held) == held_out
        ]

    val, known, unknown = pairs("val", False), pairs("test", False), pairs("test", True)
    rows = [
        {"alpha": alpha, "val_r": mean_pearson(fit, val), "known_r": mean_pearson(fit, known),
         "unknown_r": mean_pearson(fit, unknown) if unknown else None}
        for alpha, fit in LinearDecoder().path(pairs("train", False))
    ]  # fmt: skip
    best = max(rows, key=lambda row: row["val_r"])
    for row in rows:
        row["chosen"] = row is best
    return rows


def _key(model: str, condition: str, corpus_version: str | None, epochs: int, fingerprint: list) -> dict:
    return json.loads(
        json.dumps(
            {
                "model": model,
                "condition": condition,
                "corpus": corpus_version,
                "epochs": epochs,
                "seed": SEED,
                "fingerprint": fingerprint,
            }
        )
    )


def with_paired_change(entry: dict, runs: Sequence[dict]) -> dict:
    """``entry`` with ``vs_recorded``: per protocol, its paired difference from the same model's run on the recorded
    EEG among ``runs`` (:func:`dmf2mel.viz.results.paired_comparison`, over the subjects both runs scored: the
    benchmark's known subjects and, in every condition, the same held-out subjects), or None."""
    from dmf2mel.viz.results import paired_comparison

    entry = {key: value for key, value in entry.items() if key != "vs_recorded"}
    recorded = next((e for e in runs if e["model"] == entry["model"] and e["condition"] == "recorded"), None)
    if recorded is None or entry["condition"] == "recorded":
        return entry
    entry["vs_recorded"] = {
        protocol: paired_comparison(entry.get(protocol), recorded.get(protocol)) for protocol in ("known", "unknown")
    }
    return entry


def _three(value: float) -> str:
    """``value`` to three decimals, without the sign of a value that rounds to zero (a chance level a hair below
    zero would otherwise print as -0.000)."""
    return f"{round(value, 3) + 0.0:.3f}"


def benchmark_subjects(report: dict) -> list[str]:
    """The benchmark's own known subjects: those its recorded-EEG runs scored (every larger corpus starts with them)."""
    recorded = [e for e in report["runs"] if e["condition"] == "recorded" and (e.get("known") or {}).get("per_subject")]
    return sorted(recorded[0]["known"]["per_subject"]) if recorded else []


def _benchmark_mean(result: dict | None, subjects: Sequence[str]) -> str:
    """The mean paper r of ``result`` over ``subjects`` (the benchmark's known subjects), or "-" without them all."""
    scores = (result or {}).get("per_subject") or {}
    if not subjects or any(subject not in scores for subject in subjects):
        return "-"
    return _three(sum(scores[subject] for subject in subjects) / len(subjects))


def markdown(report: dict) -> str:
    benchmark = benchmark_subjects(report)
    n_benchmark = len(benchmark)
    lines = [
        f"# Ceilings and scaling, `{report['preset']}` preset",
        "",
        f"{report['date'][:10]}, {report['machine']['cpu_count']}-core {report['machine']['cpu']}, commit "
        f"{str(report['code']['commit'])[:7]}. The quality benchmark's corpus; deep models: profile `quick`, "
        f"{report['budget']['epochs']} epochs, seed {SEED}, best validation epoch. `recorded`: the EEG as the "
        "benchmark uses it; `noise-free`: the simulated auditory response alone, through the same filters; "
        "`N x subjects`: a corpus of the same simulation with N times the training subjects, holding out the "
        "benchmark's own held-out subjects (the same listeners and test files). Paper r on the test parts (chance "
        f"level in brackets). `known r` averages every known subject of the run's corpus; `of the {n_benchmark}` "
        f"averages the benchmark's own {n_benchmark} known subjects, the ones the paired changes below compare.",
        "",
        f"| model | condition | training subjects | known r | of the {n_benchmark} | unknown r |",
        "|---|---|---:|---:|---:|---:|",
    ]

    def r(result):
        if not result or result.get("paper_r") is None:
            return "-"
        return f"{_three(result['paper_r'])} ({_three(result['chance_r'])})"

    for entry in report["runs"]:
        lines.append(
            f"| {entry['model']} | {entry['condition']} | {entry['n_training_subjects']} | {r(entry['known'])} | "
            f"{_benchmark_mean(entry['known'], benchmark)} | {r(entry['unknown'])} |"
        )
    paired = [entry for entry in report["runs"] if entry.get("vs_recorded")]
    if paired:
        lines += [
            "",
            "Each condition against the recorded EEG, paired subject by subject (the same model; on the subjects both "
            "runs scored: the benchmark's known subjects, and the same held-out subjects in every condition):",
            "",
        ]
        for entry in paired:
            for protocol, word in (("known", "known"), ("unknown", "held-out")):
                sentence = difference_sentence(
                    f"{entry['model']} ({entry['condition']})",
                    f"{entry['model']} (recorded)",
                    entry["vs_recorded"].get(protocol),
                )
                lines.append(f"- {word} subjects: {sentence}.")
    paths = report.get("ridge_path") or {}
    if paths:
        lines += [
            "",
            "## The linear decoder at every ridge strength",
            "",
            "Fitted on the known subjects' training parts at each strength of its grid (relative to the mean "
            "eigenvalue of X'X). Each cell: validation r / known-subject test r / held-out test r, Pearson r per band "
            "over each whole part, averaged over bands and recordings (not the 10 s windows of the table above). "
            "**Bold**: the strength validation picks, the decoder's own choice.",
            "",
            "| alpha | " + " | ".join(paths) + " |",
            "|---:|" + "---:|" * len(paths),
        ]

        def cell(row):
            text = " / ".join("-" if row[k] is None else f"{row[k]:.3f}" for k in ("val_r", "known_r", "unknown_r"))
            return f"**{text}**" if row["chosen"] else text

        for i, row in enumerate(next(iter(paths.values()))):
            lines.append(f"| {row['alpha']:.3g} | " + " | ".join(cell(rows[i]) for rows in paths.values()) + " |")
    return "\n".join(lines) + "\n"


def run_ceilings(
    preset: str,
    models: Sequence[str] = ("linear",),
    subject_factors: Sequence[int] = (),
    epochs: int = STUDY_EPOCHS,
    data: Path | None = None,
    runs: Path | None = None,
    out: Path | None = None,
    n_null: int | None = None,
    threads: int | None = 1,
    log=print,
) -> dict:
    """Every model on the recorded EEG, the noise-free EEG and the scaled corpora; the report."""
    from dmf2mel.io import save_json
    from dmf2mel.metrics import N_NULL
    from dmf2mel.models.fingerprint import model_fingerprint

    set_threads(threads)
    n_null = N_NULL if n_null is None else n_null
    runs = Path(runs) if runs is not None else Path.home() / "study"
    runs.mkdir(parents=True, exist_ok=True)
    data = Path(data) if data is not None else benchmark_corpus(runs, preset, log)
    conditions = [("recorded", data), ("noise-free", clean_view(data, runs / f"{data.name}-clean"))]
    conditions += [(f"{factor} x subjects", scaled_view(runs, preset, factor, data, log)) for factor in subject_factors]
    earlier = earlier_runs(out)
    report = {
        "preset": preset,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "code": code_state(),
        "budget": {"epochs": epochs, "seed": SEED, "n_null": n_null},
        "runs": [],
    }
    for condition, folder in conditions:
        corpus = corpus_info(folder)
        for model in models:
            key = _key(model, condition, corpus["version"], epochs, model_fingerprint(model))
            run = runs / f"ceiling-{model}-{condition.replace(' ', '')}"
            entry = kept_result(key, earlier, run / RESULT_FILE)
            if entry is None:
                resumed = resumable(run, key)
                val_every = min(DEFAULT_VAL_EVERY, epochs)
                result = train_and_score(model, folder, run, SEED, epochs, val_every, n_null, resumed)
                n_training = len(corpus["subjects"]) - len(corpus["held_out"])
                entry = {"key": key, "model": model, "condition": condition, "n_training_subjects": n_training}
                entry.update({k: result[k] for k in ("known", "unknown", "train_seconds", "best_val_r", "curve")})
                save_json(run / RESULT_FILE, entry)
            log(f"  {model:<8} {condition:<14} known r {entry['known']['paper_r']:.4f}")
            report["runs"].append(with_paired_change(entry, report["runs"]))
            if out is not None:
                write_report(report, out, markdown(report))
        if "linear" in models:
            report.setdefault("ridge_path", {})[condition] = ridge_path_scores(folder)
            if out is not None:
                write_report(report, out, markdown(report))
    return report


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="teaching", choices=("teaching", "sparrkulee"))
    parser.add_argument("--models", nargs="+", default=["linear"])
    parser.add_argument("--subject-factors", nargs="*", type=int, default=[])
    parser.add_argument("--epochs", type=int, default=STUDY_EPOCHS)
    parser.add_argument("--runs", type=Path, help="run folders and corpora (default ~/study)")
    parser.add_argument("--out", type=Path, help="the report (default benchmarks/results/ceilings_<preset>.json)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    out = args.out or RESULTS_DIR / f"ceilings_{args.preset}.json"
    report = run_ceilings(
        args.preset, args.models, args.subject_factors, args.epochs, runs=args.runs, out=out, threads=args.threads
    )
    print(markdown(report))


if __name__ == "__main__":
    main()
