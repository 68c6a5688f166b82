"""Property tests: for any valid history of inserts, updates and deletes, every operator and composed
pipeline's output after every epoch equals a from-scratch recomputation over the input collection at
that epoch (``reference``), and a static run equals a streaming run that saw every change."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ragflow.engine import Session, Sliding, Table, Tumbling, reducers

from . import reference as ref
from .drivers import run_static, run_streaming
from .histories import History, assert_incremental, final_changes, histories, single_input
from .reference import Multiset, RefReducer

fast = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])

PAIRS = st.tuples(st.sampled_from("abc"), st.integers(-3, 3))
"""Rows ``(group, value)``: few groups and values so groups fill up and rows collide."""

JOINABLE = st.tuples(st.integers(0, 2), st.integers(0, 3))
"""Rows ``(join key, value)``: three join keys, so matches and misses are both common."""

EVENTS = st.tuples(st.sampled_from("xy"), st.integers(0, 30), st.integers(0, 5))
"""Rows ``(instance, event time, value)``; histories insert them in random, hence out-of-order, time."""


def first(row: Any) -> Any:
    return row[0]


def second(row: Any) -> Any:
    return row[1]


def spread(values: tuple[int, ...]) -> int:
    return values[-1] - values[0]


def all_reducers(value: Callable[[Any], Any]) -> dict[str, reducers.Reducer]:
    return {
        "n": reducers.count(),
        "total": reducers.sum(value),
        "low": reducers.min(value),
        "high": reducers.max(value),
        "values": reducers.collect(value),
        "some": reducers.any_value(value),
        "mean": reducers.avg(value),
        "spread": reducers.udf_reducer(spread, value),
    }


def all_reference_reducers(value: Callable[[Any], Any]) -> dict[str, RefReducer]:
    return {
        "n": ref.count(),
        "total": ref.sum_of(value),
        "low": ref.min_of(value),
        "high": ref.max_of(value),
        "values": ref.collect_of(value),
        "some": ref.any_of(value),
        "mean": ref.avg_of(value),
        "spread": ref.udf_of(spread, value),
    }


# -- stateless operators ----------------------------------------------------------------------------


def halve(row: tuple[str, int]) -> tuple[str, int]:
    return (row[0], row[1] // 2)  # many rows map to one: multiplicities add up


def positive(row: tuple[str, int]) -> bool:
    return row[1] > 0


def explode(key: int, row: tuple[str, int]) -> list[tuple[Any, Any]]:
    # zero to three outputs, some shared between inputs
    return [((key % 2, i), (row[0], abs(row[1]) - i)) for i in range(abs(row[1]) % 4)]


def by_group(key: int, row: tuple[str, int]) -> Any:
    return (row[0], key % 2)


@fast
@given(histories([PAIRS]))
def test_map_matches_reference(history: History) -> None:
    assert_incremental(history, lambda t: t.map(halve), lambda c: ref.map_ref(c, halve))


@fast
@given(histories([PAIRS]))
def test_filter_matches_reference(history: History) -> None:
    assert_incremental(history, lambda t: t.filter(positive), lambda c: ref.filter_ref(c, positive))


@fast
@given(histories([PAIRS]))
def test_flat_map_matches_reference(history: History) -> None:
    assert_incremental(history, lambda t: t.flat_map(explode), lambda c: ref.flat_map_ref(c, explode))


@fast
@given(histories([PAIRS]))
def test_rekey_matches_reference(history: History) -> None:
    assert_incremental(history, lambda t: t.rekey(by_group), lambda c: ref.rekey_ref(c, by_group))


@fast
@given(histories([PAIRS, PAIRS]))
def test_concat_matches_reference(history: History) -> None:
    assert_incremental(
        history,
        lambda a, b: a.concat(b, a.map(halve)),
        lambda a, b: ref.concat_ref(a, b, ref.map_ref(a, halve)),
    )


# -- joins ------------------------------------------------------------------------------------------


def pair_values(left: Any, right: Any) -> tuple[int, int]:
    return (left[1], -1 if right is None else right[1])


@fast
@pytest.mark.parametrize("how", ["inner", "left"])
@pytest.mark.parametrize("select", [None, pair_values])
@given(history=histories([JOINABLE, JOINABLE]))
def test_join_matches_reference(history: History, how: Literal["inner", "left"], select: Any) -> None:
    assert_incremental(
        history,
        lambda a, b: a.join(b, first, first, how=how, select=select),
        lambda a, b: ref.join_ref(a, b, first, first, how, select),
    )


@fast
@given(histories([JOINABLE]))
def test_self_join_through_a_diamond_matches_reference(history: History) -> None:
    # both join inputs change in the same epoch from the same upstream node
    def build(t: Table) -> Table:
        return t.join(t.filter(lambda r: r[1] % 2 == 0), first, first, how="left", select=pair_values)

    def expected(c: Multiset) -> Multiset:
        evens = ref.filter_ref(c, lambda r: r[1] % 2 == 0)
        return ref.join_ref(c, evens, first, first, "left", pair_values)

    assert_incremental(history, build, expected)


# -- grouping ---------------------------------------------------------------------------------------


@fast
@given(histories([PAIRS]))
def test_groupby_with_every_reducer_matches_reference(history: History) -> None:
    assert_incremental(
        history,
        lambda t: t.groupby(first).reduce(**all_reducers(second)),
        lambda c: ref.groupby_ref(c, first, all_reference_reducers(second)),
    )


@fast
@given(histories([PAIRS]))
def test_reduce_of_whole_table_matches_reference(history: History) -> None:
    assert_incremental(
        history,
        lambda t: t.reduce(**all_reducers(second)),
        lambda c: ref.groupby_ref(c, None, all_reference_reducers(second)),
    )


@fast
@given(histories([PAIRS]))
def test_deduplicate_with_order_matches_reference(history: History) -> None:
    assert_incremental(
        history,
        lambda t: t.deduplicate(first, order=lambda r: abs(r[1])),  # ties are common: |-2| == |2|
        lambda c: ref.deduplicate_ref(c, first, lambda r: abs(r[1])),
    )


# -- windows ----------------------------------------------------------------------------------------


def event_time(row: tuple[str, int, int]) -> int:
    return row[1]


def event_value(row: tuple[str, int, int]) -> int:
    return row[2]


def window_reducers() -> dict[str, reducers.Reducer]:
    return {
        "n": reducers.count(),
        "total": reducers.sum(event_value),
        "values": reducers.collect(event_value),
    }


def window_reference_reducers() -> dict[str, RefReducer]:
    return {"n": ref.count(), "total": ref.sum_of(event_value), "values": ref.collect_of(event_value)}


@fast
@given(histories([EVENTS]))
def test_tumbling_windows_match_reference(history: History) -> None:
    assert_incremental(
        history,
        lambda t: t.windowby(event_time, Tumbling(7, origin=3), instance=first).reduce(**window_reducers()),
        lambda c: ref.tumbling_ref(c, event_time, 7, window_reference_reducers(), instance=first, origin=3),
    )


@fast
@given(histories([EVENTS]))
def test_sliding_windows_match_reference(history: History) -> None:
    assert_incremental(
        history,
        lambda t: t.windowby(event_time, Sliding(10, 4, origin=1)).reduce(**window_reducers()),
        lambda c: ref.sliding_ref(c, event_time, 10, 4, window_reference_reducers(), origin=1),
    )


@fast
@given(histories([EVENTS]))
def test_session_windows_match_reference(history: History) -> None:
    assert_incremental(
        history,
        lambda t: t.windowby(event_time, Session(3), instance=first).reduce(**window_reducers()),
        lambda c: ref.session_ref(c, event_time, 3, window_reference_reducers(), instance=first),
    )


# -- batched UDF ------------------------------------------------------------------------------------


def doubled_batch(batch: list[tuple[str, int]]) -> list[int]:
    return [value * 2 for _, value in batch]


@fast
@given(histories([PAIRS]))
def test_map_batched_matches_reference(history: History) -> None:
    assert_incremental(
        history,
        lambda t: t.map_batched(doubled_batch, batch_size=2, merge=lambda row, result: (row[0], result)),
        lambda c: ref.map_ref(c, lambda r: (r[0], r[1] * 2)),
    )


# -- composed pipelines -----------------------------------------------------------------------------


def chunks(key: int, row: tuple[int, int]) -> list[tuple[Any, Any]]:
    return [((key, i), (row[0], row[1] + i)) for i in range(row[1] % 3 + 1)]


def even(row: tuple[int, int]) -> bool:
    return row[1] % 2 == 0


@fast
@given(histories([JOINABLE, JOINABLE]))
def test_flat_map_filter_join_groupby_pipeline_matches_reference(history: History) -> None:
    def build(docs: Table, labels: Table) -> Table:
        joined = docs.flat_map(chunks).filter(even).join(labels, first, first, select=pair_values)
        return joined.groupby(second).reduce(n=reducers.count(), values=reducers.collect(first))

    def expected(docs: Multiset, labels: Multiset) -> Multiset:
        kept = ref.filter_ref(ref.flat_map_ref(docs, chunks), even)
        joined = ref.join_ref(kept, labels, first, first, "inner", pair_values)
        return ref.groupby_ref(joined, second, {"n": ref.count(), "values": ref.collect_of(first)})

    assert_incremental(history, build, expected)


def shifted(row: tuple[str, int, int]) -> tuple[str, int, int]:
    return (row[0], (row[1] * 3) % 31, row[2])


@fast
@given(histories([EVENTS]))
def test_map_windowby_pipeline_matches_reference(history: History) -> None:
    assert_incremental(
        history,
        lambda t: (
            t.map(shifted).windowby(event_time, Tumbling(5), instance=first).reduce(**window_reducers())
        ),
        lambda c: ref.tumbling_ref(
            ref.map_ref(c, shifted), event_time, 5, window_reference_reducers(), first
        ),
    )


@fast
@given(histories([JOINABLE, JOINABLE]))
def test_rekey_concat_deduplicate_left_join_pipeline_matches_reference(history: History) -> None:
    def latest(row: tuple[int, int]) -> int:
        return row[1]

    def build(a: Table, b: Table) -> Table:
        best = a.rekey(lambda k, r: r[0]).concat(b).deduplicate(first, order=latest)
        return best.join(b, lambda r: r[1] % 3, first, how="left", select=pair_values)

    def expected(a: Multiset, b: Multiset) -> Multiset:
        best = ref.deduplicate_ref(ref.concat_ref(ref.rekey_ref(a, lambda k, r: r[0]), b), first, latest)
        return ref.join_ref(best, b, lambda r: r[1] % 3, first, "left", pair_values)

    assert_incremental(history, build, expected)


# -- static equals streaming ------------------------------------------------------------------------

PIPELINES: dict[str, tuple[Callable[[Table], Table], Callable[[Multiset], Multiset]]] = {
    "flat_map-groupby": (
        lambda t: t.flat_map(chunks).groupby(second).reduce(**all_reducers(first)),
        lambda c: ref.groupby_ref(ref.flat_map_ref(c, chunks), second, all_reference_reducers(first)),
    ),
    "self-join": (
        lambda t: t.join(t.filter(even), first, first, how="left", select=pair_values),
        lambda c: ref.join_ref(c, ref.filter_ref(c, even), first, first, "left", pair_values),
    ),
    "deduplicate": (
        lambda t: t.deduplicate(first, order=second),
        lambda c: ref.deduplicate_ref(c, first, second),
    ),
    "session": (
        lambda t: t.windowby(second, Session(1)).reduce(n=reducers.count(), values=reducers.collect(first)),
        lambda c: ref.session_ref(c, second, 1, {"n": ref.count(), "values": ref.collect_of(first)}),
    ),
}


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@pytest.mark.parametrize("name", sorted(PIPELINES))
@given(history=histories([JOINABLE], max_epochs=8))
def test_static_run_over_final_data_equals_streaming_run_of_every_change(history: History, name: str) -> None:
    build, expected = PIPELINES[name]
    changes = final_changes(history)
    final = ref.collection(changes)
    static = run_static(build, [ref.as_changes(final)])
    assert static == expected(final)
    assert run_streaming(build, changes) == static
    assert run_static(build, single_input(history)) == static  # the history's epochs as static pushes
