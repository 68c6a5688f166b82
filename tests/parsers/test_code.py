"""Source code: Python cut at top-level definitions, other languages whole."""

from __future__ import annotations

from tests.parsers.conftest import located, parse

MODULE = b'''"""Tide tables."""

import math

# How high the water gets.
@cache
def height(hour):
    return 2 + math.sin(hour)


class Tide:
    """A tide."""

    def rising(self):
        return True

LIMIT = 10
# end
'''


def test_python_is_one_unit_per_top_level_definition_with_its_lines() -> None:
    units = parse(MODULE, "src/tides.py")
    assert located(units, "symbol", "lines", "language") == [
        ("(module)", "1-3", "python"),
        ("height", "5-8", "python"),
        ("Tide", "11-15", "python"),
        ("(module)", "17-18", "python"),
    ]
    assert (
        units[1].text
        == "# How high the water gets.\n@cache\ndef height(hour):\n    return 2 + math.sin(hour)"
    )


def test_other_languages_and_broken_python_are_one_unit_of_text() -> None:
    [go] = parse(b"package main\n\nfunc main() {}\n", "cmd/main.go")
    assert (go.text, go.metadata["language"]) == ("package main\n\nfunc main() {}\n", "go")
    [broken] = parse(b"print 'python 2'\n", "old.py")
    assert broken.text == "print 'python 2'\n" and "symbol" not in broken.metadata
