"""Event-time windows: bounds, session merge and split, corrections for late rows, and the cutoff."""

from __future__ import annotations

import math
from typing import Any

import pytest

from ragflow.engine import Change, Engine, FrozenDict, Session, Sliding, Table, Tumbling, reducers
from ragflow.engine.windows import window_bounds


def _time(row: int) -> int:
    return row


def _window(start: int, end: int, n: int, inst: object = None) -> FrozenDict:
    return FrozenDict(n=n, instance=inst, window_start=start, window_end=end)


@pytest.mark.parametrize(
    ("window", "time", "expected"),
    [
        (Tumbling(10), 15, [(10, 20)]),
        (Tumbling(10), 10, [(10, 20)]),  # the start is inclusive, the end exclusive
        (Tumbling(10), 9.5, [(0, 10)]),
        (Tumbling(10), -1, [(-10, 0)]),
        (Tumbling(10, origin=5), 3, [(-5, 5)]),
        (Sliding(10, 5), 12, [(5, 15), (10, 20)]),
        (Sliding(10, 5), 10, [(5, 15), (10, 20)]),
        (Sliding(10, 3), 0, [(-9, 1), (-6, 4), (-3, 7), (0, 10)]),
        (Sliding(4, 4), 7, [(4, 8)]),
        (Sliding(10, 5, origin=2), 6, [(-3, 7), (2, 12)]),
    ],
)
def test_window_bounds_are_every_window_containing_the_time(
    window: Tumbling | Sliding, time: float, expected: list[tuple[float, float]]
) -> None:
    assert window_bounds(window, time) == expected


@pytest.mark.parametrize(("size", "hop"), [(10, 3), (10, 5), (7, 2), (6, 6), (5, 7)])
def test_a_time_belongs_to_ceil_size_over_hop_sliding_windows(size: int, hop: int) -> None:
    for time in range(-20, 20):
        bounds = window_bounds(Sliding(size, hop), time)
        assert all(start <= time < end for start, end in bounds)
        # with hop > size some times fall in no window at all
        assert len(bounds) in (math.ceil(size / hop), math.floor(size / hop))


def test_tumbling_windows_are_keyed_by_instance_start_and_end() -> None:
    engine = Engine()
    events = engine.input()
    out = events.windowby(lambda r: r[1], Tumbling(10), instance=lambda r: r[0]).reduce(n=reducers.count())
    result = out.collect()
    engine.advance({events: [(1, ("x", 1), 1), (2, ("x", 12), 1), (3, ("y", 2), 1), (4, ("x", 9), 1)]})
    assert result.as_dict() == {
        ("x", 0, 10): _window(0, 10, 2, "x"),
        ("x", 10, 20): _window(10, 20, 1, "x"),
        ("y", 0, 10): _window(0, 10, 1, "y"),
    }


def test_a_late_row_corrects_its_window_by_retracting_the_old_result() -> None:
    engine = Engine()
    events = engine.input()
    epochs: list[list[Change]] = []
    events.windowby(_time, Tumbling(10)).reduce(n=reducers.count()).subscribe(lambda e, c: epochs.append(c))
    engine.advance({events: [(1, 25, 1)]})
    engine.advance({events: [(2, 3, 1)]})  # out of order: an earlier window appears
    engine.advance({events: [(3, 5, 1)]})  # late into that window: a correction
    assert epochs[1] == [Change((None, 0, 10), _window(0, 10, 1), 1)]
    assert sorted(epochs[2], key=lambda c: c.diff) == [
        Change((None, 0, 10), _window(0, 10, 1), -1),
        Change((None, 0, 10), _window(0, 10, 2), 1),
    ]


def _sessions(engine: Engine, events: Table, epochs: list[list[Change]]) -> None:
    out = events.windowby(_time, Session(max_gap=3)).reduce(n=reducers.count())
    out.subscribe(lambda e, c: epochs.append(sorted(c, key=lambda change: (change.diff, repr(change)))))


def test_a_row_between_two_sessions_merges_them_and_its_retraction_splits_them_again() -> None:
    engine = Engine()
    events = engine.input()
    epochs: list[list[Change]] = []
    _sessions(engine, events, epochs)
    engine.advance({events: [(1, 1, 1), (7, 7, 1)]})
    engine.advance({events: [(4, 4, 1)]})
    engine.advance({events: [(4, 4, -1)]})
    apart = [Change((None, 1, 1), _window(1, 1, 1), 1), Change((None, 7, 7), _window(7, 7, 1), 1)]
    merged = Change((None, 1, 7), _window(1, 7, 3), 1)
    assert epochs[0] == apart
    assert epochs[1] == [*(c._replace(diff=-1) for c in apart), merged]
    assert epochs[2] == [merged._replace(diff=-1), *apart]


def test_a_row_extending_a_session_replaces_it_with_the_longer_session() -> None:
    engine = Engine()
    events = engine.input()
    epochs: list[list[Change]] = []
    _sessions(engine, events, epochs)
    engine.advance({events: [(1, 10, 1)]})
    engine.advance({events: [(2, 8, 1)]})  # out of order, within the gap before the session
    assert epochs[1] == [
        Change((None, 10, 10), _window(10, 10, 1), -1),
        Change((None, 8, 10), _window(8, 10, 2), 1),
    ]


def test_sessions_are_separate_per_instance() -> None:
    engine = Engine()
    events = engine.input()
    out = (
        events.windowby(lambda r: r[1], Session(2), instance=lambda r: r[0])
        .reduce(n=reducers.count())
        .collect()
    )
    engine.advance({events: [(1, ("x", 1), 1), (2, ("y", 2), 1), (3, ("x", 3), 1)]})
    assert set(out.as_dict()) == {("x", 1, 3), ("y", 2, 2)}


def _cutoff_pipeline() -> tuple[Engine, Table, Table]:
    engine = Engine()
    events = engine.input()
    counts = events.windowby(_time, Tumbling(10), cutoff=5).reduce(n=reducers.count())
    return engine, events, counts


def _late_dropped(table: Table) -> int:
    (counters,) = [c for name, c in table.stats().items() if name.startswith("cutoff#")]
    return counters["late_dropped"]


def test_cutoff_drops_rows_later_than_the_cutoff_behind_the_watermark_and_counts_them() -> None:
    engine, events, counts = _cutoff_pipeline()
    result = counts.collect()
    engine.advance({events: [(1, 20, 1)]})  # watermark 20
    engine.advance({events: [(2, 16, 1), (3, 12, 1)]})  # 16 + 5 >= 20 is kept, 12 + 5 < 20 dropped
    assert result.as_dict() == {(None, 10, 20): _window(10, 20, 1), (None, 20, 30): _window(20, 30, 1)}
    assert _late_dropped(counts) == 1


def test_cutoff_ignores_the_retraction_of_a_dropped_row() -> None:
    engine, events, counts = _cutoff_pipeline()
    result = counts.collect()
    epochs: list[int] = []
    counts.subscribe(lambda e, c: epochs.append(e))
    engine.advance({events: [(1, 20, 1)]})
    engine.advance({events: [(3, 12, 1)]})
    engine.advance({events: [(3, 12, -1)]})
    assert epochs == [1]
    assert result.as_dict() == {(None, 20, 30): _window(20, 30, 1)}
    assert _late_dropped(counts) == 1
    assert engine.current_errors() == []


def test_cutoff_still_passes_the_retraction_of_a_row_it_kept() -> None:
    engine, events, counts = _cutoff_pipeline()
    result = counts.collect()
    engine.advance({events: [(1, 20, 1), (2, 16, 1)]})
    engine.advance({events: [(9, 40, 1)]})  # the watermark moves far past 16
    engine.advance({events: [(2, 16, -1)]})
    assert (None, 10, 20) not in result.as_dict()


def test_cutoff_watermark_comes_from_earlier_epochs_only() -> None:
    engine, events, counts = _cutoff_pipeline()
    result = counts.collect()
    engine.advance({events: [(1, 100, 1), (2, 1, 1)]})  # same epoch: 1 is not late yet
    assert (None, 0, 10) in result.as_dict()
    assert _late_dropped(counts) == 0


def test_cutoff_applies_to_session_windows_too() -> None:
    engine = Engine()
    events = engine.input()
    sessions = events.windowby(_time, Session(2), cutoff=1).reduce(n=reducers.count())
    result = sessions.collect()
    engine.advance({events: [(1, 10, 1)]})
    engine.advance({events: [(2, 8, 1)]})  # 8 + 1 < 10: dropped, so the session is not extended
    assert set(result.as_dict()) == {(None, 10, 10)}
    assert _late_dropped(sessions) == 1


def test_cutoff_ignores_a_retraction_and_reinsertion_that_cancel_in_one_epoch() -> None:
    engine, events, counts = _cutoff_pipeline()
    result = counts.collect()
    engine.advance({events: [(1, 1, 1)]})
    engine.advance({events: [(2, 100, 1)]})
    engine.advance({events: [(1, 1, -1), (1, 1, 1)]})
    assert result.as_dict().get((None, 0, 10)) == _window(0, 10, 1)
    assert _late_dropped(counts) == 0


def test_rows_in_the_same_sliding_window_with_a_fractional_hop_are_reduced_together() -> None:
    engine = Engine()
    events = engine.input()
    counts = events.windowby(lambda t: t, Sliding(0.3, 0.1)).reduce(n=reducers.count()).collect()
    engine.advance({events: [(1, 0.15, 1), (2, 0.35, 1)]})  # both lie in [0.1, 0.4)
    windows: dict[Any, FrozenDict] = counts.as_dict()
    shared = [row for (_, start, _), row in windows.items() if math.isclose(start, 0.1)]
    assert [row["n"] for row in shared] == [2]
