"""Latency of one-change epochs: through ``advance()`` and through a running streaming engine."""

from __future__ import annotations

import dataclasses
import math
import random
import statistics
import threading
import time
from typing import Any

from ragflow.engine import ChangeQueue, Engine, EpochReport, Mode, Push

from .measuring import timed_section
from .report_format import format_ns
from .settings import Settings
from .subjects import five_operators
from .workloads import SingleChanges


@dataclasses.dataclass(frozen=True, slots=True)
class Latency:
    """End-to-end times of one-change epochs in nanoseconds; ``split`` breaks the median down."""

    name: str
    samples: list[int]
    split: str = ""
    lost: int = 0

    def percentile(self, q: float) -> int:
        ordered = sorted(self.samples)
        return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


def advance_latency(settings: Settings, rng: random.Random) -> Latency:
    changes = SingleChanges(rng, settings.warm_rows // 10)
    engine = Engine()
    rows = engine.input(name="rows")
    output = five_operators(rows).collect()
    engine.advance({rows: changes.warm()})
    for _ in range(settings.latency_warmup):
        engine.advance({rows: [changes.next()]})
    epochs_before = output.epochs
    samples = []
    with timed_section(settings.disable_gc):
        for _ in range(settings.latency_changes):
            change = [changes.next()]
            start = time.perf_counter_ns()
            engine.advance({rows: change})
            samples.append(time.perf_counter_ns() - start)
    if output.epochs - epochs_before != settings.latency_changes:
        raise RuntimeError("a one-change epoch did not reach the sink; the benchmark is broken")
    return Latency("`advance()`, one change, 5 operators, `collect()`", samples)


class DirectSource:
    """A streaming source that hands the engine's ``push`` to the benchmark thread, so the time measured
    starts at the push itself rather than when some source thread gets round to it."""

    name = "direct"

    def __init__(self) -> None:
        self.ready = threading.Event()
        self.push: Push = self._not_started

    def _not_started(self, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError("the engine has not started this source yet; wait for `ready`")

    def run(self, push: Push, stop: threading.Event, mode: Mode) -> None:
        self.push = push
        self.ready.set()
        stop.wait()


@dataclasses.dataclass(slots=True)
class Arrivals:
    """When the latest epoch started and reached the sink, written on the engine's thread; ``done`` is set
    by the epoch listener, which runs after the sinks, so both times are there when it is."""

    done: threading.Event = dataclasses.field(default_factory=threading.Event)
    delivered_ns: int = 0
    started_ns: int = 0

    def on_sink(self, epoch: int, changes: list[Any]) -> None:
        self.delivered_ns = time.perf_counter_ns()

    def on_report(self, report: EpochReport) -> None:
        self.started_ns = report.started_ns
        self.done.set()


def streaming_latency(settings: Settings, rng: random.Random, queue: bool) -> Latency:
    """Push one change at a time into a running engine and time it to the sink, pausing in between."""
    changes = SingleChanges(rng, settings.warm_rows // 10)
    engine = Engine()
    source: DirectSource | ChangeQueue = ChangeQueue() if queue else DirectSource()
    arrivals = Arrivals()
    five_operators(engine.source(source)).subscribe(arrivals.on_sink)
    engine.on_epoch(arrivals.on_report)
    engine.start("streaming")
    if isinstance(source, DirectSource) and not source.ready.wait(5):
        raise RuntimeError("the engine did not start the benchmark source within 5 s")
    try:
        source.push(changes.warm())
        if not engine.wait_idle(60):
            raise RuntimeError(f"the engine did not process the warm-up rows: {engine.failure!r}")
        return time_pushes(settings, changes, source.push, arrivals, queue)
    finally:
        engine.stop()
        engine.join(5)


def time_pushes(
    settings: Settings, changes: SingleChanges, push: Push, arrivals: Arrivals, queue: bool
) -> Latency:
    samples, handoffs, lost = [], [], 0
    with timed_section(settings.disable_gc):
        for i in range(settings.latency_warmup + settings.latency_changes):
            arrivals.done.clear()
            change = [changes.next()]
            start = time.perf_counter_ns()
            push(change)
            if not arrivals.done.wait(1.0):
                lost += 1
            elif i >= settings.latency_warmup:
                samples.append(arrivals.delivered_ns - start)
                handoffs.append(arrivals.started_ns - start)
            time.sleep(settings.latency_pause_s)
    if not samples:
        raise RuntimeError("no pushed change reached the sink; the benchmark is broken")
    handoff = statistics.median(handoffs)
    split = f"{format_ns(handoff)} to epoch start + {format_ns(statistics.median(samples) - handoff)}"
    via = "`ChangeQueue.push()`" if queue else "source's `push()`"
    return Latency(f"streaming: {via} → 5 operators → `subscribe`", samples, split, lost)
