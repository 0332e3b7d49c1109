#!/usr/bin/env python3
"""Write the student edition of the chapters: the notebooks without the exercises' solutions.

Every cell tagged ``solution`` (the hidden solutions of the book) is removed; everything else is kept, the
implement-it scaffolds with their ``...`` and their checker calls included. Where a removed solution had code
and the exercise has no scaffold (an experiment), an empty code cell is left for the student's own. Outputs
are stripped. The edition lies next to ``notebooks/`` (default ``student/``, gitignored), so the chapters'
relative paths (``../benchmarks``, ``../book``) still work.

Usage: ``python scripts/student_edition.py [OUT_DIR]`` (``make student``)
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
SOLUTION_TAG = "solution"
WORK_CELL = "# Your code here."
# The chapters' exercise introductions point at the hidden solutions, which this edition leaves out.
SOLUTION_HINT = (
    "Try each exercise before opening its solution.",
    "The solutions are not in this edition; your instructor has them.",
)


def is_solution(cell) -> bool:
    return SOLUTION_TAG in cell.metadata.get("tags", [])


def student_cells(cells: list) -> list:
    """``cells`` without solutions; an empty code cell where an exercise without a scaffold had solution code."""
    kept = []
    index = 0
    while index < len(cells):
        if not is_solution(cells[index]):
            kept.append(cells[index])
            index += 1
            continue
        run = []
        while index < len(cells) and is_solution(cells[index]):
            run.append(cells[index])
            index += 1
        has_scaffold = bool(kept) and kept[-1].cell_type == "code"
        if any(cell.cell_type == "code" for cell in run) and not has_scaffold:
            work = nbformat.v4.new_code_cell(WORK_CELL)
            work.id = f"{run[0].id}-work"
            kept.append(work)
    return kept


def student_notebook(path: Path) -> nbformat.NotebookNode:
    notebook = nbformat.read(path, as_version=4)
    notebook.cells = student_cells(notebook.cells)
    for cell in notebook.cells:
        if cell.cell_type == "markdown":
            cell.source = cell.source.replace(*SOLUTION_HINT)
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    nbformat.validate(notebook)
    return notebook


def write_edition(out_dir: Path, chapters: Path = ROOT / "notebooks") -> list[Path]:
    """Write the student edition of every chapter in ``chapters`` to ``out_dir``; return the written paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for path in sorted(chapters.glob("[0-9][0-9]_*.ipynb")):
        target = out_dir / path.name
        nbformat.write(student_notebook(path), target)
        written.append(target)
    return written


def main(argv: list[str]) -> int:
    out_dir = Path(argv[0]) if argv else ROOT / "student"
    written = write_edition(out_dir)
    print(f"student edition: {len(written)} chapters without solutions -> {out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
