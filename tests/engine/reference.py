"""From-scratch reference models of the engine's operators: plain Python over a whole input collection
(a multiset of ``(key, row)``), which the property tests compare the incremental engine against.

Nothing here imports the engine's operators: each model restates what the operator's output collection
must be, so a bug in the engine cannot hide in the reference too."""

from __future__ import annotations

import builtins
from collections import Counter
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from typing import Any

from ragflow.engine import FrozenDict

Multiset = dict[tuple[Hashable, Any], int]
"""A collection: ``(key, row) -> multiplicity`` (always > 0), as ``Collection.multiset()`` returns it."""

RefReducer = Callable[[list[Any]], Any]
"""A reference reducer: the group's rows (each repeated by its multiplicity) -> the result."""

Delta = tuple[Any, Any, int]


def collection(changes: Iterable[Delta]) -> Multiset:
    """The collection that ``changes`` leave behind, starting from nothing."""
    totals: Counter[tuple[Hashable, Any]] = Counter()
    for key, row, diff in changes:
        totals[(key, row)] += diff
    return _positive(totals)


def as_changes(items: Multiset) -> list[Delta]:
    """A collection as the insertions that build it."""
    return [(key, row, mult) for (key, row), mult in items.items()]


def _positive(totals: Mapping[tuple[Hashable, Any], int]) -> Multiset:
    return {pair: mult for pair, mult in totals.items() if mult}


def _expanded(items: Multiset) -> list[tuple[Hashable, Any]]:
    return [pair for pair, mult in items.items() for _ in range(mult)]


# -- stateless operators ----------------------------------------------------------------------------


def map_ref(items: Multiset, fn: Callable[[Any], Any]) -> Multiset:
    out: Counter[tuple[Hashable, Any]] = Counter()
    for (key, row), mult in items.items():
        out[(key, fn(row))] += mult
    return _positive(out)


def filter_ref(items: Multiset, predicate: Callable[[Any], Any]) -> Multiset:
    return {(key, row): mult for (key, row), mult in items.items() if predicate(row)}


def flat_map_ref(items: Multiset, fn: Callable[[Any, Any], Iterable[tuple[Hashable, Any]]]) -> Multiset:
    out: Counter[tuple[Hashable, Any]] = Counter()
    for (key, row), mult in items.items():
        for pair in fn(key, row):
            out[pair] += mult
    return _positive(out)


def rekey_ref(items: Multiset, fn: Callable[[Any, Any], Hashable]) -> Multiset:
    out: Counter[tuple[Hashable, Any]] = Counter()
    for (key, row), mult in items.items():
        out[(fn(key, row), row)] += mult
    return _positive(out)


def concat_ref(*collections: Multiset) -> Multiset:
    out: Counter[tuple[Hashable, Any]] = Counter()
    for items in collections:
        out.update(items)
    return _positive(out)


# -- join -------------------------------------------------------------------------------------------


def join_ref(
    left: Multiset,
    right: Multiset,
    left_on: Callable[[Any], Hashable],
    right_on: Callable[[Any], Hashable],
    how: str = "inner",
    select: Callable[[Any, Any], Any] | None = None,
) -> Multiset:
    """Pairs keyed ``(left_key, right_key)``; a left join adds ``(left_key, None)`` for left rows that
    match nothing, with ``select(left_row, None)``."""
    pick = select or (lambda lrow, rrow: (lrow, rrow))
    out: Counter[tuple[Hashable, Any]] = Counter()
    for (lkey, lrow), lmult in left.items():
        matches = [(pair, rmult) for pair, rmult in right.items() if right_on(pair[1]) == left_on(lrow)]
        for (rkey, rrow), rmult in matches:
            out[((lkey, rkey), pick(lrow, rrow))] += lmult * rmult
        if how == "left" and not matches:
            out[((lkey, None), pick(lrow, None))] += lmult
    return _positive(out)


# -- grouping ---------------------------------------------------------------------------------------


def _reduced(rows: list[Any], reducers: Mapping[str, RefReducer]) -> dict[str, Any]:
    return {name: reducer(rows) for name, reducer in reducers.items()}


def groupby_ref(
    items: Multiset, by: Callable[[Any], Hashable] | None, reducers: Mapping[str, RefReducer]
) -> Multiset:
    """One row per group keyed by the group (``()`` when ``by`` is None): a ``FrozenDict`` of results."""
    groups: dict[Hashable, list[Any]] = {}
    for _, row in _expanded(items):
        groups.setdefault(by(row) if by else (), []).append(row)
    return {(group, FrozenDict(_reduced(rows, reducers))): 1 for group, rows in groups.items()}


def deduplicate_ref(items: Multiset, by: Callable[[Any], Hashable], order: Callable[[Any], Any]) -> Multiset:
    """Per group, the row with the greatest ``order(row)``, ties broken by the greater ``repr``."""
    best: dict[Hashable, Any] = {}
    for _, row in items:
        group = by(row)
        if group not in best or (order(row), repr(row)) > (order(best[group]), repr(best[group])):
            best[group] = row
    return {(group, row): 1 for group, row in best.items()}


def count() -> RefReducer:
    return len


def sum_of(value: Callable[[Any], Any]) -> RefReducer:
    return lambda rows: builtins.sum(value(r) for r in rows)


def avg_of(value: Callable[[Any], Any]) -> RefReducer:
    return lambda rows: builtins.sum(value(r) for r in rows) / len(rows)


def min_of(value: Callable[[Any], Any]) -> RefReducer:
    return lambda rows: builtins.min(value(r) for r in rows)


def max_of(value: Callable[[Any], Any]) -> RefReducer:
    return lambda rows: builtins.max(value(r) for r in rows)


def collect_of(value: Callable[[Any], Any]) -> RefReducer:
    return lambda rows: tuple(sorted(value(r) for r in rows))


def any_of(value: Callable[[Any], Any]) -> RefReducer:
    """``any_value`` is documented to pick the smallest value, so the result is deterministic."""
    return min_of(value)


def udf_of(fn: Callable[[tuple[Any, ...]], Any], value: Callable[[Any], Any]) -> RefReducer:
    return lambda rows: fn(tuple(sorted(value(r) for r in rows)))


# -- windows ----------------------------------------------------------------------------------------


def _windowed(
    items: Multiset,
    windows_of: Callable[[int], Iterable[tuple[int, int]]],
    time: Callable[[Any], int],
    instance: Callable[[Any], Hashable] | None,
    reducers: Mapping[str, RefReducer],
) -> Multiset:
    groups: dict[tuple[Hashable, int, int], list[Any]] = {}
    for _, row in _expanded(items):
        inst = instance(row) if instance else None
        for start, end in windows_of(time(row)):
            groups.setdefault((inst, start, end), []).append(row)
    return {
        ((inst, start, end), _window_row(inst, start, end, rows, reducers)): 1
        for (inst, start, end), rows in groups.items()
    }


def _window_row(
    inst: Hashable, start: int, end: int, rows: list[Any], reducers: Mapping[str, RefReducer]
) -> FrozenDict:
    return FrozenDict(_reduced(rows, reducers), instance=inst, window_start=start, window_end=end)


def tumbling_ref(
    items: Multiset,
    time: Callable[[Any], int],
    size: int,
    reducers: Mapping[str, RefReducer],
    instance: Callable[[Any], Hashable] | None = None,
    origin: int = 0,
) -> Multiset:
    """Integer times only: the window of ``t`` starts at the greatest ``origin + i*size <= t``."""

    def windows_of(t: int) -> list[tuple[int, int]]:
        start = t - (t - origin) % size
        return [(start, start + size)]

    return _windowed(items, windows_of, time, instance, reducers)


def sliding_ref(
    items: Multiset,
    time: Callable[[Any], int],
    size: int,
    hop: int,
    reducers: Mapping[str, RefReducer],
    instance: Callable[[Any], Hashable] | None = None,
    origin: int = 0,
) -> Multiset:
    """Integer times only: every ``[s, s + size)`` with ``s = origin + i*hop`` that contains ``t``,
    found by trying every candidate start."""

    def windows_of(t: int) -> list[tuple[int, int]]:
        return [(s, s + size) for s in range(t - size + 1, t + 1) if (s - origin) % hop == 0]

    return _windowed(items, windows_of, time, instance, reducers)


def session_ref(
    items: Multiset,
    time: Callable[[Any], int],
    max_gap: int,
    reducers: Mapping[str, RefReducer],
    instance: Callable[[Any], Hashable] | None = None,
) -> Multiset:
    """Per instance, rows sorted by time and cut wherever consecutive times are more than ``max_gap``
    apart; each session keyed ``(instance, first time, last time)``."""
    by_instance: dict[Hashable, list[Any]] = {}
    for _, row in _expanded(items):
        by_instance.setdefault(instance(row) if instance else None, []).append(row)
    out: Multiset = {}
    for inst, rows in by_instance.items():
        for session in _sessions(sorted(rows, key=time), time, max_gap):
            start, end = time(session[0]), time(session[-1])
            out[((inst, start, end), _window_row(inst, start, end, session, reducers))] = 1
    return out


def _sessions(rows: Sequence[Any], time: Callable[[Any], int], max_gap: int) -> list[list[Any]]:
    sessions: list[list[Any]] = []
    for row in rows:
        if sessions and time(row) - time(sessions[-1][-1]) <= max_gap:
            sessions[-1].append(row)
        else:
            sessions.append([row])
    return sessions
