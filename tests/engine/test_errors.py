"""Bad input is an error per row, never a stopped pipeline: every operator that runs user code, every
stateful operator and sink that needs hashable rows, and declared schemas turn a failing row into a
``RowError`` naming the operator, while every other row still reaches the output; retracting the bad
row retracts its error."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

import pytest

from ragflow.engine import (
    Change,
    Engine,
    FrozenDict,
    RowError,
    Session,
    StaticSource,
    Table,
    Tumbling,
    reducers,
)
from ragflow.engine.operators import Schema

from .reference import Delta, Multiset

Row = tuple[str, int]
GOOD: list[Delta] = [(1, ("a", 1), 1), (2, ("a", 2), 1), (3, ("b", 5), 1)]
"""Rows every case accepts; each case adds one bad row ``(9, ("z", 0))`` that makes user code divide by 0."""
BAD: Delta = (9, ("z", 0), 1)


def _first(row: Row) -> Any:
    return row[0]


def _tenth(row: Row) -> int:
    return 10 // row[1]


def _listed_if_zero(row: Row) -> Any:
    return list(row) if row[1] == 0 else row


def _listed_key_if_zero(key: int, row: Row) -> Any:
    return [key] if row[1] == 0 else key


def _divide_batch(batch: list[Row]) -> list[int]:
    return [10 // row[1] for row in batch]


def _drop_zeros_batch(batch: list[Row]) -> list[int]:
    return [row[1] * 10 for row in batch if row[1] != 0]


def _no_zero(values: tuple[int, ...]) -> int:
    return 10 // min(values)


@dataclass(frozen=True)
class BadRowCase:
    """A pipeline, the bad row it rejects, and the ``RowError`` that must describe it."""

    build: Callable[[Table], Table]
    operator: str
    message: str
    key: Hashable = BAD[0]
    row: str = repr(BAD[1])
    bad: Delta = BAD
    good: tuple[Delta, ...] = tuple(GOOD)
    schema: Schema | None = None


CASES: dict[str, BadRowCase] = {
    "map": BadRowCase(lambda t: t.map(_tenth), "map#", "ZeroDivisionError"),
    "filter": BadRowCase(lambda t: t.filter(lambda r: _tenth(r) > 2), "filter#", "ZeroDivisionError"),
    "flat_map": BadRowCase(
        lambda t: t.flat_map(lambda k, r: [(k, _tenth(r))]), "flat_map#", "ZeroDivisionError"
    ),
    "rekey": BadRowCase(lambda t: t.rekey(lambda k, r: _tenth(r)), "rekey#", "ZeroDivisionError"),
    "groupby key": BadRowCase(
        lambda t: t.groupby(lambda r: {"a": "A", "b": "B"}[r[0]]).reduce(n=reducers.count()),
        "groupby_reduce#",
        "KeyError",
    ),
    "reducer value": BadRowCase(
        lambda t: t.groupby(_first).reduce(total=reducers.sum(_tenth)), "groupby_reduce#", "ZeroDivisionError"
    ),
    "reducer result": BadRowCase(
        lambda t: t.groupby(_first).reduce(worst=reducers.udf_reducer(_no_zero, lambda r: r[1])),
        "groupby_reduce#",
        "reducer failed for group 'z': ZeroDivisionError",
        key="z",
        row="'z'",
    ),
    "join key": BadRowCase(
        lambda t: t.join(t, lambda r: r[0] if _tenth(r) else None, _first),
        "join#",
        "ZeroDivisionError",
    ),
    "join select": BadRowCase(
        lambda t: t.join(t, _first, _first, select=lambda lrow, rrow: _tenth(lrow) + _tenth(rrow)),
        "join#",
        "ZeroDivisionError",
        key=(9, 9),
        row=repr((BAD[1], BAD[1])),
    ),
    "deduplicate order": BadRowCase(
        lambda t: t.deduplicate(_first, order=_tenth),
        "deduplicate#",
        "order failed for group 'z': ZeroDivisionError",
        key="z",
        row="'z'",
    ),
    "window time": BadRowCase(
        lambda t: t.windowby(_tenth, Tumbling(2)).reduce(n=reducers.count()),
        "groupby_reduce#",
        "ZeroDivisionError",
    ),
    "window cutoff time": BadRowCase(
        lambda t: t.windowby(_tenth, Tumbling(2), cutoff=1).reduce(n=reducers.count()),
        "cutoff#",
        "ZeroDivisionError",
    ),
    "session time": BadRowCase(
        lambda t: t.windowby(_tenth, Session(1)).reduce(n=reducers.count()),
        "session_window#",
        "ZeroDivisionError",
    ),
    "unhashable row into groupby": BadRowCase(
        lambda t: t.map(_listed_if_zero).groupby(lambda r: r).reduce(n=reducers.count()),
        "groupby_reduce#",
        "unhashable type: 'list'",
        row="['z', 0]",
    ),
    "unhashable row into a sink": BadRowCase(
        lambda t: t.map(_listed_if_zero), "map#", "not hashable", row="['z', 0]"
    ),
    "unhashable row into join": BadRowCase(
        lambda t: t.map(_listed_if_zero).join(t, _first, _first), "join#", "unhashable", row="['z', 0]"
    ),
    "unhashable row into deduplicate": BadRowCase(
        lambda t: t.map(_listed_if_zero).deduplicate(_first), "deduplicate#", "unhashable", row="['z', 0]"
    ),
    "unhashable key into a sink": BadRowCase(
        lambda t: t.rekey(_listed_key_if_zero), "rekey#", "not hashable", key="[9]"
    ),
    "batched udf raises for one input of a batch": BadRowCase(
        lambda t: t.map_batched(_divide_batch), "map_batched#", "ZeroDivisionError"
    ),
    "batched udf returns the wrong number of results": BadRowCase(
        lambda t: t.map_batched(_drop_zeros_batch),
        "map_batched#",
        "returned 0 results for a batch of 1 inputs",
    ),
    "schema field type": BadRowCase(
        lambda t: t,
        "input#",
        "field 'a' should be int, got str 'x'",
        row=repr(FrozenDict(a="x")),
        bad=(9, FrozenDict(a="x"), 1),
        good=((1, FrozenDict(a=1), 1), (2, FrozenDict(a=2), 1)),
        schema={"a": int},
    ),
    "schema missing field": BadRowCase(
        lambda t: t,
        "input#",
        "missing fields ['a'], unexpected fields ['b']",
        row=repr(FrozenDict(b=1)),
        bad=(9, FrozenDict(b=1), 1),
        good=((1, FrozenDict(a=1), 1),),
        schema={"a": int},
    ),
    "schema type": BadRowCase(
        lambda t: t,
        "input#",
        "expected int, got str",
        row="'x'",
        bad=(9, "x", 1),
        good=((1, 1, 1),),
        schema=int,
    ),
}


def _output_of(case: BadRowCase, changes: list[Delta]) -> tuple[Engine, Table, Multiset]:
    engine = Engine()
    rows = engine.input(schema=case.schema)
    output = case.build(rows).collect()
    engine.advance({rows: changes})
    return engine, rows, output.multiset()


@pytest.mark.parametrize("name", list(CASES))
def test_a_bad_row_becomes_a_row_error_and_the_other_rows_still_flow(name: str) -> None:
    case = CASES[name]
    _, _, expected = _output_of(case, list(case.good))
    engine = Engine()
    rows = engine.input(schema=case.schema)
    output = case.build(rows).collect()
    engine.advance({rows: [*case.good, case.bad]})
    (error,) = engine.current_errors()
    assert error.operator.startswith(case.operator)
    assert case.message in error.message
    assert error.key == case.key
    assert error.row == case.row
    assert output.multiset() == expected
    bad_key, bad_row, _ = case.bad
    engine.advance({rows: [(bad_key, bad_row, -1)]})
    assert engine.current_errors() == []
    assert output.multiset() == expected


def test_schema_is_checked_on_rows_from_a_source() -> None:
    engine = Engine()
    source = StaticSource([[(1, FrozenDict(a=1), 1), (2, FrozenDict(a="two"), 1)]], name="docs")
    rows = engine.source(source, schema={"a": int}).collect()
    engine.run("static", handle_signals=False)
    assert rows.as_dict() == {1: FrozenDict(a=1)}
    (error,) = engine.current_errors()
    assert error.operator.endswith(":docs") and error.key == 2


def test_a_bad_row_in_a_populated_group_replaces_its_result_until_it_is_retracted() -> None:
    engine = Engine()
    rows = engine.input()
    out = rows.groupby(_first).reduce(worst=reducers.udf_reducer(_no_zero, lambda r: r[1])).collect()
    engine.advance({rows: [(1, ("a", 5), 1)]})
    engine.advance({rows: [(2, ("a", 0), 1)]})
    assert out.multiset() == {}
    assert [e.key for e in engine.current_errors()] == ["a"]
    engine.advance({rows: [(2, ("a", 0), -1)]})
    assert out.as_dict() == {"a": FrozenDict(worst=2)}
    assert engine.current_errors() == []


def test_the_same_bad_row_twice_needs_two_retractions_to_clear_its_error() -> None:
    engine = Engine()
    rows = engine.input()
    rows.map(_tenth).collect()
    engine.advance({rows: [BAD, BAD]})
    engine.advance({rows: [(BAD[0], BAD[1], -1)]})
    assert len(engine.current_errors()) == 1
    engine.advance({rows: [(BAD[0], BAD[1], -1)]})
    assert engine.current_errors() == []


def test_the_error_table_is_a_table_that_can_be_subscribed_to() -> None:
    engine = Engine()
    rows = engine.input()
    rows.map(_tenth).collect()
    seen: list[Change] = []
    engine.errors.subscribe(lambda epoch, changes: seen.extend(changes))
    engine.advance({rows: [BAD]})
    engine.advance({rows: [(BAD[0], BAD[1], -1)]})
    assert [c.diff for c in seen] == [1, -1]
    assert isinstance(seen[0].row, RowError) and seen[0].row.operator.startswith("map#")


def test_row_errors_are_ordered_by_operator_and_key() -> None:
    engine = Engine()
    rows = engine.input()
    rows.map(_tenth).filter(lambda n: 1 // (n - 5)).collect()
    engine.advance({rows: [(3, ("a", 0), 1), (1, ("a", 0), 1), (2, ("a", 2), 1)]})
    assert [(e.operator.split("#")[0], e.key) for e in engine.current_errors()] == [
        ("filter", 2),
        ("map", 1),
        ("map", 3),
    ]


def test_a_sum_over_a_value_of_the_wrong_type_is_a_row_error() -> None:
    engine = Engine()
    rows = engine.input()
    totals = rows.groupby(_first).reduce(total=reducers.sum(lambda r: r[1])).collect()
    engine.advance({rows: [(1, ("a", 1), 1), (2, ("a", "x"), 1), (3, ("b", 2), 1)]})
    assert totals.as_dict() == {"a": FrozenDict(total=1), "b": FrozenDict(total=2)}
    (error,) = engine.current_errors()
    assert error.operator.startswith("groupby_reduce#") and error.key == 2
