"""viz.show_source: the package's code as a chapter shows it, read from the source that runs."""

from __future__ import annotations

import inspect

import pytest

from dmf2mel import viz
from dmf2mel.errors import UserError
from dmf2mel.models import DCFAM, kan
from dmf2mel.viz.source import source_block


def test_a_function_is_shown_whole_under_its_file_and_name():
    block = source_block(kan._cubic_pieces)
    caption, _, code = block.partition("\n\n")
    assert caption == "**`dmf2mel/models/kan.py`**: `_cubic_pieces`"
    assert code.startswith("```python\ndef _cubic_pieces(") and code.endswith("\n```")
    assert inspect.getsource(kan._cubic_pieces).strip() in code


def test_a_method_is_dedented_and_named_with_its_class():
    block = source_block(DCFAM.neighbourhood_weights)
    assert "`DCFAM.neighbourhood_weights`" in block and "`dmf2mel/models/dcfam.py`" in block
    assert "\ndef neighbourhood_weights(self" in block  # not indented as in the class


def test_show_source_renders_as_markdown_one_block_per_object():
    shown = viz.show_source(kan.uniform_cubic_bases, kan._cubic_pieces)
    assert shown._repr_markdown_().count("```python") == 2


def test_what_has_no_source_is_a_clear_error():
    with pytest.raises(UserError, match="no Python source for"):
        viz.show_source(len)
    with pytest.raises(UserError, match="at least one"):
        viz.show_source()
