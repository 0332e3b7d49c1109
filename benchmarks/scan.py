"""Selective-scan benchmark: time and peak extra memory of each backend, forward and forward+backward.

Run ``python benchmarks/scan.py`` (``make bench``); it prints a table and writes ``benchmarks/results/scan.json``
and ``benchmarks/results/scan.md``. Never part of the tests.

Backends: ``reference`` (a PyTorch loop over time), ``cpu`` (our numba kernels) and, as an outside reference,
mambapy's ``pscan`` (a parallel scan in PyTorch that materialises (batch, length, dim, d_state) tensors),
fed the same u, delta, A, B, C, D, z, delta_bias.

How it measures, each (backend, shape, pass) in a fresh Python process so that no allocator cache or earlier
peak leaks between measurements:

1. build the inputs, run the pass once on a tiny shape (numba loads its cache, threads start);
2. memory: reset the process's peak resident set size (``/proc/self/clear_refs``, 5), read the resident size,
   run the pass once at full size keeping its outputs and gradients, read the peak (``VmHWM``); the extra
   memory is peak - resident before, i.e. everything the pass allocates (output and gradients included) on top
   of its inputs;
3. time: run the pass again up to ``--repeats`` times (fewer when one run is slow) and report the minimum and
   median wall-clock time.

The first-call compile time is measured in a process whose ``NUMBA_CACHE_DIR`` is an empty temporary folder.
The machine may be shared, so compare backends by the ratios measured within one run.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS_DIR = Path(__file__).resolve().parent / "results"
BACKENDS = ("reference", "cpu", "mambapy")
PASSES = ("forward", "forward+backward")
PAPER_SHAPES = ((2, 128, 640, 128), (16, 128, 640, 128))
WARMUP_SHAPE = (1, 4, 8, 4)
# One slow run is enough: stop repeating once the runs so far took this long.
TIME_BUDGET_S = 20.0
# What the cpu backend must reach at (2, 128, 640, 128), forward+backward, to be worth its kernel.
TARGET_SPEEDUP_VS_REFERENCE = 3.0
TARGET_SPEEDUP_VS_MAMBAPY = 10.0
TARGET_MEMORY_FRACTION_OF_REFERENCE = 0.1
BYTES_PER_FLOAT32 = 4
# mambapy keeps about this many (batch, length, dim, d_state) float32 tensors alive (measured at (2, 128, 640,
# 128): 0.5 GB forward, 1.0 GB forward+backward, tensors of 84 MB); used only to skip runs that would take more
# than MEMORY_SHARE of the available memory on a shared machine.
MAMBAPY_MATERIALISED_TENSORS = {"forward": 7, "forward+backward": 14}
MEMORY_SHARE = 0.5


METHOD = (
    "Each (backend, shape, pass) runs in a fresh Python process: inputs built, one warm-up pass on a tiny shape; "
    "then the peak resident set size is reset (/proc/self/clear_refs) and one full-size pass runs, keeping its "
    "output and gradients; peak extra memory = VmHWM after - VmRSS before (everything the pass allocates on top of "
    "its inputs). Then up to --repeats timed passes (fewer once they took 20 s); min and median wall-clock time. "
    "Forward passes run under torch.no_grad; forward+backward passes take gradients for all 8 inputs with "
    "grad_out = ones. mambapy pads the length to a power of two (640 -> 1024) as it always does. "
    "The machine may be shared with other jobs: compare ratios measured within one run."
)


# ----------------------------------------------------------------------------------------------- worker side


def make_inputs(batch, dim, length, d_state, requires_grad):
    """Scan inputs like a Mamba layer's (A = -(1..N), step sizes in [1e-3, 1e-1]), float32."""
    import torch

    generator = torch.Generator().manual_seed(0)
    dt = torch.exp(torch.rand(dim, generator=generator) * math.log(100.0) + math.log(1e-3))
    inputs = {
        "u": torch.randn(batch, dim, length, generator=generator),
        "delta": 0.5 * torch.randn(batch, dim, length, generator=generator),
        "A": -torch.arange(1, d_state + 1, dtype=torch.float32).repeat(dim, 1),
        "B": torch.randn(batch, d_state, length, generator=generator),
        "C": torch.randn(batch, d_state, length, generator=generator),
        "D": torch.ones(dim),
        "z": torch.randn(batch, dim, length, generator=generator),
        "delta_bias": dt + torch.log(-torch.expm1(-dt)),
    }
    return {name: t.requires_grad_(requires_grad) for name, t in inputs.items()}


def mambapy_scan(u, delta, A, B, C, D, z, delta_bias):
    """The selective scan as mambapy computes it: materialise exp(dt A) and dt B u, then ``pscan``.

    mambapy pads the length to the next power of two (640 -> 1024) inside ``pscan``.
    """
    import torch
    import torch.nn.functional as F
    from mambapy.pscan import pscan

    dt = F.softplus(delta + delta_bias[:, None]).transpose(1, 2)  # (batch, length, dim)
    x = u.transpose(1, 2)
    decay = torch.exp(dt.unsqueeze(-1) * A)  # (batch, length, dim, d_state)
    drive = (dt * x).unsqueeze(-1) * B.transpose(1, 2).unsqueeze(2)
    states = pscan(decay, drive)
    y = (states @ C.transpose(1, 2).unsqueeze(-1)).squeeze(-1) + D * x
    return (y * F.silu(z.transpose(1, 2))).transpose(1, 2)


def scan_function(backend):
    if backend == "mambapy":
        return mambapy_scan
    from dmf2mel.models.scan import selective_scan

    return lambda **inputs: selective_scan(**inputs, delta_softplus=True, backend=backend)


def run_pass(scan, inputs, with_backward):
    """One pass; returns what it allocated (output and gradients) so the caller controls when it is freed."""
    import torch

    if not with_backward:
        with torch.no_grad():
            return [scan(**inputs)]
    out = scan(**inputs)
    grads = torch.autograd.grad(out, list(inputs.values()), torch.ones_like(out))
    return [out, *grads]


def _proc_status_kb(field):
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def worker(spec):
    """Measure one (backend, shape, pass) in this process; print one JSON line."""
    import gc

    import torch

    scan = scan_function(spec["backend"])
    with_backward = spec["pass"] == "forward+backward"
    run_pass(scan, make_inputs(*WARMUP_SHAPE, with_backward), with_backward)
    inputs = make_inputs(*spec["shape"], with_backward)
    gc.collect()
    with open("/proc/self/clear_refs", "w", encoding="ascii") as clear_refs:
        clear_refs.write("5")  # reset VmHWM to the current resident size
    resident_before = _proc_status_kb("VmRSS")
    start = time.perf_counter()
    kept = run_pass(scan, inputs, with_backward)
    first_s = time.perf_counter() - start
    peak = _proc_status_kb("VmHWM")
    del kept
    times = []
    while len(times) < spec["repeats"] and sum(times) + first_s < TIME_BUDGET_S:
        start = time.perf_counter()
        run_pass(scan, inputs, with_backward)
        times.append(time.perf_counter() - start)
    times = times or [first_s]
    result = {
        "peak_extra_mb": (peak - resident_before) / 1024,
        "times_s": times,
        "min_s": min(times),
        "median_s": statistics.median(times),
        "first_full_size_call_s": first_s,
        "torch_threads": torch.get_num_threads(),
    }
    print(json.dumps(result))


def compile_worker():
    """Time the first forward+backward of the cpu backend (float32 and float64) and a second one."""
    import torch

    from dmf2mel.models.scan import selective_scan

    timings = {}
    for dtype in (torch.float32, torch.float64):
        inputs = {n: t.detach().to(dtype).requires_grad_() for n, t in make_inputs(*WARMUP_SHAPE, True).items()}
        for call in ("first", "second"):
            start = time.perf_counter()
            out = selective_scan(**inputs, delta_softplus=True, backend="cpu")
            torch.autograd.grad(out, list(inputs.values()), torch.ones_like(out))
            timings[f"{call}_call_{str(dtype).removeprefix('torch.')}_s"] = time.perf_counter() - start
    print(json.dumps(timings))


# ----------------------------------------------------------------------------------------------- driver side


def run_subprocess(arguments, env=None, timeout_s=900):
    command = [sys.executable, str(Path(__file__).resolve()), *arguments]
    completed = subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout_s, check=False)
    if completed.returncode != 0:
        tail = (completed.stderr or completed.stdout).strip().splitlines()[-3:]
        return {"status": f"failed (exit {completed.returncode}): {' | '.join(tail)}"}
    return {"status": "ok", **json.loads(completed.stdout.strip().splitlines()[-1])}


def available_memory_mb():
    with open("/proc/meminfo", encoding="ascii") as meminfo:
        for line in meminfo:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 1024
    return math.inf


def mambapy_estimate_mb(shape, pass_):
    return MAMBAPY_MATERIALISED_TENSORS[pass_] * math.prod(shape) * BYTES_PER_FLOAT32 / 2**20


def check_agreement():
    """Max |out - reference| / max |reference| of each backend at a small shape: a benchmark of wrong code is void."""

    inputs = make_inputs(2, 16, 50, 8, requires_grad=False)
    expected = scan_function("reference")(**inputs)
    scale = expected.abs().max().item()
    return {backend: (scan_function(backend)(**inputs) - expected).abs().max().item() / scale for backend in BACKENDS}


def machine_info():
    """:func:`train_speed.machine_info` (load average under ``load_average_at_start``), mambapy's version and
    numba's threading layer."""
    from train_speed import machine_info as common

    info = common()
    info["load_average_at_start"] = info.pop("load_average")
    try:
        from importlib.metadata import version

        info["mambapy"] = version("mambapy")
    except Exception:  # noqa: BLE001 - mambapy is benchmark-only; record its absence
        info["mambapy"] = None
    info["numba_threading_layer"] = os.environ.get(
        "NUMBA_THREADING_LAYER", "workqueue (set by dmf2mel.models.scan.cpu)"
    )
    return info


def measure_compile_time():
    with tempfile.TemporaryDirectory() as empty_cache:
        cold = run_subprocess(["--compile-worker"], env={**os.environ, "NUMBA_CACHE_DIR": empty_cache})
    warm = run_subprocess(["--compile-worker"])
    return {"empty_numba_cache": cold, "warm_numba_cache": warm}


def ratio(numerator, denominator):
    if numerator is None or denominator in (None, 0):
        return None
    return numerator / denominator


def summarise(results, shape):
    """Speed and memory ratios of cpu against the others at one shape (forward+backward and forward)."""

    def get(backend, pass_, key):
        for row in results:
            if row["backend"] == backend and row["pass"] == pass_ and tuple(row["shape"]) == shape:
                return row.get(key)
        return None

    summary = {}
    for pass_ in PASSES:
        summary[pass_] = {
            "speedup_vs_reference": ratio(get("reference", pass_, "min_s"), get("cpu", pass_, "min_s")),
            "speedup_vs_mambapy": ratio(get("mambapy", pass_, "min_s"), get("cpu", pass_, "min_s")),
            "memory_fraction_of_reference": ratio(
                get("cpu", pass_, "peak_extra_mb"), get("reference", pass_, "peak_extra_mb")
            ),
            "memory_fraction_of_mambapy": ratio(
                get("cpu", pass_, "peak_extra_mb"), get("mambapy", pass_, "peak_extra_mb")
            ),
        }
    return summary


def targets_met(summary):
    paper = summary.get("2x128x640x128", {}).get("forward+backward", {})

    def at_least(value, bound):
        return None if value is None else value >= bound

    memory = paper.get("memory_fraction_of_reference")
    memory_met = None if memory is None else memory <= TARGET_MEMORY_FRACTION_OF_REFERENCE
    return {
        f"cpu >= {TARGET_SPEEDUP_VS_REFERENCE:g}x faster than reference": at_least(
            paper.get("speedup_vs_reference"), TARGET_SPEEDUP_VS_REFERENCE
        ),
        f"cpu >= {TARGET_SPEEDUP_VS_MAMBAPY:g}x faster than mambapy": at_least(
            paper.get("speedup_vs_mambapy"), TARGET_SPEEDUP_VS_MAMBAPY
        ),
        f"cpu extra memory <= {TARGET_MEMORY_FRACTION_OF_REFERENCE:g} x reference's": memory_met,
    }


def fmt(value, spec):
    return "-" if value is None else format(value, spec)


def markdown_table(report):
    lines = [
        "# Selective-scan benchmark",
        "",
        f"{report['date']} · {report['machine']['cpu']} · {report['machine']['cpu_count']} cores · "
        f"torch {report['machine']['torch']} ({report['machine']['torch_threads']} threads) · "
        f"numba {report['machine']['numba']} · float32 · delta_softplus, D, z and delta_bias all on · "
        f"load average {report['machine']['load_average_at_start'][0]:.1f} at the start, "
        f"{report['machine']['load_average_at_end'][0]:.1f} at the end.",
        "",
        "| shape (batch, dim, length, d_state) | backend | pass | min time (s) | median (s) "
        "| peak extra memory (MB) | status |",
        "|---|---|---|---:|---:|---:|---|",
    ]
    for row in report["results"]:
        lines.append(
            f"| {tuple(row['shape'])} | {row['backend']} | {row['pass']} | {fmt(row.get('min_s'), '.4f')} | "
            f"{fmt(row.get('median_s'), '.4f')} | {fmt(row.get('peak_extra_mb'), '.1f')} | {row['status']} |"
        )
    lines += ["", "Ratios (cpu against the others, measured in this run):", ""]
    lines += [
        "| shape | pass | speed-up vs reference | speed-up vs mambapy | memory / reference's | memory / mambapy's |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for shape, per_pass in report["ratios"].items():
        for pass_, r in per_pass.items():
            lines.append(
                f"| {shape} | {pass_} | {fmt(r['speedup_vs_reference'], '.1f')} | "
                f"{fmt(r['speedup_vs_mambapy'], '.1f')} | "
                f"{fmt(r['memory_fraction_of_reference'], '.4f')} | {fmt(r['memory_fraction_of_mambapy'], '.4f')} |"
            )
    lines += ["", "Targets at (2, 128, 640, 128), forward+backward:", ""]
    lines += [f"- {name}: {met}" for name, met in report["targets"].items()]
    compile_ = report["compile_time"]
    lines += [
        "",
        "First forward+backward of the cpu backend (tiny shape): "
        f"{fmt(compile_['empty_numba_cache'].get('first_call_float32_s'), '.1f')} s (float32) and "
        f"{fmt(compile_['empty_numba_cache'].get('first_call_float64_s'), '.1f')} s (float64) "
        "with an empty numba cache; "
        f"{fmt(compile_['warm_numba_cache'].get('first_call_float32_s'), '.2f')} s and "
        f"{fmt(compile_['warm_numba_cache'].get('first_call_float64_s'), '.2f')} s with the cache filled.",
        "",
        "Method: " + report["method"],
        "",
    ]
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--shapes",
        nargs="+",
        default=["x".join(map(str, s)) for s in PAPER_SHAPES],
        help="batch x dim x length x d_state, e.g. 2x128x640x128",
    )
    parser.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS)
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per measurement (after a memory run)")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "scan.json")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--compile-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(json.loads(args.worker))
        return
    if args.compile_worker:
        compile_worker()
        return

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    shapes = [tuple(int(n) for n in s.split("x")) for s in args.shapes]
    report = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "dtype": "float32",
        "method": METHOD,
        "agreement_with_reference": check_agreement(),
        "results": [],
    }
    print(f"agreement with the reference (max abs error / max abs output): {report['agreement_with_reference']}")
    header = f"{'shape':>20} {'backend':>10} {'pass':>17} {'min s':>9} {'median s':>9} {'extra MB':>9}  status"
    print(header)
    for shape in shapes:
        for backend in args.backends:
            for pass_ in PASSES:
                row = {"shape": list(shape), "backend": backend, "pass": pass_}
                needed_mb = mambapy_estimate_mb(shape, pass_) if backend == "mambapy" else 0.0
                if needed_mb > MEMORY_SHARE * available_memory_mb():
                    row["status"] = (
                        f"skipped: needs about {needed_mb / 1024:.1f} GB, "
                        f"{available_memory_mb() / 1024:.1f} GB available"
                    )
                else:
                    spec = {"backend": backend, "shape": shape, "pass": pass_, "repeats": args.repeats}
                    try:
                        row.update(run_subprocess(["--worker", json.dumps(spec)]))
                    except subprocess.TimeoutExpired as error:
                        row["status"] = f"timed out after {error.timeout:.0f} s"
                report["results"].append(row)
                print(
                    f"{'x'.join(map(str, shape)):>20} {backend:>10} {pass_:>17} {fmt(row.get('min_s'), '9.4f')} "
                    f"{fmt(row.get('median_s'), '9.4f')} {fmt(row.get('peak_extra_mb'), '9.1f')}  {row['status']}",
                    flush=True,
                )
    report["ratios"] = {"x".join(map(str, shape)): summarise(report["results"], shape) for shape in shapes}
    report["targets"] = targets_met(report["ratios"])
    report["compile_time"] = measure_compile_time()
    report["machine"]["load_average_at_end"] = os.getloadavg()
    summary = {key: report[key] for key in ("ratios", "targets", "compile_time")}
    print(json.dumps(summary, indent=2))

    from train_speed import write_report

    write_report(report, args.out, markdown_table(report))
    print(f"wrote {args.out} and {args.out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
