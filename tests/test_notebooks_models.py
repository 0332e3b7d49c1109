"""The model chapters (04-08) follow the book's notebook rules; the book build (tests/test_book.py) executes them.

Checked without a kernel, in well under a second: outputs stripped, a title and a "why", imports only at the top,
``viz.setup_notebook()`` first, short cells, no long functions, a closing "Try it", and citations that exist.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
CHAPTERS = (
    "04_splinemap_attention_and_agkan",
    "05_dcfam",
    "06_hams_net",
    "07_convmamba_and_selective_scan",
    "08_assembled_model",
)
MAX_CELL_LINES = 15  # "short cells (about 10 lines)": the import cell and a few figure calls run a little longer
MAX_FUNCTION_LINES = 8  # anything longer belongs in the package, tested
CITATION = re.compile(r"\{cite\}`([^`]+)`")


def bibliography_keys() -> set[str]:
    return set(re.findall(r"^@\w+\{([^,]+),", (ROOT / "book" / "references.bib").read_text(), flags=re.MULTILINE))


@pytest.fixture(params=CHAPTERS)
def notebook(request):
    path = ROOT / "notebooks" / f"{request.param}.ipynb"
    assert path.is_file(), f"missing chapter {path}"
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    return nb


def code_cells(nb):
    return [cell for cell in nb.cells if cell.cell_type == "code"]


def test_outputs_are_stripped(notebook):
    for cell in code_cells(notebook):
        assert cell.outputs == [] and cell.execution_count is None, cell.source[:80]


def test_opens_with_a_title_and_a_why(notebook):
    first = notebook.cells[0]
    assert first.cell_type == "markdown"
    title, _, why = first.source.partition("\n")
    assert title.startswith("# ") and len(title) > 4
    sentences = re.findall(r"[.!?](?:\s|$)", why.strip())
    assert len(sentences) >= 2, "the opening should say why in about two sentences"


def test_imports_only_in_the_first_code_cell_which_sets_up_plotly(notebook):
    first, *rest = code_cells(notebook)
    assert "from dmf2mel import viz" in first.source and "viz.setup_notebook()" in first.source
    for cell in rest:
        tree = ast.parse(cell.source)
        assert not any(isinstance(node, (ast.Import, ast.ImportFrom)) for node in ast.walk(tree)), cell.source[:80]


def test_cells_are_short_and_functions_small(notebook):
    for cell in code_cells(notebook):
        assert len(cell.source.splitlines()) <= MAX_CELL_LINES, cell.source[:80]
        for node in ast.walk(ast.parse(cell.source)):
            if isinstance(node, ast.FunctionDef):
                assert node.end_lineno - node.lineno <= MAX_FUNCTION_LINES, f"function {node.name} is too long"


def test_ends_with_something_to_poke_at(notebook):
    last = notebook.cells[-1]
    assert last.cell_type == "markdown" and "## Try it" in last.source


def test_citations_exist_in_the_bibliography(notebook):
    keys = {key.strip() for cell in notebook.cells if cell.cell_type == "markdown"
            for group in CITATION.findall(cell.source) for key in group.split(",")}
    assert keys, "a model chapter should cite its sources"
    assert keys <= bibliography_keys(), f"unknown citation keys {sorted(keys - bibliography_keys())}"
