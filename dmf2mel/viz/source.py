"""The package's own code, shown in a chapter from the source that runs (never copied into the text).

A chapter cell ``viz.show_source(kan.uniform_cubic_bases)`` displays the function's current source as a
highlighted Python block, headed by the file it lives in. The display is Markdown, which JupyterLab renders
and the HTML book renders the same way (the book hides the cell's input, so only the code shows), where a
Sphinx ``literalinclude`` directive would show in JupyterLab as its own unrendered text.
"""

from __future__ import annotations

import inspect
import textwrap
from pathlib import Path
from typing import Callable

from IPython.display import Markdown

from dmf2mel.errors import UserError

PACKAGE_ROOT = Path(__file__).resolve().parent.parent.parent  # the folder that holds dmf2mel/


def source_block(obj: Callable) -> str:
    """The Markdown of one object's source: its file and name as a caption, then a fenced ``python`` block.

    Parameters
    ----------
    obj : function, method or class of the package

    Returns
    -------
    str
        ``**`dmf2mel/models/kan.py`**: `uniform_cubic_bases`\\n\\n```python\\n...\\n`````, the source dedented (a
        method's source is indented in its class).
    """
    target = getattr(obj, "__func__", obj)
    try:
        source = inspect.getsource(target)
        path = Path(inspect.getsourcefile(target)).resolve()
    except (TypeError, OSError) as error:
        raise UserError(f"show_source: no Python source for {obj!r} ({error})") from None
    try:
        shown = path.relative_to(PACKAGE_ROOT).as_posix()
    except ValueError:  # not a file of this package
        shown = path.name
    fence = "````" if "```" in source else "```"
    return f"**`{shown}`**: `{target.__qualname__}`\n\n{fence}python\n{textwrap.dedent(source).rstrip()}\n{fence}"


def show_source(*objects: Callable) -> Markdown:
    """Display the source of ``objects`` (functions, methods, classes), one captioned block each."""
    if not objects:
        raise UserError("show_source: give at least one function, method or class")
    return Markdown("\n\n".join(source_block(obj) for obj in objects))
