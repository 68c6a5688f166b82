"""The run loop: adaptive micro-batching, atomic pushes, static and streaming modes, stopping (also by
signal), back-pressure, and failures of sources and of the engine itself."""

from __future__ import annotations

import os
import select
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ragflow.engine import Change, ChangeQueue, Engine, EpochReport, Push, StaticSource, Table
from ragflow.engine.io import Mode
from ragflow.errors import EngineError, SourceError

from .drivers import wait_until

StartEngine = Callable[..., Engine]
REPO = Path(__file__).resolve().parents[2]


class SlowSink:
    """Sleeps ``seconds`` in every epoch and records each epoch's changes; ``busy`` is set while the
    first epoch is being delivered."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.epochs: list[list[Change]] = []
        self.busy = threading.Event()

    def on_epoch(self, epoch: int, changes: list[Change]) -> None:
        self.busy.set()
        time.sleep(self.seconds)
        self.epochs.append(changes)


def test_pushes_arriving_during_a_slow_epoch_are_grouped_into_the_next_epoch(
    start_engine: StartEngine,
) -> None:
    engine = Engine()
    queue = ChangeQueue()
    sink = SlowSink(0.3)
    engine.source(queue).sink(sink)
    start_engine(engine)
    queue.insert(0, "first")
    assert sink.busy.wait(5)
    for i in range(1, 20):
        queue.insert(i, "meanwhile")
    queue.close()
    engine.join(5)
    assert [len(changes) for changes in sink.epochs] == [1, 19]


def test_a_single_push_under_no_load_is_processed_alone_and_fast(start_engine: StartEngine) -> None:
    engine = Engine()
    queue = ChangeQueue()
    arrived: dict[int, float] = {}
    epochs: list[list[Change]] = []
    delivered = threading.Event()

    def on_changes(epoch: int, changes: list[Change]) -> None:
        arrived[changes[0].key] = time.perf_counter()
        epochs.append(changes)
        delivered.set()

    engine.source(queue).subscribe(on_changes)
    start_engine(engine)
    latencies = []
    for i in range(10):
        delivered.clear()
        pushed = time.perf_counter()
        queue.insert(i, "row")
        assert delivered.wait(5)
        latencies.append(arrived[i] - pushed)
    print("push -> sink latency (ms):", [round(s * 1000, 2) for s in latencies])
    assert epochs == [[Change(i, "row", 1)] for i in range(10)]
    assert statistics.median(latencies) < 0.05


@pytest.mark.parametrize("max_epoch_changes", [None, 5])
def test_a_push_is_never_split_across_epochs(max_epoch_changes: int | None) -> None:
    sizes = [1, 2, 3, 7, 4, 1, 1, 6] * 5
    groups = [[((push, i), "row", 1) for i in range(size)] for push, size in enumerate(sizes)]
    engine = Engine(max_epoch_changes=max_epoch_changes)
    rows = engine.source(StaticSource(groups))
    epochs_of: dict[int, set[int]] = {}
    reports: list[EpochReport] = []

    def on_changes(epoch: int, changes: list[Change]) -> None:
        time.sleep(0.002)  # slow enough that pushes queue up
        for change in changes:
            epochs_of.setdefault(change.key[0], set()).add(epoch)

    def on_report(report: EpochReport) -> None:
        reports.append(report)
        if len(reports) > 2 * len(sizes):  # fail the run rather than hang if the engine spins
            raise AssertionError(f"{len(reports)} epochs for {len(sizes)} pushes")

    rows.subscribe(on_changes)
    engine.on_epoch(on_report)
    engine.run("static", handle_signals=False)
    assert all(len(epochs) == 1 for epochs in epochs_of.values())
    assert len(epochs_of) == len(sizes)
    assert len(reports) < len(sizes)  # pushes were grouped
    if max_epoch_changes is not None:
        # an epoch exceeds the limit only when it is one push bigger than the limit
        assert all(r.input_changes <= max_epoch_changes or r.input_changes in sizes for r in reports)
        assert max(r.input_changes for r in reports) == 7


def test_static_mode_returns_on_its_own_after_the_snapshot(start_engine: StartEngine) -> None:
    engine = Engine()
    result = engine.source(StaticSource([[(1, "a", 1)], [(2, "b", 1)]])).collect()
    start_engine(engine, "static")
    engine.join(timeout=5)
    assert result.as_dict() == {1: "a", 2: "b"}


def test_streaming_mode_keeps_running_until_stopped_and_stop_returns_promptly(
    start_engine: StartEngine,
) -> None:
    engine = Engine()
    queue = ChangeQueue()
    result = engine.source(queue).collect()
    start_engine(engine)
    queue.insert(1, "a")
    wait_until(lambda: len(result) == 1, what="the first change processed")
    with pytest.raises(TimeoutError):
        engine.join(timeout=0.2)
    started = time.perf_counter()
    engine.stop()
    engine.join(timeout=2)
    elapsed = time.perf_counter() - started
    print(f"stop() -> join() returned after {elapsed * 1000:.1f} ms")
    assert elapsed < 0.5


def test_a_streaming_run_ends_when_its_sources_finish(start_engine: StartEngine) -> None:
    engine = Engine()
    queue = ChangeQueue()
    result = engine.source(queue).collect()
    start_engine(engine)
    queue.insert(1, "a")
    queue.close()
    engine.join(timeout=5)
    assert result.as_dict() == {1: "a"}


SIGNAL_SCRIPT = """
from ragflow.engine import ChangeQueue, Engine

engine = Engine()
queue = ChangeQueue()  # never closed: only a signal ends this run
engine.source(queue).collect()
engine.on_epoch(lambda report: print("ready", flush=True))
queue.insert(1, "row")
engine.run("streaming")
print("stopped cleanly", flush=True)
"""


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_stops_a_run_in_the_main_thread_cleanly(tmp_path: Path, signum: int) -> None:
    script = tmp_path / "serve.py"
    script.write_text(SIGNAL_SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with subprocess.Popen(
        [sys.executable, str(script)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env=env,
    ) as proc:
        try:
            assert proc.stdout is not None
            ready, _, _ = select.select([proc.stdout], [], [], 20)
            assert ready and proc.stdout.readline() == "ready\n"
            sent = time.perf_counter()
            proc.send_signal(signum)
            code = proc.wait(timeout=5)
            print(f"exited {time.perf_counter() - sent:.2f} s after the signal")
        finally:
            if proc.poll() is None:
                proc.kill()
        assert code == 0, proc.stderr.read() if proc.stderr else ""
        assert proc.stdout.read() == "stopped cleanly\n"


def _epoch_sizes(engine: Engine, changes: int) -> list[int]:
    sizes: list[int] = []
    engine.on_epoch(lambda report: sizes.append(report.input_changes))
    rows = engine.source(StaticSource([[(i, i, 1)] for i in range(changes)]))
    rows.sink(SlowSink(0.01))
    engine.run("static", handle_signals=False)
    return sizes


def test_back_pressure_blocks_a_fast_source_instead_of_queueing_without_bound() -> None:
    bounded = _epoch_sizes(Engine(max_pending_changes=10), 200)
    assert sum(bounded) == 200
    assert max(bounded) <= 10
    unbounded = _epoch_sizes(Engine(), 200)
    assert max(unbounded) > 10  # without the bound, the same source runs far ahead


class FailingSource:
    """Pushes one change, then fails the way a lost connection does."""

    name = "flaky-feed"

    def run(self, push: Push, stop: threading.Event, mode: Mode) -> None:
        push([(1, "a", 1)])
        raise ConnectionError("feed went away")


def test_a_failing_source_stops_the_run_with_a_source_error_naming_it() -> None:
    engine = Engine()
    engine.source(FailingSource()).collect()
    engine.source(ChangeQueue(name="never-closed")).collect()
    with pytest.raises(SourceError, match=r"'flaky-feed'.*ConnectionError: feed went away") as raised:
        engine.run("streaming", handle_signals=False)
    assert isinstance(raised.value.__cause__, ConnectionError)


def test_a_failing_source_makes_join_raise_a_source_error(start_engine: StartEngine) -> None:
    engine = Engine()
    engine.source(FailingSource()).collect()
    start_engine(engine)
    with pytest.raises(SourceError, match="flaky-feed"):
        engine.join(timeout=5)
    assert isinstance(engine.failure, SourceError)


def _break_a_map_after(rows: Table, monkeypatch: pytest.MonkeyPatch) -> None:
    """Add a map whose node raises from ``step`` itself: an engine bug, not a bad row."""
    mapped = rows.map(str)
    mapped.collect()

    def broken_step(deltas: Any, ctx: Any) -> Any:
        raise RuntimeError("engine bug")

    monkeypatch.setattr(mapped.node, "step", broken_step)


def test_an_engine_bug_fails_advance_loudly(monkeypatch: pytest.MonkeyPatch) -> None:
    engine = Engine()
    rows = engine.input()
    _break_a_map_after(rows, monkeypatch)
    with pytest.raises(RuntimeError, match="engine bug"):
        engine.advance({rows: [(1, 1, 1)]})
    assert engine.current_errors() == []  # not mistaken for a bad row


def test_an_engine_bug_fails_a_run_loudly(monkeypatch: pytest.MonkeyPatch) -> None:
    engine = Engine()
    _break_a_map_after(engine.source(StaticSource([[(1, 1, 1)]])), monkeypatch)
    with pytest.raises(RuntimeError, match="engine bug"):
        engine.run("static", handle_signals=False)


def test_an_engine_bug_makes_join_raise(monkeypatch: pytest.MonkeyPatch, start_engine: StartEngine) -> None:
    engine = Engine()
    queue = ChangeQueue()
    _break_a_map_after(engine.source(queue), monkeypatch)
    start_engine(engine)
    queue.insert(1, 1)
    with pytest.raises(RuntimeError, match="engine bug"):
        engine.join(timeout=5)


def test_a_reader_never_sees_half_of_an_epoch(start_engine: StartEngine) -> None:
    engine = Engine()
    queue = ChangeQueue()
    chunks = engine.source(queue).flat_map(lambda key, version: [((key, i), version) for i in range(20)])
    result = chunks.collect()
    start_engine(engine)
    seen: list[Counter[Any]] = []
    done = threading.Event()

    def read() -> None:
        while not done.is_set():
            seen.append(Counter(row for _, row in result))

    reader = threading.Thread(target=read)
    reader.start()
    queue.insert("doc", 0)
    for version in range(1, 200):
        queue.push([("doc", version - 1, -1), ("doc", version, 1)])
    wait_until(lambda: result.as_dict().get(("doc", 0)) == 199, what="the last version")
    done.set()
    reader.join()
    assert all(len(versions) <= 1 for versions in seen)  # never a mix of two versions
    assert all(sum(versions.values()) in (0, 20) for versions in seen)


def test_wait_idle_reports_false_while_an_epoch_is_in_progress(start_engine: StartEngine) -> None:
    engine = Engine()
    queue = ChangeQueue()
    sink = SlowSink(0.3)
    engine.source(queue).sink(sink)
    start_engine(engine)
    queue.insert(1, "a")
    assert sink.busy.wait(5)
    assert engine.wait_idle(timeout=0.05) is False
    assert engine.wait_idle(timeout=5) is True
    assert len(sink.epochs) == 1


def test_wait_idle_waits_for_a_change_pushed_just_before(start_engine: StartEngine) -> None:
    engine = Engine()
    queue = ChangeQueue()
    result = engine.source(queue).collect()
    start_engine(engine)
    missed = 0
    for i in range(20):
        queue.insert(i, "row")
        assert engine.wait_idle(timeout=5)
        missed += len(result) != i + 1
        wait_until(lambda n=i + 1: len(result) == n)  # type: ignore[misc]
    assert missed == 0


def test_positions_of_processed_pushes_are_recorded_per_source(start_engine: StartEngine) -> None:
    engine = Engine()
    queue = ChangeQueue(name="feed")
    engine.source(queue).collect()
    reports: list[EpochReport] = []
    engine.on_epoch(reports.append)
    start_engine(engine)
    queue.push([(1, "a", 1)], position=41)
    queue.push([(2, "b", 1)], position=42)
    queue.close()
    engine.join(timeout=5)
    assert engine.positions == {"feed": 42}
    assert reports[-1].positions == {"feed": 42}


def test_the_graph_cannot_change_and_advance_cannot_be_used_while_running(start_engine: StartEngine) -> None:
    engine = Engine()
    rows = engine.source(ChangeQueue())
    start_engine(engine)
    with pytest.raises(EngineError, match="cannot change while the engine runs"):
        rows.map(str)
    with pytest.raises(EngineError, match="sinks cannot be added"):
        rows.collect()
    with pytest.raises(EngineError, match="advance"):
        engine.advance({rows: []})


def test_an_unknown_mode_is_refused() -> None:
    with pytest.raises(EngineError, match="'batch'"):
        Engine().run("batch", handle_signals=False)  # type: ignore[arg-type]
