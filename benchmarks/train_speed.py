"""Training-step benchmark of DMF2Mel: windows/s and peak memory of one step, and inference windows/s.

Run ``python benchmarks/train_speed.py`` (``make bench``); it prints a table and writes
``benchmarks/results/train_speed.json`` and ``benchmarks/results/train_speed.md``. Never part of the tests.

What one *training step* is: the trainer's step (:mod:`dmf2mel.train`) - forward of a batch of windows
``(batch, window, 64)`` with subject ids, the paper loss (-r + 0.5 L1 + 0.1 InfoNCE) against random mel targets,
backward, Adam (the paper profile's lr, betas, eps). Measured for the ``paper`` and ``small`` configs
(:class:`dmf2mel.models.DMF2MelConfig`), at batch 16 (the paper's) and batch 2 (the official code's 7-9 s and
8.4 GB per step at batch 2 on a CPU), with each selective-scan backend (``cpu``: numba kernels, ``reference``:
a PyTorch loop over time).

How it measures, each configuration in a fresh Python process (so no allocator cache or earlier peak leaks
between configurations), with glibc's mmap threshold set as the trainer's process gets it (:mod:`dmf2mel.memory`):

1. build the model, the optimiser and the inputs; read the resident set size (RSS) - ``rss_built_mb``;
2. one warm-up step at full size (numba loads its cache, threads start, Adam creates its state);
3. reset the process's peak RSS (``/proc/self/clear_refs``, 5), read the RSS - ``rss_before_step_mb``; run the
   timed step(s); read the peak (``VmHWM``) - ``step_peak_mb``;
4. ``peak_rss_mb``: the process's lifetime peak from ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` (covers the
   warm-up step too) and ``peak_increase_mb`` = ``peak_rss_mb - rss_built_mb``: what training adds on top of the
   built model;
5. inference: eval mode, ``torch.no_grad``, the same batch; time and peak extra memory likewise.

With ``--attribute`` (default: on for batch 16 with the cpu backend) the worker also runs one more forward pass
under :func:`torch.autograd.graph.saved_tensors_hooks` and adds up the bytes of the tensors autograd saves for the
backward pass, per module (top-level part of DMF2Mel / its direct children; each storage counted once, parameters
left out). Those saved activations are what a training step holds at its peak, so the table says which module
to slim when the step is too big.

The machine may be shared with other jobs (the load average is recorded): compare rows measured in one run;
memory numbers do not depend on the load.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling benchmark scripts

from reports import (  # noqa: E402, F401
    RESULTS_DIR,
    code_state,
    machine_info,
    set_threads,
    update_readme,
    write_report,
)

PRESETS = ("paper", "small")
BACKENDS = ("cpu", "reference")
BATCHES = (16, 2)
#: Sampling rate of EEG and mel (Hz).
SFREQ = 64
#: The paper's training window: 10 s at 64 Hz.
WINDOW = 640
N_CHANS = 64
N_MELS = 10
#: Subjects of the model's embedding table (SparrKULee has 85; the size does not matter for speed).
N_SUBJECTS = 85
#: The memory target: a paper-config training step at batch 16 peaks below this many GB (cpu backend), so the
#: paper profile trains on an ordinary laptop.
TARGET_PEAK_GB = 3.0
MB = 2**20
#: Module attribution rows kept in the report (the largest).
ATTRIBUTION_ROWS = 25
#: The parent kills a worker whose RSS passes this share of the memory available at the start (other jobs on a
#: shared machine need the rest).
MEMORY_GUARD_FRACTION = 0.5
#: Seconds between the parent's RSS polls of a worker.
POLL_S = 0.5
#: The official code (batch 2, CPU), measured once, separately from these scripts, with a pure-PyTorch selective scan
#: standing in for mamba-ssm's CUDA kernel: seconds per step and peak GB. Quoted for orientation, not reproduced here.
OFFICIAL_BATCH2 = {"step_seconds": "7-9", "peak_gb": 8.4}

METHOD = (
    "Each configuration runs in a fresh Python process: model + Adam (paper profile: lr 5e-4, betas 0.9/0.98, "
    "eps 1e-9) + random inputs (batch, 640, 64) with subject ids and random mel targets; RSS read (rss_built); one "
    "warm-up step at full size (forward, paper loss, backward, Adam); the peak RSS is reset (/proc/self/clear_refs) "
    "and the timed step(s) run: step_s is the fastest, windows/s = batch / step_s, step_peak = VmHWM during the timed "
    "steps. peak_rss = getrusage(RUSAGE_SELF).ru_maxrss (lifetime, incl. warm-up); peak_increase = peak_rss - "
    "rss_built. Inference: eval mode, no_grad, same batch. Saved-activation attribution: bytes autograd saves for "
    "backward during one forward pass (each storage once, parameters excluded), per module; a block under activation "
    "checkpointing (DMF2MelConfig.checkpoint_activations) saves only its inputs, and what it recomputes during "
    "backward is not in that count (it is in the step's peak). Memory is independent "
    "of the machine's load; times are not (the load average is recorded)."
)


# ----------------------------------------------------------------------------------------------- worker side


def _proc_status_kb(field: str) -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def _reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False where that is not allowed."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as clear_refs:
            clear_refs.write("5")
        return True
    except OSError:
        return False


def _rss_mb() -> float:
    return _proc_status_kb("VmRSS") / 1024


def _hwm_mb() -> float:
    return _proc_status_kb("VmHWM") / 1024


def _maxrss_mb() -> float:
    # Linux reports ru_maxrss in kilobytes
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def build(preset: str, backend: str, batch: int, window: int, seed: int = 0):
    """Model, optimiser, loss and one batch of random inputs, as the paper profile trains them."""
    import torch

    from dmf2mel.losses import PaperLoss
    from dmf2mel.models import DMF2Mel, DMF2MelConfig
    from dmf2mel.train import PROFILES

    torch.manual_seed(seed)
    make_config = DMF2MelConfig.paper if preset == "paper" else DMF2MelConfig.small
    model = DMF2Mel(make_config(n_subjects=N_SUBJECTS, n_chans=N_CHANS, n_mels=N_MELS, scan_backend=backend))
    profile = PROFILES["paper"]
    optimizer = torch.optim.Adam(model.parameters(), lr=profile.lr, betas=profile.betas, eps=profile.eps)
    generator = torch.Generator().manual_seed(seed)
    inputs = {
        "eeg": torch.randn(batch, window, N_CHANS, generator=generator),
        "mel": torch.randn(batch, window, N_MELS, generator=generator),
        "subject": torch.randint(0, N_SUBJECTS, (batch,), generator=generator),
    }
    return model, optimizer, PaperLoss(), inputs


def train_step(model, optimizer, loss_fn, inputs) -> None:
    """One step exactly as :mod:`dmf2mel.train` takes it."""
    loss = loss_fn(model(inputs["eeg"], inputs["subject"]), inputs["mel"])
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def _module_labels(model) -> dict:
    """``{module: label}`` for DMF2Mel's children ("hams") and grandchildren ("hams/position_attention").

    A shared block (one instance repeated in a ModuleList) gets one label, so its repeats add up.
    """
    from torch import nn

    labels = {}
    for name, child in model.named_children():
        blocks = list(dict.fromkeys(child)) if isinstance(child, nn.ModuleList) else [child]
        for index, block in enumerate(blocks):
            label = name if len(blocks) == 1 else f"{name}.{index}"
            labels.setdefault(block, label)
            for sub_name, sub in block.named_children():
                labels.setdefault(sub, f"{label}/{sub_name}")
    return labels


def saved_activations(model, loss_fn, inputs) -> dict:
    """Bytes autograd saves for backward in one training forward pass (incl. the loss), per module.

    Returns
    -------
    dict
        ``total_mb`` and ``by_module``: ``[{"module", "mb"}]``, largest first. Code of DMF2Mel.forward itself
        (stem additions, position encoding) counts as "DMF2Mel", the loss as "loss".
    """
    import torch

    labels = _module_labels(model)
    stack = ["DMF2Mel"]
    param_storages = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: set = set()
    by_label: dict = {}

    def push(label):
        def hook(module, args):
            stack.append(label)

        return hook

    def pop(module, args, output):
        stack.pop()

    handles = []
    for module, label in labels.items():
        handles.append(module.register_forward_pre_hook(push(label)))
        handles.append(module.register_forward_hook(pop))

    def pack(tensor):
        storage = tensor.untyped_storage()
        key = storage.data_ptr()
        if key not in seen and key not in param_storages and storage.nbytes() > 0:
            seen.add(key)
            by_label[stack[-1]] = by_label.get(stack[-1], 0) + storage.nbytes()
        return tensor

    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            prediction = model(inputs["eeg"], inputs["subject"])
            stack.append("loss")
            loss = loss_fn(prediction, inputs["mel"])
            stack.pop()
        del loss, prediction
    finally:
        for handle in handles:
            handle.remove()
    rows = sorted(({"module": k, "mb": v / MB} for k, v in by_label.items()), key=lambda row: -row["mb"])
    return {"total_mb": sum(by_label.values()) / MB, "by_module": rows[:ATTRIBUTION_ROWS]}


def worker(spec: dict) -> dict:
    """Measure one configuration (runs in its own process); returns the numbers as a dict."""
    import torch

    from dmf2mel.memory import return_freed_memory
    from dmf2mel.models import kernels

    set_threads(spec.get("threads"))
    kernels.set_backend(spec.get("kernels", "numba"))
    return_freed_memory()  # as dmf2mel.threads.configure sets it for the trainer
    model, optimizer, loss_fn, inputs = build(spec["preset"], spec["backend"], spec["batch"], spec["window"])
    result = {
        "params": sum(p.numel() for p in model.parameters()),
        "torch_threads": torch.get_num_threads(),
        "rss_built_mb": _rss_mb(),
    }
    model.train()
    start = time.perf_counter()
    train_step(model, optimizer, loss_fn, inputs)
    result["warmup_step_s"] = time.perf_counter() - start

    result["peak_reset_supported"] = _reset_peak_rss()
    result["rss_before_step_mb"] = _rss_mb()
    times = []
    for _ in range(spec["repeats"]):
        start = time.perf_counter()
        train_step(model, optimizer, loss_fn, inputs)
        times.append(time.perf_counter() - start)
    result["step_s"] = min(times)
    result["step_times_s"] = times
    result["windows_per_s"] = spec["batch"] / result["step_s"]
    result["step_peak_mb"] = _hwm_mb()
    result["step_increase_mb"] = result["step_peak_mb"] - result["rss_before_step_mb"]
    # The kernel updates its high-water mark lazily: it can trail the current RSS by a few pages, so the peak is at
    # least every RSS read here.
    result["peak_rss_mb"] = max(_maxrss_mb(), _rss_mb(), result["rss_built_mb"], result["step_peak_mb"])
    result["peak_increase_mb"] = result["peak_rss_mb"] - result["rss_built_mb"]

    if spec.get("attribute"):
        optimizer.zero_grad(set_to_none=True)
        result["saved_activations"] = saved_activations(model, loss_fn, inputs)

    model.eval()
    with torch.no_grad():
        model(inputs["eeg"], inputs["subject"])  # warm-up in eval mode
        _reset_peak_rss()
        before = _rss_mb()
        times = []
        for _ in range(spec["repeats"]):
            start = time.perf_counter()
            model(inputs["eeg"], inputs["subject"])
            times.append(time.perf_counter() - start)
    result["inference_s"] = min(times)
    result["inference_windows_per_s"] = spec["batch"] / result["inference_s"]
    result["inference_increase_mb"] = _hwm_mb() - before
    return result


# ----------------------------------------------------------------------------------------------- parent side


def _available_mb() -> float:
    with open("/proc/meminfo", encoding="ascii") as meminfo:
        for line in meminfo:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("/proc/meminfo has no MemAvailable")


def _child_rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def run_worker(spec: dict, max_rss_mb: float, timeout_s: float, tree: Path | None = None) -> dict:
    """Run :func:`worker` in a fresh process; kill it past ``max_rss_mb`` of RSS or ``timeout_s`` seconds.

    ``tree``: another checkout of the repository whose ``benchmarks/train_speed.py`` and package to run (a baseline
    commit, ``benchmarks/speedup.py``); default this one.
    """
    script = Path(__file__).resolve() if tree is None else tree / "benchmarks" / "train_speed.py"
    env = None if tree is None else {**os.environ, "PYTHONPATH": str(tree)}
    command = [sys.executable, str(script), "--worker", json.dumps(spec)]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=None if tree is None else tree
    )
    reason: list = []

    def watch():
        started = time.monotonic()
        while process.poll() is None:
            if _child_rss_mb(process.pid) > max_rss_mb:
                reason.append(f"killed: RSS passed the guard of {max_rss_mb / 1024:.1f} GB")
                process.kill()
            elif time.monotonic() - started > timeout_s:
                reason.append(f"killed: ran past {timeout_s:.0f} s")
                process.kill()
            time.sleep(POLL_S)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    stdout, stderr = process.communicate()
    watcher.join()
    if reason:
        return {"status": reason[0]}
    if process.returncode != 0:
        tail = (stderr or stdout).strip().splitlines()[-3:]
        return {"status": f"failed (exit {process.returncode}): {' | '.join(tail)}"}
    return {"status": "ok", **json.loads(stdout.strip().splitlines()[-1])}


def configurations(presets, batches, backends, window, repeats, attribute, threads=None, kernels="numba") -> list[dict]:
    """Every (preset, batch, backend) to measure, cpu backend first (the default on the CPU)."""
    specs = []
    for backend in backends:
        for preset in presets:
            for batch in batches:
                specs.append(
                    {
                        "preset": preset,
                        "batch": batch,
                        "window": window,
                        "backend": backend,
                        "repeats": repeats,
                        "threads": threads,
                        "kernels": kernels,
                        "attribute": attribute and backend == "cpu" and batch == max(batches),
                    }
                )
    return specs


def target(report: dict) -> dict:
    """The memory target: paper config, batch 16, cpu backend, peak RSS below ``TARGET_PEAK_GB``."""
    for row in report["rows"]:
        if (row["preset"], row["batch"], row["backend"], row["window"]) == ("paper", 16, "cpu", WINDOW):
            peak = row.get("peak_rss_mb")
            return {
                "description": f"paper config, batch 16 x {WINDOW}, cpu backend: peak RSS < {TARGET_PEAK_GB:g} GB",
                "peak_rss_gb": None if peak is None else peak / 1024,
                "met": None if peak is None else peak / 1024 < TARGET_PEAK_GB,
            }
    return {"description": "paper config at batch 16 with the cpu backend was not measured", "met": None}


def _threads(report: dict) -> int:
    """The torch threads the workers ran with."""
    used = {row["torch_threads"] for row in report["rows"] if "torch_threads" in row}
    return used.pop() if len(used) == 1 else report.get("threads") or report["machine"]["torch_threads"]


def fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def markdown(report: dict) -> str:
    """The report as a markdown page: machine, main table, target, attribution, method."""
    machine = report["machine"]
    lines = [
        "# DMF2Mel training-step benchmark",
        "",
        f"{report['date']} · {machine['cpu']} · {machine['cpu_count']} cores · {machine['mem_total_gb']} GB · "
        f"torch {machine['torch']} ({_threads(report)} thread(s)) · numba {machine['numba']} (follows torch) "
        f"· load average at start {machine['load_average'][0]:.1f} · "
        f"window {report['window']} samples ({report['window'] / SFREQ:g} s at {SFREQ} Hz) · float32.",
        "",
        "| config | params | batch | scan | step (s) | train windows/s | peak RSS (MB) | increase over built model (MB) "
        "| step peak over pre-step RSS (MB) | inference windows/s | status |",
        "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in report["rows"]:
        lines.append(
            f"| {row['preset']} | {fmt(row.get('params'), ',d')} | {row['batch']} | {row['backend']} | "
            f"{fmt(row.get('step_s'), '.2f')} | {fmt(row.get('windows_per_s'), '.2f')} | {fmt(row.get('peak_rss_mb'), '.0f')} | "
            f"{fmt(row.get('peak_increase_mb'), '.0f')} | {fmt(row.get('step_increase_mb'), '.0f')} | "
            f"{fmt(row.get('inference_windows_per_s'), '.2f')} | {row['status']} |"
        )
    goal = report["target"]
    verdict = {True: "met", False: "not met", None: "n/a"}[goal["met"]]
    lines += [
        "",
        f"Memory target: {goal['description']} - measured {fmt(goal.get('peak_rss_gb'), '.2f')} GB: **{verdict}**.",
        "",
        f"Official code at batch 2 on a CPU, for comparison: {report['official_batch2']['step_seconds']} s "
        f"per step, {report['official_batch2']['peak_gb']} GB peak.",
    ]
    for row in report["rows"]:
        saved = row.get("saved_activations")
        if not saved:
            continue
        lines += [
            "",
            f"Saved activations of one training forward, {row['preset']} config, batch {row['batch']} "
            f"({saved['total_mb']:.0f} MB in all), largest modules:",
            "",
            "| module | MB | share |",
            "|---|---:|---:|",
        ]
        for item in saved["by_module"]:
            lines.append(f"| {item['module']} | {item['mb']:.0f} | {100 * item['mb'] / saved['total_mb']:.0f} % |")
    lines += ["", "Method: " + report["method"], ""]
    return "\n".join(lines)


def _key(row: dict) -> tuple:
    return row["preset"], row["batch"], row["window"], row["backend"]


def run(
    presets=PRESETS,
    batches=BATCHES,
    backends=BACKENDS,
    window=WINDOW,
    repeats=1,
    attribute=True,
    timeout_s=1800.0,
    max_rss_mb=None,
    progress=True,
    out=None,
    reuse=False,
    threads=None,
    kernels="numba",
) -> dict:
    """Measure every configuration (one subprocess each) and return the report.

    Parameters
    ----------
    presets, batches, backends : sequences
        Configs (``"paper"``, ``"small"``), batch sizes and scan backends to measure.
    window : int
        Samples per window (640 = the paper's 10 s at 64 Hz).
    repeats : int
        Timed steps after the warm-up (the fastest is reported).
    attribute : bool
        Attribute saved activations per module for the largest batch with the cpu backend.
    timeout_s, max_rss_mb : float
        A worker is killed past these (default memory guard: half the memory available at the start).
    out : Path, optional
        Write the report there after every configuration (a long run killed midway keeps what it measured).
    threads : int, optional
        torch threads of every worker (default: the package's policy, :func:`dmf2mel.threads.configure`).
    kernels : {"numba", "torch"}
        Dropout, KAN features and attention by the numba kernels or by torch ops (:mod:`dmf2mel.models.kernels`);
        ``"torch"`` is the path before the kernels, for a before/after comparison.
    reuse : bool
        Keep the rows of ``out`` that were measured (status ok) with the same window and repeats, and measure
        only the rest (finish a run that was cut short).
    """
    if max_rss_mb is None:
        max_rss_mb = MEMORY_GUARD_FRACTION * _available_mb()
    report = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "code": code_state(),
        "window": window,
        "repeats": repeats,
        "threads": threads,
        "kernels": kernels,
        "method": METHOD,
        "official_batch2": OFFICIAL_BATCH2,
        "rows": [],
    }
    done = {}
    if reuse and out is not None and out.is_file():
        old = json.loads(out.read_text(encoding="utf-8"))
        if (old.get("window"), old.get("repeats"), old.get("threads"), old.get("kernels", "torch")) == (
            window,
            repeats,
            threads,
            kernels,
        ):
            done = {_key(row): row for row in old["rows"] if row.get("status") == "ok"}
    for spec in configurations(presets, batches, backends, window, repeats, attribute, threads, kernels):
        row = {key: spec[key] for key in ("preset", "batch", "window", "backend")}
        if _key(row) in done:
            report["rows"].append(done[_key(row)])
            continue
        row.update(run_worker(spec, max_rss_mb, timeout_s))
        report["rows"].append(row)
        report["target"] = target(report)
        if out is not None:
            write(report, out)
        if progress:
            print(
                f"{row['preset']:>6} batch {row['batch']:>3} {row['backend']:>9}: step {fmt(row.get('step_s'), '8.2f')} s "
                f"({fmt(row.get('windows_per_s'), '.2f')} windows/s), peak RSS {fmt(row.get('peak_rss_mb'), '.0f')} MB "
                f"(+{fmt(row.get('peak_increase_mb'), '.0f')}), inference {fmt(row.get('inference_windows_per_s'), '.2f')} "
                f"windows/s  {row['status']}",
                flush=True,
            )
    report["target"] = target(report)
    report["machine"]["load_average_at_end"] = list(os.getloadavg())
    if out is not None:
        write(report, out)
    return report


def write(report: dict, out: Path) -> None:
    """``out`` (JSON) and the markdown table beside it, atomically."""
    write_report(report, out, markdown(report))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=list(PRESETS), choices=PRESETS)
    parser.add_argument("--batches", nargs="+", type=int, default=list(BATCHES))
    parser.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS)
    parser.add_argument("--window", type=int, default=WINDOW, help="samples per window (640 = 10 s at 64 Hz)")
    parser.add_argument("--repeats", type=int, default=1, help="timed steps after the warm-up step")
    parser.add_argument(
        "--no-attribute",
        dest="attribute",
        action="store_false",
        help="skip the saved-activation attribution per module",
    )
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per configuration")
    parser.add_argument(
        "--max-rss-gb",
        type=float,
        help=f"kill a worker past this RSS (default: {MEMORY_GUARD_FRACTION:g} x the available memory)",
    )
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "train_speed.json")
    parser.add_argument(
        "--threads", type=int, help="torch threads per worker (default: the cores other programs leave free)"
    )
    parser.add_argument(
        "--kernels",
        choices=("numba", "torch"),
        default="numba",
        help="dropout, KAN features and attention by numba kernels or by torch ops (the path before "
        "the kernels; see dmf2mel.models.kernels)",
    )
    parser.add_argument("--reuse", action="store_true", help="keep the configurations already measured in --out")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return
    max_rss_mb = None if args.max_rss_gb is None else args.max_rss_gb * 1024
    report = run(
        args.presets,
        args.batches,
        args.backends,
        args.window,
        args.repeats,
        args.attribute,
        args.timeout,
        max_rss_mb=max_rss_mb,
        out=args.out,
        reuse=args.reuse,
        threads=args.threads,
        kernels=args.kernels,
    )
    print(json.dumps(report["target"]))
    print(f"wrote {args.out} and {args.out.with_suffix('.md')}")
    if args.out.resolve() == (RESULTS_DIR / "train_speed.json").resolve():
        update_readme()


if __name__ == "__main__":
    main()
