"""The source contract's shared pieces (``ragflow.sources``): the listing diff, the one loop for notified and
polled sources, the run skeleton, and the in-memory bucket source of ``docs/sources.md`` built from them."""

from __future__ import annotations

import doctest
import functools
import itertools
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ragflow.sources
from ragflow.errors import ConfigError
from ragflow.sources import (
    ChangeKind,
    DocumentChange,
    DocumentSource,
    Notifications,
    SourceRun,
    SyncLoop,
    Wake,
    deletion,
    diff_listing,
)

UPSERT, DELETE = ChangeKind.UPSERT, ChangeKind.DELETE
DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_the_module_examples_run() -> None:
    result = doctest.testmod(ragflow.sources)
    assert result.attempted >= 2 and result.failed == 0


# -- diff_listing --------------------------------------------------------------------------------------------


def test_diff_listing_yields_new_and_changed_then_deletes_in_id_order() -> None:
    known = {"b": "v1", "a": "v1", "c": "v1", "d": "v1"}
    diff = list(diff_listing(known, [("a", "v1"), ("c", "v2"), ("e", "v1")]))
    assert diff == [("c", "v2"), ("e", "v1"), ("b", None), ("d", None)]


def test_diff_listing_uses_the_given_sameness_and_scope() -> None:
    known = {"x/a": 10, "x/b": 10, "y/c": 10}

    def unchanged(before: int, listed: int) -> bool:
        return abs(before - listed) < 5  # a fingerprint that tolerates noise

    diff = list(diff_listing(known, [("x/a", 12)], unchanged, under="x/"))
    assert diff == [("x/b", None)]  # "y/c" is outside the listed scope: not a delete


def test_diff_listing_reads_lazily_and_decides_deletes_after_the_listing() -> None:
    known: dict[str, str] = {"old": "v1"}
    read: list[str] = []

    def listing() -> Iterator[tuple[str, str]]:
        for doc_id in ("n1", "n2"):
            read.append(doc_id)
            yield doc_id, "v1"

    diff = diff_listing(known, listing())
    assert next(diff) == ("n1", "v1") and read == ["n1"]  # the consumer sees n1 before n2 is listed
    known["n1"] = "v1"  # the consumer records what it emitted while the diff runs
    assert list(diff) == [("n2", "v1"), ("old", None)]


def test_a_listing_that_fails_part_way_deletes_nothing() -> None:
    def failing() -> Iterator[tuple[str, str]]:
        yield "a", "v1"
        raise OSError("LIST page 2 failed")

    seen: list[tuple[str, str | None]] = []
    with pytest.raises(OSError):
        seen.extend(diff_listing({"a": "v1", "b": "v1"}, failing()))
    assert seen == []


def test_deletion_carries_path_and_seen_time() -> None:
    change = deletion("k", "s3://bucket/k", seen_ns=3_500_000_000)
    assert (change.kind, change.data, change.position) == (DELETE, None, None)
    assert change.metadata == {"path": "s3://bucket/k", "seen_at": 3, "seen_at_ns": 3_500_000_000}


# -- SyncLoop ------------------------------------------------------------------------------------------------


def first_wakes(loop: SyncLoop[Any], stop: threading.Event, count: int) -> list[tuple[float, Wake[Any]]]:
    wakes: list[tuple[float, Wake[Any]]] = []
    for wake in loop:
        wakes.append((time.monotonic(), wake))
        if len(wakes) == count:
            stop.set()
    return wakes


def test_a_notification_wakes_the_loop_long_before_the_poll_deadline() -> None:
    stop = threading.Event()
    hints: Notifications[str] = Notifications()
    loop = SyncLoop(stop, hints, poll_interval=30.0)
    started = time.monotonic()
    threading.Timer(0.1, hints.put, args=("a.md",)).start()
    [(at, wake)] = first_wakes(loop, stop, 1)
    assert wake == Wake(["a.md"], poll_due=False)
    assert at - started < 2.0


def test_a_polling_only_loop_wakes_once_per_interval() -> None:
    stop = threading.Event()
    started = time.monotonic()
    wakes = first_wakes(SyncLoop(stop, poll_interval=0.1), stop, 3)
    assert [w for _, w in wakes] == [Wake([], poll_due=True)] * 3
    times = [started] + [at for at, _ in wakes]
    assert all(later - earlier >= 0.1 for earlier, later in itertools.pairwise(times))


def test_the_poll_interval_may_change_while_the_loop_runs() -> None:
    stop = threading.Event()
    loop: SyncLoop[str] = SyncLoop(stop, poll_interval=0.05)
    wakes = iter(loop)
    assert next(wakes).poll_due
    loop.poll_interval = 30.0  # a source that changed its mind
    threading.Timer(0.3, stop.set).start()
    assert list(wakes) == []  # the next poll is 30 s away, not 0.05 s


def test_hints_within_the_coalesce_window_share_one_wake() -> None:
    stop = threading.Event()
    hints: Notifications[int] = Notifications()
    hints.put(1)
    threading.Timer(0.05, hints.put, args=(2,)).start()
    [(_, wake)] = first_wakes(SyncLoop(stop, hints, coalesce_window=0.5), stop, 1)
    assert wake.hints == [1, 2]


def test_wake_in_wakes_the_loop_without_hints_when_the_source_asks() -> None:
    stop = threading.Event()
    due = time.monotonic() + 0.2
    started = time.monotonic()
    loop: SyncLoop[str] = SyncLoop(stop, wake_in=lambda: due - time.monotonic())
    [(at, wake)] = first_wakes(loop, stop, 1)
    assert wake == Wake([], poll_due=False)
    assert 0.2 <= at - started < 2.0


def test_the_loop_ends_soon_after_stop_is_set() -> None:
    stop = threading.Event()
    threading.Timer(0.1, stop.set).start()
    started = time.monotonic()
    assert list(SyncLoop(stop, Notifications[str](), poll_interval=None)) == []
    assert time.monotonic() - started < 1.0


# -- SourceRun -----------------------------------------------------------------------------------------------


class ListRun(SourceRun[str]):
    """A run that snapshots a fixed list and echoes each hint as an upsert; records its steps."""

    def __init__(self, emit: Any, stop: threading.Event, fail_in_sync: bool = False) -> None:
        super().__init__(emit, stop)
        self.steps: list[str] = []
        self.fail_in_sync = fail_in_sync

    def start(self, mode: Any, position: Any) -> None:
        self.steps.append(f"start {mode} {position}")

    def snapshot(self) -> list[DocumentChange]:
        self.emit([DocumentChange("a", UPSERT, b"a")])
        return [DocumentChange("b", UPSERT, b"b")]

    def sync(self, wake: Wake[str]) -> None:
        if self.fail_in_sync:
            raise RuntimeError("broken")
        self.emit([DocumentChange(h, UPSERT, h.encode()) for h in wake.hints])

    def close(self) -> None:
        self.steps.append("close")


def test_a_static_run_emits_the_snapshot_with_its_last_group_marked_done() -> None:
    calls: list[tuple[list[str], bool]] = []
    run = ListRun(
        lambda changes, snapshot_done=False: calls.append(([c.doc_id for c in changes], snapshot_done)),
        threading.Event(),
    )
    run.run("static", {"a": 1})
    assert calls == [(["a"], False), (["b"], True)]
    assert run.steps == ["start static {'a': 1}", "close"]


def test_a_streaming_run_syncs_each_wake_until_stop_and_closes() -> None:
    stop = threading.Event()
    calls: list[list[str]] = []

    def emit(changes: list[DocumentChange], snapshot_done: bool = False) -> None:
        calls.append([c.doc_id for c in changes])
        if changes and changes[0].doc_id == "live":
            stop.set()

    run = ListRun(emit, stop)
    run.notifications.put("live")
    run.run("streaming", None)
    assert calls == [["a"], ["b"], ["live"]]
    assert run.steps[-1] == "close"


def test_a_run_closes_when_sync_fails_and_rejects_an_unknown_mode() -> None:
    run = ListRun(lambda *a, **k: None, threading.Event(), fail_in_sync=True)
    run.notifications.put("x")
    with pytest.raises(RuntimeError):
        run.run("streaming", None)
    assert run.steps[-1] == "close"
    with pytest.raises(ConfigError, match="'static' or 'streaming'"):
        ListRun(lambda *a, **k: None, threading.Event()).run("live", None)  # type: ignore[arg-type]


# -- the in-memory bucket source of docs/sources.md ----------------------------------------------------------


@functools.cache
def docs_example() -> dict[str, Any]:
    """Run the example of ``docs/sources.md`` (it asserts its own resume) and return what it defines."""
    [block] = re.findall(r"```python\n(.*?)```", (DOCS / "sources.md").read_text(), flags=re.S)
    namespace: dict[str, Any] = {}
    exec(compile(block, "docs/sources.md", "exec"), namespace)
    return namespace


def test_the_docs_example_source_implements_the_contract() -> None:
    example = docs_example()
    assert isinstance(example["BucketSource"](example["MemoryBucket"]()), DocumentSource)


def test_a_notified_key_is_emitted_at_once_and_a_lost_notification_by_the_next_poll() -> None:
    example = docs_example()
    bucket = example["MemoryBucket"]()
    source = example["BucketSource"](bucket, poll_interval=1.0)
    stop = threading.Event()
    groups: list[tuple[float, list[DocumentChange]]] = []
    cond = threading.Condition()

    def emit(changes: list[DocumentChange], snapshot_done: bool = False) -> None:
        with cond:
            groups.append((time.monotonic(), list(changes)))
            cond.notify_all()

    def emitted(doc_id: str) -> float | None:
        return next((at for at, g in groups for c in g if c.doc_id == doc_id), None)

    thread = threading.Thread(target=source.run, args=(emit, stop, "streaming"))
    thread.start()
    try:
        with cond:
            assert cond.wait_for(lambda: groups, 5)
        bucket.objects["told.md"] = b"told"
        bucket.objects["untold.md"] = b"untold"
        told_at = time.monotonic()
        source.run_now.notifications.put("told.md")
        with cond:
            assert cond.wait_for(lambda: emitted("told.md") is not None, 5)
            assert cond.wait_for(lambda: emitted("untold.md") is not None, 5)
    finally:
        stop.set()
        thread.join(5)
    told = emitted("told.md")
    assert told is not None and told - told_at < 0.9  # the notification did not wait for the poll
    [told_group] = [g for _, g in groups if any(c.doc_id == "told.md" for c in g)]
    assert [c.doc_id for c in told_group] == ["told.md"]  # only what was notified; the poll caught the rest


operations = st.lists(
    st.one_of(
        st.tuples(st.just("put"), st.sampled_from(["a", "b", "c", "d/e"]), st.binary(max_size=3)),
        st.tuples(st.just("delete"), st.sampled_from(["a", "b", "c", "d/e"]), st.none()),
        st.tuples(st.just("run"), st.booleans(), st.none()),  # a run; True: checkpoint after it
        st.tuples(st.just("crash"), st.none(), st.none()),  # lose everything since the last checkpoint
    ),
    max_size=25,
)


@settings(max_examples=60, deadline=None)
@given(operations)
def test_a_listing_source_converges_and_applies_each_change_once_across_crashes(
    ops: list[tuple[str, Any, Any]],
) -> None:
    example = docs_example()
    bucket = example["MemoryBucket"]()
    index: dict[str, tuple[bytes | None, Any]] = {}  # doc_id -> (data, position): what the store holds
    saved: dict[str, tuple[bytes | None, Any]] = {}  # the last atomic checkpoint of the same

    def run_once() -> None:
        position = {doc_id: pos for doc_id, (_, pos) in index.items()}
        changes: list[DocumentChange] = []
        example["BucketSource"](bucket).run(
            lambda cs, snapshot_done=False: changes.extend(cs), threading.Event(), "static", position
        )
        for change in changes:
            if change.kind is UPSERT:
                assert index.get(change.doc_id, (None,))[0] != change.data, "re-sent an applied change"
                index[change.doc_id] = (change.data, change.position)
            else:
                assert change.doc_id in index, "deleted a document it never sent"
                del index[change.doc_id]

    for op, arg, data in ops:
        if op == "put":
            bucket.objects[arg] = data
        elif op == "delete":
            bucket.objects.pop(arg, None)
        elif op == "run":
            run_once()
            if arg:
                saved = dict(index)
        else:
            index = dict(saved)
    run_once()
    assert {doc_id: data for doc_id, (data, _) in index.items()} == bucket.objects
