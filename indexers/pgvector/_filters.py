"""A ``MetadataFilter`` as SQL over the ``metadata`` JSONB column: a condition that every row the filter
accepts satisfies (a *superset*), exact for the common shapes (comparisons of fields with literals,
``&&``, ``||``, ``!``, ``contains`` of a string, ``globmatch`` and the path glob).

The index always checks the filter itself on the rows SQL returns, so a part that cannot be translated
becomes ``TRUE`` (it lets every row through, never drops one the filter accepts) and the search grows
its candidate count until ``k`` rows pass (see ``_index.py``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ragflow.filters import MetadataFilter, glob_to_regex

__all__ = ["SqlFilter", "translate"]

_TRUE = ("TRUE", (), False)
_FLIPPED = {"lt": "gt", "lte": "gte", "gt": "lt", "gte": "lte"}
_SQL_ORDER = {"lt": "<", "lte": "<=", "gt": ">", "gte": ">="}


@dataclass(frozen=True, slots=True)
class SqlFilter:
    """``sql`` (with ``%s`` placeholders for ``params``) over a table's ``metadata`` column; ``exact`` when
    it accepts exactly the rows the filter accepts (else a superset of them)."""

    sql: str
    params: tuple[Any, ...]
    exact: bool


def translate(predicate: object) -> SqlFilter:
    """The SQL condition of ``predicate``: a translation of a ``MetadataFilter``, ``TRUE`` (inexact) for
    any other callable, which only the index's own check can evaluate."""
    if not isinstance(predicate, MetadataFilter):
        return SqlFilter(*_TRUE)
    parts: list[tuple[str, tuple[Any, ...], bool]] = []
    if predicate.glob_pattern is not None:
        parts.append(_regex_match(["path"], glob_to_regex(predicate.glob_pattern).pattern))
    if predicate.expression is not None:
        import jmespath

        try:
            parts.append(_node(dict(jmespath.compile(predicate.expression).parsed)))
        except Exception:  # the filter compiled it; anything odd here just means "not translated"
            parts.append(_TRUE)
    if not parts:
        return SqlFilter(*_TRUE)
    sql = " AND ".join(f"({part[0]})" for part in parts)
    params = tuple(p for part in parts for p in part[1])
    return SqlFilter(sql, params, all(part[2] for part in parts))


def _node(node: dict[str, Any]) -> tuple[str, tuple[Any, ...], bool]:
    """(sql, params, exact) of a node: ``sql`` holds for every row on which the node is truthy, and for
    exactly those when ``exact`` (then the node is boolean-valued)."""
    kind = node["type"]
    if kind == "comparator":
        return _comparator(node)
    if kind in ("and_expression", "or_expression"):
        (ls, lp, le), (rs, rp, re_) = (_node(child) for child in node["children"])
        op = "AND" if kind == "and_expression" else "OR"
        return f"({ls}) {op} ({rs})", lp + rp, le and re_
    if kind == "not_expression":
        sql, params, exact = _node(node["children"][0])
        return (f"NOT ({sql})", params, True) if exact else _TRUE
    if kind == "function_expression":
        return _function(node)
    return _TRUE


def _field(node: dict[str, Any]) -> list[str] | None:
    """The path of a field reference (``a`` or ``a.b.c``), else ``None``."""
    if node["type"] == "field":
        return [node["value"]]
    if node["type"] == "subexpression":
        path: list[str] = []
        for child in node["children"]:
            part = _field(child)
            if part is None:
                return None
            path += part
        return path
    return None


def _value(path: list[str]) -> tuple[str, tuple[Any, ...]]:
    # a missing field is JSON null, as JMESPath sees it
    return "COALESCE(metadata #> %s::text[], 'null'::jsonb)", (path,)


def _comparator(node: dict[str, Any]) -> tuple[str, tuple[Any, ...], bool]:
    op = node["value"]
    left, right = node["children"]
    if left["type"] == "literal" and _field(right) is not None:
        left, right = right, left
        op = _FLIPPED.get(op, op)
    path = _field(left)
    if path is None or right["type"] not in ("literal", "field", "subexpression"):
        return _TRUE
    value, params = _value(path)
    if right["type"] != "literal":
        other = _field(right)
        if other is None or op not in ("eq", "ne"):
            return _TRUE
        other_value, other_params = _value(other)
        sql = f"{value} = {other_value}"
        return (sql if op == "eq" else f"NOT ({sql})"), params + other_params, True
    literal = right["value"]
    if op in ("eq", "ne"):
        # jsonb equality is JMESPath's: 1 == 1.0, true != 1, objects and arrays by value
        sql = f"{value} = %s::jsonb"
        return (sql if op == "eq" else f"NOT ({sql})"), (*params, json.dumps(literal)), True
    order = _SQL_ORDER[op]
    if isinstance(literal, bool) or not isinstance(literal, int | float | str):
        return "FALSE", (), True  # ordering anything but two numbers or two strings is null: no match
    if isinstance(literal, str):
        # Python orders strings by code point, as a "C" collation orders UTF-8 bytes
        text = f"({value} #>> '{{}}') COLLATE \"C\""
        sql = f"CASE WHEN jsonb_typeof({value}) = 'string' THEN {text} {order} %s ELSE FALSE END"
        return sql, (*params, *params, literal), True
    sql = f"CASE WHEN jsonb_typeof({value}) = 'number' THEN ({value})::numeric {order} %s ELSE FALSE END"
    return sql, (*params, *params, literal), True


def _function(node: dict[str, Any]) -> tuple[str, tuple[Any, ...], bool]:
    name, args = node["value"], node["children"]
    if len(args) != 2:
        return _TRUE
    if name == "globmatch" and args[0]["type"] == "literal" and isinstance(args[0]["value"], str):
        path = _field(args[1])
        if path is not None:
            return _regex_match(path, glob_to_regex(args[0]["value"]).pattern)
    if name == "contains" and args[1]["type"] == "literal" and isinstance(args[1]["value"], str):
        path = _field(args[0])
        if path is not None:
            value, params = _value(path)
            search = args[1]["value"]
            sql = (
                f"CASE jsonb_typeof({value}) WHEN 'string' THEN strpos({value} #>> '{{}}', %s) > 0 "
                f"WHEN 'array' THEN {value} @> %s::jsonb ELSE FALSE END"
            )
            return sql, (*params, *params, search, *params, json.dumps([search])), True
    return _TRUE


def _regex_match(path: list[str], regex: str) -> tuple[str, tuple[Any, ...], bool]:
    value, params = _value(path)
    sql = f"CASE WHEN jsonb_typeof({value}) = 'string' THEN ({value} #>> '{{}}') ~ %s ELSE FALSE END"
    return sql, (*params, *params, f"^(?:{regex})$"), True
