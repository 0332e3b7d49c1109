"""``make student``: the chapters without solutions, scaffolds kept; a student notebook runs up to its exercises."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
SPEC = importlib.util.spec_from_file_location("student_edition", ROOT / "scripts" / "student_edition.py")
student_edition = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(student_edition)

# A chapter that executes in seconds, with an implement-it exercise.
RUNNABLE_CHAPTER = "05_dcfam.ipynb"


@pytest.fixture(scope="module")
def edition(tmp_path_factory):
    out = tmp_path_factory.mktemp("student")
    return {path.name: nbformat.read(path, as_version=4) for path in student_edition.write_edition(out)}


def originals():
    return {
        path.name: nbformat.read(path, as_version=4) for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    }


def test_every_chapter_is_in_the_edition_and_valid(edition):
    assert sorted(edition) == sorted(originals()) and len(edition) == 14
    for notebook in edition.values():
        nbformat.validate(notebook)
        ids = [cell.id for cell in notebook.cells]
        assert len(set(ids)) == len(ids)


def test_no_solution_is_left(edition):
    for name, original in originals().items():
        solutions = [cell for cell in original.cells if student_edition.is_solution(cell)]
        assert solutions, f"{name} has no solution cells to remove"
        student = edition[name]
        assert not any(student_edition.is_solution(cell) for cell in student.cells)
        texts = {cell.source for cell in student.cells}
        assert not any(cell.source in texts for cell in solutions), f"{name}: a solution's text is still there"
        code = "\n".join(cell.source for cell in student.cells if cell.cell_type == "code")
        assert ".assert_passed()" not in code, f"{name}: solution code is still there"
        assert ":::{admonition} Solution" not in "\n".join(cell.source for cell in student.cells)


def test_exercises_and_scaffolds_are_kept(edition):
    for name, original in originals().items():
        kept = [cell for cell in original.cells if not student_edition.is_solution(cell)]
        student_sources = [cell.source.replace(*student_edition.SOLUTION_HINT[::-1]) for cell in edition[name].cells]
        assert all(cell.source in student_sources for cell in kept), f"{name}: a non-solution cell went missing"
        scaffolds = [source for source in student_sources if "exercises.check_" in source]
        assert all("..." in source for source in scaffolds)


def test_experiments_get_an_empty_cell_to_work_in(edition):
    work_cells = [
        cell for notebook in edition.values() for cell in notebook.cells if cell.source == student_edition.WORK_CELL
    ]
    assert work_cells, "no experiment left room for the student's code"


@pytest.mark.slow
def test_a_student_notebook_runs_up_to_its_first_exercise_and_the_scaffold_says_what_to_do(edition, tmp_path):
    from nbclient import NotebookClient

    notebook = edition[RUNNABLE_CHAPTER]
    first_scaffold = next(
        i for i, cell in enumerate(notebook.cells) if cell.cell_type == "code" and "exercises.check_" in cell.source
    )
    notebook.cells = notebook.cells[: first_scaffold + 1]
    # run where the chapters run, so that their relative paths hold
    NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(ROOT / "notebooks")}}
    ).execute()
    verdict = "".join(output.get("data", {}).get("text/plain", "") for output in notebook.cells[-1].outputs)
    assert "returned None" in verdict and "Replace the `...`" in verdict
