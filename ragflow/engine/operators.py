"""Stateless operators (map, filter, flat_map, rekey, concat) and the schema check at sources.

User functions run per row; a row whose function raises becomes an error record with the row's diff,
so retracting the bad row retracts its error too (user functions must be deterministic)."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Mapping
from typing import Any

from .changes import Delta, describe, report
from .graph import EpochContext, Node

__all__ = ["ConcatNode", "FilterNode", "FlatMapNode", "InputNode", "MapNode", "RekeyNode", "Schema"]

Schema = type | tuple[type, ...] | Mapping[str, type]


def _failure(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


class InputNode(Node):
    """Where a source's changes enter the graph; checks the declared schema."""

    kind = "input"

    def __init__(self, schema: Schema | None = None) -> None:
        super().__init__()
        self.schema = schema
        self.pending: list[Delta] = []

    def step(self, deltas: list[list[Delta]], ctx: EpochContext) -> list[Delta]:
        changes, self.pending = self.pending, []
        if self.schema is not None:
            changes = [c for c in changes if self._conforms(c, ctx)]
        return changes

    def _conforms(self, change: Delta, ctx: EpochContext) -> bool:
        problem = schema_mismatch(self.schema, change[1])
        if problem is None:
            return True
        report(ctx.errors, self.name, change, f"row does not match the declared schema: {problem}")
        return False


def schema_mismatch(schema: Schema | None, row: Any) -> str | None:
    """Why ``row`` does not match ``schema``, or None when it does."""
    if schema is None:
        return None
    if isinstance(schema, Mapping):
        if not isinstance(row, Mapping):
            return f"expected a mapping with fields {sorted(schema)}, got {type(row).__name__}"
        missing = sorted(set(schema) - set(row))
        extra = sorted(set(row) - set(schema))
        if missing or extra:
            return f"missing fields {missing}, unexpected fields {extra}"
        for name, expected in schema.items():
            if not isinstance(row[name], expected):
                got = type(row[name]).__name__
                return f"field {name!r} should be {expected.__name__}, got {got} {describe(row[name], 60)}"
        return None
    if not isinstance(row, schema):
        expected_names = (
            ", ".join(t.__name__ for t in schema) if isinstance(schema, tuple) else schema.__name__
        )
        return f"expected {expected_names}, got {type(row).__name__}"
    return None


class MapNode(Node):
    """``row -> fn(row)``, keys unchanged."""

    kind = "map"

    def __init__(self, source: Node, fn: Callable[[Any], Any]) -> None:
        super().__init__([source])
        self.fn = fn

    def step(self, deltas: list[list[Delta]], ctx: EpochContext) -> list[Delta]:
        fn = self.fn
        try:
            return [(k, fn(r), d) for k, r, d in deltas[0]]
        except Exception:
            pass  # redo row by row so only the failing rows are dropped
        out = []
        for change in deltas[0]:
            try:
                out.append((change[0], fn(change[1]), change[2]))
            except Exception as exc:
                report(ctx.errors, self.name, change, _failure(exc))
        return out


class FilterNode(Node):
    """Keep rows where ``predicate(row)`` is truthy."""

    kind = "filter"

    def __init__(self, source: Node, predicate: Callable[[Any], Any]) -> None:
        super().__init__([source])
        self.predicate = predicate

    def step(self, deltas: list[list[Delta]], ctx: EpochContext) -> list[Delta]:
        predicate = self.predicate
        try:
            return [c for c in deltas[0] if predicate(c[1])]
        except Exception:
            pass
        out = []
        for change in deltas[0]:
            try:
                if predicate(change[1]):
                    out.append(change)
            except Exception as exc:
                report(ctx.errors, self.name, change, _failure(exc))
        return out


class FlatMapNode(Node):
    """``(key, row) -> [(new_key, new_row), ...]``: each output inherits the input's diff."""

    kind = "flat_map"

    def __init__(self, source: Node, fn: Callable[[Any, Any], Iterable[tuple[Hashable, Any]]]) -> None:
        super().__init__([source])
        self.fn = fn

    def step(self, deltas: list[list[Delta]], ctx: EpochContext) -> list[Delta]:
        out: list[Delta] = []
        fn = self.fn
        for change in deltas[0]:
            try:
                produced = [(k, r, change[2]) for k, r in fn(change[0], change[1])]
            except Exception as exc:
                report(ctx.errors, self.name, change, _failure(exc))
            else:
                out.extend(produced)
        return out


class RekeyNode(Node):
    """``(key, row) -> (fn(key, row), row)``."""

    kind = "rekey"

    def __init__(self, source: Node, fn: Callable[[Any, Any], Hashable]) -> None:
        super().__init__([source])
        self.fn = fn

    def step(self, deltas: list[list[Delta]], ctx: EpochContext) -> list[Delta]:
        out = []
        fn = self.fn
        for change in deltas[0]:
            try:
                out.append((fn(change[0], change[1]), change[1], change[2]))
            except Exception as exc:
                report(ctx.errors, self.name, change, _failure(exc))
        return out


class ConcatNode(Node):
    """The multiset union of its inputs."""

    kind = "concat"

    def step(self, deltas: list[list[Delta]], ctx: EpochContext) -> list[Delta]:
        return [change for delta in deltas for change in delta]
