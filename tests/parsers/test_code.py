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


GO = b"""package main

import "math"

// Area of a circle.
func area(r float64) float64 {
\tx := r * r

\treturn math.Pi * x
}

func main() {
\tprintln("{", area(2))
}
"""


def test_curly_brace_languages_are_cut_at_top_level_blocks_keeping_a_function_whole() -> None:
    units = parse(GO, "cmd/main.go")
    assert located(units, "symbol", "lines", "language") == [
        ("(module)", "1-3", "go"),
        ("area", "5-10", "go"),
        ("main", "12-14", "go"),
    ]
    assert (
        units[1].text
        == "// Area of a circle.\nfunc area(r float64) float64 {\n\tx := r * r\n\n\treturn math.Pi * x\n}"
    )
    [js] = parse(b"export function f() {\n  return 1;\n}\n", "f.js")
    assert (js.text, js.metadata["language"]) == ("export function f() {\n  return 1;\n}\n", "javascript")


def test_unbalanced_braces_other_languages_and_broken_python_are_one_unit_of_text() -> None:
    [c] = parse(b"/* { */\nint a;\n\nint main() { return 0; }\n", "a.c")
    assert "symbol" not in c.metadata
    [sh] = parse(b"#!/bin/sh\necho hi\n\necho there\n", "run.sh")
    assert (sh.text, sh.metadata["language"]) == ("#!/bin/sh\necho hi\n\necho there\n", "shell")
    [broken] = parse(b"print 'python 2'\n", "old.py")
    assert broken.text == "print 'python 2'\n" and "symbol" not in broken.metadata
