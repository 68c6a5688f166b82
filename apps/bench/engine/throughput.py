"""Row-change throughput of the engine against the equivalent plain loop, alternated run by run."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable

from .measuring import Clock, frozen_heap, progress, timed_section
from .settings import Settings
from .subjects import GroupbyLoop, GroupbyPipeline, JoinLoop, JoinPipeline, Subject
from .workloads import GROUPS, Workload, groupby_workload, join_workload


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
