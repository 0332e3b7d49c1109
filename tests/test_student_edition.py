"""``make student``: the chapters without solutions, scaffolds kept; a student notebook runs up to its exercises."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import nbformat
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
SPEC = importlib.util.spec_from_file_location("student_edition", ROOT / "scripts" / "student_edition.py")
student_edition = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(student_edition)

# A chapter that executes in seconds, with an implement-it exercise.
RUNNABLE_CHAPTER = "07_dcfam.ipynb"


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


def test_quick_checks_stay_in_the_edition(edition):
    """A quick check is not a solution: the edition keeps its heading and its cell, collapsed in JupyterLab."""
    for name, notebook in edition.items():
        cells = {cell.id: cell for cell in notebook.cells}
        number = name[:2]
        assert f"ch{number}-quick-check-md" in cells, f"{name}: the quick check's heading is missing"
        code = cells[f"ch{number}-quick-check"]
        assert code.source.startswith("viz.quiz.quick_check(") and not student_edition.is_solution(code)
        assert code.metadata["jupyter"]["source_hidden"] and code.outputs == []


def test_experiments_get_an_empty_cell_to_work_in(edition):
    work_cells = [
        cell for notebook in edition.values() for cell in notebook.cells if cell.source == student_edition.WORK_CELL
    ]
    assert work_cells, "no experiment left room for the student's code"


EXERCISE = re.compile(r"^\*\*Exercise (\d+\.\d+)\*\* \*\((\w[\w-]*)\)\*", re.MULTILINE)


def exercises_of(notebook) -> dict[str, tuple[str, list]]:
    """Exercise number -> (kind, the cells from its statement up to the next exercise)."""
    found, current = {}, None
    for cell in notebook.cells:
        match = EXERCISE.search(cell.source) if cell.cell_type == "markdown" else None
        if match:
            current = match.group(1)
            found[current] = (match.group(2), [])
        elif current:
            found[current][1].append(cell)
    return found


def test_every_exercise_has_a_place_to_work(edition):
    originals_by_name = originals()
    for name, notebook in edition.items():
        exercises = exercises_of(notebook)
        assert 4 <= len(exercises) <= 6, f"{name}: found {sorted(exercises)}"
        solutions = exercises_of(originals_by_name[name])
        for number, (kind, cells) in exercises.items():
            if kind == "reasoning":  # an answer cell, or a code cell where the solution computes its point
                places = (student_edition.ANSWER_CELL, student_edition.WORK_CELL)
                assert any(c.source in places for c in cells), f"{number}: no cell to answer in"
                continue
            assert any(c.cell_type == "code" for c in cells), f"exercise {number} ({kind}) has no code cell"
            solution_code = [
                c.source for c in solutions[number][1] if c.cell_type == "code" and student_edition.is_solution(c)
            ]
            if kind == "implement-it" and any(map(student_edition.does_more_than_fill_a_scaffold, solution_code)):
                # a second part (e.g. use the function on the chapter's data): a cell besides the scaffold
                assert any(c.source == student_edition.WORK_CELL for c in cells), f"{number}: no cell for part two"


def test_the_second_part_of_exercise_3_4_gets_its_own_cell(edition):
    kind, cells = exercises_of(edition["03_metrics_and_baselines.ipynb"])["3.4"]
    sources = [cell.source for cell in cells]
    assert kind == "implement-it" and "exercises.check_shifted_null(shifted_null)" in sources[0]
    assert student_edition.WORK_CELL in sources[1:]


def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


LEAK_WORDS = 10  # a run of this many words of a solution, found in the text, is a copied answer


def test_no_solution_sentence_appears_in_the_students_text(edition):
    """The main text does not answer an exercise in the solution's own words (caught: ten words in a row)."""
    for name, original in originals().items():
        text = " " + " ".join(" ".join(words(cell.source)) for cell in edition[name].cells) + " "
        for cell in original.cells:
            if not (student_edition.is_solution(cell) and cell.cell_type == "markdown"):
                continue
            solution = words(cell.source)
            for start in range(len(solution) - LEAK_WORDS + 1):
                run = " ".join(solution[start : start + LEAK_WORDS])
                assert f" {run} " not in text, f"{name}: the text says the solution of {cell.id}: {run!r}"


def test_solution_hints_point_at_the_instructor(edition):
    for name, notebook in edition.items():
        text = "\n".join(cell.source for cell in notebook.cells)
        assert student_edition.SOLUTION_HINT[0] not in text, f"{name} still points at the solutions"


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


# The instructors' key -----------------------------------------------------------------------------------------


def test_the_key_holds_every_exercise_and_its_solution(tmp_path):
    key = student_edition.write_key(tmp_path / "instructors" / "solutions.md").read_text()
    for name, original in originals().items():
        for number in EXERCISE.findall("\n".join(c.source for c in original.cells if c.cell_type == "markdown")):
            assert f"### Exercise {number[0]}\n" in key, f"{name}: exercise {number[0]} is not in the key"
        for cell in original.cells:
            if student_edition.is_solution(cell):
                assert student_edition.solution_text(cell) in key, f"{name}: solution {cell.id} is not in the key"
    assert ":::{admonition}" not in key and ":class: dropdown" not in key


def test_the_key_stays_out_of_the_folder_handed_out(tmp_path, capsys):
    status = student_edition.main([str(tmp_path / "student"), "--key", str(tmp_path / "student" / "key.md")])
    assert status == 2 and "handed out" in capsys.readouterr().err
    assert student_edition.main([str(ROOT / "notebooks")]) == 2
    assert "chapters' own folder" in capsys.readouterr().err


# The student book (HTML) --------------------------------------------------------------------------------------


def executed_copy(notebook):
    """A chapter as the book build leaves it: every code cell with an output naming the cell."""
    ran = nbformat.from_dict(notebook)
    for cell in ran.cells:
        if cell.cell_type == "code":
            cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=f"ran {cell.id}\n")]
    ran.metadata["widgets"] = {"state": "saved"}
    return ran


def test_the_student_book_shows_the_book_builds_outputs():
    name = "03_metrics_and_baselines.ipynb"
    original = originals()[name]
    student = student_edition.with_outputs(
        student_edition.student_notebook(ROOT / "notebooks" / name), executed_copy(original), name
    )
    for cell in student.cells:
        if cell.cell_type != "code":
            continue
        expected = [] if cell.source == student_edition.WORK_CELL else [f"ran {cell.id}\n"]
        assert [output.text for output in cell.outputs] == expected
    assert student.metadata["widgets"] == {"state": "saved"}


def test_a_book_build_of_other_notebooks_is_stale(tmp_path):
    name = "07_dcfam.ipynb"
    ran = executed_copy(originals()[name])
    changed = next(
        cell for cell in ran.cells if cell.cell_type == "code" and "solution" not in cell.metadata.get("tags", [])
    )
    changed.source += "\n# edited since"
    with pytest.raises(student_edition.StaleBook, match=f"cell {changed.id} differs"):
        student_edition.with_outputs(student_edition.student_notebook(ROOT / "notebooks" / name), ran, name)
    with pytest.raises(student_edition.StaleBook, match="no successful book build"):
        student_edition.executed_chapters(executed=tmp_path / "_build" / "jupyter_execute" / "notebooks")


def test_the_student_site_is_the_book_with_the_student_chapters(tmp_path):
    edition = {
        name: student_edition.with_outputs(
            student_edition.student_notebook(ROOT / "notebooks" / name), executed_copy(nb), name
        )
        for name, nb in originals().items()
    }
    site = student_edition.write_site(tmp_path / "site", edition)
    config = yaml.safe_load((site / "_config.yml").read_text())
    assert config["title"].endswith("(student edition)") and config["execute"]["execute_notebooks"] == "off"
    assert config["sphinx"] == yaml.safe_load((ROOT / "_config.yml").read_text())["sphinx"]
    assert (site / "_toc.yml").read_text() == (ROOT / "_toc.yml").read_text()
    for page in (ROOT / "book").glob("*.md"):
        assert (site / "book" / page.name).read_text() == page.read_text()
    assert (site / "book" / "references.bib").is_file() and (site / "book" / "_ext" / "widget_state.py").is_file()
    for name in edition:
        notebook = nbformat.read(site / "notebooks" / name, as_version=4)
        assert not any(student_edition.is_solution(cell) for cell in notebook.cells)


def test_the_html_build_is_the_books_build_command_on_the_site(tmp_path, monkeypatch):
    """``--html`` runs jupyter-book like ``make book`` (warnings fail it), on the site, output in OUT_DIR/_build."""
    calls = []
    monkeypatch.setattr(student_edition, "executed_chapters", lambda: {})
    monkeypatch.setattr(student_edition.subprocess, "run", lambda command, **kw: calls.append((command, kw)) or _Done())
    assert student_edition.build_html(tmp_path / "student", site=tmp_path / "site") == 0
    ((command, options),) = [call for call in calls if "jupyter-book" in call[0][0]]  # (and vendor_js when needed)
    assert command[1:3] == ["build", "--all"] and "-W" in command and "-n" in command
    assert command[-3:] == [str(tmp_path / "site"), "--path-output", str((tmp_path / "student").resolve())]
    assert options["cwd"] == tmp_path / "site"


class _Done:
    returncode = 0
