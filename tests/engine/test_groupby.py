"""``groupby(...).reduce(...)``, the reducers, and ``deduplicate``: results per group and the corrections
emitted when a group changes."""

from __future__ import annotations

import math

from ragflow.engine import Change, Engine, FrozenDict, reducers


def _group(row: tuple[str, int]) -> str:
    return row[0]


def _value(row: tuple[str, int]) -> int:
    return row[1]


def test_every_reducer_computes_its_result_per_group() -> None:
    engine = Engine()
    rows = engine.input()
    out = (
        rows.groupby(_group)
        .reduce(
            n=reducers.count(),
            total=reducers.sum(_value),
            low=reducers.min(_value),
            high=reducers.max(_value),
            values=reducers.collect(_value),
            some=reducers.any_value(_value),
            mean=reducers.avg(_value),
            product=reducers.udf_reducer(math.prod, _value),
        )
        .collect()
    )
    engine.advance({rows: [(1, ("a", 3), 1), (2, ("a", 1), 1), (3, ("a", 3), 1), (4, ("b", 5), 1)]})
    assert out.as_dict()["a"] == {
        "n": 3,
        "total": 7,
        "low": 1,
        "high": 3,
        "values": (1, 3, 3),
        "some": 1,
        "mean": 7 / 3,
        "product": 9,
    }
    assert out.as_dict()["b"]["values"] == (5,)


def test_collect_sorts_unorderable_values_by_repr() -> None:
    engine = Engine()
    rows = engine.input()
    out = rows.reduce(values=reducers.collect()).collect()
    engine.advance({rows: [(1, "x", 1), (2, 1, 1)]})
    assert out.as_dict()[()]["values"] == ("x", 1)  # repr order: "'x'" < "1"


def test_a_changed_group_emits_the_retraction_of_its_old_result_and_its_new_result() -> None:
    engine = Engine()
    rows = engine.input()
    epochs: list[list[Change]] = []
    rows.groupby(_group).reduce(total=reducers.sum(_value)).subscribe(lambda e, c: epochs.append(c))
    engine.advance({rows: [(1, ("a", 1), 1)]})
    engine.advance({rows: [(2, ("a", 2), 1)]})
    assert sorted(epochs[1], key=lambda c: c.diff) == [
        Change("a", FrozenDict(total=1), -1),
        Change("a", FrozenDict(total=3), 1),
    ]


def test_a_group_whose_last_row_is_retracted_disappears() -> None:
    engine = Engine()
    rows = engine.input()
    out = rows.groupby(_group).reduce(n=reducers.count()).collect()
    engine.advance({rows: [(1, ("a", 1), 1), (2, ("b", 1), 1)]})
    engine.advance({rows: [(1, ("a", 1), -1)]})
    assert out.as_dict() == {"b": FrozenDict(n=1)}


def test_a_group_whose_result_did_not_change_emits_nothing() -> None:
    engine = Engine()
    rows = engine.input()
    epochs: list[int] = []
    rows.groupby(_group).reduce(low=reducers.min(_value)).subscribe(lambda e, c: epochs.append(e))
    engine.advance({rows: [(1, ("a", 1), 1)]})
    engine.advance({rows: [(2, ("a", 5), 1)]})  # min stays 1
    assert epochs == [1]


def test_min_falls_back_to_the_next_value_when_the_minimum_is_retracted() -> None:
    engine = Engine()
    rows = engine.input()
    out = rows.reduce(low=reducers.min(_value), high=reducers.max(_value)).collect()
    engine.advance({rows: [(1, ("a", 1), 1), (2, ("a", 5), 1), (3, ("a", 9), 1)]})
    engine.advance({rows: [(1, ("a", 1), -1), (3, ("a", 9), -1)]})
    assert out.as_dict()[()] == {"low": 5, "high": 5}


def test_deduplicate_keeps_the_row_with_the_greatest_order() -> None:
    engine = Engine()
    versions = engine.input()
    latest = versions.deduplicate(_group, order=_value).collect()
    engine.advance({versions: [(1, ("doc", 2), 1), (2, ("doc", 7), 1), (3, ("doc", 5), 1)]})
    assert latest.as_dict() == {"doc": ("doc", 7)}
    engine.advance({versions: [(2, ("doc", 7), -1)]})
    assert latest.as_dict() == {"doc": ("doc", 5)}


def test_deduplicate_breaks_order_ties_independently_of_arrival() -> None:
    winners = set()
    for arrival in ([("a", 1), ("b", 1)], [("b", 1), ("a", 1)]):
        engine = Engine()
        rows = engine.input()
        out = rows.deduplicate(lambda r: "g", order=_value).collect()
        for i, row in enumerate(arrival):
            engine.advance({rows: [(i, row, 1)]})
        winners.add(out.as_dict()["g"])
    assert len(winners) == 1


def test_deduplicate_without_order_keeps_the_latest_insertion_still_present() -> None:
    engine = Engine()
    rows = engine.input()
    latest = rows.deduplicate(_group).collect()
    engine.advance({rows: [(1, ("g", 1), 1)]})
    engine.advance({rows: [(2, ("g", 2), 1)]})
    engine.advance({rows: [(3, ("g", 0), 1)]})
    assert latest.as_dict() == {"g": ("g", 0)}
    engine.advance({rows: [(3, ("g", 0), -1)]})
    assert latest.as_dict() == {"g": ("g", 2)}


def test_deduplicate_without_order_ignores_a_retraction_and_reinsertion_that_cancel_in_one_epoch() -> None:
    engine = Engine()
    rows = engine.input()
    latest = rows.deduplicate(_group).collect()
    engine.advance({rows: [(1, ("g", "A"), 1)]})
    engine.advance({rows: [(2, ("g", "B"), 1)]})
    engine.advance({rows: [(1, ("g", "A"), -1), (1, ("g", "A"), 1)]})
    assert latest.as_dict() == {"g": ("g", "B")}
