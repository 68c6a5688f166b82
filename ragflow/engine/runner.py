"""The engine: owns the graph, runs sources in their threads and processes their changes in epochs.

Adaptive micro-batching: while one epoch is processed, pushes queue up; the next epoch takes all of them
(never splitting a push). Light load gives one-change epochs and minimal latency, heavy load big epochs
and throughput, with no fixed interval on the hot path."""

from __future__ import annotations

import functools
import gc
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

from ..errors import EngineError, SourceError
from .changes import Change, Delta, RowError, consolidate_deltas, consolidate_or_report
from .graph import EpochContext, Node
from .io import Mode, Sink, Source
from .operators import InputNode, Schema
from .table import Table

__all__ = ["Engine", "EpochReport"]

log = logging.getLogger("ragflow.engine")

# builds a Change from a (key, row, diff) tuple in C, without NamedTuple.__new__'s Python frame
_as_change = functools.partial(tuple.__new__, Change)


@dataclass(frozen=True, slots=True)
class EpochReport:
    """What one epoch did, for listeners (freshness metrics, progress bars)."""

    epoch: int
    input_changes: int
    output_changes: int
    started_ns: int
    finished_ns: int
    positions: Mapping[str, Any] = field(default_factory=dict)

    @property
    def seconds(self) -> float:
        return (self.finished_ns - self.started_ns) / 1e9


class _ErrorNode(Node):
    """The error table: every row error reported in an epoch, consolidated (retractions cancel)."""

    kind = "errors"

    def step(self, deltas: list[list[Delta]], ctx: EpochContext) -> list[Delta]:
        errors, ctx.errors = ctx.errors, []
        return consolidate_deltas(errors)


@dataclass(slots=True)
class _Push:
    node: InputNode
    changes: list[Delta]
    position: Any
    source: str


class Engine:
    """Build a graph with ``source``/``input`` and the ``Table`` operators, attach sinks, then ``run``
    (blocking), ``start`` (background thread) or drive it epoch by epoch with ``advance``.

    ``max_pending_changes`` bounds the changes queued ahead of processing: a source pushing faster than
    the pipeline blocks in ``push`` instead of filling memory.
    """

    def __init__(self, *, max_epoch_changes: int | None = None, max_pending_changes: int = 200_000) -> None:
        self.max_epoch_changes = max_epoch_changes
        self.max_pending_changes = max_pending_changes
        self._nodes: list[Node] = []
        # (processing order, nodes with sinks), rebuilt after the graph or its sinks change
        self._plan: tuple[list[Node], set[Node]] | None = None
        self._after_errors: set[Node] = set()
        self._sources: list[tuple[InputNode, Source]] = []
        self._sinks: list[tuple[Node, Sink]] = []
        self._listeners: list[Callable[[EpochReport], None]] = []
        self._cond = threading.Condition()
        self._pending: list[_Push] = []
        self._pending_changes = 0
        self._busy = False
        self._active_sources = 0
        self._stop = threading.Event()
        self._running = False
        self._thread: threading.Thread | None = None
        self._failure: BaseException | None = None
        self.epoch = 0
        self.positions: dict[str, Any] = {}
        self._error_node = self.add_node(_ErrorNode())
        self.errors = Table(self, self._error_node)
        self._error_log = self.errors.collect()

    # -- building -------------------------------------------------------------------------------

    def add_node(self, node: Node) -> Node:
        """Register ``node`` (its inputs must be registered already); used by ``Table`` methods."""
        if self._running:
            raise EngineError("the graph cannot change while the engine runs; build it before run()/start()")
        node.name = f"{node.kind}#{len(self._nodes)}"
        if any(i is self._error_node or i in self._after_errors for i in node.inputs):
            self._after_errors.add(node)
        self._nodes.append(node)
        self._plan = None
        return node

    def source(self, source: Source, *, schema: Schema | None = None) -> Table:
        """A table fed by ``source``; rows not matching ``schema`` (a type, tuple of types, or a mapping of
        field name to type) go to the error table."""
        node = InputNode(schema)
        self.add_node(node)
        node.name = f"input#{len(self._nodes) - 1}:{source.name}"
        self._sources.append((node, source))
        return Table(self, node)

    def input(self, *, schema: Schema | None = None, name: str = "manual") -> Table:
        """A table fed only through ``advance``."""
        node = InputNode(schema)
        self.add_node(node)
        node.name = f"input#{len(self._nodes) - 1}:{name}"
        return Table(self, node)

    def add_sink(self, table: Table, sink: Sink) -> None:
        if self._running:
            raise EngineError("sinks cannot be added while the engine runs; add them before run()/start()")
        self._sinks.append((table.node, sink))
        self._plan = None

    def on_epoch(self, listener: Callable[[EpochReport], None]) -> None:
        """Call ``listener(report)`` after every epoch (from the engine's thread)."""
        self._listeners.append(listener)

    def current_errors(self) -> list[RowError]:
        """The row errors present now (a bad row that was later retracted is gone)."""
        return sorted((row for _, row in self._error_log), key=lambda e: (e.operator, repr(e.key)))

    # -- running --------------------------------------------------------------------------------

    def advance(self, changes: Mapping[Table, Iterable[tuple[Any, Any, int]]]) -> EpochReport:
        """Process exactly one epoch made of ``changes`` (per input table), synchronously."""
        if self._running:
            raise EngineError("advance() cannot be used while the engine runs in its own loop")
        pushes = []
        for table, group in changes.items():
            if not isinstance(table.node, InputNode):
                raise EngineError(f"{table.node.name} is not an input table; advance() feeds inputs only")
            pushes.append(_Push(table.node, list(group), None, table.node.name))
        return self._process(pushes)

    def run(self, mode: Mode = "streaming", *, handle_signals: bool = True) -> None:
        """Run until every source has finished (``static``: after their snapshots) or ``stop()``.
        SIGINT/SIGTERM stop it cleanly when called from the main thread."""
        if mode not in ("static", "streaming"):
            raise EngineError(f"unknown mode {mode!r}; use 'static' or 'streaming'")
        restore = self._install_signal_handlers() if handle_signals else {}
        try:
            self._start_sources(mode)
            self._loop()
        except BaseException as exc:
            self._fail(exc)
        finally:
            self._stop.set()
            self._join_sources()
            self._running = False
            for signum, handler in restore.items():
                signal.signal(signum, handler)
        if self._failure is not None:
            raise self._failure

    def start(self, mode: Mode = "streaming") -> None:
        """Run in a background thread; see ``stop``, ``join`` and ``wait_idle``."""
        self._thread = threading.Thread(
            target=self._run_quietly, args=(mode,), name="ragflow-engine", daemon=True
        )
        self._running = True
        self._thread.start()

    def _run_quietly(self, mode: Mode) -> None:
        try:
            self.run(mode, handle_signals=False)
        except BaseException:
            log.exception("engine stopped by an error")

    def stop(self) -> None:
        """Ask the engine to finish the epoch in progress and return."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()

    def join(self, timeout: float | None = None) -> None:
        """Wait for a ``start``ed engine to end; re-raises what stopped it, if anything did."""
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                raise TimeoutError(f"engine still running after {timeout} s")
        if self._failure is not None:
            raise self._failure

    @property
    def pending_changes(self) -> int:
        """Changes pushed by sources and not yet taken by an epoch (the queue depth)."""
        with self._cond:
            return self._pending_changes

    @property
    def failure(self) -> BaseException | None:
        """What stopped the engine, if it failed."""
        return self._failure

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until no change is queued or being processed. False on timeout or failure."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._pending or self._busy or self._sources_hold_changes():
                if self._failure is not None:
                    return False
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                # sources do not notify this condition when they queue internally: poll them briefly
                self._cond.wait(0.01 if remaining is None else min(remaining, 0.01))
        return self._failure is None

    def _sources_hold_changes(self) -> bool:
        """Whether a source reporting a backlog (``pending()``, like ``ChangeQueue``) still holds changes."""
        return self._running and any(getattr(s, "pending", lambda: 0)() for _, s in self._sources)

    # -- internals ------------------------------------------------------------------------------

    def _install_signal_handlers(self) -> dict[int, Any]:
        if threading.current_thread() is not threading.main_thread():
            return {}

        def handler(signum: int, frame: FrameType | None) -> None:
            log.info("signal %s: stopping after the current epoch", signal.Signals(signum).name)
            self.stop()

        return {signum: signal.signal(signum, handler) for signum in (signal.SIGINT, signal.SIGTERM)}

    def _start_sources(self, mode: Mode) -> None:
        self._running = True
        self._stop.clear()
        self._source_threads = []
        with self._cond:
            self._active_sources = len(self._sources)
        for node, source in self._sources:
            thread = threading.Thread(
                target=self._run_source, args=(node, source, mode), name=f"source-{source.name}", daemon=True
            )
            self._source_threads.append(thread)
            thread.start()

    def _run_source(self, node: InputNode, source: Source, mode: Mode) -> None:
        def push(changes: Iterable[tuple[Any, Any, int]], position: Any = None) -> None:
            group = list(changes)
            with self._cond:
                while self._pending_changes >= self.max_pending_changes and not self._stop.is_set():
                    self._cond.wait(0.1)
                self._pending.append(_Push(node, group, position, source.name))
                self._pending_changes += len(group)
                self._cond.notify_all()

        try:
            source.run(push, self._stop, mode)
        except BaseException as exc:
            self._fail(SourceError(f"source {source.name!r} failed: {type(exc).__name__}: {exc}"), exc)
        finally:
            with self._cond:
                self._active_sources -= 1
                self._cond.notify_all()

    def _join_sources(self) -> None:
        for thread in getattr(self, "_source_threads", []):
            thread.join(timeout=5)
            if thread.is_alive():
                log.warning("%s did not stop within 5 s of being asked", thread.name)

    def _fail(self, exc: BaseException, cause: BaseException | None = None) -> None:
        if cause is not None:
            exc.__cause__ = cause
        with self._cond:
            if self._failure is None:
                self._failure = exc
            self._stop.set()
            self._cond.notify_all()

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._stop.is_set() and self._active_sources > 0:
                    self._cond.wait()
                if self._failure is not None:
                    return
                if not self._pending:
                    return
                pushes = self._take_pending()
                self._busy = True
            try:
                self._process(pushes)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def _take_pending(self) -> list[_Push]:
        if self.max_epoch_changes is None:
            taken, self._pending = self._pending, []
        else:
            size, count = 0, 0
            for push in self._pending:
                if count and size + len(push.changes) > self.max_epoch_changes:
                    break
                size += len(push.changes)
                count += 1
            taken, self._pending = self._pending[:count], self._pending[count:]
        self._pending_changes -= sum(len(p.changes) for p in taken)
        return taken

    def _order(self) -> list[Node]:
        # creation order is a topological order; the error table goes after every node that may report
        before = [n for n in self._nodes if n is not self._error_node and n not in self._after_errors]
        return [*before, self._error_node, *(n for n in self._nodes if n in self._after_errors)]

    def _process(self, pushes: list[_Push]) -> EpochReport:
        # an epoch's changes are acyclic tuples that die when it ends: collecting cycles every 700
        # allocations would traverse the whole operator state again and again, so collect between epochs
        if not gc.isenabled():
            return self._process_epoch(pushes)
        gc.disable()
        try:
            return self._process_epoch(pushes)
        finally:
            gc.enable()

    def _process_epoch(self, pushes: list[_Push]) -> EpochReport:
        started = time.perf_counter_ns()
        self.epoch += 1
        ctx = EpochContext(self.epoch)
        for push in pushes:
            push.node.pending.extend(push.changes)
        outputs: dict[Node, list[Delta]] = {}
        if self._plan is None:
            self._plan = (self._order(), {node for node, _ in self._sinks})
        order, watched = self._plan
        for node in order:
            if isinstance(node, InputNode):
                if not node.pending:
                    continue
                deltas: list[list[Delta]] = []
            else:
                deltas = [outputs.get(i, []) for i in node.inputs]
                if node is not self._error_node and not any(deltas):
                    continue
            out = node.step(deltas, ctx)
            if node in watched:
                # sinks see consolidated changes; rows they cannot hold go to the error table
                out = consolidate_or_report(out, node.name, ctx.errors)
            if out:
                outputs[node] = out
        if ctx.errors:
            log.warning("row errors reported downstream of the error table are not recorded: %s", ctx.errors)
        output_count = self._deliver(outputs)
        for push in pushes:
            if push.position is not None:
                self.positions[push.source] = push.position
        report = EpochReport(
            self.epoch,
            sum(len(p.changes) for p in pushes),
            output_count,
            started,
            time.perf_counter_ns(),
            dict(self.positions),
        )
        for listener in self._listeners:
            listener(report)
        return report

    def _deliver(self, outputs: dict[Node, list[Delta]]) -> int:
        delivered: dict[Node, list[Change]] = {}
        for node, sink in self._sinks:
            if node in outputs:
                if node not in delivered:
                    delivered[node] = list(map(_as_change, outputs[node]))
                sink.on_epoch(self.epoch, delivered[node])
        return sum(len(changes) for changes in delivered.values())
