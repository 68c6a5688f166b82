"""The metadata filter language: Pathway's examples, glob semantics, injection, errors, and equivalence
with jmespath's own interpreter."""

from __future__ import annotations

import types
import warnings
from typing import Any

import jmespath
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ragflow.errors import FilterError
from ragflow.filters import MetadataFilter, compile_filter, glob_to_regex, globmatch

DOC = {"path": "/home/ann/docs/report.pdf", "modified_at": 1702672095, "size": 1234, "owner": "ann"}


def matches(expression: str | None, metadata: dict[str, Any], glob: str | None = None) -> bool:
    predicate = compile_filter(expression, glob)
    assert predicate is not None
    return predicate(metadata)


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("contains(path, `docs`)", True),
        ('contains(path, `"docs"`)', True),
        ("contains(path, 'docs')", True),
        ("contains(path, `music`)", False),
        ("globmatch(`**/*.pdf`, path)", True),
        ("globmatch(`**/*.txt`, path)", False),
        ("modified_at >= to_number(`1702672093`)", True),
        ("modified_at >= to_number(`1702672096`)", False),
        ("modified_at >= `1702672093`", True),
        ("owner == `ann` && size < `2000`", True),
        ("owner == `bob` || size < `2000`", True),
        ("owner == `bob` || size > `2000`", False),
        ("!(owner == `bob`)", True),
        ("!contains(path, `docs`)", False),
        (
            "contains(path, `docs`) && globmatch(`**/*.pdf`, path) && modified_at >= to_number(`1702672093`)",
            True,
        ),
    ],
)
def test_pathway_filter_examples_evaluate_as_pathway_documents(expression: str, expected: bool) -> None:
    assert matches(expression, DOC) is expected


GLOB_CASES = [
    # pattern, path, matches
    ("*.pdf", "a.pdf", True),
    ("*.pdf", "x/y/a.pdf", True),
    ("*.pdf", "/abs/a.pdf", True),
    ("*.pdf", "a.pdf.txt", False),
    ("**/*.pdf", "a.pdf", True),
    ("**/*.pdf", "x/y/a.pdf", True),
    ("**/*.pdf", "/abs/x/a.pdf", True),
    ("docs/*.md", "docs/a.md", True),
    ("docs/*.md", "/srv/data/docs/a.md", True),
    ("docs/*.md", "docs/sub/a.md", False),
    ("docs/*.md", "mydocs/a.md", False),
    ("docs/**/*.md", "docs/a.md", True),
    ("docs/**/*.md", "docs/sub/deeper/a.md", True),
    ("docs/**", "docs/sub/a.md", True),
    ("docs/**", "other/a.md", False),
    ("/docs/*.md", "/docs/a.md", True),
    ("/docs/*.md", "/srv/docs/a.md", False),
    ("/docs/*.md", "docs/a.md", False),
    ("a?c.txt", "abc.txt", True),
    ("a?c.txt", "a/c.txt", False),
    ("a?c.txt", "ac.txt", False),
    ("[ab]x", "bx", True),
    ("[ab]x", "cx", False),
    ("[a-c]x", "bx", True),
    ("[!a-c]x", "dx", True),
    ("[!a-c]x", "bx", False),
    ("[!a]x", "d/x", False),
    ("[*]", "*", True),
    ("[*]", "a", False),
    ("report.pdf", "/home/ann/docs/report.pdf", True),
    ("report.pdf", "/home/ann/docs/myreport.pdf", False),
    ("*", "a/b", True),
    ("**", "a/b/c", True),
    ("a.b", "axb", False),
    ("(x)+", "(x)+", True),
    ("{a,b}.txt", "{a,b}.txt", True),
    ("{a,b}.txt", "a.txt", False),
]


@pytest.mark.parametrize(("pattern", "path", "expected"), GLOB_CASES)
def test_one_glob_semantics_for_globpattern_and_globmatch(pattern: str, path: str, expected: bool) -> None:
    metadata = {"path": path}
    assert globmatch(pattern, path) is expected
    assert matches(None, metadata, glob=pattern) is expected
    literal = pattern.replace("`", "\\`")
    assert matches(f"globmatch(`{literal}`, path)", metadata) is expected
    assert matches(f"globmatch('{pattern}', path)", metadata) is expected


@pytest.mark.parametrize("pattern", ["a**", "**b/x", "x/a**b", "[abc", "x/[!"])
def test_invalid_glob_pattern_raises_filter_error_naming_it(pattern: str) -> None:
    with pytest.raises(FilterError, match="invalid glob pattern") as raised:
        glob_to_regex(pattern)
    assert repr(pattern) in str(raised.value)
    with pytest.raises(FilterError):
        compile_filter(None, pattern)
    with pytest.raises(FilterError):
        compile_filter(f"globmatch('{pattern}', path)", None)


INJECTIONS = [
    "*`) || `x",
    "*`) || `true",
    "*') || ('x",
    '*") || ("x',
    "*`, path) || `true` || globmatch(`*",
    "*' || true || '",
    "**/*.pdf`, path) || contains(path, `",
]


@pytest.mark.parametrize("pattern", INJECTIONS)
def test_glob_pattern_cannot_inject_filter_syntax(pattern: str) -> None:
    ordinary = [{"path": p} for p in ("a.txt", "docs/b.pdf", "/x/y", "x", "true")]
    predicate = compile_filter("contains(path, `z`) || !contains(path, `z`)", pattern)
    assert predicate is not None
    assert not any(predicate(m) for m in ordinary)
    assert compile_filter(None, pattern) is not None
    # The pattern is only ever a glob: a path spelling its literal text (wildcards aside) does match.
    literal = pattern.replace("**/", "").replace("*", "")
    assert predicate({"path": literal})
    assert predicate({"path": "dir/" + literal})


def test_glob_applies_to_path_and_is_anded_with_expression() -> None:
    predicate = compile_filter("owner == `ann`", "**/*.pdf")
    assert predicate is not None
    assert predicate(DOC)
    assert not predicate({**DOC, "owner": "bob"})
    assert not predicate({**DOC, "path": "/home/ann/docs/report.txt"})
    assert not predicate({"owner": "ann"})
    assert not predicate({**DOC, "path": 7})


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("contains(path,", "position 14"),
        ("a ==== b", "position 4"),
        ("owner == `ann", "position 9"),
        ("nosuchfn(path)", "unknown function nosuchfn()"),
        ("contains(path)", "contains() takes 2 argument(s), got 1"),
        ("to_number(`1`, `2`)", "to_number() takes 1 argument(s), got 2"),
    ],
)
def test_invalid_expression_raises_filter_error_with_expression_and_position(
    expression: str, message: str
) -> None:
    with pytest.raises(FilterError) as raised:
        compile_filter(expression, None)
    assert repr(expression) in str(raised.value)
    assert message in str(raised.value)


@pytest.mark.parametrize(
    "expression",
    [
        "contains(missing, `x`)",  # function given null
        "size > 'abc'",  # number vs string ordering
        "owner > `1`",
        "path",  # a string, not a boolean
        "size",  # a number is not `true`
        "`[true]`",
        "length(size) > `1`",
        "path[0] == 'a'",
        "sort(tags)[0] == `1`",  # mixed-type sort raises inside jmespath
    ],
)
def test_failing_or_non_boolean_expression_does_not_match(expression: str) -> None:
    assert matches(expression, {**DOC, "tags": [1, "a"]}) is False


def test_mixed_type_ordering_is_null_so_the_other_branch_decides() -> None:
    # jmespath's Python interpreter raises TypeError here; the JMESPath spec says null.
    assert matches("size > 'abc' || owner == `ann`", DOC) is True
    assert matches("!(size > 'abc')", DOC) is True


def test_empty_filters_compile_to_none() -> None:
    assert compile_filter(None, None) is None
    assert compile_filter("", "") is None
    assert compile_filter("   ", None) is None


def test_compiled_filters_are_cached_and_compare_by_source() -> None:
    first = compile_filter("owner == `ann`", "*.pdf")
    assert first is compile_filter("owner == `ann`", "*.pdf")
    assert first == MetadataFilter("owner == `ann`", "*.pdf")
    assert hash(first) == hash(MetadataFilter("owner == `ann`", "*.pdf"))
    assert first != MetadataFilter("owner == `ann`", None)


def test_filter_sees_frozen_mappings_and_tuples_as_json_objects_and_arrays() -> None:
    frozen = types.MappingProxyType(
        {"path": "a.pdf", "headers": types.MappingProxyType({"lang": "en"}), "tags": ("x", ("y",))}
    )
    for expression in (
        "headers.lang == 'en' && contains(tags, 'x')",
        "length(keys(@)) == `3` && length(tags) == `2` && tags[1][0] == 'y'",
        "keys(headers) == ['lang'] && type(tags) == 'array'",
    ):
        predicate = compile_filter(expression, None)
        assert predicate is not None and predicate(frozen), expression


def test_evaluation_is_a_few_microseconds() -> None:
    import timeit

    predicate = compile_filter("contains(path, `docs`) && modified_at >= to_number(`1702672093`)", "**/*.pdf")
    assert predicate is not None
    per_call = min(timeit.repeat(lambda: predicate(DOC), number=2000, repeat=3)) / 2000
    # Generous against slow machines; an interpreter walk or a re-parse per call is far slower.
    assert per_call < 50e-6


# -------------------------------------------------------------- equivalence with jmespath itself

EXPRESSIONS = [
    "a == b",
    "a != b",
    "a < b",
    "a >= `1`",
    "a && b",
    "a || b",
    "!a",
    "!(a == `0`)",
    "contains(s, 'x')",
    "starts_with(s, 'a') || ends_with(s, 'z')",
    "n.m == a",
    "length(s) > `2`",
    "to_number(s) == a",
    "type(a) == 'number'",
    "a == `true`",
    "l[0] == a",
    "l[?@ > `1`] == `[2]`",
    "not_null(a, b) == a",
]

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-2, 2),
    st.floats(-2, 2, allow_nan=False),
    st.sampled_from(["", "x", "ax", "az", "1", "abc"]),
)
documents = st.fixed_dictionaries(
    {},
    optional={
        "a": json_scalars,
        "b": json_scalars,
        "s": json_scalars,
        "n": st.fixed_dictionaries({}, optional={"m": json_scalars}),
        "l": st.lists(json_scalars, max_size=3),
    },
)


def reference(expression: str, document: dict[str, Any]) -> bool:
    from ragflow.filters import _FUNCTIONS

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = jmespath.search(expression, document, jmespath.Options(custom_functions=_FUNCTIONS))
    except Exception:
        return False
    return result is True


@settings(max_examples=300, deadline=None)
@given(expression=st.sampled_from(EXPRESSIONS), document=documents)
def test_compiled_expression_agrees_with_jmespath_interpreter(
    expression: str, document: dict[str, Any]
) -> None:
    assert matches(expression, document) is reference(expression, document)


def test_docstring_examples_hold() -> None:
    import doctest

    import ragflow.filters

    result = doctest.testmod(ragflow.filters)
    assert result.attempted >= 6
    assert result.failed == 0
