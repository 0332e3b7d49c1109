"""The README's results section, rendered from the benchmark reports in ``benchmarks/results/``.

``python benchmarks/readme.py`` rewrites the block between the two markers in ``README.md`` from
``quality_teaching.json``, ``quality_sparrkulee.json``, ``train_speed.json``, ``speedup.json``, ``busy.json``,
``compile_small_b8.json``, ``gpu.json`` and ``gpu_reference_scan.json``; ``--check`` only says whether the
block is up to date (exit 1 if not). ``benchmarks/quality.py``, ``train_speed.py``, ``speedup.py`` and ``busy.py``
run it after writing their default reports (as a command: :func:`reports.update_readme`), and a test checks that the
committed README matches the committed reports, so the numbers in the README are never typed in by hand and never
drift from the files they come from.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling benchmark scripts

import compile_step  # noqa: E402
import quality  # noqa: E402
from dmf2mel.metrics import VERDICT_RULE  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "benchmarks" / "results"
README = ROOT / "README.md"
START = "<!-- results: written by benchmarks/readme.py from benchmarks/results/*.json - do not edit by hand -->"
END = "<!-- /results -->"
QUALITY_PRESETS = ("teaching", "sparrkulee")


def _load(path: Path) -> dict | None:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _r(result: dict | None) -> str:
    if not result or result.get("paper_r") is None:
        return "-"
    return f"{result['paper_r']:.3f} ({result['chance_r']:.3f})"


def _day(iso: str) -> str:
    return iso[:10]


def quality_section(reports: dict[str, dict]) -> list[str]:
    """The table of paper r per model, protocol and preset, and how it was made."""
    presets = [p for p in QUALITY_PRESETS if p in reports]
    if not presets:
        return []
    models: list[str] = []
    for preset in presets:
        models += [row["model"] for row in reports[preset]["rows"] if row["model"] not in models]
    header = ["model"] + [f"{preset} {protocol}" for preset in presets for protocol in ("known", "unknown")]
    lines = [
        "Reconstruction quality: Pearson r of the test parts (the paper's metric, mean over seeds), chance level "
        "(95th percentile of a circular-shift null) in brackets.",
        "",
        "| " + " | ".join(header) + " |",
        "|---|" + "---:|" * (len(header) - 1),
    ]
    for model in models:
        cells = [f"`{model}`"]
        for preset in presets:
            row = next((r for r in reports[preset]["rows"] if r["model"] == model), {})
            cells += [_r(row.get("known")), _r(row.get("unknown"))]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    for preset in presets:
        report = reports[preset]
        b, train, machine = report["budget"], report["budget"]["train"], report["machine"]
        verdicts = "; ".join(
            f"{protocol}: {quality.difference_sentence('DMF2Mel', 'the linear decoder', c['dmf2mel_vs_linear'])}"
            for protocol, c in quality.comparisons(report).items()
        )
        lines.append(
            f"- `{preset}` ({_day(report['date'])}, {machine['cpu_count']}-core {machine['cpu']}, "
            f"{b['threads']} torch thread(s)): profile `{b['profile']}` (DMF2Mel `{b['model_preset']}` config), "
            f"{b['epochs']} epochs of {train['windows_per_recording']} random {train['window_seconds']:g} s windows "
            f"per training recording, batch {train['batch_size']}, Adam at {_learning_rates(report)}, best val epoch; "
            f"seeds {', '.join(map(str, b['seeds']))}.{_stale(report)}{_missing(report, models)} "
            f"Paired comparison - {verdicts}."
        )
    lines += ["", VERDICT_RULE]
    return lines


def _missing(report: dict, models: list[str]) -> str:
    """The table's models that this preset's report has not trained (its cells show ``-``), in a sentence."""
    trained = {row["model"] for row in report["rows"]}
    missing = [f"`{model}`" for model in models if model not in trained]
    if not missing:
        return ""
    return f" Not in this report yet (`-` in the table): {', '.join(missing)}."


def _learning_rates(report: dict) -> str:
    """Each model's learning rate, as the quality report trained it (one lr for all in reports before the sweep)."""
    rates = report.get("learning_rates")
    if not rates:
        return f"lr {report['budget']['train']['lr']:g} for every model"
    dmf2mel = rates.get("dmf2mel", {}).get("lr")
    own = ", ".join(f"{model} {rate['lr']:g}" for model, rate in rates.items() if not model.startswith("dmf2mel-"))
    shared = " (its ablations too)" if any(m.startswith("dmf2mel-") for m in rates) and dmf2mel else ""
    return f"learning rates chosen on validation (the sweep and its full-budget finalists): {own}{shared}"


def _stale(report: dict, rerun: str = "make bench-quality") -> str:
    from dmf2mel.viz.results import results_currency

    return results_currency(report, rerun)


def speed_section(report: dict) -> list[str]:
    """One training step of the paper and small configs at batch 16 x 640 with the numba scan."""
    rows = [r for r in report["rows"] if r.get("backend") == "cpu" and r.get("status") == "ok"]
    if not rows:
        return []
    official = report.get("official_batch2", {})
    lines = [
        f"One training step (forward, paper loss, backward, Adam) on windows of {report['window']} samples, numba scan "
        f"({_day(report['date'])}, {report['machine']['cpu_count']}-core {report['machine']['cpu']}, "
        f"{report['threads']} torch thread(s), load average {report['machine']['load_average'][0]:.1f} at the start)"
        f":{_stale(report, 'make bench')}",
        "",
        "| config | params | batch | step (s) | train windows/s | peak RSS (GB) | inference windows/s |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['preset']} | {row['params']:,d} | {row['batch']} | {row['step_s']:.2f} | "
            f"{row['windows_per_s']:.2f} | {row['peak_rss_mb'] / 1024:.2f} | {row['inference_windows_per_s']:.2f} |"
        )
    if official:
        lines += [
            "",
            "The official code, measured once and separately (not by this repository's scripts, on a CPU, with "
            "a pure-PyTorch selective scan standing in for mamba-ssm's CUDA kernel), for orientation only: "
            f"batch 2, {official['step_seconds']} s per step, {official['peak_gb']} GB peak; at batch 16 it "
            "ran out of memory.",
        ]
    return lines


def speedup_section(report: dict) -> list[str]:
    """The training step against a baseline commit, side by side (``benchmarks/speedup.py``)."""
    rows = [row for row in report["rows"] if row.get("speedup") is not None]
    if not rows:
        return []
    lines = [
        f"Against commit `{report['baseline_commit'][:7]}` (before the speed work; `benchmarks/speedup.py`, "
        f"{_day(report['date'])}, one torch thread, both trees measured in turn in one run):"
        f"{_stale(report, 'make bench')}",
        "",
        "| config | batch | step then (s) | step now (s) | speed-up | peak then (GB) | peak now (GB) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['preset']} | {row['batch']} | {row['baseline']['step_s']:.2f} | {row['now']['step_s']:.2f} | "
            f"{row['speedup']:.2f}x | {row['baseline']['peak_rss_mb'] / 1024:.2f} | "
            f"{row['now']['peak_rss_mb'] / 1024:.2f} |"
        )
    return lines


def busy_section(report: dict) -> list[str]:
    """One quick-profile epoch quietly and beside busy processes (``benchmarks/busy.py``)."""
    phases = {phase["phase"]: phase for phase in report["phases"]}
    quiet, busy = phases.get("quiet"), phases.get("busy")
    if not quiet or not busy or quiet["median_epoch_s"] is None:
        return []
    machine = report["machine"]

    def versus_quiet(phase: dict) -> str:
        return f"{phase['median_epoch_s']:.1f} s ({phase['median_epoch_s'] / quiet['median_epoch_s']:.1f}x)"

    busy_text = "did not finish" if busy["median_epoch_s"] is None else versus_quiet(busy)
    text = (
        f"Training on a busy machine ({_day(report['date'])}, {machine.get('usable_cores', machine['cpu_count'])} "
        f"usable cores, `benchmarks/busy.py`): one quick-profile DMF2Mel epoch takes "
        f"{quiet['median_epoch_s']:.1f} s quietly and {busy_text} beside {report['busy']} busy processes with the "
        "package's thread policy"
    )
    for phase in report["phases"]:
        if phase.get("fixed_threads"):
            if phase["median_epoch_s"] is None:
                result = (
                    f"it did not finish its {report['epochs']} epochs in {phase['wall_s']:.0f} s (quietly they "
                    f"take {sum(quiet['epoch_s']):.0f} s)"
                )
            else:
                result = f"it takes {versus_quiet(phase)}"
            text += f"; with {phase['fixed_threads']} threads fixed (PyTorch's default here) {result}"
    return [text + "."]


def compile_section(report: dict) -> list[str]:
    """``torch.compile`` against eager on the CPU step (``benchmarks/compile_step.py``)."""
    low, high = report["ratio_quartiles"]
    return [
        f"`torch.compile` on the CPU ({_day(report['date'])}, `{report['preset']}` config, batch {report['batch']}, "
        f"{report['threads']} thread(s), `benchmarks/compile_step.py`): the compiled step runs at "
        f"{report['median_ratio']:.2f}x the eager one's speed (median of {report['rounds']} paired rounds, quartiles "
        f"{low:.2f}-{high:.2f}) after {report['compile_s']:.0f} s of compiling"
        + (
            "; faster, so compiling would pay here."
            if compile_step.verdict(report) == "faster"
            else ", no faster, so the package does not compile (the numba kernels are opaque to the compiler, which "
            "fuses only the torch code between them)."
        )
    ]


def render(results_dir: Path = RESULTS_DIR) -> str:
    """The block between the markers (markers included)."""
    quality = {p: r for p in QUALITY_PRESETS if (r := _load(results_dir / f"quality_{p}.json")) is not None}
    speed = _load(results_dir / "train_speed.json")
    body = quality_section(quality)
    if speed is not None:
        body += ([""] if body else []) + speed_section(speed)
    speedup = _load(results_dir / "speedup.json")
    if speedup is not None and (lines := speedup_section(speedup)):
        body += ([""] if body else []) + lines
    busy = _load(results_dir / "busy.json")
    if busy is not None and (lines := busy_section(busy)):
        body += ([""] if body else []) + lines
    compiled = _load(results_dir / "compile_small_b8.json")
    if compiled is not None:
        body += ([""] if body else []) + compile_section(compiled)
    from dmf2mel.viz.results import gpu_step_text

    if gpu := gpu_step_text(results_dir):  # the sentence chapter 14 shows too
        body += ([""] if body else []) + [gpu]
    if not body:
        body = ["(no benchmark reports yet: run `make bench` and `make bench-quality`)"]
    return "\n".join([START, *body, END])


def current_block(text: str) -> tuple[int, int]:
    """Start and end offsets of the block in ``text`` (ValueError when the markers are missing)."""
    start = text.index(START)
    end = text.index(END, start) + len(END)
    return start, end


def update(readme: Path = README, results_dir: Path = RESULTS_DIR, check: bool = False) -> bool:
    """Rewrite the block in ``readme``; True when it was (or, with ``check``, would be) changed."""
    from dmf2mel.io import atomic_path

    text = readme.read_text(encoding="utf-8")
    try:
        start, end = current_block(text)
    except ValueError:
        raise SystemExit(f"{readme}: no results block (expected a line {START!r} and a line {END!r})") from None
    new = text[:start] + render(results_dir) + text[end:]
    if new == text:
        return False
    if not check:
        with atomic_path(readme) as tmp:
            tmp.write_text(new, encoding="utf-8")
            tmp.chmod(readme.stat().st_mode & 0o777)
    return True


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if README.md is out of date; change nothing")
    args = parser.parse_args(argv)
    changed = update(check=args.check)
    if args.check:
        print("README.md results: " + ("out of date (run python benchmarks/readme.py)" if changed else "up to date"))
        return int(changed)
    print("README.md results: " + ("rewritten" if changed else "already up to date"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
