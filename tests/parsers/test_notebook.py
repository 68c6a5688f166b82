"""Jupyter notebooks written as nbformat 4 JSON."""

from __future__ import annotations

import pytest

from ragflow.errors import ParseError
from tests.parsers.builders import make_ipynb
from tests.parsers.conftest import located, parse


def test_cells_in_order_with_text_outputs_and_no_images_or_widget_state() -> None:
    notebook = make_ipynb(
        [
            ("markdown", "# Tides\nWe model the tide.", None),
            ("code", "print(height(3))", "4.2 metres\n"),
            ("code", "   ", None),
            ("code", "plot()", None),
        ]
    )
    units = parse(notebook, "nb/tides.ipynb")
    assert located(units, "cell", "cell_type") == [(1, "markdown"), (2, "code"), (4, "code")]
    assert units[1].text == "print(height(3))\n\nOutput:\n4.2 metres"
    assert units[2].text == "plot()"
    assert not any("iVBOR" in u.text or "SECRET" in u.text for u in units)


def test_a_notebook_that_is_not_json_is_a_specific_error() -> None:
    with pytest.raises(
        ParseError, match=r"^nb/broken\.ipynb: not a Jupyter notebook: invalid JSON at line 1 column 12"
    ):
        parse(b'{"cells": [', "nb/broken.ipynb")


def test_json_without_cells_is_not_a_notebook() -> None:
    with pytest.raises(
        ParseError, match=r"^x\.ipynb: not a Jupyter notebook: the JSON has no list of 'cells'"
    ):
        parse(b'{"hello": 1}', "x.ipynb")
