"""The incremental change-stream engine: tables of ``(key, row, diff)`` changes processed in epochs.

Example::

    from ragflow.engine import Engine, reducers

    engine = Engine()
    words = engine.input()
    counts = words.groupby(lambda w: w).reduce(n=reducers.count())
    result = counts.collect()
    engine.advance({words: [(1, "a", 1), (2, "b", 1), (3, "a", 1)]})
    assert result.as_dict()["a"]["n"] == 2
"""

from __future__ import annotations

from . import reducers
from .cache import DiskCache, MemoryCache, UdfCache, content_key
from .changes import Change, FrozenDict, RowError, consolidate
from .io import CallbackSink, ChangeQueue, Collection, Mode, Push, Sink, Source, StaticSource
from .runner import Engine, EpochReport
from .table import GroupedTable, Table, WindowedTable
from .windows import Session, Sliding, Tumbling

__all__ = [
    "CallbackSink",
    "Change",
    "ChangeQueue",
    "Collection",
    "DiskCache",
    "Engine",
    "EpochReport",
    "FrozenDict",
    "GroupedTable",
    "MemoryCache",
    "Mode",
    "Push",
    "RowError",
    "Session",
    "Sink",
    "Sliding",
    "Source",
    "StaticSource",
    "Table",
    "Tumbling",
    "UdfCache",
    "WindowedTable",
    "consolidate",
    "content_key",
    "reducers",
]
