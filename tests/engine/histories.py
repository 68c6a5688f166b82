"""Random but valid change histories for the property tests, and the check that drives an engine through
one epoch by epoch against a from-scratch reference.

A history is a list of epochs; an epoch holds one list of ``(key, row, diff)`` changes per input. The
generator keeps a model of every input's current collection so that it only retracts rows that are
present; an update retracts a present row and inserts a new row under the same key."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Hashable, Sequence
from typing import Any

from hypothesis import strategies as st

from ragflow.engine import Engine, Table

from .reference import Delta, Multiset, as_changes

History = list[list[list[Delta]]]

KEYS = st.integers(0, 4)
"""Few keys, so updates, duplicates and key collisions happen often."""


@st.composite
def histories(
    draw: st.DrawFn,
    rows: Sequence[st.SearchStrategy[Any]],
    keys: st.SearchStrategy[Hashable] = KEYS,
    max_epochs: int = 6,
    max_changes: int = 6,
) -> History:
    """A history over ``len(rows)`` inputs, input ``i`` drawing its rows from ``rows[i]``."""
    present: list[Counter[tuple[Hashable, Any]]] = [Counter() for _ in rows]
    history: History = []
    for _ in range(draw(st.integers(1, max_epochs))):
        epoch: list[list[Delta]] = [[] for _ in rows]
        for _ in range(draw(st.integers(0, max_changes))):
            side = draw(st.integers(0, len(rows) - 1))
            _draw_change(draw, rows[side], keys, present[side], epoch[side])
        history.append(epoch)
    return history


def _draw_change(
    draw: st.DrawFn,
    rows: st.SearchStrategy[Any],
    keys: st.SearchStrategy[Hashable],
    present: Counter[tuple[Hashable, Any]],
    out: list[Delta],
) -> None:
    kind = draw(st.sampled_from(["insert", "update", "delete"]))
    if kind == "insert" or not present:
        key, row = draw(keys), draw(rows)
        out.append((key, row, 1))
        present[(key, row)] += 1
        return
    key, row = draw(st.sampled_from(sorted(present, key=repr)))
    out.append((key, row, -1))
    present[(key, row)] -= 1
    if not present[(key, row)]:
        del present[(key, row)]
    if kind == "update":
        new_row = draw(rows)
        out.append((key, new_row, 1))
        present[(key, new_row)] += 1


def single_input(history: History) -> list[list[Delta]]:
    """The changes of the only input, epoch by epoch."""
    return [epoch[0] for epoch in history]


def final_changes(history: History, side: int = 0) -> list[Delta]:
    """Every change of one input in history order."""
    return [change for epoch in history for change in epoch[side]]


def assert_incremental(
    history: History,
    build: Callable[..., Table],
    reference: Callable[..., Multiset],
) -> None:
    """Drive ``build(*inputs)`` through ``history``. After every epoch its output must equal
    ``reference(*collections)`` of the inputs' current collections, and so must the output of a fresh
    engine fed those collections in one ``advance``; no row error may appear on the way."""
    n_inputs = len(history[0])
    engine = Engine()
    inputs = [engine.input(name=f"in{i}") for i in range(n_inputs)]
    output = build(*inputs).collect()
    current: list[Counter[tuple[Hashable, Any]]] = [Counter() for _ in range(n_inputs)]
    for number, epoch in enumerate(history, 1):
        engine.advance(dict(zip(inputs, epoch, strict=True)))
        for items, changes in zip(current, epoch, strict=True):
            for key, row, diff in changes:
                items[(key, row)] += diff
        collections = [{pair: m for pair, m in items.items() if m} for items in current]
        expected = reference(*collections)
        assert output.multiset() == expected, f"incremental output differs after epoch {number}"
        assert fresh_output(build, collections) == expected, f"one-shot output differs at epoch {number}"
    assert engine.current_errors() == []


def fresh_output(build: Callable[..., Table], collections: Sequence[Multiset]) -> Multiset:
    """The output of a new engine fed ``collections`` (one per input) in a single epoch."""
    engine = Engine()
    inputs = [engine.input(name=f"in{i}") for i in range(len(collections))]
    output = build(*inputs).collect()
    engine.advance({table: as_changes(items) for table, items in zip(inputs, collections, strict=True)})
    return output.multiset()
