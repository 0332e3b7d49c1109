"""Watch a run's next epochs step by step: where a gradient explodes or a value stops being finite.

``python benchmarks/watch_steps.py DATA RUN --epochs N --out steps.json`` copies the run folder ``RUN`` (its
``last.pt``: the run itself is never touched), resumes the copy up to epoch ``N`` and records, for every training
step, the gradient norm before clipping, the largest absolute output of every module (in the order they ran, and
whether it was finite), the largest absolute gradient of every module's output (in the order backward reached them)
and the largest gradient of every parameter. With one fixed thread count (``DMF2MEL_NUM_THREADS=1``) a resumed run
repeats the original bit for bit, so a run that diverged in epoch N can be retrained with the same seed to epoch
N - 1 (``dmf2mel train --epochs N-1``) and watched here through the epoch that failed.

The JSON holds ``steps`` (one entry a step) and ``summary``: the first step whose norm passed ``--threshold`` and,
for it, the modules with the largest outputs and the parameters with the largest gradients. Never part of the
tests' timing; a study tool.
"""

from __future__ import annotations

import argparse
import math
import shutil
import tempfile
from pathlib import Path

import torch
from torch.nn.modules import module as torch_module


def _largest(tensor: torch.Tensor) -> tuple[float, bool]:
    """Largest absolute value (inf when any is NaN) and whether every value is finite."""
    if tensor.numel() == 0:
        return 0.0, True
    values = tensor.detach()
    return float(torch.nan_to_num(values.abs(), nan=math.inf).max()), bool(torch.isfinite(values).all())


class StepWatcher:
    """Global module hooks that fill one record per training step of the outermost model."""

    def __init__(self):
        self.steps: list[dict] = []
        self.names: dict[int, str] = {}
        self.parameter_names: dict[int, str] = {}
        self.model: torch.nn.Module | None = None
        self._handles = []
        self._clip = None

    def __enter__(self) -> "StepWatcher":
        self._handles = [
            torch_module.register_module_forward_pre_hook(self._pre),
            torch_module.register_module_forward_hook(self._forward),
        ]
        self._clip = torch.nn.utils.clip_grad_norm_
        torch.nn.utils.clip_grad_norm_ = self._watched_clip
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        torch.nn.utils.clip_grad_norm_ = self._clip

    def _pre(self, module, args) -> None:
        if not module.training:
            return
        if self.model is None and not self.names:
            # the first module to run in training mode is the model itself: it runs before its children
            self.model = module
            self.names = {id(m): name or "model" for name, m in module.named_modules()}
            self.parameter_names = {id(p): name for name, p in module.named_parameters()}
        if module is self.model:
            self.steps.append({"forward": [], "backward": [], "parameters": [], "grad_norm": None})

    def _forward(self, module, args, out) -> None:
        if not module.training or not self.steps or id(module) not in self.names:
            return
        tensor = out if torch.is_tensor(out) else (out[0] if isinstance(out, (tuple, list)) and out else None)
        if not torch.is_tensor(tensor) or not tensor.is_floating_point():
            return
        name, step = self.names[id(module)], self.steps[-1]
        step["forward"].append([name, *_largest(tensor)])
        if tensor.requires_grad:
            tensor.register_hook(lambda grad, name=name, step=step: step["backward"].append([name, *_largest(grad)]))

    def _watched_clip(self, parameters, *args, **kwargs):
        parameters = list(parameters)
        if self.steps:
            self.steps[-1]["parameters"] = [
                [self.parameter_names.get(id(p), "?"), *_largest(p.grad)] for p in parameters if p.grad is not None
            ]
        norm = self._clip(parameters, *args, **kwargs)
        if self.steps:
            self.steps[-1]["grad_norm"] = float(norm)
        return norm


def largest_rows(rows: list, top: int) -> list:
    """The ``top`` rows ``[name, largest |value|, finite]`` with the largest values, largest first."""
    return sorted(rows, key=lambda row: -row[1])[:top]


def summary(steps: list[dict], threshold: float, top: int = 8) -> dict:
    """The first step whose gradient norm passed ``threshold`` (or was not finite), and what was largest in it."""
    norms = [s["grad_norm"] for s in steps]
    first = next((i for i, n in enumerate(norms) if n is not None and not (math.isfinite(n) and n <= threshold)), None)
    out = {"threshold": threshold, "grad_norms": norms, "first_step_over": first}
    if first is not None:
        step = steps[first]
        out["largest_outputs"] = largest_rows(step["forward"], top)
        out["largest_parameter_gradients"] = largest_rows(step["parameters"], top)
        out["first_non_finite_output"] = next((r for r in step["forward"] if not r[2]), None)
    return out


def watch(data: Path, run: Path, epochs: int, threshold: float = 100.0) -> dict:
    """Resume a copy of ``run`` up to epoch ``epochs`` under the watcher; the steps and their summary."""
    from dmf2mel.train import train

    with tempfile.TemporaryDirectory(prefix="watch-steps-") as scratch:
        copy = Path(scratch) / Path(run).name
        shutil.copytree(run, copy, ignore=shutil.ignore_patterns("*.lock"))
        with StepWatcher() as watcher:
            train(data, copy, epochs=epochs, resume=True, quiet=True, test=False)
    return {
        "run": Path(run).name,
        "epochs": epochs,
        "summary": summary(watcher.steps, threshold),
        "steps": watcher.steps,
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, help="the run's split_data folder")
    parser.add_argument("run", type=Path, help="the run folder (copied; never changed)")
    parser.add_argument("--epochs", type=int, required=True, help="resume up to this epoch")
    parser.add_argument("--threshold", type=float, default=100.0, help="a gradient norm above this is 'exploding'")
    parser.add_argument("--out", type=Path, required=True, help="the JSON to write")
    parser.add_argument("--full", action="store_true", help="keep every module of every step (megabytes)")
    args = parser.parse_args(argv)
    from dmf2mel.io import save_json

    result = watch(args.data, args.run, args.epochs, args.threshold)
    if not args.full:  # each step's norm and its largest outputs
        result["steps"] = [
            {"grad_norm": s["grad_norm"], "largest_outputs": largest_rows(s["forward"], 4)} for s in result["steps"]
        ]
    save_json(args.out, result)  # atomic
    first = result["summary"]["first_step_over"]
    print(f"{len(result['steps'])} steps watched; first gradient norm over {args.threshold:g}: step {first}")


if __name__ == "__main__":
    main()
