"""The terminal table of one run or several side by side (``--compare``)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from ._results import ChangeRecord, FreshnessResult
from ._stats import Summary, percentile


def ms(seconds: float | None) -> str:
    if seconds is None or math.isnan(seconds):
        return "-"
    return f"{seconds * 1000:.0f} ms" if seconds < 10 else f"{seconds:.1f} s"


def _kinds(results: Sequence[FreshnessResult]) -> list[str]:
    kinds: list[str] = []
    for result in results:
        kinds.extend(k for k in result.kinds() if k not in kinds)
    return kinds


def freshness_table(results: Sequence[FreshnessResult]) -> str:
    """Freshness per change kind (p50/p90/p99/max and timeouts) for each run, then each run's figures."""
    lines = [
        "freshness: from the write's return to the first answer that shows the change "
        "(low: p50 of when the last answer that did not show it was asked; the truth lies between)"
    ]
    header = f"{'kind':<9}"
    for result in results:
        header += f" | {result.label[:53]:<53}"
    lines += [
        header,
        f"{'':<9}"
        + f" | {'n':>3} {'low':>8} {'p50':>8} {'p90':>8} {'p99':>8} {'max':>8} {'t/o':>3}" * len(results),
    ]
    for kind in _kinds(results):
        row = f"{kind:<9}"
        for result in results:
            s = result.summary(kind)
            row += (
                f" | {s.count:>3} {ms(result.lower(kind)):>8} {ms(s.p50):>8} {ms(s.p90):>8} {ms(s.p99):>8} "
                f"{ms(s.max):>8} {result.timeouts(kind):>3}"
            )
        lines.append(row)
    for result in results:
        lines += ["", f"[{result.label}]", *run_figures(result)]
    return "\n".join(lines)


def run_figures(result: FreshnessResult) -> list[str]:
    """One run's other figures, one line each."""
    lines = []
    initial = result.initial
    if initial:
        text = (
            f"initial indexing  {initial.get('visible')}/{initial.get('documents')} documents visible in "
            f"{initial.get('seconds', math.nan):.2f} s ({initial.get('docs_per_s', math.nan):.1f} docs/s"
        )
        if "chunks" in initial:
            text += f", {initial['chunks']:.0f} chunks, {initial['chunks_per_s']:.1f} chunks/s"
        text += ")"
        if "startup_s" in initial:
            text += (
                f"; from the server's start, which answered after {initial['startup_s']:.2f} s and was "
                f"ready after {initial.get('ready_s', math.nan):.2f} s"
            )
        lines.append(text)
    for burst in result.bursts:
        text = (
            f"burst             {burst['size']} {burst['kind']}s written in {ms(burst['write_s'])}: the last "
            f"visible {ms(burst['seconds'])} after ({burst['size'] / max(burst['seconds'], 1e-9):.1f} "
            f"changes/s), {burst['visible']}/{burst['size']} visible"
        )
        if "chunks_embedded" in burst:
            text += f", {burst['chunks_embedded']:.0f} chunks embedded"
        if burst.get("embed_s"):
            text += (
                f"; the server's embedder spent {ms(burst['embed_s'])} on them: visible after "
                f"{burst['seconds'] / burst['embed_s']:.2f}x the time to embed them"
            )
        lines.append(text)
    if result.restart:
        r = result.restart
        lines.append(
            f"restart           ready {r['ready_s']:.2f} s after start; "
            f"{r['visible']}/{r['edits_while_down']} "
            f"edits made while down visible {r['caught_up_s']:.2f} s after start"
        )
    idle, polling = result.queries.get("idle", []), result.queries.get("polling", [])
    if idle or polling:
        lines.append(
            f"query latency     idle p50 {ms(percentile(idle, 0.5))}; while polling p50 "
            f"{ms(percentile(polling, 0.5))}, p99 {ms(percentile(polling, 0.99))} ({len(polling)} retrieves)"
        )
    lines.append(
        f"resolution        median {ms(result.resolution())} between the deciding polls "
        f"(poll interval {ms(result.run.get('poll_interval_s'))})"
    )
    driver = result.driver
    if driver:
        wall = driver.get("wall_s") or math.nan
        lines.append(
            f"driver            {driver.get('cpu_s', 0):.1f} s CPU over {wall:.1f} s "
            f"({driver.get('cpu_s', 0) / wall:.0%} of one core); {driver.get('requests', 0):.0f} requests, "
            f"the server busy answering them {driver.get('server_busy_s', 0) / wall:.0%} of the time"
            + (
                f"; {driver['failed_polls']:.0f} polls failed (no answer within the probe's timeout, or an "
                "error) and counted as misses"
                if driver.get("failed_polls")
                else ""
            )
        )
    process = result.server_process
    if process:
        lines.append(
            f"server process    peak RSS {process['peak_rss_bytes'] / 2**20:.0f} MiB, "
            f"{process['cpu_s']:.1f} s CPU"
        )
    stages = stage_medians(result)
    if stages:
        kinds = sorted({r.kind for r in stage_records(result)})
        lines.append(
            f"server view       median after the write, over the {len(stage_records(result))} changes "
            f"({', '.join(kinds)}) with every stage: "
            + ", ".join(f"{name} {ms(value)}" for name, value in stages.items())
        )
    load = result.run.get("load_average_start")
    if load:
        lines.append(f"machine           {result.run.get('cpus')} CPUs, load average {load[0]:.2f} at start")
    return lines


def stage_records(result: FreshnessResult) -> list[ChangeRecord]:
    """The single changes that have every stage the server reported for any of them (a change that
    needed no embedding has fewer), so the stages' medians come from the same changes."""
    singles = [r for r in result.records if r.phase == "single" and r.server]
    names = {name for r in singles for name in r.server}
    return [r for r in singles if set(r.server) == names]


def stage_medians(result: FreshnessResult) -> dict[str, float]:
    """For each stage the server reported, its median time after the write over ``stage_records``, in
    the order the stages happen."""
    records = stage_records(result)
    names = {name for r in records for name in r.server}
    medians = {name: Summary.of([r.server[name] for r in records]).p50 for name in names}
    return dict(sorted(medians.items(), key=lambda item: item[1]))
