"""Engine benchmarks: row-change throughput of groupby-reduce and join pipelines, the latency of one-change
epochs (synchronous and streaming) and the overhead of the batched-UDF operator. Throughput runs alternate
with a plain-Python loop doing the same dict work, so the engine's overhead shows even on a noisy machine.

Run ``python -m apps.bench.engine [--quick] [--repeat N] [--disable-gc] [--profile]``: it prints a Markdown
section for docs/benchmarks.md on stdout and its progress (and ``--profile`` hotspots) on stderr.
"""

from __future__ import annotations

import argparse
import cProfile
import dataclasses
import datetime
import gc
import math
import os
import platform
import pstats
import random
import statistics
import sys
import threading
import time
from collections.abc import Callable, Hashable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Protocol

from ragflow.engine import (
    ChangeQueue,
    Engine,
    EpochReport,
    FrozenDict,
    MemoryCache,
    Mode,
    Push,
    Table,
    reducers,
)

Delta = tuple[Any, Any, int]
Epoch = dict[str, list[Delta]]
"""One epoch of changes by input name: ``rows``, or ``left`` and ``right`` for joins."""

GROUPS = 1000
RETRACT_SHARE = 0.2
UDF_EPOCH = 10_000
UDF_BATCH = 64
TEXT_PAD = "x" * 56  # UDF inputs are 64-character texts


@dataclasses.dataclass(frozen=True, slots=True)
class Settings:
    """How much work each benchmark does."""

    repeats: int
    warm_rows: int  # rows in the state before timing starts
    epochs: dict[int, int]  # epoch size -> timed epochs per repeat
    latency_changes: int
    latency_warmup: int
    latency_pause_s: float
    udf_rows: int
    disable_gc: bool = False


DEFAULT = Settings(
    repeats=5,
    warm_rows=50_000,
    epochs={10_000: 8, 100_000: 1},
    latency_changes=2000,
    latency_warmup=200,
    latency_pause_s=0.0005,
    udf_rows=50_000,
)
QUICK = Settings(
    repeats=2,
    warm_rows=10_000,
    epochs={10_000: 2, 50_000: 1},
    latency_changes=300,
    latency_warmup=50,
    latency_pause_s=0.0005,
    udf_rows=10_000,
)


def progress(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


@contextmanager
def timed_section(disable_gc: bool) -> Iterator[None]:
    """Collect garbage first so a run does not pay for the previous one's; optionally keep gc off."""
    gc.collect()
    if disable_gc:
        gc.disable()
    try:
        yield
    finally:
        if disable_gc:
            gc.enable()


@contextmanager
def frozen_heap() -> Iterator[None]:
    """Move the pre-generated workload out of the collector's sight: a real engine process does not hold
    millions of pending changes, so they must not make its garbage collections slower here."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


@dataclasses.dataclass(slots=True)
class Clock:
    """Wall and process CPU time over timed sections; CPU below wall means the process waited for a core."""

    wall_ns: int = 0
    cpu_ns: int = 0

    @contextmanager
    def running(self) -> Iterator[None]:
        wall, cpu = time.perf_counter_ns(), time.process_time_ns()
        try:
            yield
        finally:
            self.wall_ns += time.perf_counter_ns() - wall
            self.cpu_ns += time.process_time_ns() - cpu


# -- workloads ----------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Workload:
    """Epochs to replay: the ``warm`` ones build the state untimed, the ``timed`` ones are measured."""

    warm: list[Epoch]
    timed: list[Epoch]

    @property
    def timed_changes(self) -> int:
        return sum(len(changes) for epoch in self.timed for changes in epoch.values())

    @property
    def epoch_size(self) -> int:
        return sum(len(changes) for changes in self.timed[0].values())

    @property
    def retract_share(self) -> float:
        retracted = sum(1 for epoch in self.timed for changes in epoch.values() for c in changes if c[2] < 0)
        return retracted / max(1, self.timed_changes)


def passing_value(rng: random.Random) -> int:
    """A value whose row survives the benchmark filter."""
    value = rng.randrange(1000)
    return value + 1 if value % 10 == 0 else value


def groupby_workload(rng: random.Random, warm_rows: int, epoch_size: int, epochs: int) -> Workload:
    """Rows ``(group, value)`` over ``GROUPS`` groups: inserts only to warm up, then inserts and
    retractions of live rows mixed 80/20; about a tenth of the rows fail the filter."""
    live: list[tuple[int, tuple[int, int]]] = []
    keys = iter(range(sys.maxsize))

    def inserts(count: int) -> list[Delta]:
        made = [(next(keys), (rng.randrange(GROUPS), rng.randrange(1000))) for _ in range(count)]
        live.extend(made)
        return [(key, row, 1) for key, row in made]

    def retractions(count: int) -> list[Delta]:
        out = []
        for _ in range(count):
            i = rng.randrange(len(live))
            live[i], live[-1] = live[-1], live[i]
            key, row = live.pop()
            out.append((key, row, -1))
        return out

    warm = [{"rows": inserts(warm_rows)}]
    timed = []
    for _ in range(epochs):
        retracted = int(epoch_size * RETRACT_SHARE)
        changes = retractions(retracted) + inserts(epoch_size - retracted)
        rng.shuffle(changes)
        timed.append({"rows": changes})
    return Workload(warm, timed)


class JoinWorld:
    """Documents (left: key ``doc``, row ``(doc, version)``) and ``fanout`` chunks each (right: row
    ``(doc, part, version)``). Epochs add documents with their chunks and update rows of either side
    (retract + insert), mixed so that about 20% of the changes are retractions."""

    def __init__(self, rng: random.Random, fanout: int) -> None:
        self.rng, self.fanout = rng, fanout
        self.docs: list[tuple[int, int]] = []
        self.chunks: list[tuple[int, tuple[int, int, int]]] = []
        # an update is 2 changes (1 retraction), a new document 1 + fanout insertions
        self.update_chance = (1 + fanout) / (4 + fanout)

    def add_document(self, out: Epoch) -> None:
        doc = len(self.docs)
        self.docs.append((doc, 0))
        out["left"].append((doc, (doc, 0), 1))
        for part in range(self.fanout):
            chunk = (len(self.chunks), (doc, part, 0))
            self.chunks.append(chunk)
            out["right"].append((*chunk, 1))

    def update_row(self, out: Epoch) -> None:
        if self.rng.random() < 0.5:
            i = self.rng.randrange(len(self.docs))
            doc, version = self.docs[i]
            self.docs[i] = (doc, version + 1)
            out["left"] += [(doc, (doc, version), -1), (doc, (doc, version + 1), 1)]
        else:
            i = self.rng.randrange(len(self.chunks))
            key, (doc, part, version) = self.chunks[i]
            self.chunks[i] = (key, (doc, part, version + 1))
            out["right"] += [(key, (doc, part, version), -1), (key, (doc, part, version + 1), 1)]

    def epoch(self, size: int, updates: bool = True) -> Epoch:
        out: Epoch = {"left": [], "right": []}
        while len(out["left"]) + len(out["right"]) < size:
            if updates and self.rng.random() < self.update_chance:
                self.update_row(out)
            else:
                self.add_document(out)
        return out


def join_workload(rng: random.Random, fanout: int, warm_rows: int, epoch_size: int, epochs: int) -> Workload:
    world = JoinWorld(rng, fanout)
    warm = [world.epoch(warm_rows, updates=False)]
    return Workload(warm, [world.epoch(epoch_size) for _ in range(epochs)])


# -- the pipelines under test and their plain-loop equivalents ----------------------------------------


def scaled(row: tuple[int, int]) -> tuple[int, int]:
    return (row[0], row[1] * 3)


def kept(row: tuple[int, int]) -> bool:
    return row[1] % 10 != 0


def group_of(row: tuple[int, int]) -> int:
    return row[0]


def value_of(row: tuple[int, int]) -> int:
    return row[1]


def join_key(row: tuple[int, ...]) -> int:
    return row[0]


class Subject(Protocol):
    """Something that consumes epochs and can show what it computed."""

    def apply(self, epoch: Epoch) -> None: ...

    def snapshot(self) -> dict[Any, Any]: ...


class EnginePipeline:
    """An engine fed through ``advance``; subclasses build their graph on ``self.inputs``."""

    def __init__(self, *names: str) -> None:
        self.engine = Engine()
        self.inputs = {name: self.engine.input(name=name) for name in names}

    def apply(self, epoch: Epoch) -> None:
        self.engine.advance({self.inputs[name]: changes for name, changes in epoch.items()})


class GroupbyPipeline(EnginePipeline):
    def __init__(self) -> None:
        super().__init__("rows")
        table = self.inputs["rows"].map(scaled).filter(kept)
        reduced = table.groupby(group_of).reduce(n=reducers.count(), total=reducers.sum(value_of))
        self.output = reduced.collect()

    def snapshot(self) -> dict[Any, Any]:
        return {group: (row["n"], row["total"]) for group, row in self.output.as_dict().items()}


class GroupbyLoop:
    """The groupby pipeline as one dict loop: map, filter, count and sum per group, a result per group."""

    def __init__(self) -> None:
        self.state: dict[int, list[int]] = {}
        self.results: dict[int, tuple[int, int]] = {}

    def apply(self, epoch: Epoch) -> None:
        state = self.state
        touched: dict[int, None] = {}
        for _, row, diff in epoch["rows"]:
            row = scaled(row)
            if not kept(row):
                continue
            group = group_of(row)
            acc = state.get(group)
            if acc is None:
                acc = state[group] = [0, 0]
            acc[0] += diff
            acc[1] += value_of(row) * diff
            touched[group] = None
        for group in touched:
            count, total = state[group]
            if count:
                self.results[group] = (count, total)
            else:
                del state[group]
                self.results.pop(group, None)

    def snapshot(self) -> dict[Any, Any]:
        return self.results


class JoinPipeline(EnginePipeline):
    def __init__(self) -> None:
        super().__init__("left", "right")
        self.output = self.inputs["left"].join(self.inputs["right"], join_key, join_key).collect()

    def snapshot(self) -> dict[Any, Any]:
        return self.output.multiset()


def add_multiplicity(counts: dict[Any, int], item: Any, diff: int) -> None:
    total = counts.get(item, 0) + diff
    if total:
        counts[item] = total
    else:
        del counts[item]


class JoinLoop:
    """The inner join as one dict loop: an index per side, output pairs applied to a result multiset."""

    def __init__(self) -> None:
        self.left: dict[Hashable, dict[tuple[Any, Any], int]] = {}
        self.right: dict[Hashable, dict[tuple[Any, Any], int]] = {}
        self.results: dict[tuple[Any, Any], int] = {}

    def apply(self, epoch: Epoch) -> None:
        out: list[Delta] = []
        for key, row, diff in epoch["left"]:
            on = join_key(row)
            for (rkey, rrow), mult in self.right.get(on, {}).items():
                out.append(((key, rkey), (row, rrow), diff * mult))
            add_multiplicity(self.left.setdefault(on, {}), (key, row), diff)
        for key, row, diff in epoch["right"]:
            on = join_key(row)
            for (lkey, lrow), mult in self.left.get(on, {}).items():
                out.append(((lkey, key), (lrow, row), diff * mult))
            add_multiplicity(self.right.setdefault(on, {}), (key, row), diff)
        for key, row, diff in out:
            add_multiplicity(self.results, (key, row), diff)

    def snapshot(self) -> dict[Any, Any]:
        return self.results


# -- throughput ---------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Throughput:
    """Changes per second of the engine and of the equivalent loop, one sample per repeat."""

    name: str
    epoch_size: int
    engine: list[float]
    loop: list[float]
    cpu_share: float  # process CPU time / wall time over the engine's timed sections
    target: float
    note: str


def replay(subject: Subject, workload: Workload, disable_gc: bool, clock: Clock) -> float:
    """Changes per second over the timed epochs, after the warm ones."""
    for epoch in workload.warm:
        subject.apply(epoch)
    run = Clock()
    with timed_section(disable_gc):
        for epoch in workload.timed:
            with run.running():
                subject.apply(epoch)
    clock.wall_ns += run.wall_ns
    clock.cpu_ns += run.cpu_ns
    return workload.timed_changes / (run.wall_ns / 1e9)


def measure_throughput(
    name: str,
    workload: Workload,
    pipeline: Callable[[], Subject],
    loop: Callable[[], Subject],
    settings: Settings,
    target: float,
    note: str,
) -> Throughput:
    """Alternate engine and loop runs so machine noise hits both, then check that they agree."""
    engine_rates, loop_rates = [], []
    engine_clock, loop_clock = Clock(), Clock()
    with frozen_heap():
        for repeat in range(settings.repeats):
            engine_subject, loop_subject = pipeline(), loop()
            engine_rates.append(replay(engine_subject, workload, settings.disable_gc, engine_clock))
            loop_rates.append(replay(loop_subject, workload, settings.disable_gc, loop_clock))
            progress(
                f"{name}, {workload.epoch_size}-change epochs, repeat {repeat + 1}: {engine_rates[-1]:,.0f}/s"
            )
    if engine_subject.snapshot() != loop_subject.snapshot():
        raise RuntimeError(f"{name}: the engine and the plain loop disagree; the benchmark is broken")
    share = engine_clock.cpu_ns / engine_clock.wall_ns
    return Throughput(name, workload.epoch_size, engine_rates, loop_rates, share, target, note)


def groupby_benchmarks(settings: Settings, rng: random.Random) -> list[Throughput]:
    results = []
    for size, epochs in settings.epochs.items():
        workload = groupby_workload(rng, settings.warm_rows, size, epochs)
        note = f"{settings.warm_rows:,} rows first, then {workload.retract_share:.0%} of changes retract rows"
        name = f"map → filter → groupby-reduce (count, sum), {GROUPS} groups"
        results.append(
            measure_throughput(name, workload, GroupbyPipeline, GroupbyLoop, settings, 200e3, note)
        )
    return results


def join_benchmarks(settings: Settings, rng: random.Random) -> list[Throughput]:
    results = []
    for fanout in (1, 3):
        for size, epochs in settings.epochs.items():
            workload = join_workload(rng, fanout, settings.warm_rows, size, epochs)
            note = (
                f"{settings.warm_rows:,} rows first; each epoch inserts documents with their chunks and "
                f"updates rows of both sides; {workload.retract_share:.0%} of changes retract rows"
            )
            name = f"inner join, 1:{fanout} matches"
            results.append(measure_throughput(name, workload, JoinPipeline, JoinLoop, settings, 100e3, note))
    return results


# -- latency ------------------------------------------------------------------------------------------


def chunks_of(key: Any, row: tuple[int, int]) -> list[tuple[Hashable, tuple[int, int]]]:
    return [((key, 0), row), ((key, 1), row)]


def summary(result: FrozenDict) -> tuple[int, int]:
    return (result["n"], result["total"])


def five_operators(rows: Table) -> Table:
    """map → filter → flat_map → groupby-reduce → map."""
    chunks = rows.map(scaled).filter(kept).flat_map(chunks_of)
    reduced = chunks.groupby(group_of).reduce(n=reducers.count(), total=reducers.sum(value_of))
    return reduced.map(summary)


class SingleChanges:
    """One-change epochs that all reach the sink: random inserts and retractions of rows that pass."""

    def __init__(self, rng: random.Random, warm_rows: int) -> None:
        self.rng = rng
        self.live = [(key, (rng.randrange(GROUPS), passing_value(rng))) for key in range(warm_rows)]
        self.next_key = warm_rows

    def warm(self) -> list[Delta]:
        return [(key, row, 1) for key, row in self.live]

    def next(self) -> Delta:
        if self.rng.random() < 0.5 and self.live:
            i = self.rng.randrange(len(self.live))
            self.live[i], self.live[-1] = self.live[-1], self.live[i]
            key, row = self.live.pop()
            return (key, row, -1)
        added = (self.next_key, (self.rng.randrange(GROUPS), passing_value(self.rng)))
        self.next_key += 1
        self.live.append(added)
        return (*added, 1)


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


# -- the batched-UDF operator -------------------------------------------------------------------------


def lengths(batch: list[str]) -> list[int]:
    return [len(text) for text in batch]


@dataclasses.dataclass(frozen=True, slots=True)
class UdfRun:
    """Rows per second of one way of computing ``len`` of every row, with the node's counters."""

    name: str
    rates: list[float]
    computed: int | None = None
    cache_hits: int | None = None


def texts(start: int, count: int) -> list[str]:
    return [f"{i:08d}{TEXT_PAD}" for i in range(start, start + count)]


def udf_rows_per_second(
    build: Callable[[Table], Table], rows: list[Delta], warm: list[Delta], disable_gc: bool
) -> tuple[float, dict[str, int]]:
    """Rows per second through ``build(input)``, and the change of its counters while timed."""
    engine = Engine()
    source = engine.input(name="texts")
    output = build(source)
    if warm:
        engine.advance({source: warm})
    before = next(iter(output.stats().values()), {})
    clock = Clock()
    with timed_section(disable_gc):
        for i in range(0, len(rows), UDF_EPOCH):
            with clock.running():
                engine.advance({source: rows[i : i + UDF_EPOCH]})
    after = next(iter(output.stats().values()), {})
    return len(rows) / (clock.wall_ns / 1e9), {name: after[name] - before.get(name, 0) for name in after}


def udf_benchmarks(settings: Settings) -> list[UdfRun]:
    """``map(len)`` against ``map_batched(lengths)``: computing every input, hitting a filled
    ``MemoryCache``, and finding inputs already live in the node (same texts under other keys)."""
    n = settings.udf_rows
    inputs = texts(0, n)
    rows = [(i, text, 1) for i, text in enumerate(inputs)]
    twins = [(n + i, text, 1) for i, text in enumerate(inputs)]
    filled = MemoryCache(max_entries=2 * n)
    udf_rows_per_second(lambda t: t.map_batched(lengths, cache=filled), rows, [], False)
    scenarios: list[tuple[str, Callable[[Table], Table], list[Delta]]] = [
        ("`map(len)`, the per-row operator, for comparison", lambda t: t.map(len), []),
        ("`map_batched`, every input computed, no cache", lambda t: t.map_batched(lengths), []),
        (
            "`map_batched`, every input computed, `MemoryCache` misses",
            lambda t: t.map_batched(lengths, cache=MemoryCache(max_entries=2 * n)),
            [],
        ),
        (
            "`map_batched`, every input a `MemoryCache` hit",
            lambda t: t.map_batched(lengths, cache=filled),
            [],
        ),
        ("`map_batched`, every input already live in the node", lambda t: t.map_batched(lengths), twins),
    ]
    runs = []
    with frozen_heap():
        for name, build, warm in scenarios:
            rates: list[float] = []
            counters: dict[str, int] = {}
            for _ in range(settings.repeats):
                rate, counters = udf_rows_per_second(build, rows, warm, settings.disable_gc)
                rates.append(rate)
            runs.append(UdfRun(name, rates, counters.get("computed"), counters.get("cache_hits")))
            progress(f"{name}: {statistics.median(rates):,.0f} rows/s")
        runs.append(
            UdfRun(
                f"`lengths` on bare batches of {UDF_BATCH}, plain loop", bare_batch_rates(inputs, settings)
            )
        )
    return runs


def bare_batch_rates(inputs: list[str], settings: Settings) -> list[float]:
    rates = []
    for _ in range(settings.repeats):
        clock = Clock()
        with timed_section(settings.disable_gc), clock.running():
            for i in range(0, len(inputs), UDF_BATCH):
                lengths(inputs[i : i + UDF_BATCH])
        rates.append(len(inputs) / (clock.wall_ns / 1e9))
    return rates


# -- report -------------------------------------------------------------------------------------------


def format_rate(value: float) -> str:
    if value >= 1e6:
        return f"{value / 1e6:.2f}M"
    if value >= 1e3:
        return f"{value / 1e3:.0f}k"
    return f"{value:.0f}"


def format_ns(value: float) -> str:
    if value >= 1e6:
        return f"{value / 1e6:.2f} ms"
    return f"{value / 1e3:.0f} µs"


def verdict(met: bool) -> str:
    return "yes" if met else "**no**"


def table(header: Sequence[str], align: str, rows: list[list[str]]) -> list[str]:
    """A Markdown table; ``align`` holds one letter per column: l(eft), r(ight) or c(enter)."""
    rule = {"l": "---", "r": "--:", "c": ":-:"}
    lines = [header, [rule[a] for a in align], *rows]
    return ["| " + " | ".join(cells) + " |" for cells in lines]


def machine_lines(settings: Settings, argv: Sequence[str]) -> list[str]:
    load = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    gc_state = "**disabled**" if settings.disable_gc else "enabled"
    return [
        f"- Date: {now}",
        f"- Machine: {platform.platform()}, {os.cpu_count()} CPUs, load average {load} (1/5/15 min) at start",
        f"- Python: {platform.python_implementation()} {platform.python_version()}",
        f"- Command: `python -m apps.bench.engine{''.join(' ' + a for a in argv)}`",
        f"- {settings.repeats} repeats; throughput is the median over repeats, min and max beside it",
        f"- gc {gc_state} while timing; `gc.collect()` before every timed run; the pre-generated workload "
        "is `gc.freeze()`d so that it does not slow the engine's collections",
    ]


def throughput_table(results: list[Throughput]) -> list[str]:
    header = ["Pipeline", "Epoch", "Changes/s, median", "Min", "Max", "CPU share", "Plain loop"]
    header += ["Engine time ÷ loop's", "Target", "Met"]
    rows = []
    for result in results:
        median, loop = statistics.median(result.engine), statistics.median(result.loop)
        rows.append(
            [
                result.name,
                format_rate(result.epoch_size),
                format_rate(median),
                format_rate(min(result.engine)),
                format_rate(max(result.engine)),
                f"{result.cpu_share:.0%}",
                format_rate(loop),
                f"{loop / median:.1f}×",
                f"≥ {format_rate(result.target)}/s",
                verdict(median >= result.target),
            ]
        )
    return table(header, "lrrrrrrrrc", rows)


def latency_table(results: list[Latency]) -> list[str]:
    header = ["Path", "Epochs", "p50", "p95", "p99", "Max", "Median split", "Target", "Met"]
    rows = []
    for result in results:
        p50 = result.percentile(50)
        rows.append(
            [
                result.name,
                f"{len(result.samples)}" + (f" ({result.lost} lost)" if result.lost else ""),
                format_ns(p50),
                format_ns(result.percentile(95)),
                format_ns(result.percentile(99)),
                format_ns(max(result.samples)),
                result.split or "—",
                "p50 ≤ 1 ms",
                verdict(p50 <= 1e6),
            ]
        )
    return table(header, "lrrrrrlrc", rows)


def udf_table(runs: list[UdfRun]) -> list[str]:
    header = ["Operator", "Rows/s, median", "Min", "Max", "µs/row", "Computed", "Cache hits"]
    rows = []
    for run in runs:
        median = statistics.median(run.rates)
        rows.append(
            [
                run.name,
                format_rate(median),
                format_rate(min(run.rates)),
                format_rate(max(run.rates)),
                f"{1e6 / median:.2f}",
                "—" if run.computed is None else f"{run.computed:,}",
                "—" if run.cache_hits is None else f"{run.cache_hits:,}",
            ]
        )
    return table(header, "lrrrrrr", rows)


def report(
    settings: Settings,
    machine: list[str],
    throughput: list[Throughput],
    latency: list[Latency],
    udf: list[UdfRun],
) -> str:
    notes = dict.fromkeys(f"- {result.name}: {result.note}." for result in throughput)
    return "\n".join(
        [
            "## Engine benchmarks",
            "",
            *machine,
            "",
            "### Throughput: `engine.advance`, one epoch at a time, result kept by `collect()`",
            "",
            *throughput_table(throughput),
            "",
            "*CPU share* is process CPU time over wall time while timing the engine: well below 100% means "
            "other load took the CPU. The *plain loop* does the same dict work in one Python function with "
            "the same row functions; engine and loop runs alternate and must end with equal results.",
            "",
            *notes,
            "",
            "### Latency of a one-change epoch",
            "",
            *latency_table(latency),
            "",
            f"{settings.warm_rows // 10:,} rows in {GROUPS} groups first; the operators are map → filter → "
            "flat_map (2 chunks per row) → groupby-reduce (count, sum) → map, fed random single inserts and "
            f"retractions. Streaming pauses {settings.latency_pause_s * 1e3:g} ms between pushes; its median "
            "is split into push → epoch start (thread hand-off) and epoch start → sink (processing).",
            "",
            f"### Batched UDF operator: {settings.udf_rows:,} rows of 64 characters, {UDF_EPOCH:,} per epoch",
            "",
            *udf_table(udf),
            "",
        ]
    )


# -- profiling and entry point ------------------------------------------------------------------------


def profile(settings: Settings, rng: random.Random) -> None:
    """Print the top functions, by own time, of the groupby and join pipelines to stderr."""
    size = max(settings.epochs)
    cases: list[tuple[str, Workload, Callable[[], Subject]]] = [
        ("groupby", groupby_workload(rng, settings.warm_rows, size, 2), GroupbyPipeline),
        ("join 1:1", join_workload(rng, 1, settings.warm_rows, size, 2), JoinPipeline),
        ("join 1:3", join_workload(rng, 3, settings.warm_rows, size, 2), JoinPipeline),
    ]
    for name, workload, pipeline in cases:
        subject = pipeline()
        for epoch in workload.warm:
            subject.apply(epoch)
        profiler = cProfile.Profile()
        profiler.enable()
        for epoch in workload.timed:
            subject.apply(epoch)
        profiler.disable()
        print(f"\n=== profile: {name}, {workload.timed_changes:,} changes ===", file=sys.stderr)
        pstats.Stats(profiler, stream=sys.stderr).sort_stats("tottime").print_stats(15)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m apps.bench.engine", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a fast run (about 10 s) on small workloads")
    parser.add_argument(
        "--repeat", type=int, metavar="N", help="repeats per measurement (default 5, quick 2)"
    )
    parser.add_argument(
        "--disable-gc", action="store_true", help="keep the garbage collector off while timing"
    )
    parser.add_argument("--profile", action="store_true", help="also print cProfile hotspots to stderr")
    parser.add_argument("--seed", type=int, default=20240601, help="seed of the random workloads")
    args = parser.parse_args(argv)
    if args.repeat is not None and args.repeat < 1:
        parser.error(f"--repeat must be at least 1, got {args.repeat}")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    base = QUICK if args.quick else DEFAULT
    settings = dataclasses.replace(base, repeats=args.repeat or base.repeats, disable_gc=args.disable_gc)
    rng = random.Random(args.seed)
    started = time.monotonic()
    machine = machine_lines(settings, argv)
    throughput = groupby_benchmarks(settings, rng) + join_benchmarks(settings, rng)
    progress("one-change latency")
    latency = [
        advance_latency(settings, rng),
        streaming_latency(settings, rng, queue=False),
        streaming_latency(settings, rng, queue=True),
    ]
    progress("batched UDF")
    udf = udf_benchmarks(settings)
    print(report(settings, machine, throughput, latency, udf))
    progress(f"done in {time.monotonic() - started:.0f} s")
    if args.profile:
        profile(settings, rng)


if __name__ == "__main__":
    main()
