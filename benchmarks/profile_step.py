"""Where a training step's time goes: ``torch.profiler`` over DMF2Mel training steps, ops ranked by their share.

One step as the trainer takes it (forward, paper loss, backward, Adam; the numba scan) on random inputs, built by
``train_speed.build``; one warm-up step, then ``--steps`` profiled steps. The report
(``benchmarks/results/profile_<config>_b<batch>.json`` and ``.md``) lists the operators by their share of the
profiled CPU time (self time, so nothing is counted twice) with their call counts, and the step time. It tells
where a faster step must come from; ``train_speed.py`` measures the step itself.

``--by module`` attributes the step to DMF2Mel's modules instead: the CPU time (``time.process_time``, which a busy
machine disturbs far less than wall-clock time) between each module's forward hooks and between its backward hooks,
for its children and grandchildren (a shared block's calls add up), next to the step's own CPU time. A module's time
includes its children's; the backward time of a module used several times assumes that its calls' backward passes
do not interleave. Report: ``profile_modules_<config>_b<batch>.json`` and ``.md``.

Usage: ``python benchmarks/profile_step.py --config small --batch 8 [--by op|module] [--threads 1] [--top 25]``.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from reports import RESULTS_DIR, code_state, machine_info, set_threads, write_report  # noqa: E402
from train_speed import (  # noqa: E402
    WINDOW,
    _module_labels,
    build,
    train_step,
)


def _warmed_up(config: str, backend: str, batch: int, window: int):
    """Model, optimiser, loss and inputs after one training step (numba loads its kernels, Adam creates its state)."""
    model, optimizer, loss_fn, inputs = build(config, backend, batch, window)
    model.train()
    train_step(model, optimizer, loss_fn, inputs)
    return model, optimizer, loss_fn, inputs


def _header(config: str, batch: int, window: int, steps: int, backend: str) -> dict:
    """The fields both reports start with."""
    import torch

    return {
        "config": config,
        "batch": batch,
        "window": window,
        "steps": steps,
        "backend": backend,
        "threads": torch.get_num_threads(),
    }


def profile(config: str, batch: int, window: int = WINDOW, steps: int = 2, backend: str = "cpu") -> dict:
    """Profile ``steps`` training steps after a warm-up; operators by self CPU time."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    model, optimizer, loss_fn, inputs = _warmed_up(config, backend, batch, window)
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
    return {**_header(config, batch, window, steps, backend), "step_s_profiled": wall, "ops": ops}


def module_times(config: str, batch: int, window: int = WINDOW, steps: int = 2, backend: str = "cpu") -> dict:
    """CPU time per step of each labelled module (``train_speed._module_labels``), forward and backward."""
    import warnings

    model, optimizer, loss_fn, inputs = _warmed_up(config, backend, batch, window)  # before the hooks
    labels = _module_labels(model)
    totals = {label: {"calls": 0, "forward_s": 0.0, "backward_s": 0.0} for label in dict.fromkeys(labels.values())}
    started = {}  # (direction, module) -> start times of the calls under way

    def begin(direction):
        def hook(module, *_):
            started.setdefault((direction, module), []).append(time.process_time())

        return hook

    def end(direction):
        def hook(module, *_):
            pending = started.get((direction, module))
            if pending:  # a backward pass without its pre-hook (no input needed a gradient) counts nothing
                row = totals[labels[module]]
                row[f"{direction}_s"] += time.process_time() - pending.pop()
                row["calls"] += direction == "forward"

        return hook

    handles = []
    for module in labels:
        handles += [
            module.register_forward_pre_hook(begin("forward")),
            module.register_forward_hook(end("forward")),
            module.register_full_backward_pre_hook(begin("backward")),
            module.register_full_backward_hook(end("backward")),
        ]
    try:
        with warnings.catch_warnings():
            # the first module's input (the EEG) needs no gradient: its backward hooks fire together and count 0
            warnings.filterwarnings("ignore", message="Full backward hook is firing when gradients are computed")
            step_started = time.process_time()
            for _ in range(steps):
                started.clear()
                train_step(model, optimizer, loss_fn, inputs)
            step_s = (time.process_time() - step_started) / steps
    finally:
        for handle in handles:
            handle.remove()
    modules = [
        {
            "module": label,
            "calls": row["calls"] // steps,
            "forward_ms": 1e3 * row["forward_s"] / steps,
            "backward_ms": 1e3 * row["backward_s"] / steps,
            "share": (row["forward_s"] + row["backward_s"]) / steps / step_s,
        }
        for label, row in totals.items()
    ]
    return {**_header(config, batch, window, steps, backend), "step_cpu_s": step_s, "modules": modules}


def modules_markdown(report: dict) -> str:
    top_level = [row for row in report["modules"] if "/" not in row["module"]]
    lines = [
        f"# Training step by module: `{report['config']}` config, batch {report['batch']} x {report['window']}",
        "",
        f"{report['date'][:10]}, {report['machine']['cpu']}, {report['threads']} torch thread(s), load average "
        f"{report['machine']['load_average'][0]:.1f}; CPU time per step {report['step_cpu_s']:.2f} s (with the "
        f"hooks), the mean of {report['steps']} steps after a warm-up. The modules of DMF2Mel, largest first, each "
        f"followed by its parts; a module's time includes its parts'. The top-level modules account for "
        f"{100 * sum(row['share'] for row in top_level):.0f} % of the step (the rest: loss, optimiser, glue).",
        "",
        "| module | calls per step | forward (ms) | backward (ms) | share of the step |",
        "|---|---:|---:|---:|---:|",
    ]
    parts = {}
    for row in report["modules"]:
        if "/" in row["module"] and row["calls"]:  # containers (a ModuleList of blocks) are never called themselves
            parts.setdefault(row["module"].split("/")[0], []).append(row)
    for row in sorted(top_level, key=lambda row: -row["share"]):
        for shown in [row] + sorted(parts.get(row["module"], []), key=lambda part: -part["share"]):
            name = f"`{shown['module']}`" if shown is row else f"&nbsp;&nbsp;`{shown['module']}`"
            lines.append(
                f"| {name} | {shown['calls']} | {shown['forward_ms']:.1f} | {shown['backward_ms']:.1f} | "
                f"{100 * shown['share']:.1f} % |"
            )
    return "\n".join(lines) + "\n"


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
    parser.add_argument("--by", choices=("op", "module"), default="op", help="attribute the step to ops or modules")
    parser.add_argument("--out", type=Path, help="default: benchmarks/results/profile[_modules]_<config>_b<batch>.json")
    args = parser.parse_args(argv)
    set_threads(args.threads)
    measure = profile if args.by == "op" else module_times
    report = measure(args.config, args.batch, args.window, args.steps)
    report.update(
        date=datetime.now(timezone.utc).isoformat(timespec="seconds"), machine=machine_info(), code=code_state()
    )
    kind = "profile" if args.by == "op" else "profile_modules"
    out = args.out or RESULTS_DIR / f"{kind}_{args.config}_b{args.batch}.json"
    text = markdown(report, args.top) if args.by == "op" else modules_markdown(report)
    write_report(report, out, text)
    print(text)
    return report


if __name__ == "__main__":
    main()
