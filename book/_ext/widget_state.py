"""Sphinx extension: drop the anywidget-based widgets from the widget state saved in each page.

When a chapter executes, the state of every live ipywidget is saved into the page, so that static widgets
(progress bars) render without a kernel. Widgets built on anywidget, such as plotly's ``FigureWidget`` in
the JupyterLab explorers, cannot work in the static book (they need a kernel, and their outputs are removed
from the HTML), yet their saved models cost twice: each stores its whole front-end module in the ``_esm``
trait (plotly.js, about 5 MB, once per figure), and the page's widget manager, which creates every saved
model, tries to load the ``anywidget`` module for them from a CDN (the book is offline, so the console
reports a failed script). This extension removes those models, and every model that refers to one of them
(the explorer's boxes), from the saved state of every page; the other widgets are untouched.
"""

from __future__ import annotations

import json

STATE_KEY = "ipywidgets_state"  # the key myst-nb registers the page's widget state under
ANYWIDGET_MODULE = "anywidget"
MODEL_REFERENCE = "IPY_MODEL_"  # how a widget's traits refer to another widget model


def _references(value) -> set[str]:
    """The model ids a trait value refers to (``"IPY_MODEL_<id>"`` strings, in lists and dicts too)."""
    if isinstance(value, str):
        return {value[len(MODEL_REFERENCE) :]} if value.startswith(MODEL_REFERENCE) else set()
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, list):
        return set().union(*(_references(item) for item in value)) if value else set()
    return set()


def drop_anywidget_models(state: dict) -> int:
    """Remove anywidget models and the models referring to them (transitively); return how many went."""
    models = state.get("state", {})
    dropped = {model_id for model_id, model in models.items() if model.get("model_module") == ANYWIDGET_MODULE}
    while True:
        more = {
            model_id
            for model_id, model in models.items()
            if model_id not in dropped and _references(model.get("state", {})) & dropped
        }
        if not more:
            break
        dropped |= more
    for model_id in dropped:
        del models[model_id]
    return len(dropped)


def _strip(app, env) -> None:
    for data in getattr(env, "nb_metadata", {}).values():
        entry = data.get("js_files", {}).get(STATE_KEY)
        if entry is None:
            continue
        uri, kwargs = entry
        # myst-nb escapes "</script>" in the JSON body; undo it to parse, redo it after.
        state = json.loads(kwargs["body"].replace("<\\/script>", "</script>"))
        if drop_anywidget_models(state):
            kwargs["body"] = json.dumps(state).replace("</script>", "<\\/script>")


def setup(app):
    app.connect("env-updated", _strip)
    return {"parallel_read_safe": True, "parallel_write_safe": True, "version": "2"}
