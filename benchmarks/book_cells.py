"""How long each chapter cell takes: the measurement behind the book's per-cell time limits.

Executes every chapter notebook with nbclient (as the book build does, in a fresh kernel, with the package's
thread policy) and records each code cell's wall time. The report (``benchmarks/results/book_cells.json`` and
``.md``) lists per chapter the total, the longest cell and the time limit the chapter runs under in the book
build (``_config.yml``'s ``execute.timeout``, or the notebook's own ``mystnb.execution_timeout``), with their ratio:
a limit should leave room for a machine several times slower or busier than this one, and a hung cell should
still end the build in minutes, not hours.

The cached corpus and runs are used as they are: run it after a book build for the steady state, or with
``DMF2MEL_CACHE`` pointing at an empty folder for a first build (chapter 11 then trains).

Usage: ``python benchmarks/book_cells.py [--chapters 11 12]``.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from reports import RESULTS_DIR, code_state, machine_info, write_report  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"


def default_timeout() -> int:
    import yaml

    config = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))
    return int(config["execute"]["timeout"])


def notebook_timeout(notebook: dict, default: int) -> int:
    """The per-cell limit the book build gives this notebook (its ``mystnb.execution_timeout`` or the default)."""
    return int(notebook.get("metadata", {}).get("mystnb", {}).get("execution_timeout", default))


def time_cells(path: Path, kernel_timeout: int = 3600) -> list[dict]:
    """Execute ``path`` in a fresh kernel (working directory: its folder); the wall time of every code cell."""
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(
        notebook, timeout=kernel_timeout, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    )
    cells = []
    with client.setup_kernel():
        for index, cell in enumerate(notebook.cells):
            if cell.cell_type != "code":
                continue
            started = time.perf_counter()
            client.execute_cell(cell, index)
            cells.append(
                {
                    "cell": index,
                    "id": cell.get("id"),
                    "seconds": round(time.perf_counter() - started, 2),
                    "first_line": cell.source.splitlines()[0][:80] if cell.source else "",
                }
            )
    return cells


def markdown(report: dict) -> str:
    lines = [
        "# Time per chapter cell",
        "",
        f"{report['date'][:10]}, {report['machine'].get('cpu', '?')}, load average "
        f"{report['machine']['load_average'][0]:.1f} at the start; each chapter in a fresh kernel.",
        "",
        "| chapter | cells | total (s) | longest cell (s) | longest cell | limit per cell (s) | limit / longest |",
        "|---|---:|---:|---:|---|---:|---:|",
    ]
    for chapter in report["chapters"]:
        longest = max(chapter["cells"], key=lambda cell: cell["seconds"])
        lines.append(
            f"| {chapter['notebook']} | {len(chapter['cells'])} | {chapter['total_s']:.0f} | {longest['seconds']:.1f} | "
            f"`{longest['first_line']}` | {chapter['timeout_s']} | {chapter['timeout_s'] / max(longest['seconds'], 0.01):.0f}x |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None) -> dict:
    import nbformat

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chapters", nargs="+", help="chapter numbers, e.g. 09 10 (default: all)")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "book_cells.json")
    args = parser.parse_args(argv)
    paths = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    if args.chapters:
        paths = [p for p in paths if p.name[:2] in args.chapters]
    default = default_timeout()
    machine = machine_info()
    chapters = []
    for path in paths:
        cells = time_cells(path)
        timeout = notebook_timeout(nbformat.read(path, as_version=4), default)
        chapters.append(
            {
                "notebook": path.stem,
                "cells": cells,
                "total_s": round(sum(c["seconds"] for c in cells), 1),
                "timeout_s": timeout,
            }
        )
        print(
            f"{path.stem}: {chapters[-1]['total_s']:.0f} s, longest cell "
            f"{max(c['seconds'] for c in cells):.1f} s, limit {timeout} s",
            flush=True,
        )
    report = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine,
        "code": code_state(),
        "default_timeout_s": default,
        "chapters": chapters,
    }
    write_report(report, args.out, markdown(report))
    return report


if __name__ == "__main__":
    main()
