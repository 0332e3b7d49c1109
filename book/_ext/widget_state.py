"""Sphinx extension: drop the JavaScript source that anywidget-based widgets carry in saved widget state.

When a chapter executes, the state of every live ipywidget is saved into the page, so that static widgets
(progress bars) render without a kernel. Widgets built on anywidget, such as plotly's ``FigureWidget`` in
the JupyterLab explorers, store their whole front-end module in the ``_esm`` trait: plotly.js, about 5 MB,
once per figure. In the static book these widgets cannot work anyway (they need a kernel, and their
outputs are removed from the HTML), so the module is dead weight. This extension empties ``_esm`` (and
``_css``) in the saved state of every page; the other widgets are untouched.
"""

from __future__ import annotations

import json

STATE_KEY = "ipywidgets_state"  # the key myst-nb registers the page's widget state under
ANYWIDGET_SOURCE_TRAITS = ("_esm", "_css")


def strip_anywidget_sources(state: dict) -> int:
    """Empty the anywidget source traits in a widget-state document; return how many models changed."""
    changed = 0
    for model in state.get("state", {}).values():
        traits = model.get("state", {})
        if any(traits.get(name) for name in ANYWIDGET_SOURCE_TRAITS):
            for name in ANYWIDGET_SOURCE_TRAITS:
                if name in traits:
                    traits[name] = ""
            changed += 1
    return changed


def _strip(app, env) -> None:
    for data in getattr(env, "nb_metadata", {}).values():
        entry = data.get("js_files", {}).get(STATE_KEY)
        if entry is None:
            continue
        uri, kwargs = entry
        # myst-nb escapes "</script>" in the JSON body; undo it to parse, redo it after.
        state = json.loads(kwargs["body"].replace("<\\/script>", "</script>"))
        if strip_anywidget_sources(state):
            kwargs["body"] = json.dumps(state).replace("</script>", "<\\/script>")


def setup(app):
    app.connect("env-updated", _strip)
    return {"parallel_read_safe": True, "parallel_write_safe": True, "version": "1"}
