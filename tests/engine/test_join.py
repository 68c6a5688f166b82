"""Inner and left joins: output keys, corrections when the other side changes, multiplicities."""

from __future__ import annotations

import pytest

from ragflow.engine import Change, Engine, Table


def _first(row: tuple[str, str]) -> str:
    return row[0]


def _tables() -> tuple[Engine, Table, Table]:
    engine = Engine()
    return engine, engine.input(name="left"), engine.input(name="right")


def test_inner_join_pairs_matching_rows_keyed_by_both_keys() -> None:
    engine, left, right = _tables()
    joined = left.join(right, _first, _first).collect()
    engine.advance({left: [(1, ("a", "L1"), 1), (2, ("b", "L2"), 1)], right: [(10, ("a", "R1"), 1)]})
    assert joined.as_dict() == {(1, 10): (("a", "L1"), ("a", "R1"))}


def test_inner_join_select_shapes_the_output_row() -> None:
    engine, left, right = _tables()
    joined = left.join(right, _first, _first, select=lambda lrow, rrow: lrow[1] + rrow[1]).collect()
    engine.advance({left: [(1, ("a", "L"), 1)], right: [(10, ("a", "R"), 1)]})
    assert joined.as_dict() == {(1, 10): "LR"}


def test_inner_join_retracts_pairs_when_either_side_is_retracted() -> None:
    engine, left, right = _tables()
    joined = left.join(right, _first, _first).collect()
    engine.advance({left: [(1, ("a", "L"), 1)], right: [(10, ("a", "R"), 1), (11, ("a", "S"), 1)]})
    assert len(joined) == 2
    engine.advance({right: [(10, ("a", "R"), -1)]})
    assert set(joined.as_dict()) == {(1, 11)}
    engine.advance({left: [(1, ("a", "L"), -1)]})
    assert joined.multiset() == {}


def test_join_multiplicities_multiply() -> None:
    engine, left, right = _tables()
    joined = left.join(right, _first, _first).collect()
    engine.advance({left: [(1, ("a", "L"), 2)], right: [(10, ("a", "R"), 3)]})
    assert joined.multiset() == {((1, 10), (("a", "L"), ("a", "R"))): 6}


def test_left_join_emits_unmatched_left_rows_with_none() -> None:
    engine, left, right = _tables()
    joined = left.join(right, _first, _first, how="left").collect()
    engine.advance({left: [(1, ("a", "L"), 1)]})
    assert joined.as_dict() == {(1, None): (("a", "L"), None)}


def test_left_join_replaces_the_unmatched_row_when_a_match_arrives_and_restores_it_when_it_goes() -> None:
    engine, left, right = _tables()
    joined = left.join(right, _first, _first, how="left")
    epochs: list[list[Change]] = []
    joined.subscribe(lambda epoch, changes: epochs.append(sorted(changes, key=repr)))
    engine.advance({left: [(1, ("a", "L"), 1)]})
    engine.advance({right: [(10, ("a", "R"), 1)]})
    engine.advance({right: [(10, ("a", "R"), -1)]})
    unmatched = Change((1, None), (("a", "L"), None), 1)
    matched = Change((1, 10), (("a", "L"), ("a", "R")), 1)
    assert epochs == [
        [unmatched],
        sorted([matched, unmatched._replace(diff=-1)], key=repr),
        sorted([matched._replace(diff=-1), unmatched], key=repr),
    ]


def test_left_join_row_and_its_match_arriving_together_never_show_as_unmatched() -> None:
    engine, left, right = _tables()
    joined = left.join(right, _first, _first, how="left")
    seen: list[Change] = []
    joined.subscribe(lambda epoch, changes: seen.extend(changes))
    engine.advance({left: [(1, ("a", "L"), 1)], right: [(10, ("a", "R"), 1)]})
    assert seen == [Change((1, 10), (("a", "L"), ("a", "R")), 1)]


def test_join_rejects_unknown_how() -> None:
    _, left, right = _tables()
    with pytest.raises(ValueError, match="'outer'"):
        left.join(right, _first, _first, how="outer")  # type: ignore[arg-type]
