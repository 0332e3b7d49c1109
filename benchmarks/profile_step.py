"""Where a training step's time goes: ``torch.profiler`` over DMF2Mel training steps, ops ranked by their share.

One step as the trainer takes it (forward, paper loss, backward, Adam; the numba scan) on random inputs, built by
``train_speed.build``; one warm-up step, then ``--steps`` profiled steps. The report
(``benchmarks/results/profile_<config>_b<batch>.json`` and ``.md``) lists the operators by their share of the
profiled CPU time (self time, so nothing is counted twice) with their call counts, and the step time. It tells
where a faster step must come from; ``train_speed.py`` measures the step itself.

Usage: ``python benchmarks/profile_step.py --config small --batch 8 [--threads 1] [--top 25]``.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from train_speed import RESULTS_DIR, WINDOW, build, code_state, machine_info, set_threads, train_step, write_report  # noqa: E402,E501


def profile(config: str, batch: int, window: int = WINDOW, steps: int = 2, backend: str = "cpu") -> dict:
    """Profile ``steps`` training steps after a warm-up; operators by self CPU time."""
    import torch
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    model, optimizer, loss_fn, inputs = build(config, backend, batch, window)
    model.train()
    train_step(model, optimizer, loss_fn, inputs)  # warm-up: numba loads its kernels, Adam creates its state
    started = time.perf_counter()
    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            train_step(model, optimizer, loss_fn, inputs)
    wall = (time.perf_counter() - started) / steps
    events = prof.key_averages()
    total_us = sum(event.self_cpu_time_total for event in events)
    ops = sorted(
        (
            {
                "op": event.key,
                "calls": event.count // steps,
                "self_ms": event.self_cpu_time_total / steps / 1e3,
                "share": event.self_cpu_time_total / total_us,
            }
            for event in events
            if event.self_cpu_time_total > 0
        ),
        key=lambda op: -op["self_ms"],
    )
    return {
        "config": config,
        "batch": batch,
        "window": window,
        "steps": steps,
        "backend": backend,
        "step_s_profiled": wall,
        "threads": torch.get_num_threads(),
        "ops": ops,
    }


def markdown(report: dict, top: int) -> str:
    lines = [
        f"# Training-step profile: `{report['config']}` config, batch {report['batch']} x {report['window']}",
        "",
        f"{report['date'][:10]}, {report['machine']['cpu']}, {report['threads']} torch thread(s), load average "
        f"{report['machine']['load_average'][0]:.1f}; {report['steps']} profiled steps after a warm-up, "
        f"{report['step_s_profiled']:.2f} s per step under the profiler.",
        "",
        "| op | calls per step | self time per step (ms) | share |",
        "|---|---:|---:|---:|",
    ]
    for op in report["ops"][:top]:
        lines.append(f"| `{op['op']}` | {op['calls']} | {op['self_ms']:.1f} | {100 * op['share']:.1f} % |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", choices=("small", "paper"), default="small")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--window", type=int, default=WINDOW)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1, as make bench)")
    parser.add_argument("--top", type=int, default=25, help="operators in the markdown table")
    parser.add_argument("--out", type=Path, help="default: benchmarks/results/profile_<config>_b<batch>.json")
    args = parser.parse_args(argv)
    set_threads(args.threads)
    report = profile(args.config, args.batch, args.window, args.steps)
    report.update(
        date=datetime.now(timezone.utc).isoformat(timespec="seconds"), machine=machine_info(), code=code_state()
    )
    out = args.out or RESULTS_DIR / f"profile_{args.config}_b{args.batch}.json"
    text = markdown(report, args.top)
    write_report(report, out, text)
    print(text)
    return report


if __name__ == "__main__":
    main()
