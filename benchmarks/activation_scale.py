"""How large DMF2Mel's activations grew in trained runs: every module's largest output, and the position-attention scores.

``python benchmarks/activation_scale.py DATA RUN [RUN ...] --out results/activation_scale_<name>.json`` loads each
run's checkpoint (``best.pt``, or ``RUN:last.pt``), feeds it the first window of the first validation recordings of
``DATA`` (the unknown-subject embedding: the probe looks at magnitudes, not at scores) and records, without
training, the largest absolute output of every module and, for every HAMS-Net position attention, the largest
absolute score entering its softmax (``q^T k``: the official DANet attention has no ``1/sqrt(d)`` scaling, and once
the scores are in the thousands the softmax is a hard argmax that a change of the weights can flip; with
``hams_qk_norm`` the scores of the normalised queries and keys, scaled), and how much the prediction changes when
HAMS-Net's output is multiplied by ten (:func:`hams_scale_change`: near zero, nothing in the loss holds HAMS-Net's
scale, so training is free to let it grow).

A study tool, never part of the tests' timing: it compares runs trained at different learning rates or for different
budgets, to tell a recipe that keeps the network's numbers in a sane range from one that lets them grow.
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling benchmark script, for its helpers

from reports import write_report  # noqa: E402

#: Validation windows fed to each run (one window from each of the first recordings).
N_WINDOWS = 8
#: :func:`hams_scale_change` multiplies HAMS-Net's output by this.
HAMS_SCALE_FACTOR = 10.0


def probe_windows(data: Path, n_windows: int = N_WINDOWS, length: int | None = None) -> torch.Tensor:
    """The first ``length`` samples (default: the quick profile's training window, 5 s) of the first ``n_windows`` validation EEG
    recordings of ``data``, in file-name order: ``(n_windows, length, channels)``."""
    from dmf2mel.train import PROFILES

    files = sorted(Path(data).glob("val_-_*_-_eeg.npy"))[:n_windows]
    if not files:
        raise SystemExit(f"{data}: no validation EEG (val_-_*_-_eeg.npy) to probe with")
    length = PROFILES["quick"].window if length is None else length
    return torch.tensor(np.stack([np.load(file)[:length] for file in files]), dtype=torch.float32)


def probe(model: torch.nn.Module, windows: torch.Tensor) -> dict:
    """One forward pass in eval mode: ``outputs`` (module name -> largest |output|, in the order modules ran) and
    ``position_scores`` (position-attention module -> largest |q^T k| and its ``gamma``)."""
    from dmf2mel.models.hams import PositionAttention

    outputs: dict[str, float] = {}
    scores: dict[str, dict] = {}
    handles = []

    def record(name):
        def hook(module, inputs, output):
            if isinstance(output, torch.Tensor) and output.numel():
                outputs[name] = max(outputs.get(name, 0.0), float(output.detach().abs().max()))
            if isinstance(module, PositionAttention):
                q, k = module.queries_and_keys(inputs[0])  # normalised with QK-norm: what the scores see
                largest = module.scale * float(torch.einsum("bct,bcs->bts", q, k).abs().max())
                entry = scores.setdefault(name, {"largest_score": 0.0, "gamma": float(module.gamma)})
                entry["largest_score"] = max(entry["largest_score"], largest)

        return hook

    for name, module in model.named_modules():
        handles.append(module.register_forward_hook(record(name or "model")))
    try:
        with torch.no_grad():
            model.eval()(windows, None)
    finally:
        for handle in handles:
            handle.remove()
    return {"outputs": outputs, "position_scores": scores}


def hams_scale_change(model: torch.nn.Module, windows: torch.Tensor, factor: float = HAMS_SCALE_FACTOR) -> float | None:
    """How much the prediction depends on the scale of HAMS-Net's output, in eval mode: the RMS of the change of the
    prediction when every HAMS-Net's output is multiplied by ``factor`` (its output projection scaled, on a copy),
    relative to the prediction's RMS; None for a model without HAMS-Net.

    The rest of DMF2Mel sees HAMS-Net's output through layer norms, plus the branch input that each repeat adds: once
    HAMS-Net's output dwarfs that input, its scale no longer reaches the loss (the change is near zero), no gradient
    holds it, and Adam's steps let the weights, and with them the activations, grow."""
    from dmf2mel.models.hams import HAMSNet

    scaled = copy.deepcopy(model).eval()
    projections = [module.out_proj for module in scaled.modules() if isinstance(module, HAMSNet)]  # shared: once
    if not projections:
        return None
    with torch.no_grad():
        for projection in projections:
            projection.weight.mul_(factor)
            projection.bias.mul_(factor)
        reference = model.eval()(windows, None)
        change = scaled(windows, None) - reference
    return float(change.square().mean().sqrt() / reference.square().mean().sqrt())


def run_entry(run: Path, which: str, windows: torch.Tensor) -> dict:
    """The probe of one run's checkpoint, with what it was trained with (model, learning rate, epoch)."""
    from dmf2mel.checkpoint import load_checkpoint, load_model

    config, model = load_model(run, which)
    epoch = load_checkpoint(run / which).get("epoch")
    found = probe(model, windows)
    hams = {name: value for name, value in found["outputs"].items() if name.startswith("hams.")}
    return {
        "run": run.name,
        "checkpoint": which,
        "model": config.get("model"),
        "lr": config.get("train", {}).get("lr"),
        "epoch": epoch,
        "qk_norm": any(getattr(module, "query_norm", None) is not None for module in model.modules()),
        "largest_output": max(found["outputs"].values()),
        "largest_hams_output": max(hams.values()) if hams else None,
        "largest_position_score": max((s["largest_score"] for s in found["position_scores"].values()), default=None),
        "hams_scale_change": hams_scale_change(model, windows),
        **found,
    }


def markdown(report: dict) -> str:
    lines = [
        "# Activation scale of trained runs",
        "",
        f"The first {report['windows']} validation windows of `{report['data']}`, one forward pass in eval mode per "
        "checkpoint. HAMS-Net output: the largest |value| of any module inside HAMS-Net; position score: the largest "
        "score entering a position attention's softmax: |q^T k| of the official attention (no scaling, as in DANet), the "
        "scaled score of the layer-normalised queries and keys with QK-norm; HAMS-Net x10: the RMS change of the "
        f"prediction, relative to its RMS, when HAMS-Net's output is multiplied by {HAMS_SCALE_FACTOR:g} (near 0: "
        "nothing in the loss holds HAMS-Net's scale).",
        "",
        "| run | checkpoint | model | QK-norm | lr | epoch | largest output | HAMS-Net output | position score | "
        "HAMS-Net x10 |",
        "|---|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for e in report["runs"]:
        # hams_scale_change: absent from reports made before the probe measured it
        cells = [e["largest_output"], e["largest_hams_output"], e["largest_position_score"], e.get("hams_scale_change")]
        shown = " | ".join("-" if v is None else f"{v:.3g}" for v in cells)
        lr = "-" if e["lr"] is None else f"{e['lr']:g}"
        qk_norm = "yes" if e.get("qk_norm") else "no"  # reports before the switch: the official attention
        lines.append(f"| {e['run']} | {e['checkpoint']} | {e['model']} | {qk_norm} | {lr} | {e['epoch']} | {shown} |")
    lines += ["", f"Made by `python benchmarks/activation_scale.py {report['command']}`.", ""]
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, help="the corpus the runs trained on")
    parser.add_argument("runs", nargs="+", help="run folders, each optionally RUN:CHECKPOINT (default best.pt)")
    parser.add_argument("--out", type=Path, required=True, help="JSON report (a markdown table beside it)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    import explanations  # the study's variants are models too: register them to load their runs

    for name in ("baseline", *explanations.VARIANTS):
        explanations.register_variant(name)
    windows = probe_windows(args.data)
    entries = []
    for spec in args.runs:
        run, _, which = spec.partition(":")
        if not (Path(run) / (which or "best.pt")).is_file():
            parser.error(f"{run}: no checkpoint {which or 'best.pt'}")
        entries.append(run_entry(Path(run), which or "best.pt", windows))
    names = " ".join(f"{Path(r).name}{':' + w if w else ''}" for r, _, w in (s.partition(":") for s in args.runs))
    report = {
        "data": Path(args.data).name,
        "windows": len(windows),
        "command": f"DATA {names} --out {args.out.name}",
        "runs": entries,
    }
    write_report(report, args.out, markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
