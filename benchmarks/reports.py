"""What every benchmark report shares: where reports go, the machine and the code they were measured on, the torch
thread count, atomic writing, and the run store of the long studies (the benchmark corpus, a run's key, a finished
run kept across sessions).

One module that the report scripts import, so that none of them imports another for its helpers.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

RESULTS_DIR = Path(__file__).resolve().parent / "results"
#: Sizes of the benchmark's corpus (:func:`dmf2mel.data.corpus.simulate_corpus`, seed 0): 14 training and 6
#: held-out subjects, 3 stories of 10 minutes each, so every recording's test part holds six 10 s windows: 252 known
#: and 108 unknown test windows (the default corpus: 18 and 6), with 42 training recordings (default 18), so an epoch
#: costs about 2.3 times as much. Generating it takes about five minutes on one core (:data:`SIMULATION_S_PER_SUBJECT`).
BENCHMARK_CORPUS = {"n_subjects": 20, "n_held_out": 6, "minutes": 10.0}


def set_threads(threads: int | None) -> None:
    """Intra-op threads of torch (the numba scan follows torch's count); None: the package's policy
    (:func:`dmf2mel.threads.configure`: the cores other programs leave free).

    Speed benchmarks fix the count (one thread by default in ``make bench``) so that their numbers compare across
    runs; a shared machine then costs them a fair share of the cores, not the barrier stalls of two spinning
    threads (see :mod:`dmf2mel.threads`).
    """
    import torch

    from dmf2mel import threads as thread_policy

    if threads is None:
        thread_policy.configure()
    else:
        torch.set_num_threads(threads)


def machine_info() -> dict:
    """CPU model, cores, memory, library versions, threads and the load average."""
    import numba
    import numpy
    import torch

    cpu_model = platform.processor()
    with open("/proc/cpuinfo", encoding="ascii", errors="replace") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo", encoding="ascii") as meminfo:
        mem_total_gb = int(meminfo.readline().split()[1]) / 2**20
    return {
        "platform": platform.platform(),
        "cpu": cpu_model,
        "cpu_count": os.cpu_count(),
        "mem_total_gb": round(mem_total_gb, 1),
        "load_average": list(os.getloadavg()),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numba": numba.__version__,
        "numpy": numpy.__version__,
        "torch_threads": torch.get_num_threads(),
        "numba_threads": numba.config.NUMBA_NUM_THREADS,
    }


def code_state() -> dict:
    """The commit the package was measured at, and the package files that differed from it (uncommitted edits)."""
    root = Path(__file__).resolve().parents[1]

    def git(*arguments):
        completed = subprocess.run(["git", *arguments], cwd=root, capture_output=True, text=True, check=False)
        return completed.stdout if completed.returncode == 0 else None

    status = git("status", "--porcelain", "--", "dmf2mel")
    commit = git("rev-parse", "HEAD")
    return {
        "commit": None if commit is None else commit.strip(),
        "modified_package_files": None if status is None else [line[3:] for line in status.splitlines()],
    }


def write_report(report: dict, out: Path, text: str) -> None:
    """``report`` as JSON at ``out`` and ``text`` (its markdown) beside it as ``.md``, each atomically.

    Shared by the benchmark scripts.
    """
    from dmf2mel.io import atomic_path, save_json

    save_json(out, report)
    with atomic_path(out.with_suffix(".md")) as tmp:
        tmp.write_text(text, encoding="utf-8")


def update_readme() -> None:
    """Rewrite the README's results block from the reports (``benchmarks/readme.py``), as a command of its own:
    ``readme.py`` reads the quality report through ``quality.py``, so the benchmark scripts that end by updating
    the README never import it (no script imports another that imports it back)."""
    subprocess.run([sys.executable, str(Path(__file__).resolve().with_name("readme.py"))], check=True)


# --- the run store of the long studies (quality, sweep, explanations) ----------------------------


#: Seconds the simulation takes per subject of a benchmark corpus on one core, measured on a 2.8 GHz Xeon beside
#: a training on the other core: 20 subjects in 4.5 minutes (teaching and sparrkulee alike), 34 in 8.2.
SIMULATION_S_PER_SUBJECT = 15


def simulation_minutes(n_subjects: int) -> int:
    """About how many minutes one core takes to simulate a benchmark corpus of ``n_subjects`` (at least 1)."""
    return max(1, round(n_subjects * SIMULATION_S_PER_SUBJECT / 60))


def benchmark_corpus(runs: Path, preset: str, log=print) -> Path:
    """The quality benchmark's corpus of ``preset`` (:data:`BENCHMARK_CORPUS`, seed 0) in ``runs``,
    generated on first use (about five minutes on one core)."""
    from dmf2mel.data.corpus import simulate_corpus

    data = Path(runs) / f"corpus-{preset}"
    if not data.is_dir():
        minutes = simulation_minutes(BENCHMARK_CORPUS["n_subjects"])
        log(f"generating the benchmark corpus of {preset} in {data} (about {minutes} minutes on one core)")
        simulate_corpus(data, preset=preset, seed=0, progress=False, **BENCHMARK_CORPUS)
    return data


def _without_seed_list(key: dict) -> dict:
    """``key`` without its fingerprint and without the list of seeds its benchmark ran (``budget.seeds``): one
    seed's run does not depend on which other seeds the call that started it asked for."""
    rest = {k: v for k, v in key.items() if k != "fingerprint"}
    if isinstance(rest.get("budget"), dict):
        rest["budget"] = {k: v for k, v in rest["budget"].items() if k != "seeds"}
    return rest


def same_key(a: dict, b: dict) -> bool:
    """Two run keys agree: every entry equal (the benchmark's list of seeds aside), the models' ``fingerprint``
    entries to their tolerance (:func:`dmf2mel.models.fingerprint.same_fingerprint`: a faster or tidier code
    computing the same maths keeps a run)."""
    from dmf2mel.models.fingerprint import same_fingerprint

    rest = _without_seed_list
    if rest(a) != rest(b):
        return False
    mine, theirs = a.get("fingerprint"), b.get("fingerprint")
    if mine is None or theirs is None or isinstance(mine, dict) != isinstance(theirs, dict):
        return mine == theirs
    # one model's numbers, or a dict of them by model name
    return same_fingerprint(mine, theirs) if isinstance(mine, dict) else same_fingerprint({"m": mine}, {"m": theirs})


def _key_file(run: Path) -> Path:
    """Where :func:`resumable` records what a run folder was started for: beside it (the trainer wants the folder
    itself to hold nothing but its own files)."""
    return run.with_name(f"{run.name}.key.json")


def _recorded_key(run: Path) -> dict | None:
    """The key a run folder was started for: the one recorded beside it, else the key of a result it saved
    (``*_result.json``); None for a folder with neither (started before keys were recorded)."""
    recorded = _key_file(run)
    if recorded.is_file():
        return json.loads(recorded.read_text(encoding="utf-8"))
    for result in run.glob("*_result.json"):
        saved = json.loads(result.read_text(encoding="utf-8"))
        if "key" in saved:
            return saved["key"]
    return None


def _started_for(run: Path, key: dict, continues=None) -> bool:
    """Whether the run in ``run`` was started for ``key`` (a folder without a recorded key is taken to match), or
    for a key that ``continues(recorded, key)`` says it goes on to (a shorter budget of the same run)."""
    recorded = _recorded_key(run)
    if recorded is None or same_key(recorded, key):
        return True
    return continues is not None and continues(recorded, key)


def resumable(run: Path, key: dict | None = None, continues=None) -> bool:
    """Whether ``run`` holds a checkpoint to resume from. A run folder cut short before its first checkpoint has
    nothing in it to keep (and the trainer refuses a folder that is not empty): it is removed, to start afresh.

    With ``key`` (what the run's result will depend on), a folder started for another key (another recipe, corpus
    or model: resuming it would continue the other model) is removed as well, unless ``continues(recorded_key,
    key)`` says that ``key`` only lets the same run go on (e.g. more epochs of it); ``key`` is recorded beside the
    folder for the next call.
    """
    from dmf2mel.io import save_json

    run = Path(run)
    if key is not None and run.exists() and not _started_for(run, key, continues):
        shutil.rmtree(run)
    if key is not None:
        save_json(_key_file(run), json.loads(json.dumps(key)))
    if (run / "last.pt").is_file():
        return True
    if run.exists():
        shutil.rmtree(run)
    return False


def kept_result(key: dict, earlier: list[dict], saved: Path) -> dict | None:
    """A finished run with this ``key``: from a report's earlier runs (committed, so it survives a session), else
    from the result file a run folder saved; None when neither matches."""
    kept = next((entry for entry in earlier if same_key(entry["key"], key)), None)
    if kept is None and saved.is_file():
        candidate = json.loads(saved.read_text(encoding="utf-8"))
        kept = candidate if same_key(candidate["key"], key) else None
    return kept


def earlier_runs(out: Path | None) -> list[dict]:
    """The runs of an existing report (none when there is no report yet)."""
    if out is None or not Path(out).is_file():
        return []
    return json.loads(Path(out).read_text(encoding="utf-8")).get("runs", [])


def best_so_far(curve: dict, epochs: int, parts: int = 4) -> list[tuple[int, float | None]]:
    """The best validation r reached by the end of each of ``parts`` equal parts of the budget: whether a run was
    still learning (the last parts still add) or had stopped."""
    val = np.asarray([np.nan if v is None else v for v in curve.get("val_r", [])], dtype=float)
    epoch = np.asarray(curve.get("epoch", []), dtype=float)
    out = []
    for end in sorted({max(1, int(round(epochs * k / parts))) for k in range(1, parts + 1)}):  # short budgets: fewer
        seen = val[(epoch <= end) & np.isfinite(val)]
        out.append((end, float(seen.max()) if seen.size else None))
    return out
