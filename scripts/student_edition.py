#!/usr/bin/env python3
"""Write the student edition of the chapters: the notebooks without the exercises' solutions.

Every cell tagged ``solution`` (the hidden solutions of the book) is removed; everything else is kept, the
implement-it scaffolds with their ``...`` and their checker calls included. Every exercise keeps a place to
work: an empty code cell where a removed solution had code and the exercise has no scaffold (an experiment),
or where the solution did more than fill the scaffold (a second part, such as using the function); a
Markdown answer cell where the solution was text only (a reasoning exercise). Outputs are stripped. The edition lies next to ``notebooks/`` (default ``student/``, gitignored), so the chapters'
relative paths (``../benchmarks``, ``../book``) still work.

Usage: ``python scripts/student_edition.py [OUT_DIR]`` (``make student``)
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
SOLUTION_TAG = "solution"
WORK_CELL = "# Your code here."
ANSWER_CELL = "*Your answer:*"
# The chapters' exercise introductions point at the hidden solutions, which this edition leaves out.
SOLUTION_HINT = (
    "Try each exercise before opening its solution.",
    "The solutions are not in this edition; your instructor has them.",
)


def is_solution(cell) -> bool:
    return SOLUTION_TAG in cell.metadata.get("tags", [])


def does_more_than_fill_a_scaffold(source: str) -> bool:
    """Whether solution code holds statements besides function definitions and checker calls (a second part)."""
    for node in ast.parse(source).body:
        if isinstance(node, ast.FunctionDef):
            continue
        if isinstance(node, ast.Expr) and "exercises.check_" in ast.unparse(node):
            continue
        return True
    return False


def work_cell(run: list, kind: str):
    cell = nbformat.v4.new_code_cell(WORK_CELL) if kind == "code" else nbformat.v4.new_markdown_cell(ANSWER_CELL)
    cell.id = f"{run[0].id}-{'work' if kind == 'code' else 'answer'}"
    return cell


def student_cells(cells: list) -> list:
    """``cells`` without solutions, each removed solution replaced by a place to work where one is missing."""
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
        code = [cell for cell in run if cell.cell_type == "code"]
        has_scaffold = bool(kept) and kept[-1].cell_type == "code"
        if code and (not has_scaffold or any(does_more_than_fill_a_scaffold(cell.source) for cell in code)):
            kept.append(work_cell(run, "code"))
        elif not code:
            kept.append(work_cell(run, "markdown"))
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
