"""Every chapter (01-14) follows the book's notebook rules; the book build (tests/test_book.py) executes them.

Checked without a kernel, in well under a second: outputs stripped, a title and a "why", learning objectives and an
estimated time, imports only at the top, ``viz.setup_notebook()`` first, short cells and lines, no long functions,
a summary, a quick check of 2-4 self-checking questions and 4-6 exercises at the end, each exercise with a solution (hidden in the HTML, removed in the student edition),
an implement-it exercise checked by ``dmf2mel.exercises`` where the chapter teaches something to implement, and
citations that exist.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import nbformat
import pytest
from conftest import chapter_prose, held_out_by_subject

ROOT = Path(__file__).resolve().parent.parent
CHAPTERS = sorted(path.stem for path in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
# Chapters with an implement-it exercise, checked against the package (dmf2mel.exercises).
IMPLEMENT_IT = ("03", "04", "05", "06", "07", "08", "09", "10", "12")
# Chapters that teach a method or a module of the package (the linear models, match-mismatch, the model's
# modules): they cite their sources and show the package's code.
MODEL_CHAPTERS = ("04", "05", "06", "07", "08", "09", "10")
# The module chapters open with the whole model (viz.architecture), the part they teach highlighted; the assembled
# model's chapter draws every part in colour.
ARCHITECTURE_HIGHLIGHT = {"06": "splinemap", "07": "dcfam", "08": "hams", "09": "convmamba", "10": None}
MAX_CELL_LINES = 15  # "short cells (about 10 lines)": the import cell and a few figure calls run a little longer
MAX_LINE_CHARS = 88  # what the book's code boxes show without a scrollbar
MAX_SOLUTION_LINE_CHARS = 84  # a solution's box, inside its show/hide toggle, is a little narrower
MAX_FUNCTION_LINES = 8  # anything longer belongs in the package, tested
SOLUTION_TAG = "solution"  # cells removed from the student edition (scripts/student_edition.py)
CITATION = re.compile(r"\{cite\}`([^`]+)`")
EXERCISE = re.compile(r"^\*\*Exercise (\d+)\.(\d+)\*\*", re.MULTILINE)
SOLUTION_TITLE = re.compile(r"^:::\{admonition\} Solution (\d+\.\d+)", re.MULTILINE)


def bibliography_keys() -> set[str]:
    return set(re.findall(r"^@\w+\{([^,]+),", (ROOT / "book" / "references.bib").read_text(), flags=re.MULTILINE))


def test_all_fourteen_chapters_are_checked():
    assert len(CHAPTERS) == 14 and CHAPTERS[0].startswith("01_") and CHAPTERS[-1].startswith("14_")


@pytest.fixture(params=CHAPTERS)
def chapter(request):
    return request.param


@pytest.fixture()
def notebook(chapter):
    path = ROOT / "notebooks" / f"{chapter}.ipynb"
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    return nb


def code_cells(nb):
    return [cell for cell in nb.cells if cell.cell_type == "code"]


def tags(cell) -> list[str]:
    return cell.metadata.get("tags", [])


def test_outputs_are_stripped_and_cell_ids_unique(chapter, notebook):
    for cell in code_cells(notebook):
        assert cell.outputs == [] and cell.execution_count is None, cell.source[:80]
    # nbformat.read adds missing ids silently: read the file itself
    raw = json.loads((ROOT / "notebooks" / f"{chapter}.ipynb").read_text(encoding="utf-8"))
    ids = [cell.get("id") for cell in raw["cells"]]
    assert None not in ids and len(set(ids)) == len(ids), "cells without an id or with repeated ids"


def test_opens_with_a_title_and_a_why(notebook):
    first = notebook.cells[0]
    assert first.cell_type == "markdown"
    title, _, why = first.source.partition("\n")
    assert title.startswith("# ") and len(title) > 4
    sentences = re.findall(r"[.!?](?:\s|$)", why.strip())
    assert len(sentences) >= 2, "the opening should say why in about two sentences"


def test_states_objectives_and_time_before_the_code(notebook):
    second = notebook.cells[1]
    assert second.cell_type == "markdown" and "## Learning objectives" in second.source
    objectives = re.findall(r"^\d+\. ", second.source, flags=re.MULTILINE)
    assert 3 <= len(objectives) <= 5, f"3-5 learning objectives, found {len(objectives)}"
    assert re.search(r"\*\*Estimated time\*\*: about \d+ minutes", second.source)


def test_imports_only_in_the_first_code_cell_which_sets_up_plotly(notebook):
    first, *rest = code_cells(notebook)
    assert "from dmf2mel import" in first.source and "viz.setup_notebook()" in first.source
    for cell in rest:
        tree = ast.parse(cell.source)
        assert not any(isinstance(node, (ast.Import, ast.ImportFrom)) for node in ast.walk(tree)), cell.source[:80]


def test_cells_are_short_lines_fit_and_functions_small(notebook):
    for cell in code_cells(notebook):
        assert len(cell.source.splitlines()) <= MAX_CELL_LINES, cell.source[:80]
        limit = MAX_SOLUTION_LINE_CHARS if SOLUTION_TAG in tags(cell) else MAX_LINE_CHARS
        long = [line for line in cell.source.splitlines() if len(line) > limit]
        assert not long, f"lines over {limit} characters: {long}"
        for node in ast.walk(ast.parse(cell.source)):
            if isinstance(node, ast.FunctionDef):
                assert node.end_lineno - node.lineno <= MAX_FUNCTION_LINES, f"function {node.name} is too long"


def test_ends_with_a_summary_and_exercises_with_solutions(chapter, notebook):
    headings = [(i, cell.source) for i, cell in enumerate(notebook.cells) if cell.cell_type == "markdown"]
    summary = next(i for i, source in headings if source.startswith("## Summary"))
    exercises = next(i for i, source in headings if source.startswith("## Exercises"))
    assert summary < exercises, "the summary comes before the exercises"
    assert len(re.findall(r"^- ", notebook.cells[summary].source, flags=re.MULTILINE)) >= 3
    tail = notebook.cells[exercises:]
    assert not any("## " in cell.source for cell in tail[1:] if cell.cell_type == "markdown"), (
        "the exercises close the chapter"
    )
    numbers = [
        match
        for cell in tail
        if cell.cell_type == "markdown" and SOLUTION_TAG not in tags(cell)
        for match in EXERCISE.findall(cell.source)
    ]
    assert 4 <= len(numbers) <= 6, f"4-6 exercises, found {len(numbers)}"
    assert {n for n, _ in numbers} == {str(int(chapter[:2]))}, "exercises are numbered <chapter>.<n>"
    assert [int(k) for _, k in numbers] == list(range(1, len(numbers) + 1))
    kinds = " ".join(cell.source for cell in tail if cell.cell_type == "markdown")
    for kind in ("*(reasoning)*", "*(experiment)*"):
        assert kind in kinds, f"no {kind} exercise"
    # every exercise is followed by its solution before the next exercise starts; a titled solution carries the
    # number of the exercise it answers (the instructors' key lists them by that title)
    pending = latest = None
    for cell in tail:
        match = EXERCISE.search(cell.source) if cell.cell_type == "markdown" else None
        if match and SOLUTION_TAG not in tags(cell):
            assert pending is None, f"exercise {pending} has no solution"
            pending = latest = f"{match.group(1)}.{match.group(2)}"
        elif SOLUTION_TAG in tags(cell):
            for title in SOLUTION_TITLE.findall(cell.source):
                assert title == latest, f"the solution of exercise {latest} is titled 'Solution {title}'"
            pending = None
    assert pending is None, f"exercise {pending} has no solution"


def test_solutions_are_hidden_in_the_html(notebook):
    for cell in notebook.cells:
        if SOLUTION_TAG not in tags(cell):
            continue
        if cell.cell_type == "code" and "exercises.check_" in cell.source:
            # an implement-it solution: its code is hidden, its verdict ("✓ ...") shows
            assert {"hide-input", "hide-cell"} & set(tags(cell)), f"solution code shows in the HTML: {cell.source[:60]}"
        elif cell.cell_type == "code":
            # an experiment's result is the answer: hidden with the code
            assert "hide-cell" in tags(cell), f"an experiment's solution shows in the HTML: {cell.source[:60]}"
        else:
            assert ":class: dropdown" in cell.source, f"solution text shows in the HTML: {cell.source[:60]}"


def test_implement_it_exercises_are_checked_by_the_package(chapter, notebook):
    if chapter[:2] not in IMPLEMENT_IT:
        pytest.skip("no implement-it exercise in this chapter")
    scaffolds = [
        cell for cell in code_cells(notebook) if "exercises.check_" in cell.source and SOLUTION_TAG not in tags(cell)
    ]
    solutions = [
        cell for cell in code_cells(notebook) if "exercises.check_" in cell.source and SOLUTION_TAG in tags(cell)
    ]
    assert scaffolds and all("..." in cell.source for cell in scaffolds), "a scaffold with `...` to fill in"
    assert solutions and all(".assert_passed()" in cell.source for cell in solutions), (
        "a solution that fails the build when it is wrong"
    )


def test_citations_exist_in_the_bibliography(chapter, notebook):
    keys = {
        key.strip()
        for cell in notebook.cells
        if cell.cell_type == "markdown"
        for group in CITATION.findall(cell.source)
        for key in group.split(",")
    }
    if chapter[:2] in MODEL_CHAPTERS:
        assert keys, "a model chapter should cite its sources"
    assert keys <= bibliography_keys(), f"unknown citation keys {sorted(keys - bibliography_keys())}"


def shown_sources(notebook) -> list[tuple[dict, str]]:
    """(cell, dotted name) of every object a ``viz.show_source(...)`` cell shows."""
    shown = []
    for cell in code_cells(notebook):
        for node in ast.walk(ast.parse(cell.source)):
            if isinstance(node, ast.Call) and ast.unparse(node.func) == "viz.show_source":
                shown += [(cell, ast.unparse(arg)) for arg in node.args]
    return shown


def test_model_chapters_show_the_package_code_they_teach(chapter, notebook):
    """The package's code is shown by ``viz.show_source`` (read from the source when the cell runs), which renders in
    JupyterLab and in the book alike; a Sphinx ``literalinclude`` would show in JupyterLab as unrendered text."""
    markdown = "\n".join(cell.source for cell in notebook.cells if cell.cell_type == "markdown")
    assert "{literalinclude}" not in markdown, "use a viz.show_source cell: JupyterLab cannot render literalinclude"
    shown = shown_sources(notebook)
    if chapter[:2] not in MODEL_CHAPTERS:
        return
    assert shown, "a model chapter shows the package's implementation (a viz.show_source cell)"
    namespace: dict = {}
    imports = [n for n in ast.parse(code_cells(notebook)[0].source).body if isinstance(n, (ast.Import, ast.ImportFrom))]
    exec(compile(ast.Module(imports, []), "imports", "exec"), namespace)
    for cell, name in shown:
        assert "remove-input" in tags(cell), "the book shows the code, not the call that shows it"
        obj = eval(name, namespace)  # a dotted name from the chapter's own imports
        assert getattr(obj, "__module__", "").startswith("dmf2mel."), f"{name} is not the package's code"


UNLINKED_CHAPTER = re.compile(r"(?<!\[)\b[Cc]hapters? \d+\b(?!\]\()")


def test_chapter_mentions_are_links(notebook):
    for cell in notebook.cells:
        if cell.cell_type != "markdown":
            continue
        prose = re.sub(r"`[^`]*`", "", cell.source)  # code spans may say anything
        assert not UNLINKED_CHAPTER.findall(prose), f"link the chapter: {UNLINKED_CHAPTER.findall(prose)}"
        for target in re.findall(r"\]\(([^)#]+\.ipynb)\)", cell.source):
            assert (ROOT / "notebooks" / target).is_file(), f"link to a missing chapter {target}"


def test_every_link_to_a_chapter_names_its_number():
    """'[chapter 6](../notebooks/04_linear_models.ipynb)' sends a reader to chapter 4 while saying 6."""
    link = re.compile(r"\[[Cc]hapters? (\d+)\]\((?:\.\./notebooks/)?(\d\d)_[^)]*\.ipynb[^)]*\)")
    pages = [*(ROOT / "notebooks").glob("*.ipynb"), *(ROOT / "book").glob("*.md"), ROOT / "README.md"]
    wrong = [
        f"{page.name}: {match.group(0)}"
        for page in pages
        for match in link.finditer(page.read_text(encoding="utf-8"))
        if int(match.group(1)) != int(match.group(2))
    ]
    assert not wrong, wrong


def test_the_intro_lists_every_chapter():
    intro = (ROOT / "book" / "intro.md").read_text()
    for chapter in CHAPTERS:
        assert f"](../notebooks/{chapter}.ipynb)" in intro, f"the intro does not list {chapter}"
    assert "as they are written" not in intro


TERM = re.compile(r"\{term\}`(?:[^`<]*<)?([^`>]+)>?`")


def glossary_terms() -> set[str]:
    glossary = (ROOT / "book" / "glossary.md").read_text()
    block = glossary.split("```{glossary}", 1)[1].split("```", 1)[0]
    return set(re.findall(r"^(\S[^\n]*)$", block, flags=re.MULTILINE))


def test_chapters_link_the_glossary_and_its_terms_exist(notebook):
    used = {
        term.strip() for cell in notebook.cells if cell.cell_type == "markdown" for term in TERM.findall(cell.source)
    }
    assert used, "link the chapter's key terms to the glossary ({term}`...`)"
    assert used <= glossary_terms(), f"not in the glossary: {sorted(used - glossary_terms())}"


def test_module_chapters_open_with_the_whole_model(chapter, notebook):
    if chapter[:2] not in ARCHITECTURE_HIGHLIGHT:
        pytest.skip("not a module chapter")
    call = ast.parse(code_cells(notebook)[1].source).body[0].value  # the cell right after the imports
    assert isinstance(call, ast.Call) and ast.unparse(call.func) == "viz.architecture", "the model's figure first"
    highlight = {kw.arg: ast.literal_eval(kw.value) for kw in call.keywords}.get("highlight")
    assert highlight == ARCHITECTURE_HIGHLIGHT[chapter[:2]]


QUICK_CHECK_CALL = "viz.quiz.quick_check"
QUESTION_CALLS = ("viz.quiz.choice", "viz.quiz.numeric")


def test_a_quick_check_of_two_to_four_questions_leads_into_the_exercises(chapter, notebook):
    """Between the summary and the exercises: a "## Quick check" heading, then one cell that calls
    ``viz.quiz.quick_check`` with 2-4 questions. Its code states the answers, so the book shows only its output
    (``remove-input``) and JupyterLab opens it collapsed; the student edition keeps it (it is not a solution)."""
    number = chapter[:2]
    ids = [cell.get("id") for cell in notebook.cells]
    assert f"ch{number}-quick-check-md" in ids and f"ch{number}-quick-check" in ids, "no quick check"
    at = ids.index(f"ch{number}-quick-check-md")
    heading, code, after = notebook.cells[at : at + 3]
    assert heading.cell_type == "markdown" and heading.source.startswith("## Quick check")
    assert after.cell_type == "markdown" and after.source.startswith("## Exercises"), "the exercises follow it"
    summary = next(i for i, cell in enumerate(notebook.cells) if cell.source.startswith("## Summary"))
    assert summary < at, "the quick check comes after the summary"
    assert code.cell_type == "code" and code.id == f"ch{number}-quick-check"
    assert "remove-input" in tags(code) and SOLUTION_TAG not in tags(code)
    assert code.metadata.get("jupyter", {}).get("source_hidden") is True, "JupyterLab shows the answers"
    (statement,) = ast.parse(code.source).body
    call = statement.value
    assert isinstance(call, ast.Call) and ast.unparse(call.func) == QUICK_CHECK_CALL, "one quick_check(...) call"
    questions = [ast.unparse(arg.func) for arg in call.args if isinstance(arg, ast.Call)]
    assert len(questions) == len(call.args) and set(questions) <= set(QUESTION_CALLS), questions
    assert 2 <= len(questions) <= 4, f"2-4 questions, found {len(questions)}"


def _quoted(value: float, digits: int = 3) -> str:
    return f"{value:+.{digits}f}"


def _interval(comparison: dict, flip: bool = False) -> str:
    """A paired comparison as the prose types it: ``$+0.012$ $[+0.004, +0.030]$`` (``flip``: of the reverse
    difference, for comparisons stored as other minus DMF2Mel)."""
    sign = -1 if flip else 1
    low, high = sorted((sign * comparison["ci_low"], sign * comparison["ci_high"]))
    return f"${_quoted(sign * comparison['difference'])}$ $[{_quoted(low)}, {_quoted(high)}]$"


def _percent(ratio: float) -> str:
    """A ratio as a gain in percent, as the prose types it (a negative one in math, for its minus sign)."""
    value = round(100 * (ratio - 1))
    return f"{value:d} %" if value >= 0 else f"${value:d}$ %"


def _chapter_12_prose(heading: str) -> str:
    """The markdown cell of chapter 12 that starts with ``heading``, its whitespace collapsed."""
    return chapter_prose("12_evaluation.ipynb", heading)


#: How chapter 12 names each ablation when it states what the ablation scored.
ABLATION_SENTENCES = {
    "dmf2mel-single-head": "With the official single output channel it scores",
    "dmf2mel-no-mamba": "Without the BiMamba it scores",
    "dmf2mel-no-splinemap": "Without the SplineMap attention it scores",
    "dmf2mel-no-hams": "Without HAMS-Net it scores",
    "dmf2mel-no-dcfam": "Without DC-FAM it scores",
}
#: The words chapter 12 puts to each verdict on an ablation (the report's verdict of the ablation against DMF2Mel).
ABLATION_VERDICTS = {
    "below": "DMF2Mel beats it",
    "above": "it beats DMF2Mel",
    "no detectable difference": "no detectable difference",
}


def test_the_ranking_prose_of_chapter_12_quotes_the_committed_report():
    """Chapter 12 explains the ranking in written prose (kept in the student edition), so its numbers are typed: each
    must be the teaching quality report's, and each verdict it states in words the report's. A rerun that moves them
    fails here until the prose is rewritten."""
    results = ROOT / "benchmarks" / "results"
    report = json.loads((results / "quality_teaching.json").read_text())
    earlier = json.loads((results / "quality_teaching_40_epochs" / "quality_teaching.json").read_text())
    assert (report["budget"]["epochs"], earlier["budget"]["epochs"]) == (80, 40)
    rows = {row["model"]: row for row in report["rows"]}
    assert report["budget"]["seeds"] == [0, 1, 2] and all(len(row["known"]["per_seed"]) == 3 for row in rows.values())
    known, unknown = (report["comparisons"][part]["vs_dmf2mel"] for part in ("known", "unknown"))
    prose = _chapter_12_prose("## Why DMF2Mel ranked where it did")

    def r(model, part="known"):
        return rows[model][part]["paper_r"]

    def versus_linear(part, of=report):  # the report's own DMF2Mel - linear comparison
        return _interval(of["comparisons"][part]["dmf2mel_vs_linear"])

    seeds = [s["paper_r"] for s in rows["dmf2mel"]["known"]["per_seed"]]
    vlaai_unknown, linear_unknown = unknown["vlaai"], report["comparisons"]["unknown"]["dmf2mel_vs_linear"]
    # the verdicts the prose states in words
    assert all(known[model]["verdict"] == "below" for model in ("vlaai", "linear", "cnn")), "DMF2Mel no longer leads"
    assert vlaai_unknown["verdict"] == "above", "VLAAI no longer beats DMF2Mel on the held-out subjects"
    assert unknown["cnn"]["verdict"] == "below", "DMF2Mel no longer beats the CNN on the held-out subjects"
    assert linear_unknown["verdict"] == "no detectable difference", "DMF2Mel vs linear, held out: verdict changed"
    assert (
        earlier["comparisons"]["unknown"]["dmf2mel_vs_linear"]["verdict"] == "above"
    )  # "which forty epochs had shown"
    vlaai_r, dmf2mel_r = held_out_by_subject(rows["vlaai"]), held_out_by_subject(rows["dmf2mel"])
    assert len(vlaai_r) == 6 and all(vlaai_r[s] > dmf2mel_r[s] for s in vlaai_r)  # "all six ... score higher"
    assert vlaai_unknown["p_value"] == pytest.approx(2 / 2**6)  # "the smallest it can give over six listeners"
    expected = [
        "every model trained for eighty epochs at a learning rate chosen on validation",
        f"DMF2Mel reaches {r('dmf2mel'):.3f}",
        f"within {max(seeds) - min(seeds):.3f} of one another",
        f"above VLAAI ({r('vlaai'):.3f}), the linear decoder ({r('linear'):.3f}) and the CNN ({r('cnn'):.3f})",
        f"DMF2Mel beats VLAAI by {_interval(known['vlaai'], flip=True)}",
        f"the linear decoder by {versus_linear('known')}",
        f"falls to {r('dmf2mel', 'unknown'):.3f}, no detectable difference from the linear decoder "
        f"({versus_linear('unknown')}, $p = {linear_unknown['p_value']:.3f}$)",
        f"below VLAAI ({r('vlaai', 'unknown'):.3f}), which leads it by {_interval(vlaai_unknown)}",
        "all six held-out subjects score higher with VLAAI",
        f"the sign-flip test gives $p = {vlaai_unknown['p_value']:.3f}$",
        f"DMF2Mel still beats the CNN there ({_interval(unknown['cnn'], flip=True)}, "
        f"$p = {unknown['cnn']['p_value']:.3f}$)",
        f"which forty epochs had shown ({versus_linear('unknown', earlier)})",
        f"linear decoder is {_percent(r('dmf2mel') / r('linear'))} on known subjects and "
        f"{_percent(r('dmf2mel', 'unknown') / r('linear', 'unknown'))} on held-out ones",
        f"over VLAAI {_percent(r('dmf2mel') / r('vlaai'))} and "
        f"{_percent(r('dmf2mel', 'unknown') / r('vlaai', 'unknown'))}",
    ]
    # "comes out at the paper's 48 % ... a coincidence": only while the margin is the paper's figure
    coincidence = "the known-subject margin over the linear decoder comes out at the paper's 48 % is a coincidence"
    assert (coincidence in prose) == (_percent(r("dmf2mel") / r("linear")) == "48 %")
    # every ablation: its scores, DMF2Mel minus it on both groups, and the verdicts in words
    for model, opening in ABLATION_SENTENCES.items():
        words = {part: ABLATION_VERDICTS[c[model]["verdict"]] for part, c in (("known", known), ("unknown", unknown))}
        verdicts = (
            f"{words['known']} on either group"
            if words["known"] == words["unknown"]
            else f"{words['known']} on the known subjects, {words['unknown']} on the held-out ones"
        )
        expected.append(
            f"{opening} {r(model):.3f} and {r(model, 'unknown'):.3f} (DMF2Mel {_interval(known[model], flip=True)} "
            f"and {_interval(unknown[model], flip=True)}, $p = {unknown[model]['p_value']:.3f}$ on the held-out ones): "
            f"{verdicts}."
        )
    missing = [text for text in expected if text not in prose]
    assert not missing, f"chapter 12's ranking prose no longer quotes the report: {missing}"
    # the summary of the ablations, claim by claim
    verdict = {(model, part): c[model]["verdict"] for model in ABLATION_SENTENCES for part, c in
               (("known", known), ("unknown", unknown))}  # fmt: skip
    claims = {
        "the ten-band head and the BiMamba pay for themselves on the listeners the model knows": all(
            verdict[model, "known"] == "below" for model in ("dmf2mel-single-head", "dmf2mel-no-mamba")
        ),
        "while HAMS-Net, DC-FAM and the SplineMap attention show no detectable effect on either group": all(
            verdict[model, part] == "no detectable difference"
            for model in ("dmf2mel-no-hams", "dmf2mel-no-dcfam", "dmf2mel-no-splinemap")
            for part in ("known", "unknown")
        ),
        # "the sign-flip test alone would call the loss ... but the intervals, which also resample the seeds, include
        # zero"
        f"($p = {known['dmf2mel-no-dcfam']['p_value']:.3f}$ and $p = {known['dmf2mel-no-splinemap']['p_value']:.3f}$)": all(
            known[model]["p_value"] < 0.05 and known[model]["ci_low"] < 0 < known[model]["ci_high"]
            for model in ("dmf2mel-no-dcfam", "dmf2mel-no-splinemap")
        ),
        "On new listeners no ablation differs detectably from the full model": all(
            verdict[model, "unknown"] == "no detectable difference" for model in ABLATION_SENTENCES
        ),
        "four of the five score higher than it": sum(
            r(model, "unknown") > r("dmf2mel", "unknown") for model in ABLATION_SENTENCES
        )
        == 4,
    }
    assert all(claim in prose for claim in claims), [claim for claim in claims if claim not in prose]
    assert all(claims.values()), [claim for claim, holds in claims.items() if not holds]


def test_the_sparrkulee_prose_of_chapter_12_quotes_the_committed_report():
    """The paragraph on the harder corpus types the sparrkulee report's numbers and verdicts: each must be the
    committed report's, so a rerun that moves them fails here until the prose is rewritten."""
    report = json.loads((ROOT / "benchmarks" / "results" / "quality_sparrkulee.json").read_text())
    rows = {row["model"]: row for row in report["rows"]}
    prose = _chapter_12_prose("## Why DMF2Mel ranked where it did")

    def r(model, part):
        return rows[model][part]["paper_r"]

    def versus_linear(part):
        c = report["comparisons"][part]["dmf2mel_vs_linear"]
        assert c["verdict"] == "no detectable difference", f"sparrkulee {part}: DMF2Mel vs linear is now {c['verdict']}"
        return _interval(c)

    for part in ("known", "unknown"):
        assert report["comparisons"][part]["vs_dmf2mel"]["cnn"]["verdict"] == "below", "DMF2Mel no longer beats the CNN"
        vs = report["comparisons"][part]["vs_dmf2mel"]
        for ablation in ("vlaai", "dmf2mel-no-mamba", "dmf2mel-no-hams", "dmf2mel-no-dcfam", "dmf2mel-no-splinemap"):
            assert vs[ablation]["verdict"] == "no detectable difference", f"{ablation} no longer scores the same"
        assert vs["dmf2mel-single-head"]["verdict"] == "below", "the single head no longer costs DMF2Mel"
    vlaai = {part: report["comparisons"][part]["vs_dmf2mel"]["vlaai"] for part in ("known", "unknown")}
    # "every one of the six held-out subjects scores higher with DMF2Mel" (means over the seeds)
    by_subject = {model: held_out_by_subject(rows[model]) for model in ("dmf2mel", "vlaai")}
    assert len(by_subject["vlaai"]) == 6
    assert all(by_subject["dmf2mel"][s] > by_subject["vlaai"][s] for s in by_subject["vlaai"])
    assert vlaai["unknown"]["p_value"] < 0.05 and vlaai["unknown"]["ci_low"] < 0 < vlaai["unknown"]["ci_high"]
    expected = [
        f"DMF2Mel reaches {r('dmf2mel', 'known'):.3f} on known subjects and the linear decoder "
        f"{r('linear', 'known'):.3f}, no detectable difference ({versus_linear('known')})",
        f"on held-out subjects DMF2Mel reaches {r('dmf2mel', 'unknown'):.3f} and the linear decoder "
        f"{r('linear', 'unknown'):.3f}, no detectable difference either ({versus_linear('unknown')})",
        f"Without the BiMamba DMF2Mel scores the same ({r('dmf2mel-no-mamba', 'known'):.3f} and "
        f"{r('dmf2mel-no-mamba', 'unknown'):.3f})",
        f"it still beats the CNN ({r('cnn', 'known'):.3f} and {r('cnn', 'unknown'):.3f})",
        f"VLAAI reaches {r('vlaai', 'known'):.3f} and {r('vlaai', 'unknown'):.3f}, no detectable difference from "
        f"DMF2Mel on either group (DMF2Mel {_interval(vlaai['known'], flip=True)} and "
        f"{_interval(vlaai['unknown'], flip=True)})",
        f"the sign-flip test alone would call it ($p = {vlaai['unknown']['p_value']:.3f}$)",
        f"or without the SplineMap attention ({r('dmf2mel-no-splinemap', 'known'):.3f} and "
        f"{r('dmf2mel-no-splinemap', 'unknown'):.3f})",
        f"and {_percent(r('dmf2mel', 'known') / r('vlaai', 'known'))} and "
        f"{_percent(r('dmf2mel', 'unknown') / r('vlaai', 'unknown'))} over VLAAI, none of them detectable",
        f"channel costs it measurably ({r('dmf2mel-single-head', 'known'):.3f} and "
        f"{r('dmf2mel-single-head', 'unknown'):.3f}, both intervals excluding zero)",
        f"without HAMS-Net ({r('dmf2mel-no-hams', 'known'):.3f} and {r('dmf2mel-no-hams', 'unknown'):.3f})",
        f"without DC-FAM ({r('dmf2mel-no-dcfam', 'known'):.3f} and {r('dmf2mel-no-dcfam', 'unknown'):.3f})",
        f"on the `sparrkulee` corpus it is {_percent(r('dmf2mel', 'known') / r('linear', 'known'))} and "
        f"{_percent(r('dmf2mel', 'unknown') / r('linear', 'unknown'))} over the linear decoder",
        "three seeds each at the learning rates of that corpus's own sweep",
    ]
    assert report["budget"]["seeds"] == [0, 1, 2] and report.get("learning_rates")
    missing = [text for text in expected if text not in prose]
    assert not missing, f"chapter 12's sparrkulee prose no longer quotes the report: {missing}"


def test_the_ceilings_prose_of_chapter_12_quotes_the_committed_study():
    """The ceilings prose types its numbers and its claims (the noise-free scores more than double on known subjects;
    twice and four times the subjects, paired on the same listeners, help only DMF2Mel detectably, on known
    subjects, while four times costs the linear decoder a little there): each must hold in the committed study, or a
    rerun that changes them fails here until the prose is rewritten."""
    study = json.loads((ROOT / "benchmarks" / "results" / "ceilings_teaching.json").read_text())
    r = {
        (run["model"], run["condition"], part): run[part]["paper_r"]
        for run in study["runs"]
        for part in ("known", "unknown")
    }
    prose = _chapter_12_prose("### What limits the scores")
    rec, clean, more, most = "recorded", "noise-free", "2 x subjects", "4 x subjects"
    for model in ("linear", "dmf2mel"):
        assert r[model, clean, "known"] > 2 * r[model, rec, "known"], "the noise-free scores no longer double"
    lead = {c: r["dmf2mel", c, "known"] - r["linear", c, "known"] for c in (rec, clean)}
    # twice the subjects, paired with the recorded run on the same subjects: the verdicts the prose states in words
    paired = {(run["model"], run["condition"], part): run["vs_recorded"][part] for run in study["runs"]
              if run["condition"] in (more, most) for part in ("known", "unknown")}  # fmt: skip
    verdicts = {key: c["verdict"] for key, c in paired.items()}
    assert verdicts == {
        ("linear", more, "known"): "no detectable difference",
        ("linear", more, "unknown"): "no detectable difference",
        ("dmf2mel", more, "known"): "above",
        ("dmf2mel", more, "unknown"): "no detectable difference",
        ("linear", most, "known"): "below",
        ("linear", most, "unknown"): "no detectable difference",
        ("dmf2mel", most, "known"): "above",
        ("dmf2mel", most, "unknown"): "no detectable difference",
    }, "the verdicts of more subjects changed"
    for key in (("linear", more, "unknown"), ("dmf2mel", most, "unknown")):  # "the interval clears zero"
        assert paired[key]["ci_low"] > 0, f"the held-out interval of {key} no longer clears 0"
    assert all(c["n_subjects"] == {"known": 14, "unknown": 6}[part] for (_, _, part), c in paired.items())
    gains = {c: r["dmf2mel", c, "unknown"] - r["dmf2mel", rec, "unknown"] for c in (more, most)}
    assert gains[most] == max(gains[most], gains[more], *(r["linear", c, "unknown"] - r["linear", rec, "unknown"]
                                                        for c in (more, most))), "no longer the largest gain"  # fmt: skip

    known_gain = {c: paired["dmf2mel", c, "known"]["difference"] for c in (more, most)}
    assert known_gain[most] <= known_gain[more], "four times the subjects now gain DMF2Mel more than twice"
    assert max(gains.values()) < (r["dmf2mel", clean, "unknown"] - r["dmf2mel", rec, "unknown"]) / 4  # "far less"

    def change(model, part, condition=more):
        return _interval(paired[model, condition, part])

    expected = [
        f"the linear decoder reaches {r['linear', clean, 'known']:.3f} and DMF2Mel {r['dmf2mel', clean, 'known']:.3f}",
        f"grows from {lead[rec]:.3f} to {lead[clean]:.3f}",
        f"rises too, to {r['dmf2mel', clean, 'unknown']:.3f}",
        f"falls to {r['linear', clean, 'unknown']:.3f} (from {r['linear', rec, 'unknown']:.3f})",
        f"The linear decoder scores the same with twice the listeners: {change('linear', 'known')} on the "
        f"benchmark's fourteen known subjects and {change('linear', 'unknown')} on the held-out ones",
        f"does not agree ($p = {paired['linear', more, 'unknown']['p_value']:.3f}$)",
        f"DMF2Mel gains {change('dmf2mel', 'known')} on the known subjects",
        f"nothing measurable on the held-out ones ({change('dmf2mel', 'unknown')})",
        f"lower on the known subjects, {change('linear', 'known', most)} "
        f"($p = {paired['linear', most, 'known']['p_value']:.3f}$)",
        f"it scores the same ({change('linear', 'unknown', most)})",
        f"DMF2Mel gains {change('dmf2mel', 'known', most)} on the known",
        f"{change('dmf2mel', 'unknown', most)} on the held-out ones: the interval clears zero, the sign-flip test "
        f"over six listeners does not ($p = {paired['dmf2mel', most, 'unknown']['p_value']:.3f}$)",
    ]
    path = study["ridge_path"]
    (chosen,) = [row for row in path[clean] if row["chosen"]]
    best_held_out = max(path[clean], key=lambda row: row["unknown_r"])
    assert chosen["alpha"] == min(row["alpha"] for row in path[clean]), "validation no longer picks the weakest"
    flat = [row for row in path[rec] if row["alpha"] <= 0.0316]
    for part in ("known_r", "unknown_r"):  # "every penalty up to 0.03 scores the same" (to 3 decimals)
        assert len({f"{row[part]:.3f}" for row in flat}) == 1, f"the recorded EEG's {part} moves below 0.03"
    expected += [
        f"the weakest penalty of the grid, {chosen['alpha']:g}, which scores {chosen['val_r']:.3f} on their "
        f"validation parts and {chosen['unknown_r']:.3f} on held-out subjects",
        f"a penalty of {best_held_out['alpha']:.3g} would have given the held-out subjects "
        f"{best_held_out['unknown_r']:.3f}",
        f"The {best_held_out['unknown_r']:.3f} is a diagnosis",
    ]
    missing = [text for text in expected if text not in prose]
    assert not missing, f"chapter 12's ceilings prose no longer quotes the study: {missing}"
