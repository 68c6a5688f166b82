"""The Markdown section for docs/benchmarks.md: machine, throughput, latency and UDF tables."""

from __future__ import annotations

import datetime
import os
import platform
import statistics
from collections.abc import Sequence

from .latency import Latency
from .report_format import format_ns, format_rate, table, verdict
from .settings import Settings
from .throughput import Throughput
from .udf import UDF_EPOCH, UdfRun
from .workloads import GROUPS


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
