"""Measuring without fooling ourselves: progress lines, garbage-collector control and wall/CPU clocks."""

from __future__ import annotations

import dataclasses
import gc
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager


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
