"""``make lab`` for a class: JupyterLab, started the way ``make lab`` starts it, runs the comparison explorer.

A notebook with a MyST Markdown cell (a glossary link and a folded solution, as the chapters write them) and the
explorer on small synthetic mels is opened in JupyterLab in Chromium, run from JupyterLab's
own Run menu, and its subject menu changed: the heatmap must then show exactly the newly chosen window (ipywidgets
and plotly's ``FigureWidget`` both render in this JupyterLab, and the kernel's callbacks reach the page). No news
prompt may appear, no page error may be raised, and the page may ask nothing of the network. The Markdown cell
must render (jupyterlab-myst) with its solution folded, and render again after a student edits it.

Drives Debian's Chromium (``/usr/bin/chromium``) through Playwright; never ``playwright install``.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import numpy as np
import pytest

from conftest import CHROMIUM, CHROMIUM_FLAGS

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
START_TIMEOUT_S = 180
TIMEOUT_MS = 180_000
SEED, WINDOW_SECONDS, SFREQ = 5, 5.0, 64
KEYS = (("sub-001", "story_a"), ("sub-002", "story_a"))
LENGTHS = (1280, 1000)
EXPLORER_CELL = f"""import numpy as np
from dmf2mel import viz

rng = np.random.default_rng({SEED})
targets = {{key: rng.random((n, 10)) for key, n in zip({KEYS!r}, {LENGTHS!r})}}
predictions = {{"noisy": {{key: mel + rng.random(mel.shape) for key, mel in targets.items()}}}}
viz.ComparisonExplorer(targets, predictions, sfreq={SFREQ}, window_seconds={WINDOW_SECONDS})"""
# The first value of each plotly trace on the page: a heatmap's z[0][0] (band 0, first frame), a line's y[0].
FIGURE_STATE_JS = """() => [...document.querySelectorAll('.jp-OutputArea .js-plotly-plot')].map(graph =>
    (graph.data || []).map(trace => trace.z ? trace.z[0][0] : (trace.y ? trace.y[0] : null)))"""
NEWS_PROMPT = "official Jupyter news"
# A Markdown cell's rendered text: jupyterlab-myst's, or JupyterLab's own renderer's (which shows MyST raw).
RENDERED = ".jp-MarkdownCell .myst, .jp-MarkdownCell .jp-RenderedMarkdown"
# A Markdown cell as the chapters write them (MyST: a glossary link, a solution folded away), which jupyterlab-myst
# renders; without it JupyterLab would show the colons and braces.
MYST_CELL = """**Exercise 0.1** What is a {term}`mel spectrogram`?

:::{admonition} Solution 0.1
:class: dropdown
The folded answer.
:::"""

# A chapter's quick check: its inline script must run in JupyterLab (the output of a cell the student ran is trusted).
QUIZ_CELL = """from dmf2mel import viz

viz.quiz.quick_check(
    viz.quiz.choice("Which?", ("right", "Because."), ("wrong", "A wrong hint."), shuffle=False),
    viz.quiz.numeric("How many?", 8 * 8, unit="samples", hint="Multiply."),
)"""

sync_api = pytest.importorskip(
    "playwright.sync_api", reason="playwright is not installed (pip install -r requirements.txt)"
)


def expected_first_values() -> dict[tuple[str, str], tuple[float, float]]:
    """What the explorer's true and predicted heatmaps show first (band 0, first frame) for each recording."""
    from dmf2mel.viz.mel import zscore_bands

    rng = np.random.default_rng(SEED)
    targets = {key: rng.random((n, 10)) for key, n in zip(KEYS, LENGTHS)}
    predicted = {key: mel + rng.random(mel.shape) for key, mel in targets.items()}
    window = int(round(WINDOW_SECONDS * SFREQ))
    return {
        key: (float(zscore_bands(targets[key][:window])[0, 0]), float(zscore_bands(predicted[key][:window])[0, 0]))
        for key in KEYS
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """JupyterLab on a free local port over a folder with the explorer notebook: (base URL, token)."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium)")
    folder = tmp_path_factory.mktemp("lab")
    notebook = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_markdown_cell(MYST_CELL), nbformat.v4.new_code_cell(EXPLORER_CELL)]
    )
    # the chapters' kernel (a notebook naming a kernel JupyterLab does not list would open a kernel picker)
    chapter = nbformat.read(sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))[0], as_version=4)
    notebook.metadata["kernelspec"] = chapter.metadata["kernelspec"]
    nbformat.write(notebook, folder / "explorer.ipynb")
    quiz = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(QUIZ_CELL)], metadata=notebook.metadata)
    nbformat.write(quiz, folder / "quiz.ipynb")
    port, token = free_port(), secrets.token_hex(16)
    settings = tmp_path_factory.mktemp("lab-settings")
    env = {
        **os.environ,
        "JUPYTER_RUNTIME_DIR": str(settings / "runtime"),
        "JUPYTERLAB_WORKSPACES_DIR": str(settings / "workspaces"),
    }
    log = (settings / "lab.log").open("w")
    process = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "scripts" / "lab.py"),
            str(folder),
            "--no-browser",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={port}",
            "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={token}",
        ],
        cwd=folder,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=5) as response:
                    json.load(response)
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    log.flush()
                    pytest.fail(f"JupyterLab did not start:\n{(settings / 'lab.log').read_text()[-3000:]}")
                time.sleep(1)
        yield base, token
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def wait_for_idle_kernel(page, base: str, token: str, notebook: str) -> None:
    """Until JupyterLab has started the notebook's kernel and the kernel is idle (JupyterLab's sessions API).

    When JupyterLab opens a notebook before it has listed the kernels it may ask which kernel to start, with the
    notebook's own kernel preselected: accept it, as a student would.
    """
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"{base}/api/sessions?token={token}", timeout=5) as response:
            sessions = json.load(response)
        if any(s["path"] == notebook and s["kernel"]["execution_state"] == "idle" for s in sessions):
            return
        accept = page.locator(".jp-Dialog .jp-mod-accept")
        if accept.count():
            accept.first.click()
        time.sleep(0.5)
    pytest.fail(f"JupyterLab started no idle kernel for {notebook} in {START_TIMEOUT_S} s: sessions {sessions}")


def test_make_lab_runs_the_explorer_and_its_menus_redraw_the_figures(lab):
    base, token = lab
    expected = expected_first_values()
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        page = context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        blocked, errors = [], []

        def route(route):
            if route.request.url.startswith((base, "data:", "blob:", "about:")):
                route.continue_()
            else:
                blocked.append(route.request.url)
                route.abort()

        context.route("**/*", route)
        page.on("pageerror", lambda error: errors.append(str(error)))
        try:
            page.goto(f"{base}/lab/tree/explorer.ipynb?token={token}")
            page.wait_for_selector(".jp-Notebook .jp-Cell")
            wait_for_idle_kernel(page, base, token, "explorer.ipynb")  # running a cell needs the kernel
            myst = page.locator(".jp-MarkdownCell").first
            myst.locator(".jp-InputPrompt").click()  # select the cell without touching its content
            page.keyboard.press("Shift+Enter")  # render it, as a student would (a new notebook may show it as source)
            page.wait_for_function(f"() => document.querySelector('{RENDERED}')?.innerText.includes('Solution')")
            shown = myst.inner_text()
            page.locator(".jp-CodeCell .jp-InputArea-editor").first.click()
            page.keyboard.press("Shift+Enter")  # run the cell, as a student would
            page.wait_for_function(f"() => ({FIGURE_STATE_JS})().length === 2 && ({FIGURE_STATE_JS})()[0].length")
            first = page.evaluate(FIGURE_STATE_JS)
            np.testing.assert_allclose(first[0][:2], expected[KEYS[0]], rtol=1e-6)

            page.locator(".jp-OutputArea .widget-dropdown select").nth(1).select_option(KEYS[1][0])  # subject
            page.wait_for_function(f"value => Math.abs(({FIGURE_STATE_JS})()[0][0] - value) > 1e-9", arg=first[0][0])
            second = page.evaluate(FIGURE_STATE_JS)
            np.testing.assert_allclose(second[0][:2], expected[KEYS[1]], rtol=1e-6)
            text = page.locator("body").inner_text()

            myst.dblclick()  # a student edits a Markdown cell and renders it again
            myst.locator(".cm-content").click()  # the cell's editor has the keyboard (not the notebook's commands)
            page.keyboard.press("ControlOrMeta+a")
            page.keyboard.type("Some **edited** text")
            page.keyboard.press("Shift+Enter")
            page.wait_for_function(
                "() => [...document.querySelectorAll('.jp-MarkdownCell strong')].some(b => b.textContent === 'edited')"
            )
        finally:
            context.close()
            browser.close()
    assert "Exercise 0.1" in shown and "Solution 0.1" in shown, shown
    assert not any(raw in shown for raw in (":::", "{term}", ":class:")), f"MyST not rendered: {shown!r}"
    assert "The folded answer" not in shown, "the solution is not folded away"
    assert NEWS_PROMPT not in text, "JupyterLab asked about its news feed"
    assert not errors, errors
    assert not blocked, f"the page asked the network for {blocked}"


def test_a_quick_check_answers_in_jupyterlab(lab):
    """The quiz's inline script runs in JupyterLab's output area: a wrong option shows its hint, a number is checked."""
    base, token = lab
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        page = context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        errors = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        try:
            # a workspace of its own: JupyterLab would otherwise restore the explorer notebook of the test before in
            # a hidden tab, whose widgets then fail to find their models ("[anywidget] Failed to initialize model")
            page.goto(f"{base}/lab/workspaces/quiz/tree/quiz.ipynb?token={token}")
            page.wait_for_selector(".jp-Notebook .jp-Cell")
            wait_for_idle_kernel(page, base, token, "quiz.ipynb")
            panels = page.locator(".jp-NotebookPanel").count()  # the quiz alone, nothing restored beside it
            page.locator(".jp-CodeCell .jp-InputArea-editor:visible").first.click()  # the visible notebook's cell
            page.keyboard.press("Shift+Enter")
            page.wait_for_selector(".jp-OutputArea .dmf2mel-quiz[data-ready=true]")
            quiz = page.locator(".jp-OutputArea .dmf2mel-quiz")
            quiz.get_by_role("button", name="B. wrong").click()
            hint = quiz.locator(".dmf2mel-quiz-feedback").first.inner_text()
            quiz.get_by_role("button", name="A. right").click()
            right = quiz.locator(".dmf2mel-quiz-feedback").first.inner_text()
            quiz.locator("input").fill("64 samples")
            quiz.locator("input").press("Enter")
            number = quiz.locator(".dmf2mel-quiz-feedback").nth(1).inner_text()
        finally:
            context.close()
            browser.close()
    assert panels == 1, f"{panels} notebooks open: the quiz's workspace restored another one"
    assert (hint, right, number) == ("Not quite. A wrong hint.", "Correct. Because.", "Correct: 64 samples.")
    assert not errors, errors
