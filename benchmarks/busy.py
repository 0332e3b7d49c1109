"""Training on a busy machine: one quick-profile epoch quietly, then beside busy processes, and the slowdown.

A shared lab server or a JupyterHub during a class gives a training run only part of the cores. A fair share of
two cores beside two busy processes costs about 1.5-2x; a run whose threads stall each other costs far more. This
benchmark trains DMF2Mel (``quick`` profile) on a small simulated corpus in a fresh process with the user's default
environment (no thread variables: the package's policy, :mod:`dmf2mel.threads`, decides), first on a quiet machine,
then beside ``--busy`` processes that spin forever (``python -c "while True: pass"``), and reports the median epoch
time of each (the first epoch, which compiles and warms up, is left out) and their ratio.

``--fixed-threads N`` runs a third phase, busy again, with the count fixed at N (``DMF2MEL_NUM_THREADS``): with N
equal to the cores this is what PyTorch's default did before the policy existed. Each phase stops after
``--phase-timeout`` seconds (a stalled phase is reported as such, with the epochs it finished).

Usage: ``python benchmarks/busy.py [--epochs 4] [--busy 2] [--fixed-threads 2]``; the report goes to
``benchmarks/results/busy.json`` and ``busy.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from reports import RESULTS_DIR, code_state, machine_info, update_readme, write_report  # noqa: E402

#: The corpus one epoch trains on: 3 known subjects + 1 held out, 2 stories of 1 minute (teaching preset).
CORPUS = dict(n_subjects=4, n_held_out=1, n_stories=2, minutes=1.0)
#: Variables that fix a thread count: removed from the children's environment so the policy decides.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS", "DMF2MEL_NUM_THREADS")
SPIN = "while True: pass  # {tag}"  # the tag tells this benchmark's spinners apart from any others

# The child: trains and prints one JSON line with each epoch's seconds and the threads it ended on.
CHILD = """
import json, sys, time
from pathlib import Path
import torch
from dmf2mel.train import train
from dmf2mel.checkpoint import read_history
corpus, run, epochs = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
train(corpus, run, model="dmf2mel", profile="quick", epochs=epochs, quiet=True, test=False)
rows = read_history(run)
print(json.dumps({"epoch_s": [float(r["seconds"]) for r in rows], "threads": torch.get_num_threads()}), flush=True)
"""


def make_corpus(folder: Path) -> Path:
    from dmf2mel.data.corpus import simulate_corpus

    return simulate_corpus(folder / "teaching", preset="teaching", seed=0, progress=False, **CORPUS)


def child_env(fixed_threads: int | None) -> dict:
    env = {key: value for key, value in os.environ.items() if key not in THREAD_VARIABLES}
    env["TQDM_DISABLE"] = "1"
    if fixed_threads is not None:
        env["DMF2MEL_NUM_THREADS"] = str(fixed_threads)
    return env


def run_phase(
    name: str,
    corpus: Path,
    epochs: int,
    busy: int,
    timeout: float,
    fixed_threads: int | None = None,
    log=print,
    tag: str | None = None,
) -> dict:
    """Train ``epochs`` epochs in a fresh process beside ``busy`` spinning processes; the epoch times."""
    spin = SPIN.format(tag=tag or f"dmf2mel-busy-{os.getpid()}")
    spinners = [subprocess.Popen([sys.executable, "-c", spin]) for _ in range(busy)]
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            child = subprocess.run(
                [sys.executable, "-c", CHILD, str(corpus), str(Path(tmp) / "run"), str(epochs)],
                env=child_env(fixed_threads),
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        if child.returncode != 0:
            raise RuntimeError(f"phase {name}: training failed:\n{child.stderr[-2000:]}")
        result = json.loads(child.stdout.strip().splitlines()[-1])
        timed_out = False
    except subprocess.TimeoutExpired:
        result, timed_out = {"epoch_s": [], "threads": None}, True
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()
    timed = result["epoch_s"][1:]  # the first epoch compiles and warms up
    phase = {
        "phase": name,
        "busy_processes": busy,
        "fixed_threads": fixed_threads,
        "epoch_s": result["epoch_s"],
        "median_epoch_s": statistics.median(timed) if timed else None,
        "threads_at_end": result["threads"],
        "timed_out": timed_out,
        "wall_s": round(time.perf_counter() - started, 1),
        "load_average_before": round(load_before, 2),
        "load_average_after": round(os.getloadavg()[0], 2),
    }
    log(
        f"{name}: epochs {[round(s, 1) for s in result['epoch_s']]} s"
        + (" (timed out)" if timed_out else f", median {phase['median_epoch_s']:.1f} s")
    )
    return phase


def slowdown(quiet: dict, other: dict) -> float | None:
    if quiet["median_epoch_s"] is None or other["median_epoch_s"] is None:
        return None
    return other["median_epoch_s"] / quiet["median_epoch_s"]


def markdown(report: dict) -> str:
    machine = report["machine"]
    lines = [
        "# Training beside busy processes",
        "",
        f"{report['date'][:10]}, {machine.get('cpu', '?')}, {machine.get('usable_cores', '?')} usable cores; "
        f"DMF2Mel, `quick` profile, a {report['corpus']['n_subjects'] - report['corpus']['n_held_out']}-subject "
        f"corpus of {report['corpus']['n_stories']} one-minute stories; median epoch time after a warm-up epoch, "
        "each phase in a fresh process with no thread variables set.",
        "",
        "| phase | busy processes | threads | epoch times (s) | median (s) | slowdown |",
        "|---|---:|---|---|---:|---:|",
    ]
    quiet = report["phases"][0]
    for phase in report["phases"]:
        threads = (
            f"fixed {phase['fixed_threads']}"
            if phase["fixed_threads"]
            else f"policy ({phase['threads_at_end']} at the end)"
        )
        times = ", ".join(f"{s:.1f}" for s in phase["epoch_s"]) or "-"
        median = f"not done in {phase['wall_s']:.0f} s" if phase["timed_out"] else f"{phase['median_epoch_s']:.1f}"
        ratio = slowdown(quiet, phase)
        lines.append(
            f"| {phase['phase']} | {phase['busy_processes']} | {threads} | {times} | {median} | "
            + ("-" if ratio is None else f"{ratio:.2f}x")
            + " |"
        )
    lines += [
        "",
        f"A phase trains {report['epochs']} epochs; one that is not done within its time limit is stopped "
        f"(quietly the {report['epochs']} epochs took {sum(quiet['epoch_s']):.0f} s).",
        "",
        f"Target: at most {report['target']:g}x beside {report['busy']} busy processes; "
        + ("met." if report["met"] else "NOT met."),
    ]
    return "\n".join(lines) + "\n"


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4, help="epochs per phase, the first one not timed")
    parser.add_argument("--busy", type=int, default=2, help="busy processes beside the second phase")
    parser.add_argument("--fixed-threads", type=int, help="also run busy with this many threads fixed")
    parser.add_argument("--phase-timeout", type=float, default=900.0, help="seconds per phase")
    parser.add_argument("--target", type=float, default=3.0, help="the slowdown the policy must stay under")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "busy.json")
    args = parser.parse_args(argv)

    from dmf2mel.threads import usable_cores

    with tempfile.TemporaryDirectory() as tmp:
        corpus = make_corpus(Path(tmp))
        phases = [run_phase("quiet", corpus, args.epochs, 0, args.phase_timeout)]
        phases.append(run_phase("busy", corpus, args.epochs, args.busy, args.phase_timeout))
        if args.fixed_threads:
            phases.append(
                run_phase(
                    f"busy, {args.fixed_threads} threads fixed",
                    corpus,
                    args.epochs,
                    args.busy,
                    args.phase_timeout,
                    fixed_threads=args.fixed_threads,
                )
            )
    ratio = slowdown(phases[0], phases[1])
    machine = machine_info()
    machine["usable_cores"] = usable_cores()
    report = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine,
        "code": code_state(),
        "corpus": CORPUS,
        "epochs": args.epochs,
        "busy": args.busy,
        "target": args.target,
        "phases": phases,
        "slowdown": ratio,
        "met": ratio is not None and ratio <= args.target,
    }
    write_report(report, args.out, markdown(report))
    print(markdown(report))
    if args.out == RESULTS_DIR / "busy.json":
        update_readme()
    return report


if __name__ == "__main__":
    main()
