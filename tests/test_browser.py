"""The built book works in a real browser with the network off: the comparison figure reacts to its dropdown,
and every page reads cleanly (no raw Markdown tables or ``$`` math, no JavaScript errors).

Drives Debian's Chromium (``/usr/bin/chromium``) through Playwright; never ``playwright install``.
Every request that is not a local file is aborted and recorded, so the test also proves the page needs
nothing from the network.
"""

from __future__ import annotations

import re

import pytest

from book_build import BUILD, ensure_built, toc_files

pytestmark = pytest.mark.slow

# The page with the interactive true-vs-predicted comparison, first match wins: the evaluation chapter once it
# exists; until then chapter 3's linear reconstructions (a page that also loads require.js for its saved widgets),
# or chapter 1's comparison of a stimulus's mel with that of its vocoded version.
COMPARISON_PAGES = ("notebooks/12_", "notebooks/03_", "notebooks/01_")
SCREENSHOT_DIR = BUILD / "browser"
TIMEOUT_MS = 60_000
# What a page's reader sees of Markdown that was not rendered: a table row or its |---| separator line, and
# math still between dollar signs. Code, rendered math and figures are taken out of the text first.
RAW_TABLE = re.compile(r"\|\s*:?(?:-{3,}|[—–])|^[ \t]*\|[^\n]*\|[^\n]*\|[ \t]*$", re.MULTILINE)
RAW_MATH = re.compile(r"\$\$|\$[^$\s][^$\n]{0,200}\$")
PROSE_TEXT_JS = """() => {
    const copy = (document.querySelector('main') || document.body).cloneNode(true);
    copy.querySelectorAll('pre, code, script, style, svg, mjx-container, .MathJax, .highlight, .plotly-graph-div')
        .forEach(element => element.remove());
    return copy.textContent;
}"""
# The chapters' code cells (at the test's 1400 px wide window): a line wider than its box hides behind a scrollbar.
CUT_OFF_CODE_JS = """() => [...document.querySelectorAll('div.cell_input pre')]
    .filter(pre => pre.scrollWidth > pre.clientWidth + 1).map(pre => pre.textContent)"""
# A plotly title wider than its figure is cut off at the figure's edge (plotly never wraps a title).
CUT_OFF_TITLE_JS = """() => [...document.querySelectorAll('div.js-plotly-plot')].flatMap(plot => {
    const frame = plot.getBoundingClientRect();
    return [...plot.querySelectorAll('.gtitle')].filter(title => {
        const box = title.getBoundingClientRect();
        return box.width > 0 && (box.left < frame.left - 1 || box.right > frame.right + 1);
    }).map(title => title.textContent);
})"""
# A plotted axis without a title (an unlabelled axis of stacked or side-by-side panels is fine when the panel it
# shares its column or row with has one); plotly fills an empty title with an editing placeholder.
UNTITLED_AXES_JS = """() => [...document.querySelectorAll('div.js-plotly-plot')].flatMap(graph => {
    const layout = graph._fullLayout || {};
    const title = axis => {
        const text = ((axis.title || {}).text || '').trim();
        return /^Click to enter/.test(text) ? '' : text;
    };
    const axes = Object.keys(layout).filter(name => /^[xy]axis[0-9]*$/.test(name));
    const plotted = name => (graph._fullData || []).some(trace => trace.visible !== false
        && (trace[name[0] + 'axis'] || name[0]) === name[0] + name.slice(5));
    const overlaps = (a, b) => a.domain[0] < b.domain[1] && b.domain[0] < a.domain[1];
    return axes.filter(name => {
        const axis = layout[name];
        if (!axis.visible || axis.showticklabels === false || !plotted(name) || title(axis)) return false;
        return !axes.some(other => other !== name && other[0] === name[0] && title(layout[other])
            && overlaps(layout[other], axis));
    }).map(name => `${name} of "${(((layout.title || {}).text) || '').slice(0, 60)}"`);
})"""
MATHJAX_DONE_JS = "() => (window.MathJax && MathJax.startup && MathJax.startup.promise) ? MathJax.startup.promise.then(() => true) : true"

pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -r requirements.txt)")


def comparison_page() -> str:
    files = toc_files()
    for prefix in COMPARISON_PAGES:
        for name in files:
            if name.startswith(prefix):
                return name
    raise AssertionError(f"no page in _toc.yml starts with any of {COMPARISON_PAGES}")


@pytest.fixture()
def offline_page(browser):
    """A page whose every non-file request is aborted; ``page.blocked`` and ``page.errors`` record what happened."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.blocked, page.errors = [], []

    def route(route):
        url = route.request.url
        if url.startswith(("file:", "data:", "blob:", "about:")):
            route.continue_()
        else:
            page.blocked.append(url)
            route.abort()

    context.route("**/*", route)
    page.on("pageerror", lambda error: page.errors.append(str(error)))
    # console.error(...) calls and failed script loads: a page that works can still log these
    page.on(
        "console", lambda message: page.errors.append(f"console: {message.text}") if message.type == "error" else None
    )
    yield page
    context.close()


def figure_state(graph):
    """What the comparison shows: its title, and a fingerprint of the first heatmap's data."""
    return graph.evaluate(
        # gd.data may hold base64-encoded arrays; calcdata holds what plotly actually drew.
        """gd => {
            const z = gd.calcdata[0][0].z;
            // z-scored rows all have the same sum of squares: weight each value by its position instead.
            let sum = 0;
            z.forEach((row, i) => row.forEach((v, j) => { if (Number.isFinite(v)) sum += v * (i + 1) * (j + 1); }));
            return {title: gd.layout.title.text, rows: z.length, zsum: sum};
        }"""
    )


def test_comparison_dropdown_changes_the_figure_offline(offline_page):
    html = ensure_built()
    page_name = comparison_page()
    page = offline_page
    page.goto((html / f"{page_name}.html").as_uri(), wait_until="load", timeout=TIMEOUT_MS)

    # The comparison is the plotly figure that has a dropdown; wait until plotly has drawn its heatmap.
    graph = page.locator(".js-plotly-plot", has=page.locator(".updatemenu-header-group")).first
    graph.locator(".hm").first.wait_for(state="attached", timeout=TIMEOUT_MS)
    graph.scroll_into_view_if_needed()
    before = figure_state(graph)
    image_before = graph.screenshot()

    graph.locator(".updatemenu-header-group").first.click()
    items = graph.locator(".updatemenu-dropdown-button")
    items.first.wait_for(state="visible", timeout=TIMEOUT_MS)
    assert items.count() >= 2, "the comparison's dropdown should offer at least two entries"
    labels = [items.nth(i).text_content() for i in range(items.count())]  # SVG: no inner_text
    target = next(i for i, label in enumerate(labels) if label.strip() and label.split(":")[0] not in before["title"])
    items.nth(target).click()
    page.wait_for_function(
        "([el, old]) => el.layout.title.text !== old", arg=[graph.element_handle(), before["title"]], timeout=TIMEOUT_MS
    )
    after = figure_state(graph)
    image_after = graph.screenshot()

    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOT_DIR / "comparison_page.png"), full_page=False)
    (SCREENSHOT_DIR / "comparison_figure_before.png").write_bytes(image_before)
    (SCREENSHOT_DIR / "comparison_figure_after.png").write_bytes(image_after)

    assert after["title"] != before["title"]
    assert labels[target].strip() in after["title"]
    assert after["zsum"] != pytest.approx(before["zsum"]), "the heatmap data did not change"
    assert image_after != image_before, "the figure looks the same after choosing another entry"
    assert not page.blocked, f"the page tried to reach the network: {page.blocked}"
    assert not page.errors, f"JavaScript errors on the page: {page.errors}"


def test_book_math_renders_with_the_vendored_mathjax(offline_page):
    html = ensure_built()
    page = offline_page
    page.goto((html / f"{comparison_page()}.html").as_uri(), wait_until="load", timeout=TIMEOUT_MS)
    # MathJax 3 replaces each formula by an <mjx-container>; that needs its vendored components and fonts.
    page.locator("mjx-container").first.wait_for(state="attached", timeout=TIMEOUT_MS)
    assert not page.blocked, f"the page tried to reach the network: {page.blocked}"


def test_every_chapter_draws_all_its_figures_offline(offline_page):
    html = ensure_built()
    page = offline_page
    for name in (f for f in toc_files() if f.startswith("notebooks/")):
        page.goto((html / f"{name}.html").as_uri(), wait_until="load", timeout=TIMEOUT_MS)
        n_figures = page.locator("div.plotly-graph-div").count()
        assert n_figures > 0, f"{name} has no figure"
        # plotly marks a div js-plotly-plot once it has drawn it (also on pages that load require.js).
        page.wait_for_function(
            "n => document.querySelectorAll('div.plotly-graph-div.js-plotly-plot').length === n",
            arg=n_figures,
            timeout=TIMEOUT_MS,
        )
        assert not page.blocked, f"{name} tried to reach the network: {page.blocked}"
        assert not page.errors, f"JavaScript errors on {name}: {page.errors}"


def widget_pages() -> list[str]:
    """Toc pages that show saved ipywidgets (e.g. training progress bars).

    A page can embed widget state without showing any widget (the JupyterLab explorers' outputs are
    removed from the HTML); only pages with widget views are checked.
    """
    html = ensure_built()
    marker = "application/vnd.jupyter.widget-view+json"
    return [name for name in toc_files() if marker in (html / f"{name}.html").read_text(errors="replace")]


def test_saved_widgets_render_offline(offline_page):
    pages = widget_pages()
    # chapter 11 shows its runs' epochs as progress bars, trained now or found in the cache (runs.cached_run)
    assert pages, "no page of the built book shows a saved ipywidget; chapter 11's progress bars should be one"
    html = ensure_built()
    page = offline_page
    for name in pages:
        page.goto((html / f"{name}.html").as_uri(), wait_until="load", timeout=TIMEOUT_MS)
        # The vendored embed manager replaces each saved widget view by its rendered DOM.
        page.locator(".jupyter-widgets").first.wait_for(state="attached", timeout=TIMEOUT_MS)
        assert not page.blocked, f"{name} tried to reach the network: {page.blocked}"
        assert not page.errors, f"JavaScript errors on {name}: {page.errors}"


def reading_problems(page, url: str) -> list[str]:
    """What is wrong with the page at ``url`` as a reader sees it: raw tables, raw math, cut-off code and titles,
    axes without a title, JavaScript errors."""
    page.errors.clear()
    page.goto(url, wait_until="load", timeout=TIMEOUT_MS)
    page.evaluate(MATHJAX_DONE_JS)
    n_figures = page.locator("div.plotly-graph-div").count()
    page.wait_for_function(
        "n => document.querySelectorAll('div.plotly-graph-div.js-plotly-plot').length === n",
        arg=n_figures,
        timeout=TIMEOUT_MS,
    )
    text = page.evaluate(PROSE_TEXT_JS)
    problems = [f"raw Markdown table: {match.group(0).strip()[:80]!r}" for match in RAW_TABLE.finditer(text)]
    problems += [f"raw math: {match.group(0)[:80]!r}" for match in RAW_MATH.finditer(text)]
    problems += [f"code cut off (scrolls sideways): {text[:60]!r}" for text in page.evaluate(CUT_OFF_CODE_JS)]
    problems += [f"figure title cut off: {text[:60]!r}" for text in page.evaluate(CUT_OFF_TITLE_JS)]
    problems += [f"axis without a title: {axis}" for axis in page.evaluate(UNTITLED_AXES_JS)]
    problems += [f"JavaScript: {error[:200]}" for error in page.errors]
    problems += [f"network: {url}" for url in page.blocked]
    page.blocked.clear()
    return problems


def test_every_page_reads_cleanly(offline_page):
    """No page shows Markdown it did not render (pipe tables, $ math), cuts off code or a figure title, plots an axis
    without a title, or logs a JavaScript error."""
    html = ensure_built()
    problems = {
        name: found
        for name in toc_files()
        if (found := reading_problems(offline_page, (html / f"{name}.html").as_uri()))
    }
    assert not problems, "pages with problems:\n" + "\n".join(f"{name}: {found}" for name, found in problems.items())
