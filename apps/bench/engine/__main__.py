"""Command line of the engine benchmarks: ``python -m apps.bench.engine [--quick] [--repeat N]
[--disable-gc] [--profile] [--seed N]``."""

from __future__ import annotations

import argparse
import cProfile
import dataclasses
import pstats
import random
import sys
import time
from collections.abc import Callable, Sequence

from . import __doc__ as PACKAGE_DOC
from .latency import advance_latency, streaming_latency
from .measuring import progress
from .report import machine_lines, report
from .settings import DEFAULT, QUICK, Settings
from .subjects import GroupbyPipeline, JoinPipeline, Subject
from .throughput import groupby_benchmarks, join_benchmarks
from .udf import udf_benchmarks
from .workloads import Workload, groupby_workload, join_workload


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
    parser = argparse.ArgumentParser(prog="python -m apps.bench.engine", description=PACKAGE_DOC)
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
