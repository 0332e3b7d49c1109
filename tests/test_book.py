"""The book builds with warnings and cell errors fatal, has every page of its table of contents, and loads
nothing from a CDN."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser

import pytest
import yaml

from book_build import ROOT, ensure_built, toc_files

pytestmark = pytest.mark.slow

# Hosts that serve scripts to web pages; nothing in the book may load from them (or from any other host).
# The limit per cell of a chapter that may train the book's run: 12x its quiet training time on two cores.
TRAINING_CELL_LIMIT_S = 1800
CDN_HINTS = ("cdn.", "jsdelivr", "unpkg", "cdnjs", "cloudflare", "googleapis", "plot.ly", "mathjax.org")


class ResourceCollector(HTMLParser):
    """Collects the URLs a page loads by itself: script src, stylesheet / preload href, img src."""

    def __init__(self):
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag in ("script", "img", "iframe", "audio", "source") and attrs.get("src"):
            self.urls.append(attrs["src"])
        if tag == "link" and attrs.get("href") and attrs.get("rel") in ("stylesheet", "preload", "modulepreload"):
            self.urls.append(attrs["href"])


def loaded_urls(html: str) -> list[str]:
    parser = ResourceCollector()
    parser.feed(html)
    return parser.urls


@pytest.fixture(scope="module")
def html_dir():
    return ensure_built()


def pages(html_dir):
    """The book's pages (not the theme's template fragments under _static/)."""
    return [
        page for page in html_dir.rglob("*.html") if page.relative_to(html_dir).parts[0] not in ("_static", "_sources")
    ]


def test_every_toc_page_is_built(html_dir):
    missing = [f for f in toc_files() if not (html_dir / f"{f}.html").is_file()]
    assert not missing, f"toc pages without HTML: {missing}"
    assert (html_dir / "index.html").is_file()


def test_every_chapter_is_a_notebook_importing_dmf2mel_with_outputs_stripped():
    import nbformat

    chapters = [f for f in toc_files() if f.startswith("notebooks/")]
    assert chapters, "the toc lists no chapter notebook"
    for chapter in chapters:
        notebook = nbformat.read(ROOT / f"{chapter}.ipynb", as_version=4)
        code = [cell for cell in notebook.cells if cell.cell_type == "code"]
        assert any("dmf2mel" in cell.source for cell in code), f"{chapter} does not import dmf2mel"
        assert any("setup_notebook()" in cell.source for cell in code), f"{chapter} does not call viz.setup_notebook()"
        dirty = [i for i, cell in enumerate(code) if cell.outputs or cell.execution_count is not None]
        assert not dirty, (
            f"{chapter}: code cells {dirty} have outputs or execution counts (strip them before committing)"
        )
        # nbformat 4.5 cells need unique ids (nbformat.read adds missing ones silently, so read the file itself)
        raw = json.loads((ROOT / f"{chapter}.ipynb").read_text(encoding="utf-8"))
        ids = [cell.get("id") for cell in raw["cells"]]
        assert None not in ids and len(set(ids)) == len(ids), f"{chapter}: cells without an id or with repeated ids"


def test_no_page_loads_anything_from_the_network(html_dir):
    offenders = {}
    for page in pages(html_dir):
        remote = [url for url in loaded_urls(page.read_text(errors="replace")) if re.match(r"^(https?:)?//", url)]
        if remote:
            offenders[str(page.relative_to(html_dir))] = remote
    assert not offenders, f"pages load remote resources: {offenders}"


def test_no_script_src_points_at_a_cdn(html_dir):
    # A narrower, explicit form of the test above, as the design states it.
    pattern = re.compile(r"<script[^>]*\bsrc\s*=\s*[\"']([^\"']+)[\"']", re.IGNORECASE)
    for page in pages(html_dir):
        for src in pattern.findall(page.read_text(errors="replace")):
            assert not any(hint in src.lower() for hint in CDN_HINTS), f"{page.name} loads {src}"


def test_local_scripts_exist(html_dir):
    # Every local script a page names must have been copied into the build (vendored MathJax, require.js, ...).
    for page in pages(html_dir):
        for url in loaded_urls(page.read_text(errors="replace")):
            if re.match(r"^(https?:|data:|//)", url):
                continue
            target = (page.parent / url.split("?")[0].split("#")[0]).resolve()
            assert target.is_file(), f"{page.relative_to(html_dir)} loads {url}, which is not in the build"


def test_chapters_show_executed_plotly_figures(html_dir):
    for chapter in (f for f in toc_files() if f.startswith("notebooks/")):
        html = (html_dir / f"{chapter}.html").read_text(errors="replace")
        # plotly.js is embedded once per page (by viz.setup_notebook) and figures were rendered.
        assert "plotly.js v" in html, f"{chapter}: plotly.js is not embedded"
        assert html.count('class="plotly-graph-div"') >= 1, f"{chapter}: no plotly figure in the page"
        assert "Traceback" not in html, f"{chapter}: a cell printed a traceback"


def test_references_page_lists_the_cited_works(html_dir):
    html = (html_dir / "book" / "references.html").read_text()
    assert "DMF2Mel" in html and "SparrKULee" in html
    # Citations in the intro link to the bibliography.
    intro = (html_dir / "book" / "intro.html").read_text()
    assert "references.html#id" in intro or 'href="references.html' in intro


WIDGET_STATE = re.compile(r'<script type="application/vnd.jupyter.widget-state\+json">(.*?)</script>', re.S)
MAX_PAGE_MB = 15  # plotly.js alone is ~5 MB per page; figures and saved widgets add the rest


def test_saved_widget_state_carries_no_widget_javascript(html_dir):
    import json

    for page in pages(html_dir):
        match = WIDGET_STATE.search(page.read_text(errors="replace"))
        if match is None:
            continue
        state = json.loads(match.group(1).replace("<\\/script>", "</script>"))
        heavy = [model_id for model_id, model in state["state"].items() if model.get("state", {}).get("_esm")]
        assert not heavy, f"{page.name}: saved widgets still carry their JavaScript source: {heavy}"


def test_pages_stay_small_enough_to_open(html_dir):
    for page in pages(html_dir):
        size_mb = page.stat().st_size / 1e6
        assert size_mb < MAX_PAGE_MB, f"{page.relative_to(html_dir)} is {size_mb:.1f} MB"


def _book_extension(name):
    import importlib
    import sys

    sys.path.insert(0, str(ROOT / "book" / "_ext"))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.pop(0)


def test_drop_anywidget_models_removes_them_and_what_refers_to_them():
    drop_anywidget_models = _book_extension("widget_state").drop_anywidget_models
    state = {
        "state": {
            "figure": {
                "model_module": "anywidget",
                "model_name": "AnyModel",
                "state": {"_esm": "plotly.js ...", "layout": "IPY_MODEL_layout"},
            },
            "box": {
                "model_module": "@jupyter-widgets/controls",
                "state": {"children": ["IPY_MODEL_slider", "IPY_MODEL_figure"]},
            },
            "app": {"model_module": "@jupyter-widgets/controls", "state": {"children": ["IPY_MODEL_box"]}},
            "slider": {
                "model_module": "@jupyter-widgets/controls",
                "state": {"value": 3, "layout": "IPY_MODEL_layout"},
            },
            "layout": {"model_module": "@jupyter-widgets/base", "state": {}},
            "progress": {"model_module": "@jupyter-widgets/controls", "state": {"value": 1.0}},
        }
    }
    assert drop_anywidget_models(state) == 3
    assert sorted(state["state"]) == ["layout", "progress", "slider"]


def test_each_inline_script_appears_once():
    from sphinx.builders.html._assets import _JavaScript

    unique_scripts = _book_extension("page_scripts").unique_scripts
    thebe = "const THEBE_JS_URL = 1"
    scripts = [
        _JavaScript(None, body=thebe),
        _JavaScript("a.js"),
        _JavaScript("", body=thebe),
        _JavaScript("a.js"),
        _JavaScript(None, body="other"),
    ]
    assert [(s.filename, s.attributes) for s in unique_scripts(scripts)] == [
        (None, {"body": thebe}),
        ("a.js", {}),
        (None, {"body": "other"}),
    ]


def test_pages_ship_no_duplicate_theme_or_thebe_script(html_dir):
    for page in pages(html_dir):
        html = page.read_text(errors="replace")
        assert html.count("const THEBE_JS_URL") <= 1, f"{page.name} declares THEBE_JS_URL twice"
        assert 'localStorage.getItem("mode") || ""' not in html, f"{page.name} has no default colour mode"


def test_cell_time_limits_match_what_the_cells_do():
    """Chapters that may train a run get the training limit; the others the short default of _config.yml."""
    config = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))
    default = config["execute"]["timeout"]
    assert default <= 600, "a hung ordinary cell must end the build within minutes"
    for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        notebook = json.loads(path.read_text(encoding="utf-8"))
        source = "".join("".join(cell["source"]) for cell in notebook["cells"] if cell["cell_type"] == "code")
        limit = notebook["metadata"].get("mystnb", {}).get("execution_timeout", default)
        if "book_run(" in source or "cached_run(" in source:
            assert limit >= TRAINING_CELL_LIMIT_S, f"{path.name} may train a run: limit {limit} s"
        else:
            assert limit == default, f"{path.name} trains nothing but has its own limit ({limit} s)"


def test_make_lab_disables_a_news_plugin_that_exists():
    """`make lab` (scripts/lab.py) turns off JupyterLab's news prompt by plugin id: the id must still exist in this
    JupyterLab, and the update check it switches off must still be a class of it."""
    import importlib.util
    import sys
    from pathlib import Path

    assert "scripts/lab.py notebooks" in (ROOT / "Makefile").read_text(encoding="utf-8")
    spec = importlib.util.spec_from_file_location("lab_script", ROOT / "scripts" / "lab.py")
    lab = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(lab)
    checker = next(option.split("=", 1)[1] for option in lab.LAB_OPTIONS if "check_for_updates_class" in option)
    module, name = checker.rsplit(".", 1)
    assert hasattr(importlib.import_module(module), name), checker
    static = Path(sys.prefix) / "share" / "jupyter" / "lab" / "static"
    bundles = list(static.glob("*.js"))
    if not bundles:
        pytest.skip(f"no JupyterLab bundles under {static}")
    assert any(lab.NEWS_PLUGIN in path.read_text(encoding="utf-8", errors="ignore") for path in bundles)


def test_lab_script_refuses_a_missing_folder(tmp_path):
    """A user error: one line naming what was expected and found, exit 2, JupyterLab not started."""
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "lab.py"), str(tmp_path / "nope")], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "is not a folder" in result.stderr, result.stderr
