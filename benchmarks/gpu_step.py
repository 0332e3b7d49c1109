"""One training step of DMF2Mel on a GPU: time and peak memory, written to ``benchmarks/results/gpu.json``.

The step of ``train_speed.py`` (forward, paper loss, backward, Adam, random inputs) on ``--device`` (default
``cuda``), with the scan backend the package picks there (``auto``: mamba-ssm's kernel when it is installed, else
the reference loop, which warns). One warm-up step, then ``--repeats`` timed steps, each closed by
``torch.cuda.synchronize()``; the fastest is reported with ``torch.cuda.max_memory_allocated``. Then
``torch.profiler`` over two more steps (:func:`profile_steps`; ``--profile-top 0`` skips it): the GPU's busy time
against the step's, the kernels launched, and the top operators and kernels. The report records the scan backend
that ran and mamba-ssm's version. Run by ``benchmarks/gpu_check.sh``; ``--device cpu`` runs the same code on a CPU
(the tests do, at a tiny size).

Usage: ``python benchmarks/gpu_step.py [--preset paper] [--batch 16] [--repeats 5] [--device cuda]
[--profile-top 25]``.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from reports import RESULTS_DIR, code_state  # noqa: E402
from train_speed import WINDOW, build, train_step  # noqa: E402


def profile_steps(step, sync, on_gpu: bool, top: int, steps: int = 2) -> dict:
    """``torch.profiler`` over ``steps`` calls of ``step``: per step, the ``top`` operators by self CPU time and the
    ``top`` GPU kernels by time on the device, the device's busy time, the kernels launched and the wall time.

    Each kernel's time is counted once: the operator that launched it carries the same time, so summing every event
    would count it twice (memory copies count as kernels). A step whose busy time is far below its wall time waits
    on the CPU launching kernels, not on the GPU's arithmetic.
    """
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if on_gpu else [])
    started = time.perf_counter()
    with profile(activities=activities) as prof:
        for _ in range(steps):
            step()
            sync()
    wall_ms = (time.perf_counter() - started) / steps * 1e3
    events = prof.key_averages()
    on_cpu = [event for event in events if event.device_type == DeviceType.CPU]
    # device events: kernels and memory copies; a GPU-side user annotation (the optimiser's step) spans kernels
    kernels = [
        event
        for event in events
        if event.device_type != DeviceType.CPU and not getattr(event, "is_user_annotation", False)
    ]

    def rows(chosen, kind):
        ranked = sorted(chosen, key=lambda event: -getattr(event, f"self_{kind}_time_total"))
        return [
            {
                "name": event.key,
                "calls": event.count // steps,
                "ms": getattr(event, f"self_{kind}_time_total") / steps / 1e3,
            }
            for event in ranked[:top]
            if getattr(event, f"self_{kind}_time_total") > 0
        ]

    return {
        "steps": steps,
        "wall_ms_per_step": wall_ms,
        "cpu_ms_per_step": sum(event.self_cpu_time_total for event in on_cpu) / steps / 1e3,
        "device_busy_ms_per_step": sum(event.self_device_time_total for event in kernels) / steps / 1e3,
        "kernels_per_step": sum(event.count for event in kernels) // steps,
        "top_ops_by_cpu_ms": rows(on_cpu, "cpu"),
        "top_kernels_by_device_ms": rows(kernels, "device"),
    }


def measure(preset: str, batch: int, window: int, repeats: int, device: str, profile_top: int = 0) -> dict:
    import torch

    if device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("gpu_step.py: no CUDA GPU is visible to torch (use --device cpu to run the step on a CPU)")
    # train_speed's model, optimiser, loss and inputs, with the scan backend the package picks on the device; moving
    # the model keeps its Parameter objects, so the optimiser built on them stays valid
    model, optimizer, loss_fn, inputs = build(preset, "auto", batch, window)
    model.to(device).train()
    inputs = {name: tensor.to(device) for name, tensor in inputs.items()}
    on_gpu = device.startswith("cuda")

    def sync():
        if on_gpu:
            torch.cuda.synchronize()

    train_step(model, optimizer, loss_fn, inputs)  # warm-up: kernels compile or load
    sync()
    if on_gpu:
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        train_step(model, optimizer, loss_fn, inputs)
        sync()
        times.append(time.perf_counter() - start)
    profiled = None
    if profile_top:
        profiled = profile_steps(lambda: train_step(model, optimizer, loss_fn, inputs), sync, on_gpu, profile_top)
    from dmf2mel.models.scan import _choose_backend

    try:
        import mamba_ssm

        mamba = getattr(mamba_ssm, "__version__", "unknown")
    except Exception:  # noqa: BLE001  (mamba_ssm fails to import without its CUDA extension, with various errors)
        mamba = None
    return {
        "preset": preset,
        "batch": batch,
        "window": window,
        "device": device,
        "device_name": torch.cuda.get_device_name() if on_gpu else "cpu",
        "mamba_ssm": mamba is not None,
        "mamba_ssm_version": mamba,
        "scan_backend": _choose_backend(inputs["eeg"]),
        "params": sum(p.numel() for p in model.parameters()),
        "step_s": min(times),
        "step_times_s": times,
        "windows_per_s": batch / min(times),
        "peak_memory_gb": torch.cuda.max_memory_allocated() / 2**30 if on_gpu else None,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "profile": profiled,
    }


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=("paper", "small"), default="paper")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--window", type=int, default=WINDOW)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--profile-top", type=int, default=25, help="ops in the profile of 2 extra steps (0: none)")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "gpu.json")
    args = parser.parse_args(argv)
    from dmf2mel.io import save_json

    report = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "code": code_state()}
    report.update(measure(args.preset, args.batch, args.window, args.repeats, args.device, args.profile_top))
    save_json(args.out, report)
    print(
        f"{report['device_name']}: {report['preset']} b{report['batch']} step {report['step_s']:.3f} s; wrote {args.out}"
    )
    return report


if __name__ == "__main__":
    main()
