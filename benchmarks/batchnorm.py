"""BatchNorm in training and in evaluation: why DMF2Mel's small config without a residual around its convMamba pass
scored low and jumped from epoch to epoch.

A BatchNorm layer normalises each channel with the mean and variance of the current batch while training, and with
running averages of them in evaluation. Every score of the book is made in evaluation mode. ``python
benchmarks/batchnorm.py --runs ~/explanation-runs`` scores the best checkpoint of each finished run of the
explanations study (:mod:`explanations`) on the validation parts twice: as the book does (running statistics), and
with every BatchNorm layer normalising with the statistics of the batch it sees, as in training (the running
averages untouched; a prediction batch holds up to ``dmf2mel.evaluate.PREDICT_BATCH`` consecutive windows of one
recording, where a training batch holds 8 random windows). A model whose score depends on which statistics it gets
has learnt to rely on batch statistics, which evaluation cannot give it.

Writes ``benchmarks/results/batchnorm_<preset>.json`` and a markdown table beside it. Needs the run folders of the
explanations study; never part of the tests.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import statistics
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling benchmark scripts, for their helpers

from explanations import VARIANTS, register_variant  # noqa: E402
from reports import RESULTS_DIR, code_state, machine_info, set_threads, write_report  # noqa: E402

DEFAULT_VARIANTS = ("baseline", "output-dropout", "last-residual", "default")
DEFAULT_SEEDS = (0, 1, 2)


@contextlib.contextmanager
def batch_statistics(model: torch.nn.Module) -> Iterator[int]:
    """Within the block, every BatchNorm layer of ``model`` normalises with the statistics of its input batch, as in
    training, and leaves its running averages as they were; the layers' modes and buffers are restored afterwards.
    Yields the number of BatchNorm layers."""
    layers = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    saved = [(m.training, m.momentum, m.num_batches_tracked.clone()) for m in layers]
    try:
        for layer in layers:
            layer.train()
            layer.momentum = 0.0  # running <- (1 - 0) * running + 0 * batch: unchanged
        yield len(layers)
    finally:
        for layer, (training, momentum, tracked) in zip(layers, saved):
            layer.train(training)
            layer.momentum = momentum
            layer.num_batches_tracked.copy_(tracked)


def run_scores(run: Path) -> dict:
    """Validation r (paper metric, no null) of ``run``'s best checkpoint with running and with batch statistics."""
    from dmf2mel.checkpoint import load_model
    from dmf2mel.data.datasets import SubjectIndex
    from dmf2mel.evaluate import open_data_for, predict_recordings
    from dmf2mel.metrics import paper_metric

    config, model = load_model(run)
    data = open_data_for(config, config["data"]["folder"])
    index = SubjectIndex(config["data"]["subjects"])
    recordings = data.recordings_in("val", subjects=index.subjects)
    window = config["data"]["window"]

    def score() -> float:
        with torch.no_grad():
            return paper_metric(predict_recordings(model, data, "val", recordings, index, window), n_null=0)["r"]

    running = score()
    with batch_statistics(model) as n_layers:
        batch = score()
    return {"running": running, "batch": batch, "n_batchnorm": n_layers}


def markdown(report: dict) -> str:
    from dmf2mel.evaluate import PREDICT_BATCH

    lines = [
        f"# BatchNorm statistics in evaluation, `{report['preset']}` preset",
        "",
        f"{report['date'][:10]}, commit {str(report['code']['commit'])[:7]}. The best checkpoint of each run of the "
        "explanations study (`explanations_<preset>.md`), scored on the validation parts (paper metric, no null) "
        "with the BatchNorm layers' running statistics (evaluation mode: how every score of the book is made) and "
        f"with the statistics of each prediction batch (up to {PREDICT_BATCH} consecutive windows of one recording), "
        "as in training.",
        "",
        "| variant | seed | val r, running statistics | val r, batch statistics | difference |",
        "|---|---:|---:|---:|---:|",
    ]
    for entry in report["runs"]:
        lines.append(
            f"| {entry['variant']} | {entry['seed']} | {entry['running']:.4f} | {entry['batch']:.4f} | "
            f"{entry['batch'] - entry['running']:+.4f} |"
        )
    lines += ["", "| variant | seeds | mean, running | mean, batch | mean difference |", "|---|---:|---:|---:|---:|"]
    for variant, summary in report["summary"].items():
        lines.append(
            f"| {variant} | {summary['n']} | {summary['running']:.4f} | {summary['batch']:.4f} | "
            f"{summary['batch'] - summary['running']:+.4f} |"
        )
    return "\n".join(lines) + "\n"


def run_check(
    preset: str,
    runs: Path,
    variants: Sequence[str] = DEFAULT_VARIANTS,
    seeds: Sequence[int] = DEFAULT_SEEDS,
    out: Path | None = None,
    log=print,
) -> dict:
    """Score every finished run ``<variant>-seed<seed>`` under ``runs`` both ways; the report."""
    set_threads(1)
    report = {
        "preset": preset,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "code": code_state(),
        "runs": [],
        "summary": {},
    }
    for variant in variants:
        register_variant(variant)
        for seed in seeds:
            run = Path(runs) / f"{variant}-seed{seed}"
            if not (run / "explanation_result.json").is_file():
                log(f"  {variant:<16} seed {seed}: not finished, skipped")
                continue
            entry = {"variant": variant, "seed": seed, **run_scores(run)}
            log(f"  {variant:<16} seed {seed}: running {entry['running']:.4f}, batch {entry['batch']:.4f}")
            report["runs"].append(entry)
        mine = [e for e in report["runs"] if e["variant"] == variant]
        if mine:
            report["summary"][variant] = {
                "n": len(mine),
                "running": statistics.fmean(e["running"] for e in mine),
                "batch": statistics.fmean(e["batch"] for e in mine),
            }
        if out is not None:
            write_report(report, out, markdown(report))
    return report


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="teaching", choices=("teaching", "sparrkulee"))
    parser.add_argument("--runs", type=Path, default=Path.home() / "explanation-runs")
    parser.add_argument("--variants", nargs="+", default=list(DEFAULT_VARIANTS), choices=["baseline", *VARIANTS])
    parser.add_argument("--seeds", nargs="+", type=int, default=list(DEFAULT_SEEDS))
    parser.add_argument("--out", type=Path, help="the report (default benchmarks/results/batchnorm_<preset>.json)")
    args = parser.parse_args(argv)
    out = args.out or RESULTS_DIR / f"batchnorm_{args.preset}.json"
    report = run_check(args.preset, args.runs, args.variants, args.seeds, out)
    print(markdown(report))


if __name__ == "__main__":
    main()
