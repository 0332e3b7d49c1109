"""Sphinx extension: each inline script of a page once.

sphinx-thebe and sphinx-togglebutton add their inline configuration scripts while the documents are read;
Sphinx then lists each of them twice in every page (once with the file name ``None``, once with ``""``, so
its own check for duplicates misses them). A repeated ``const THEBE_JS_URL = ...`` is a JavaScript
error ("Identifier 'THEBE_JS_URL' has already been declared") on every page. This extension keeps the
first of any scripts that agree in everything but that empty file name.
"""

from __future__ import annotations


def _key(script) -> tuple:
    attributes = getattr(script, "attributes", {})
    return (
        getattr(script, "filename", script) or "",
        getattr(script, "priority", 0),
        tuple(sorted(attributes.items())),
    )


def unique_scripts(scripts: list) -> list:
    """``scripts`` without repeats, in their order."""
    seen, unique = set(), []
    for script in scripts:
        key = _key(script)
        if key not in seen:
            seen.add(key)
            unique.append(script)
    return unique


def _dedupe(app, pagename, templatename, context, doctree) -> None:
    if "script_files" in context:
        context["script_files"] = unique_scripts(context["script_files"])


def setup(app):
    app.connect("html-page-context", _dedupe)
    return {"parallel_read_safe": True, "parallel_write_safe": True, "version": "1"}
