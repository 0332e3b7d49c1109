"""Does ``torch.compile`` speed up the CPU training step? Eager and compiled steps, alternately, in one process.

Two copies of DMF2Mel with the same weights (``train_speed.build``: forward, paper loss, backward, Adam, random
inputs, one torch thread by default), one run eagerly and one through ``torch.compile`` (inductor, its default
mode, or ``--mode``). dynamo cannot trace into numba, so the package's numba-backed autograd functions (attention,
KAN features and spline contraction, the CPU scan, dropout, the fused feed-forward) run as opaque calls
(``torch.compiler.disable``) and the graphs cover the torch code between them. The first compiled step, which
compiles (into an empty inductor cache), is timed on its own; then ``--rounds`` rounds of one eager and one compiled
step, each timed in CPU time (``time.process_time``, which a busy machine disturbs far less than wall-clock time).
The verdict is the median of the per-round ratios eager / compiled with its quartiles: a paired comparison, both
steps of a round seeing the same machine. Report: ``benchmarks/results/compile_<preset>_b<batch>.json`` and ``.md``.

Usage: ``python benchmarks/compile_step.py [--preset small] [--batch 8] [--rounds 12] [--mode default]``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from reports import RESULTS_DIR, code_state, machine_info, set_threads, write_report  # noqa: E402
from train_speed import (  # noqa: E402
    WINDOW,
    build,
    train_step,
)

#: (module, class) of every autograd function whose forward or backward calls numba.
NUMBA_FUNCTIONS = (
    ("dmf2mel.models.attention", "_RowAttention"),
    ("dmf2mel.models.kan", "_FeatureKAN"),
    ("dmf2mel.models.kan", "_LocalSplineContraction"),
    ("dmf2mel.models.mamba", "_FusedFeedForward"),
    ("dmf2mel.models.scan.cpu", "SelectiveScanCPU"),
    ("dmf2mel.models.dropout", "_NumbaDropout"),
)


@contextlib.contextmanager
def numba_functions_opaque():
    """Within the block, dynamo calls the numba-backed autograd functions without tracing into them."""
    import importlib

    import torch

    classes = [getattr(importlib.import_module(module), name) for module, name in NUMBA_FUNCTIONS]
    saved = [cls.__dict__.get("apply") for cls in classes]
    try:
        for cls in classes:
            cls.apply = torch.compiler.disable(cls.apply)
        yield
    finally:
        for cls, apply in zip(classes, saved):
            if apply is None:
                del cls.apply  # back to the inherited classmethod
            else:
                cls.apply = apply


def paired_summary(eager_s: list[float], compiled_s: list[float]) -> dict:
    """Per-round ratios eager / compiled: median, quartiles and the fastest step of each."""
    if len(eager_s) != len(compiled_s) or len(eager_s) < 2:
        raise ValueError(
            f"expected two equal lists of at least 2 step times, found {len(eager_s)} and {len(compiled_s)}"
        )
    ratios = sorted(e / c for e, c in zip(eager_s, compiled_s))
    quartiles = statistics.quantiles(ratios, n=4, method="inclusive")
    return {
        "median_ratio": statistics.median(ratios),
        "ratio_quartiles": [quartiles[0], quartiles[2]],
        "eager_fastest_s": min(eager_s),
        "compiled_fastest_s": min(compiled_s),
        "eager_median_s": statistics.median(eager_s),
        "compiled_median_s": statistics.median(compiled_s),
    }


def measure(preset: str, batch: int, window: int, rounds: int, mode: str) -> dict:
    import torch
    import torch._dynamo

    eager, eager_optimizer, loss_fn, inputs = build(preset, "cpu", batch, window)
    model, optimizer, compiled_loss, _ = build(preset, "cpu", batch, window)  # same seed: the same weights
    eager.train()
    model.train()
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    compiled = torch.compile(model, mode=mode)
    eager_s, compiled_s = [], []
    with numba_functions_opaque():
        started = time.perf_counter()
        train_step(compiled, optimizer, compiled_loss, inputs)
        compile_s = time.perf_counter() - started
        train_step(eager, eager_optimizer, loss_fn, inputs)  # warm-up of the eager copy
        train_step(compiled, optimizer, compiled_loss, inputs)  # the backward graphs of a second step, if any
        for _ in range(rounds):
            for step_model, step_optimizer, step_loss, times in (
                (eager, eager_optimizer, loss_fn, eager_s),
                (compiled, optimizer, compiled_loss, compiled_s),
            ):
                started = time.process_time()
                train_step(step_model, step_optimizer, step_loss, inputs)
                times.append(time.process_time() - started)
    stats = torch._dynamo.utils.counters["stats"]
    return {
        "preset": preset,
        "batch": batch,
        "window": window,
        "rounds": rounds,
        "mode": mode,
        "threads": torch.get_num_threads(),
        "compile_s": compile_s,
        "graphs": stats.get("unique_graphs", 0),
        "eager_step_s": eager_s,
        "compiled_step_s": compiled_s,
        **paired_summary(eager_s, compiled_s),
    }


def verdict(report: dict) -> str:
    """ "faster" or "slower" when both quartiles of the per-round ratio lie on that side of 1, else "no clear
    difference"."""
    low, high = report["ratio_quartiles"]
    return "faster" if low > 1 else "slower" if high < 1 else "no clear difference"


def markdown(report: dict) -> str:
    low, high = report["ratio_quartiles"]
    return "\n".join(
        [
            f"# `torch.compile` on the CPU training step: `{report['preset']}` config, batch {report['batch']} x "
            f"{report['window']}",
            "",
            f"{report['date'][:10]}, {report['machine']['cpu']}, {report['threads']} torch thread(s), torch "
            f"{report['machine']['torch']}, mode `{report['mode']}`; `benchmarks/compile_step.py`. The numba "
            "kernels run as opaque calls; the compiled graphs cover the torch code between them.",
            "",
            "| | eager | compiled |",
            "|---|---:|---:|",
            f"| fastest step (CPU s) | {report['eager_fastest_s']:.3f} | {report['compiled_fastest_s']:.3f} |",
            f"| median step (CPU s) | {report['eager_median_s']:.3f} | {report['compiled_median_s']:.3f} |",
            "",
            f"Compiling took {report['compile_s']:.0f} s ({report['graphs']} graphs, an empty cache). Over "
            f"{report['rounds']} alternating rounds the compiled step runs at {report['median_ratio']:.2f}x the eager "
            f"one's speed (median of the per-round ratios eager / compiled; quartiles {low:.2f}-{high:.2f}): "
            f"{verdict(report)}.",
            "",
        ]
    )


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=("small", "paper"), default="small")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--window", type=int, default=WINDOW)
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--mode", default="default", help="torch.compile mode (default, reduce-overhead, ...)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1, as make bench)")
    parser.add_argument("--out", type=Path, help="default: benchmarks/results/compile_<preset>_b<batch>.json")
    args = parser.parse_args(argv)
    if args.rounds < 2:
        parser.error(f"--rounds: expected at least 2 rounds for quartiles, found {args.rounds}")
    set_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="inductor-") as cache:
        # a cold cache, so that the compile time is what a first run pays (inductor keeps compiled graphs in /tmp)
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = cache
        return _run(args)


def _run(args) -> dict:
    report = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "code": code_state()}
    report.update(measure(args.preset, args.batch, args.window, args.rounds, args.mode))
    report["machine"] = machine_info()
    out = args.out or RESULTS_DIR / f"compile_{args.preset}_b{args.batch}.json"
    text = markdown(report)
    write_report(report, out, text)
    print(text)
    return report


if __name__ == "__main__":
    main()
