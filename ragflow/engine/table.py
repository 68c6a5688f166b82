"""``Table``: the user-facing handle on a node of the dataflow graph, with one method per operator."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from typing import Any, Literal, Protocol

from .cache import UdfCache
from .changes import FrozenDict
from .graph import Node
from .groupby import DeduplicateNode, GroupReduceNode
from .io import CallbackSink, Collection, Sink
from .join import JoinNode
from .operators import ConcatNode, FilterNode, FlatMapNode, MapNode, RekeyNode
from .reducers import Reducer
from .udf import BatchedUdfNode, BatchFn
from .windows import CutoffNode, Session, SessionNode, Sliding, Tumbling, Window, window_bounds

__all__ = ["GraphBuilder", "GroupedTable", "Table", "WindowedTable"]


class GraphBuilder(Protocol):
    """What a table needs of the engine that owns it: somewhere to register the nodes and sinks it derives.
    ``Engine`` is one. Naming only this here keeps table.py from importing runner.py, which imports it."""

    def add_node(self, node: Node) -> Node: ...

    def add_sink(self, table: Table, sink: Sink) -> None: ...


class Table:
    """A collection of ``(key, row)`` that changes over time. Operators return new tables; nothing runs
    until the engine does."""

    def __init__(self, engine: GraphBuilder, node: Node) -> None:
        self.engine = engine
        self.node = node

    def _derive(self, node: Node) -> Table:
        return Table(self.engine, self.engine.add_node(node))

    def map(self, fn: Callable[[Any], Any]) -> Table:
        """Each row replaced by ``fn(row)``; keys unchanged."""
        return self._derive(MapNode(self.node, fn))

    select = map

    def filter(self, predicate: Callable[[Any], Any]) -> Table:
        """The rows for which ``predicate(row)`` is truthy."""
        return self._derive(FilterNode(self.node, predicate))

    def flat_map(self, fn: Callable[[Any, Any], Iterable[tuple[Hashable, Any]]]) -> Table:
        """Each ``(key, row)`` replaced by the ``(key, row)`` pairs ``fn(key, row)`` yields."""
        return self._derive(FlatMapNode(self.node, fn))

    def rekey(self, fn: Callable[[Any, Any], Hashable]) -> Table:
        """Rows keyed by ``fn(key, row)``."""
        return self._derive(RekeyNode(self.node, fn))

    def concat(self, *others: Table) -> Table:
        """The union of this table and ``others`` (multiplicities add up)."""
        return self._derive(ConcatNode([self.node, *(o.node for o in others)]))

    def join(
        self,
        other: Table,
        left_on: Callable[[Any], Hashable],
        right_on: Callable[[Any], Hashable],
        how: Literal["inner", "left"] = "inner",
        select: Callable[[Any, Any], Any] | None = None,
    ) -> Table:
        """Pairs of rows with equal join keys, keyed ``(left_key, right_key)``; see ``JoinNode``."""
        if how not in ("inner", "left"):
            raise ValueError(f"join how={how!r} is not supported; use 'inner' or 'left'")
        return self._derive(JoinNode(self.node, other.node, left_on, right_on, how, select))

    def groupby(self, by: Callable[[Any], Hashable] | None = None) -> GroupedTable:
        """Group rows by ``by(row)`` (all rows in one group when ``by`` is None) for ``reduce``."""
        return GroupedTable(self, by)

    def reduce(self, **reducers: Reducer) -> Table:
        """All rows reduced to one row keyed ``()``."""
        return GroupedTable(self, None).reduce(**reducers)

    def deduplicate(self, by: Callable[[Any], Hashable], order: Callable[[Any], Any] | None = None) -> Table:
        """One row per ``by(row)``: the greatest ``order(row)``, or the latest insertion without ``order``."""
        return self._derive(DeduplicateNode(self.node, by, order))

    def windowby(
        self,
        time: Callable[[Any], float],
        window: Window,
        instance: Callable[[Any], Hashable] | None = None,
        cutoff: float | None = None,
    ) -> WindowedTable:
        """Group rows into event-time windows (per ``instance``) for ``reduce``; see ``windows``."""
        return WindowedTable(self, time, window, instance, cutoff)

    def map_batched(
        self,
        fn: BatchFn,
        *,
        batch_size: int = 64,
        input: Callable[[Any], Any] | None = None,
        input_key: Callable[[Any], Any] | None = None,
        merge: Callable[[Any, Any], Any] | None = None,
        cache: UdfCache | None = None,
        namespace: str = "",
        concurrency: int = 1,
        keep_dropped: bool = False,
    ) -> Table:
        """Rows replaced by ``merge(row, result)`` where results come from ``fn`` over batches of
        ``input(row)``; see ``BatchedUdfNode``."""
        node = BatchedUdfNode(
            self.node,
            fn,
            batch_size=batch_size,
            input=input,
            input_key=input_key,
            merge=merge,
            cache=cache,
            namespace=namespace,
            concurrency=concurrency,
            keep_dropped=keep_dropped,
        )
        return self._derive(node)

    def stats(self) -> dict[str, dict[str, int]]:
        """Counters of this table's operator and all operators upstream of it, by operator name
        (``late_dropped`` of window cutoffs, ``computed``/``cache_hits`` of batched UDFs...)."""
        found: dict[str, dict[str, int]] = {}
        pending = [self.node]
        while pending:
            node = pending.pop()
            if node.name not in found:
                found[node.name] = node.stats()
                pending.extend(node.inputs)
        return {name: counters for name, counters in found.items() if counters}

    def sink(self, sink: Sink) -> Sink:
        """Send each epoch's consolidated changes of this table to ``sink``."""
        self.engine.add_sink(self, sink)
        return sink

    def subscribe(self, fn: Callable[[int, list[Any]], None]) -> None:
        """Call ``fn(epoch, changes)`` after each epoch that changed this table."""
        self.engine.add_sink(self, CallbackSink(fn))

    def collect(self) -> Collection:
        """A live snapshot of this table's contents, kept up to date every epoch."""
        collection = Collection()
        self.engine.add_sink(self, collection)
        return collection


class GroupedTable:
    """The result of ``Table.groupby``: call ``reduce``."""

    def __init__(self, table: Table, by: Callable[[Any], Hashable] | None) -> None:
        self.table = table
        self.by = by

    def reduce(self, **reducers: Reducer) -> Table:
        """One row per group keyed by the group: a ``FrozenDict`` of ``name -> reducer result``."""
        return self.table._derive(GroupReduceNode(self.table.node, reducers, by=self.by))


class WindowedTable:
    """The result of ``Table.windowby``: call ``reduce``. Output rows are keyed ``(instance, start, end)``
    and carry ``instance``, ``window_start`` and ``window_end`` beside the reducer results."""

    def __init__(
        self,
        table: Table,
        time: Callable[[Any], float],
        window: Window,
        instance: Callable[[Any], Hashable] | None,
        cutoff: float | None,
    ) -> None:
        self.table, self.time, self.window, self.instance, self.cutoff = table, time, window, instance, cutoff

    def reduce(self, **reducers: Reducer) -> Table:
        source = self.table
        if self.cutoff is not None:
            source = source._derive(CutoffNode(source.node, self.time, self.cutoff))
        if isinstance(self.window, Session):
            return source._derive(SessionNode(source.node, self.time, self.window, reducers, self.instance))
        if not isinstance(self.window, Tumbling | Sliding):
            raise TypeError(f"unknown window {self.window!r}; use Tumbling, Sliding or Session")
        window, time, instance = self.window, self.time, self.instance

        def groups_of(row: Any) -> list[Hashable]:
            inst = instance(row) if instance else None
            return [(inst, start, end) for start, end in window_bounds(window, time(row))]

        def decorate(group: Any, results: dict[str, Any]) -> FrozenDict:
            inst, start, end = group
            return FrozenDict(results, instance=inst, window_start=start, window_end=end)

        return source._derive(GroupReduceNode(source.node, reducers, groups_of=groups_of, decorate=decorate))
