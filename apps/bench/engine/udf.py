"""The batched-UDF operator's overhead: computed, cached and already-live inputs against ``map``."""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Callable

from ragflow.engine import Engine, MemoryCache, Table

from .measuring import Clock, frozen_heap, progress, timed_section
from .settings import Settings
from .workloads import Delta

UDF_EPOCH = 10_000
UDF_BATCH = 64
TEXT_PAD = "x" * 56  # UDF inputs are 64-character texts


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
