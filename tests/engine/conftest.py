"""Fixtures shared by the engine tests."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import pytest

from ragflow.engine import Engine
from ragflow.engine.io import Mode


@pytest.fixture
def start_engine() -> Iterator[Callable[..., Engine]]:
    """``start_engine(engine, mode="streaming")`` starts ``engine`` in its background thread; whatever
    the test does, every engine started this way is stopped and joined at teardown so no thread
    outlives its test."""
    started: list[Engine] = []

    def start(engine: Engine, mode: Mode = "streaming") -> Engine:
        engine.start(mode)
        started.append(engine)
        return engine

    yield start
    for engine in started:
        engine.stop()
        with contextlib.suppress(Exception):  # the test itself asserts on the failures it expects
            engine.join(timeout=5)
