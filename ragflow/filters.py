"""The metadata filter language of the retrieval API: JMESPath over a document's metadata plus
``globmatch(pattern, path)``, and the one glob semantics every path filter in ragflow uses."""

from __future__ import annotations

import functools
import re
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import jmespath
from jmespath import exceptions as jmespath_errors
from jmespath import functions as jmespath_functions
from jmespath.visitor import TreeInterpreter

from ragflow.errors import ConfigError, FilterError

if TYPE_CHECKING:
    from jmespath.visitor import _TreeNode as _Node

__all__ = ["MetadataFilter", "compile_filter", "glob_patterns", "glob_to_regex", "globmatch"]

_Evaluator = Callable[[Any], Any]


@functools.lru_cache(maxsize=1024)
def glob_to_regex(pattern: str) -> re.Pattern[str]:
    """Translate a path glob into a regex that must match a whole path (use ``fullmatch``).

    ``*`` matches within one path segment, ``?`` one character other than ``/``, ``[abc]``/``[a-z]``/
    ``[!abc]`` one character of (not of) a class, and ``**`` as a whole segment any number of segments,
    zero included. A pattern starting with ``/`` is anchored at the root of the path; any other pattern
    also matches the path's trailing segments, as if prefixed with ``**/``. ``{a,b}`` and backslash have
    no special meaning; write ``[*]`` for a literal ``*``.

    Raises:
        FilterError: an unclosed ``[`` or a ``**`` that is not a whole segment.
    """
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "*":
            if pattern.startswith("**", i):
                at_start = i == 0 or pattern[i - 1] == "/"
                at_end = i + 2 == n or pattern[i + 2] == "/"
                if not (at_start and at_end):
                    raise FilterError(
                        f"invalid glob pattern {pattern!r}: '**' at position {i} must be a whole path "
                        "segment (like 'a/**/b'); use '*' to match within a segment"
                    )
                if i + 2 == n:
                    out.append(".*")
                    i += 2
                else:
                    out.append("(?:.*/)?")
                    i += 3
                continue
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            regex_class, i = _translate_class(pattern, i)
            out.append(regex_class)
            continue
        else:
            out.append(re.escape(c))
        i += 1
    anchor = "" if pattern.startswith(("/", "**")) else "(?:.*/)?"
    return re.compile(anchor + "".join(out), re.DOTALL)


def _translate_class(pattern: str, start: int) -> tuple[str, int]:
    """Translate the ``[...]`` class opening at ``start``; return its regex and the index after it."""
    i = start + 1
    negate = i < len(pattern) and pattern[i] in "!^"
    if negate:
        i += 1
    body_start = i
    # A ']' right after the opening (or after '!') is a member, not the end.
    if i < len(pattern) and pattern[i] == "]":
        i += 1
    end = pattern.find("]", i)
    if end < 0:
        raise FilterError(f"invalid glob pattern {pattern!r}: '[' at position {start} is never closed")
    members = pattern[body_start:end]
    # Escape every member but keep an inner '-' as the range operator.
    body = "".join(
        "-" if c == "-" and 0 < j < len(members) - 1 else re.escape(c) for j, c in enumerate(members)
    )
    # A class never matches the separator, like '*' and '?'.
    regex_class = f"[^/{body}]" if negate else f"(?!/)[{body}]"
    return regex_class, end + 1


def globmatch(pattern: str, path: str) -> bool:
    """Whether ``path`` matches the glob ``pattern`` (semantics in :func:`glob_to_regex`).

    Examples:
        >>> globmatch("*.pdf", "reports/2024/q1.pdf")
        True
        >>> globmatch("**/*.pdf", "q1.pdf")
        True
        >>> globmatch("reports/*.pdf", "/srv/data/reports/q1.pdf")
        True
        >>> globmatch("reports/*.pdf", "reports/2024/q1.pdf")
        False
        >>> globmatch("/reports/**", "/srv/reports/q1.pdf")
        False
    """
    return glob_to_regex(pattern).fullmatch(path) is not None


def glob_patterns(owner: str, option: str, value: str | Sequence[str]) -> tuple[str, ...]:
    """The glob patterns of ``owner``'s ``option`` (a source's ``include``/``exclude``), checked.

    A bare string is taken as one pattern (iterating it would give one-letter patterns).

    Raises:
        ConfigError: a pattern is empty, not a string or not a valid glob; the message names ``owner``
            and ``option``.
    """
    patterns = (value,) if isinstance(value, str) else tuple(value)
    for pattern in patterns:
        if not isinstance(pattern, str) or not pattern:
            raise ConfigError(f"{owner} {option} patterns must be non-empty strings, got {pattern!r}")
        try:
            glob_to_regex(pattern)
        except FilterError as exc:
            raise ConfigError(f"{owner} {option}: {exc}") from exc
    return patterns


class _RagflowFunctions(jmespath_functions.Functions):
    """JMESPath's built-in functions plus ``globmatch``."""

    @jmespath_functions.signature({"types": ["string"]}, {"types": ["string"]})
    def _func_globmatch(self, pattern: str, path: str) -> bool:
        return globmatch(pattern, path)


_FUNCTIONS = _RagflowFunctions()
_INTERPRETER = TreeInterpreter(jmespath.Options(custom_functions=_FUNCTIONS))
_ORDERING = {"lt", "lte", "gt", "gte"}


def _is_false(value: Any) -> bool:
    # JMESPath falsiness, which differs from Python's (0 is true).
    return value == "" or value == [] or value == {} or value is None or value is False


def _compile_node(node: _Node) -> _Evaluator:
    """Turn a JMESPath AST node into a closure with the interpreter's exact semantics.

    The common nodes of metadata filters become direct Python closures, several times faster than
    walking the tree per document; any other node is evaluated by jmespath's own interpreter.
    """
    kind = node["type"]
    if kind == "field":
        name = node["value"]

        def field(value: Any) -> Any:
            try:
                return value.get(name)
            except AttributeError:
                return None

        return field
    if kind == "literal":
        constant = node["value"]
        return lambda value: constant
    if kind in ("current", "identity"):
        return lambda value: value
    if kind in ("subexpression", "index_expression", "pipe"):
        steps = [_compile_node(child) for child in node["children"]]

        def chain(value: Any) -> Any:
            for step in steps:
                value = step(value)
            return value

        return chain
    if kind == "comparator":
        return _compile_comparator(node)
    if kind == "and_expression":
        left, right = (_compile_node(child) for child in node["children"])

        def conjunction(value: Any) -> Any:
            matched = left(value)
            return matched if _is_false(matched) else right(value)

        return conjunction
    if kind == "or_expression":
        left, right = (_compile_node(child) for child in node["children"])

        def disjunction(value: Any) -> Any:
            matched = left(value)
            return right(value) if _is_false(matched) else matched

        return disjunction
    if kind == "not_expression":
        return _compile_not(_compile_node(node["children"][0]))
    if kind == "function_expression" and all(child["type"] != "expref" for child in node["children"]):
        return _compile_function(node)
    return lambda value: _INTERPRETER.visit(node, value)


def _compile_comparator(node: _Node) -> _Evaluator:
    left, right = (_compile_node(child) for child in node["children"])
    compare = TreeInterpreter.COMPARATOR_FUNC[node["value"]]
    if node["value"] not in _ORDERING:
        return lambda value: compare(left(value), right(value))

    def ordering(value: Any) -> Any:
        a, b = left(value), right(value)
        # Ordering is defined between two numbers or two strings; anything else is null, never a TypeError.
        if (isinstance(a, str) and isinstance(b, str)) or (_is_number(a) and _is_number(b)):
            return compare(a, b)
        return None

    return ordering


def _is_number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


def _compile_not(child: _Evaluator) -> _Evaluator:
    def negation(value: Any) -> bool:
        result = child(value)
        if _is_number(result) and result == 0:
            return False
        return not result

    return negation


def _compile_function(node: _Node) -> _Evaluator:
    name = node["value"]
    args = [_compile_node(child) for child in node["children"]]
    spec = _FUNCTIONS.FUNCTION_TABLE.get(name)
    checks = _argument_type_names(spec["signature"], len(args)) if spec is not None else None
    if spec is None or checks is None:
        call = _FUNCTIONS.call_function
        return lambda value: call(name, [arg(value) for arg in args])
    function = spec["function"]

    def fast_call(value: Any) -> Any:
        resolved = [arg(value) for arg in args]
        for argument, allowed in zip(resolved, checks, strict=True):
            if allowed and type(argument).__name__ not in allowed:
                # Let jmespath raise its own type error, message included.
                return _FUNCTIONS.call_function(name, resolved)
        return function(_FUNCTIONS, *resolved)

    return fast_call


def _argument_type_names(signature: list[dict[str, Any]], n_args: int) -> list[frozenset[str]] | None:
    """Python type names each argument may have, or ``None`` when jmespath must check (variadic, subtypes)."""
    if len(signature) != n_args or any(spec.get("variadic") for spec in signature):
        return None
    checks: list[frozenset[str]] = []
    for spec in signature:
        names: set[str] = set()
        for jmespath_type in spec["types"]:
            if "-" in jmespath_type:
                return None
            names.update(jmespath_functions.REVERSE_TYPES_MAP[jmespath_type])
        checks.append(frozenset(names))
    return checks


def _check_functions(node: _Node, expression: str) -> None:
    """Reject unknown functions, wrong arities and bad literal glob patterns before any document is seen."""
    if node.get("type") == "function_expression":
        name = node["value"]
        spec = _FUNCTIONS.FUNCTION_TABLE.get(name)
        if spec is None:
            known = ", ".join(sorted(_FUNCTIONS.FUNCTION_TABLE))
            raise FilterError(
                f"invalid metadata filter {expression!r}: unknown function {name}(); known: {known}"
            )
        signature = spec["signature"]
        variadic = bool(signature) and bool(signature[-1].get("variadic"))
        n_args = len(node["children"])
        if n_args < len(signature) or (n_args > len(signature) and not variadic):
            raise FilterError(
                f"invalid metadata filter {expression!r}: {name}() takes "
                f"{'at least ' if variadic else ''}{len(signature)} argument(s), got {n_args}"
            )
        pattern = node["children"][0]
        if name == "globmatch" and pattern["type"] == "literal" and isinstance(pattern["value"], str):
            glob_to_regex(pattern["value"])
    for child in node.get("children", ()):
        if isinstance(child, dict):
            _check_functions(child, expression)


def _parse(expression: str) -> _Node:
    try:
        with warnings.catch_warnings():
            # Pathway's clients send backtick literals that are not JSON (`docs`): accept them quietly.
            warnings.simplefilter("ignore", PendingDeprecationWarning)
            parsed: _Node = jmespath.compile(expression).parsed
    except jmespath_errors.JMESPathError as error:
        position = getattr(error, "lex_position", None)
        token = getattr(error, "token_value", None)
        where = f" at position {position}" if position is not None else ""
        where += f" (near {token!r})" if token not in (None, "") else ""
        reason = getattr(error, "message", None) or getattr(error, "msg", None) or str(error)
        raise FilterError(
            f"invalid metadata filter {expression!r}: {reason}{where}; expected a JMESPath expression "
            "such as contains(path, `docs`) && modified_at >= to_number(`1702672093`)"
        ) from error
    _check_functions(parsed, expression)
    return parsed


_JSON_SCALARS = frozenset({str, int, float, bool, type(None)})


def _json_document(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """Metadata as the JSON types jmespath expects: frozen mappings become dicts, tuples lists.

    jmespath's functions check types by Python type name, so ``contains(tags, 'x')`` on a tuple would
    fail; ragflow's pipeline freezes metadata into ``FrozenDict``s and tuples.
    """
    if type(metadata) is dict and _JSON_SCALARS.issuperset(map(type, metadata.values())):
        return metadata  # the common case, and checking is cheaper than copying
    return {
        key: value if type(value) in _JSON_SCALARS else _json_value(value) for key, value in metadata.items()
    }


def _json_value(value: Any) -> Any:
    if isinstance(value, Mapping):
        return _json_document(value)
    if isinstance(value, list | tuple):
        return [item if type(item) in _JSON_SCALARS else _json_value(item) for item in value]
    return value


class MetadataFilter:
    """A compiled, pure predicate over a document's metadata; build it with :func:`compile_filter`.

    Calling it never raises: an expression that fails on some metadata (a function given a missing
    field, say) or that yields anything but ``true`` does not match. Instances are immutable and
    compare by their source, so indexes may cache what a filter matched.
    """

    __slots__ = ("_evaluate", "_glob", "expression", "glob_pattern")

    expression: str | None
    glob_pattern: str | None

    def __init__(self, expression: str | None, glob_pattern: str | None) -> None:
        self.expression = expression
        self.glob_pattern = glob_pattern
        self._evaluate = _compile_node(_parse(expression)) if expression is not None else None
        self._glob = glob_to_regex(glob_pattern) if glob_pattern is not None else None

    def __call__(self, metadata: Mapping[str, Any]) -> bool:
        if self._glob is not None:
            path = metadata.get("path")
            if not isinstance(path, str) or self._glob.fullmatch(path) is None:
                return False
        if self._evaluate is None:
            return True
        try:
            return self._evaluate(_json_document(metadata)) is True
        except Exception:
            return False

    def __eq__(self, other: object) -> bool:
        return isinstance(other, MetadataFilter) and (self.expression, self.glob_pattern) == (
            other.expression,
            other.glob_pattern,
        )

    def __hash__(self) -> int:
        return hash((MetadataFilter, self.expression, self.glob_pattern))

    def __repr__(self) -> str:
        return f"MetadataFilter(expression={self.expression!r}, glob_pattern={self.glob_pattern!r})"


def compile_filter(metadata_filter: str | None, filepath_globpattern: str | None) -> MetadataFilter | None:
    """Compile the retrieval API's two filter parameters into one predicate, or ``None`` if both are empty.

    ``metadata_filter`` is JMESPath over the metadata, with JSON literals in backticks and the extra
    function ``globmatch(pattern, path)``. ``filepath_globpattern`` is a glob (see :func:`glob_to_regex`)
    on ``metadata["path"]``, ANDed with the expression as a separate predicate: it is never spliced
    into the expression, so no pattern can inject filter syntax.

    Examples:
        >>> f = compile_filter("contains(path, `docs`) && size > `10`", "**/*.md")
        >>> f({"path": "docs/a.md", "size": 11}), f({"path": "docs/a.pdf", "size": 11})
        (True, False)

    Raises:
        FilterError: the expression does not parse, calls an unknown function or a function with the
            wrong number of arguments, or a glob pattern is invalid; the message names the expression.
    """
    expression = metadata_filter.strip() if metadata_filter else None
    return _compile_cached(expression or None, filepath_globpattern or None)


@functools.lru_cache(maxsize=512)
def _compile_cached(expression: str | None, glob_pattern: str | None) -> MetadataFilter | None:
    if expression is None and glob_pattern is None:
        return None
    return MetadataFilter(expression, glob_pattern)
