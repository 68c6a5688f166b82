"""The in-memory sources and sinks: ``StaticSource``, ``ChangeQueue``, ``Collection``."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from ragflow.engine import Change, ChangeQueue, Collection, StaticSource


def _pushed(source: Any, stop: threading.Event | None = None) -> list[tuple[list[Any], Any]]:
    groups: list[tuple[list[Any], Any]] = []
    source.run(
        lambda changes, position=None: groups.append((list(changes), position)),
        stop or threading.Event(),
        "static",
    )
    return groups


def test_static_source_pushes_each_group_once_as_changes() -> None:
    groups = _pushed(StaticSource([[(1, "a", 1)], [(1, "a", -1), (2, "b", 1)]]))
    assert [changes for changes, _ in groups] == [
        [Change(1, "a", 1)],
        [Change(1, "a", -1), Change(2, "b", 1)],
    ]


def test_static_source_stops_pushing_once_stop_is_set() -> None:
    stop = threading.Event()
    stop.set()
    assert _pushed(StaticSource([[(1, "a", 1)]]), stop) == []


def test_change_queue_pushes_queued_groups_with_their_positions_then_finishes_when_closed() -> None:
    queue = ChangeQueue()
    queue.push([(1, "a", 1)], position=7)
    queue.delete(1, "a")
    queue.close()
    assert _pushed(queue) == [([Change(1, "a", 1)], 7), ([Change(1, "a", -1)], None)]


def test_change_queue_refuses_pushes_after_close() -> None:
    queue = ChangeQueue(name="docs")
    queue.close()
    with pytest.raises(RuntimeError, match="'docs' is closed"):
        queue.insert(1, "a")


def test_collection_applies_epochs_and_forgets_rows_whose_multiplicity_reaches_zero() -> None:
    items = Collection()
    items.on_epoch(1, [Change(1, "a", 2), Change(2, "b", 1)])
    items.on_epoch(2, [Change(1, "a", -1), Change(2, "b", -1)])
    assert items.multiset() == {(1, "a"): 1}
    assert list(items) == [(1, "a")]
    assert (len(items), items.epochs) == (1, 2)


def test_collection_as_dict_refuses_a_key_holding_several_rows() -> None:
    items = Collection()
    items.on_epoch(1, [Change(1, "a", 1), Change(1, "b", 1)])
    with pytest.raises(ValueError, match="not exactly one row"):
        items.as_dict()
