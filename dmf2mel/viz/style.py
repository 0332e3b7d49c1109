"""One look for every figure of the book: colours, the plotly template and the notebook renderer.

True (measured) signals are always drawn in :data:`TRUE_COLOR`, model predictions in
:data:`PREDICTED_COLOR` (Okabe–Ito blue and vermillion, distinguishable with colour-vision deficiencies).
"""

from __future__ import annotations

import re
import textwrap

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio
from plotly.io.base_renderers import NotebookRenderer

from dmf2mel import threads
from dmf2mel.errors import UserError

TRUE_COLOR = "#0072B2"
PREDICTED_COLOR = "#D55E00"
CHANCE_COLOR = "#7F7F7F"
# Further series (e.g. several models), in a fixed order, after the two above.
SERIES_COLORS = ("#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000")
# Mel spectrograms share one sequential scale so that true and predicted read alike.
MEL_COLORSCALE = "Viridis"
# Scalp maps are signed (µV, weights): a diverging scale centred on zero.
TOPOMAP_COLORSCALE = "RdBu_r"

TEMPLATE_NAME = "dmf2mel"
OFFLINE_RENDERER = "dmf2mel_notebook"
# Renders as plotly's own MIME bundle in JupyterLab and as HTML with plotly.js embedded once per page in the
# built book; the plain default under nbclient emits only the MIME bundle, which the book drops, and
# "notebook_connected" loads plotly.js from a CDN. The HTML part comes from OfflineNotebookRenderer, which is
# plotly's "notebook" renderer without its CDN MathJax.
NOTEBOOK_RENDERER = f"plotly_mimetype+{OFFLINE_RENDERER}"
# plotly's "notebook" renderer adds MathJax from a CDN to every figure, whether it uses LaTeX or not.
_CDN_MATHJAX = re.compile(r'<script src="https?://[^"]*mathjax[^"]*"></script>', re.IGNORECASE)
# plotly never wraps a title: one longer than the figure is cut off. The book's column gives a figure about
# 700 px, room for about this many characters of title at the template's font.
TITLE_LINE_CHARS = 72
TITLE_LINE_PX = 24  # the top margin grows by this much per extra line of title


MENU_GAP_PX = 26  # from the top of the plot area to the lowest menu: room for a subplot's title
MENU_ROW_PX = 34  # from one menu to the next above it: a dropdown button's height and a little space


def menu_rows(n_menus: int, height: int, margin_top: int, margin_bottom: int) -> list[float]:
    """Paper ``y`` of ``n_menus`` dropdowns (``yanchor="bottom"``, left-aligned) stacked above the plot area.

    Lowest first. Stacked, not side by side, and above the subplot titles: at phone width (390 px) menus side by
    side overlap each other, and a menu beside a centred subplot title covers it. ``height`` and the margins are
    the figure's, in px.
    """
    plot = height - margin_top - margin_bottom
    return [1 + (MENU_GAP_PX + row * MENU_ROW_PX) / plot for row in range(n_menus)]


def log_axis(*values) -> dict:
    """Layout of a log axis over ``values``: one labelled tick per power of ten when they span a decade or more.

    plotly's own ticks on a log axis spanning decades label the steps between powers of ten by their first digit
    alone ("2", "5"), which reads as values; with ``dtick=1`` only 0.1, 1, 10, ... are labelled, in full. Within one
    decade plotly's ticks are full numbers already and are kept.
    """
    data = np.concatenate([np.ravel(np.asarray(v, dtype=np.float64)) for v in values]) if values else np.array([])
    positive = data[np.isfinite(data) & (data > 0)]
    if positive.size and np.log10(positive.max() / positive.min()) >= 1:
        return dict(type="log", dtick=1)
    return dict(type="log")


def wrap_title(text: str, width: int = TITLE_LINE_CHARS) -> str:
    """``text`` broken into lines of at most ``width`` characters with plotly's ``<br>`` (unchanged if it fits)."""
    if not isinstance(text, str) or len(text) <= width or "<br>" in text:
        return text
    return "<br>".join(textwrap.wrap(text, width))


def fit_titles(fig_dict: dict, width: int = TITLE_LINE_CHARS) -> dict:
    """Wrap a figure's title, and the titles its dropdown buttons set, to ``width``; make room above the plot.

    Works on (and returns) the figure's dict, as a renderer receives it.
    """
    layout = fig_dict.setdefault("layout", {})
    title = layout.get("title")
    texts = []
    if isinstance(title, dict) and "text" in title:
        title["text"] = wrap_title(title["text"], width)
        texts.append(title["text"])
    elif isinstance(title, str):
        layout["title"] = {"text": wrap_title(title, width)}
        texts.append(layout["title"]["text"])
    for menu in layout.get("updatemenus", []):
        for button in menu.get("buttons", []):
            for update in button.get("args", []):
                if isinstance(update, dict) and isinstance(update.get("title.text"), str):
                    update["title.text"] = wrap_title(update["title.text"], width)
                    texts.append(update["title.text"])
    extra_lines = max((text.count("<br>") for text in texts), default=0)
    if extra_lines:
        margin = layout.setdefault("margin", {})
        margin["t"] = max(margin.get("t", 70), 70) + TITLE_LINE_PX * extra_lines
    return fig_dict


class OfflineNotebookRenderer(NotebookRenderer):
    """plotly's ``notebook`` renderer (plotly.js embedded once per page) that loads nothing from a CDN.

    The book's own MathJax is served locally; figure text should not rely on LaTeX. Long titles are wrapped
    to the book's column (:func:`fit_titles`).
    """

    def to_mimebundle(self, fig_dict):
        bundle = super().to_mimebundle(fit_titles(fig_dict))
        bundle["text/html"] = _CDN_MATHJAX.sub("", bundle["text/html"])
        return bundle


def _template() -> go.layout.Template:
    template = go.layout.Template(pio.templates["plotly_white"])
    template.layout.font = dict(family="Helvetica, Arial, sans-serif", size=13)
    template.layout.colorway = [TRUE_COLOR, PREDICTED_COLOR, *SERIES_COLORS]
    template.layout.margin = dict(l=70, r=30, t=70, b=55)
    return template


def _brief_user_errors() -> None:
    """In IPython, show a :class:`~dmf2mel.errors.UserError` (bad input, a failed training run) or an interrupt
    as one sentence instead of a traceback through the package; other errors keep their traceback."""
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is None:
        return

    def show(shell, etype, value, tb, tb_offset=None):
        if issubclass(etype, KeyboardInterrupt):
            text = "interrupted: the cell was stopped by hand or ran past the book build's time limit for a cell"
        else:
            text = f"{etype.__name__}: {value}"
        shell._showtraceback(etype, value, [text])  # the kernel reports the error (the cell still fails)
        return [text]

    shell.set_custom_exc((UserError, KeyboardInterrupt), show)


def setup_notebook(renderer: str = NOTEBOOK_RENDERER) -> None:
    """Make plotly figures display in both JupyterLab and the built (offline) book.

    Call once at the top of every chapter. Registers the ``dmf2mel`` template as the default and
    selects the renderer: plotly's MIME bundle for JupyterLab plus HTML for the book, where this
    cell's output carries plotly.js, so the page needs nothing from a CDN.

    Parameters
    ----------
    renderer : str
        A plotly renderer name (see ``plotly.io.renderers``); the default is
        ``"plotly_mimetype+dmf2mel_notebook"``, i.e. ``"plotly_mimetype+notebook"`` without CDN MathJax.
    """
    threads.configure()  # a chapter on a busy machine computes on the cores others leave free
    _brief_user_errors()
    pio.templates[TEMPLATE_NAME] = _template()
    pio.templates.default = TEMPLATE_NAME
    pio.renderers[OFFLINE_RENDERER] = OfflineNotebookRenderer(config=pio.renderers["notebook"].config)
    pio.renderers.default = renderer
