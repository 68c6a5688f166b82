"""Ways the tests run a pipeline through a real engine loop: a ``static`` run over fixed groups of
changes, a ``streaming`` run fed push by push, and waiting for a running engine to catch up."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence

from ragflow.engine import ChangeQueue, Engine, StaticSource, Table

from .reference import Delta, Multiset


def run_static(build: Callable[[Table], Table], groups: Sequence[Iterable[Delta]]) -> Multiset:
    """The output of ``build`` after ``engine.run("static")`` over a ``StaticSource`` of ``groups``."""
    engine = Engine()
    output = build(engine.source(StaticSource(groups))).collect()
    engine.run("static", handle_signals=False)
    return output.multiset()


def run_streaming(build: Callable[[Table], Table], changes: Iterable[Delta], timeout: float = 10) -> Multiset:
    """The output of ``build`` after a ``streaming`` run that received every change as its own push."""
    engine = Engine()
    queue = ChangeQueue()
    output = build(engine.source(queue)).collect()
    engine.start("streaming")
    for change in changes:
        queue.push([change])
    queue.close()
    engine.join(timeout)
    return output.multiset()


def wait_until(condition: Callable[[], bool], timeout: float = 5.0, what: str = "condition") -> None:
    """Poll ``condition`` until it holds; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not hold within {timeout} s")
        time.sleep(0.001)
