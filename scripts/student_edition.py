#!/usr/bin/env python3
"""Write the student edition of the chapters (notebooks, and with ``--html`` the built pages) and the instructors' key.

Every cell tagged ``solution`` (the hidden solutions of the book) is removed; everything else is kept, the
implement-it scaffolds with their ``...`` and their checker calls included. Every exercise keeps a place to
work: an empty code cell where a removed solution had code and the exercise has no scaffold (an experiment),
or where the solution did more than fill the scaffold (a second part, such as using the function); a
Markdown answer cell where the solution was text only (a reasoning exercise). Outputs are stripped. The
edition lies next to ``notebooks/`` (default ``student/``, gitignored), so the chapters' relative paths
(``../benchmarks``, ``../book``) still work.

The instructors' key (default ``instructors/solutions.md``, gitignored, outside the folder handed out) holds
every exercise with its solution, chapter by chapter.

``--html`` also builds the edition as a book, ``OUT_DIR/_build/html``: the same pages as the book, the chapters
without solutions. It is not executed again: each cell shows the output it had in the book's last successful
build (``_build/jupyter_execute``), so it needs a book build of the current notebooks; when there is none, or
it is older than the notebooks, the book is built first (``scripts/build_book.py``, as ``make book``).

Usage: ``python scripts/student_edition.py [OUT_DIR] [--key FILE] [--html]`` (``make student``)
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import yaml

ROOT = Path(__file__).resolve().parent.parent
EXECUTED = ROOT / "_build" / "jupyter_execute" / "notebooks"  # the book build's executed chapters
SITE = ROOT / "_build" / "student-site"  # the student book's sources, assembled for jupyter-book
KEY = ROOT / "instructors" / "solutions.md"
# What the student book copies from book/: its pages, bibliography, Sphinx extensions and scripts.
BOOK_FILES = ("*.md", "*.bib", "_ext/*.py", "static/*", "_vendor/**/*")
EXERCISE = re.compile(r"^\*\*Exercise (\d+\.\d+)\*\*", re.MULTILINE)
ADMONITION = re.compile(r"^:::\{admonition\}[^\n]*\n(?::class:[^\n]*\n)?|\n?:::\s*$")
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


# ---------------------------------------------------------------------------------------------------------------
# The instructors' key
# ---------------------------------------------------------------------------------------------------------------


def solution_text(cell) -> str:
    """A solution cell as key text: Markdown without its dropdown fence, code in a fenced block."""
    if cell.cell_type == "code":
        return f"```python\n{cell.source.strip()}\n```"
    return ADMONITION.sub("", cell.source).strip()


def chapter_key(notebook) -> list[str]:
    """The key's paragraphs for one chapter: each exercise's statement, then its solution cells."""
    paragraphs = []
    for cell in notebook.cells:
        match = EXERCISE.search(cell.source) if cell.cell_type == "markdown" else None
        if match and not is_solution(cell):
            paragraphs += [f"### Exercise {match.group(1)}", cell.source[match.end() :].strip(), "**Solution**"]
        elif is_solution(cell) and paragraphs:
            paragraphs.append(solution_text(cell))
    return paragraphs


def commit() -> str:
    """The repository's commit (short hash), or "unknown" outside a git checkout."""
    result = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    return result.stdout.strip() if result.returncode == 0 else "unknown"


def write_key(path: Path, chapters: Path = ROOT / "notebooks") -> Path:
    """Write every chapter's exercises and solutions to ``path`` (Markdown); return it."""
    parts = [
        "# Instructors' key: the exercises and their solutions",
        f"Written by `make student` (`scripts/student_edition.py`) from the chapters at commit `{commit()}`. The code "
        "of an experiment's solution runs in its chapter, whose book page shows its output.",
    ]
    for source in sorted(chapters.glob("[0-9][0-9]_*.ipynb")):
        notebook = nbformat.read(source, as_version=4)
        title = notebook.cells[0].source.splitlines()[0].lstrip("# ").strip()
        parts += [f"## {int(source.name[:2])}. {title}", *chapter_key(notebook)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n\n".join(parts) + "\n", encoding="utf-8")
    return path


# ---------------------------------------------------------------------------------------------------------------
# The student book (HTML)
# ---------------------------------------------------------------------------------------------------------------


class StaleBook(Exception):
    """The book's executed chapters are missing or do not match the notebooks."""


def load_build_book():
    """``scripts/build_book.py`` as a module (the book's build, reused for the student book)."""
    spec = importlib.util.spec_from_file_location("build_book", ROOT / "scripts" / "build_book.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def with_outputs(student, executed, name: str):
    """``student`` with each code cell's outputs from ``executed`` (the same chapter run by the book build).

    Cells are matched by id; a cell whose code differs from the executed one, or that the executed chapter
    lacks, makes the book stale (:class:`StaleBook`). The cells this edition adds have no outputs.
    """
    ran = {cell.id: cell for cell in executed.cells if cell.cell_type == "code"}
    for cell in student.cells:
        if cell.cell_type != "code" or cell.source == WORK_CELL:
            continue
        if cell.id not in ran or ran[cell.id].source != cell.source:
            raise StaleBook(f"{name}: cell {cell.id} differs from the book's last build")
        cell.outputs, cell.execution_count = ran[cell.id].outputs, ran[cell.id].execution_count
    if "widgets" in executed.metadata:  # the saved state of the chapter's widgets
        student.metadata["widgets"] = executed.metadata["widgets"]
    return student


def book_inputs(root: Path = ROOT) -> list[Path]:
    """The files a book build's outputs depend on: chapters, package, pages and configuration."""
    patterns = ("notebooks/*.ipynb", "dmf2mel/**/*.py", "book/*.md", "_config.yml", "_toc.yml")
    return [path for pattern in patterns for path in sorted(root.glob(pattern))]


def executed_chapters(chapters: Path = ROOT / "notebooks", executed: Path = EXECUTED) -> dict:
    """Chapter name -> student notebook with the book build's outputs; :class:`StaleBook` when there is none."""
    stamp = executed.parent.parent / ".book-build-ok"
    if not stamp.is_file():
        raise StaleBook(f"no successful book build in {executed.parent.parent}")
    changed = [path for path in book_inputs(chapters.parent) if path.stat().st_mtime > stamp.stat().st_mtime]
    if changed:
        raise StaleBook(f"{changed[0].relative_to(chapters.parent)} changed after the book's last build")
    edition = {}
    for path in sorted(chapters.glob("[0-9][0-9]_*.ipynb")):
        ran = executed / path.name
        if not ran.is_file():
            raise StaleBook(f"{path.name} is not in the book's last build")
        edition[path.name] = with_outputs(student_notebook(path), nbformat.read(ran, as_version=4), path.name)
    return edition


def site_config(config: dict) -> dict:
    """The book's ``_config.yml`` for the student book: its own title, and no execution (the outputs are kept)."""
    config = dict(config, title=f"{config['title']} (student edition)")
    config["execute"] = dict(config.get("execute", {}), execute_notebooks="off")
    return config


def write_site(site: Path, edition: dict, root: Path = ROOT) -> Path:
    """Assemble the student book's sources in ``site``: the book's pages and configuration, the student chapters."""
    if site.exists():
        shutil.rmtree(site)
    (site / "notebooks").mkdir(parents=True)
    for pattern in BOOK_FILES:
        for path in (root / "book").glob(pattern):
            if path.is_file():
                target = site / "book" / path.relative_to(root / "book")
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, target)
    shutil.copy2(root / "_toc.yml", site / "_toc.yml")
    config = yaml.safe_load((root / "_config.yml").read_text())
    (site / "_config.yml").write_text(yaml.safe_dump(site_config(config), sort_keys=False))
    for name, notebook in edition.items():
        nbformat.write(notebook, site / "notebooks" / name)
    return site


def build_html(out_dir: Path, site: Path = SITE) -> int:
    """Build the student book: the executed book's outputs, the student chapters, ``out_dir/_build/html``."""
    build_book = load_build_book()
    try:
        edition = executed_chapters()
    except StaleBook as why:
        print(f"student edition: {why}; building the book first (scripts/build_book.py, as make book)")
        status = build_book.main()
        if status != 0:
            return status
        edition = executed_chapters()
    if not (ROOT / "book" / "_vendor").is_dir() and build_book.vendor() != 0:
        return 1
    write_site(site, edition)
    build = subprocess.run(build_book.build_command(site, out_dir.resolve()), cwd=site, check=False)
    if build.returncode != 0:
        print(f"error: the student book's build failed (exit {build.returncode}; see above)", file=sys.stderr)
        return build.returncode
    print(f"student edition as a book: {out_dir.resolve() / '_build' / 'html' / 'index.html'}")
    return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", nargs="?", type=Path, default=ROOT / "student", help="default: student/")
    parser.add_argument("--key", type=Path, default=KEY, help="the instructors' key (default instructors/solutions.md)")
    parser.add_argument("--html", action="store_true", help="also build the edition as HTML, OUT_DIR/_build/html")
    args = parser.parse_args(argv)
    chapters = (ROOT / "notebooks").resolve()
    if args.out_dir.resolve() == chapters:
        print(
            f"error: OUT_DIR {args.out_dir} is the chapters' own folder; give another (e.g. student)", file=sys.stderr
        )
        return 2
    if args.key.resolve().is_relative_to(args.out_dir.resolve()):
        print(f"error: --key {args.key} lies inside OUT_DIR {args.out_dir}, which is handed out", file=sys.stderr)
        return 2
    written = write_edition(args.out_dir)
    print(f"student edition: {len(written)} chapters without solutions -> {args.out_dir}")
    print(f"instructors' key: {write_key(args.key)}")
    return build_html(args.out_dir) if args.html else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
