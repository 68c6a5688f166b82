"""Stateless operators, per-epoch consolidation and the atomic delivery of an epoch to sinks."""

from __future__ import annotations

from typing import Any

import pytest

from ragflow.engine import Change, Engine, FrozenDict, consolidate
from ragflow.errors import EngineError


def test_map_replaces_rows_and_keeps_keys() -> None:
    engine = Engine()
    words = engine.input()
    upper = words.map(str.upper).collect()
    engine.advance({words: [(1, "a", 1), (2, "b", 1)]})
    assert upper.as_dict() == {1: "A", 2: "B"}


def test_select_is_map() -> None:
    engine = Engine()
    words = engine.input()
    lengths = words.select(len).collect()
    engine.advance({words: [(1, "abc", 1)]})
    assert lengths.as_dict() == {1: 3}


def test_filter_keeps_rows_whose_predicate_is_truthy_and_follows_retractions() -> None:
    engine = Engine()
    numbers = engine.input()
    evens = numbers.filter(lambda n: n % 2 == 0).collect()
    engine.advance({numbers: [(1, 1, 1), (2, 2, 1), (4, 4, 1)]})
    assert evens.as_dict() == {2: 2, 4: 4}
    engine.advance({numbers: [(2, 2, -1), (2, 3, 1)]})
    assert evens.as_dict() == {4: 4}


def test_flat_map_outputs_inherit_the_input_diff() -> None:
    engine = Engine()
    docs = engine.input()
    words = docs.flat_map(lambda key, text: [((key, i), w) for i, w in enumerate(text.split())]).collect()
    engine.advance({docs: [("d", "to be", 1)]})
    assert words.as_dict() == {("d", 0): "to", ("d", 1): "be"}
    engine.advance({docs: [("d", "to be", -1)]})
    assert words.multiset() == {}


def test_rekey_computes_keys_from_key_and_row() -> None:
    engine = Engine()
    rows = engine.input()
    rekeyed = rows.rekey(lambda key, row: f"{key}:{row}").collect()
    engine.advance({rows: [(1, "x", 1)]})
    assert rekeyed.as_dict() == {"1:x": "x"}


def test_concat_adds_multiplicities() -> None:
    engine = Engine()
    a, b = engine.input(), engine.input()
    both = a.concat(b, a).collect()
    engine.advance({a: [(1, "x", 1)], b: [(1, "x", 1), (2, "y", 1)]})
    assert both.multiset() == {(1, "x"): 3, (2, "y"): 1}


def test_identical_retraction_and_insertion_in_one_epoch_cancel_before_reaching_sinks() -> None:
    engine = Engine()
    docs = engine.input()
    paragraphs = docs.flat_map(lambda key, text: [((key, i), p) for i, p in enumerate(text.split("|"))])
    epochs: list[list[Change]] = []
    paragraphs.subscribe(lambda epoch, changes: epochs.append(changes))
    engine.advance({docs: [("d", "one|two|three", 1)]})
    engine.advance({docs: [("d", "one|two|three", -1), ("d", "one|TWO|three", 1)]})
    # editing one paragraph costs one paragraph: the unchanged ones cancel out
    assert sorted(epochs[1]) == [Change(("d", 1), "TWO", 1), Change(("d", 1), "two", -1)]


def test_an_epoch_without_net_change_does_not_call_sinks() -> None:
    engine = Engine()
    rows = engine.input()
    calls: list[int] = []
    rows.map(str.lower).subscribe(lambda epoch, changes: calls.append(epoch))
    engine.advance({rows: [(1, "A", 1)]})
    engine.advance({rows: [(1, "A", -1), (1, "a", 1), (1, "a", -1), (1, "A", 1)]})
    assert calls == [1]


def test_a_sink_receives_a_whole_epoch_in_one_call() -> None:
    engine = Engine()
    rows = engine.input()
    calls: list[tuple[int, int]] = []
    rows.subscribe(lambda epoch, changes: calls.append((epoch, len(changes))))
    engine.advance({rows: [(i, i, 1) for i in range(100)]})
    assert calls == [(1, 100)]


def test_consolidate_sums_diffs_and_drops_zeros() -> None:
    changes = [(1, "a", 1), (1, "a", 1), (2, "b", 1), (2, "b", -1), (3, "c", -1)]
    assert sorted(consolidate(changes)) == [Change(1, "a", 2), Change(3, "c", -1)]


def test_frozen_dict_is_hashable_and_equal_to_the_same_dict() -> None:
    row = FrozenDict({"a": 1}, b=2)
    assert row == {"a": 1, "b": 2}
    assert hash(row) == hash(FrozenDict(b=2, a=1))
    assert row.replace(b=3) == {"a": 1, "b": 3}
    assert {row: 1}[FrozenDict(a=1, b=2)] == 1


def test_advance_feeds_input_tables_only() -> None:
    engine = Engine()
    rows = engine.input()
    derived = rows.map(str)
    with pytest.raises(EngineError, match="not an input table"):
        engine.advance({derived: [(1, "a", 1)]})


def test_epoch_report_counts_input_and_output_changes() -> None:
    engine = Engine()
    rows = engine.input()
    rows.filter(lambda row: row != "drop").collect()
    report = engine.advance({rows: [(1, "keep", 1), (2, "drop", 1)]})
    assert (report.epoch, report.input_changes, report.output_changes) == (1, 2, 1)
    assert report.seconds >= 0


def test_map_over_table_with_several_sinks_delivers_the_same_changes_to_each() -> None:
    engine = Engine()
    rows = engine.input()
    doubled = rows.map(lambda n: n * 2)
    first, second = doubled.collect(), doubled.collect()
    seen: list[Any] = []
    doubled.subscribe(lambda epoch, changes: seen.extend(changes))
    engine.advance({rows: [(1, 1, 1), (2, 2, 1)]})
    assert first.multiset() == second.multiset() == {(1, 2): 1, (2, 4): 1}
    assert sorted(seen) == [Change(1, 2, 1), Change(2, 4, 1)]
