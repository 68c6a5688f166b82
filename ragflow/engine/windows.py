"""Event-time windows: tumbling, sliding and session, reduced per window and corrected when late or
out-of-order rows arrive; with a ``cutoff``, rows later than that behind the watermark are dropped and
counted instead."""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from typing import Any

from .changes import Delta, FrozenDict, consolidate_or_report, describe, report
from .graph import EpochContext, Node
from .groupby import GroupResults
from .reducers import Reducer

__all__ = ["CutoffNode", "Session", "SessionNode", "Sliding", "Tumbling", "Window", "window_bounds"]


@dataclass(frozen=True, slots=True)
class Tumbling:
    """Fixed, non-overlapping windows ``[origin + i*size, origin + (i+1)*size)``."""

    size: float
    origin: float = 0


@dataclass(frozen=True, slots=True)
class Sliding:
    """Windows of length ``size`` starting every ``hop`` (at ``origin + i*hop``); a row belongs to every
    window whose ``[start, start + size)`` contains its time (``size/hop`` of them when ``hop`` divides
    ``size``)."""

    size: float
    hop: float
    origin: float = 0


@dataclass(frozen=True, slots=True)
class Session:
    """Windows of rows whose consecutive event times are at most ``max_gap`` apart; the window spans
    ``[first time, last time]`` of its rows."""

    max_gap: float


Window = Tumbling | Sliding | Session


def window_bounds(window: Tumbling | Sliding, time: float) -> list[tuple[float, float]]:
    """The ``(start, end)`` of every window of ``window`` that contains ``time``."""
    if isinstance(window, Tumbling):
        start = window.origin + math.floor((time - window.origin) / window.size) * window.size
        return [(start, start + window.size)]
    # every start is origin + i*hop for an integer i, so one window always gets the same float bounds
    first = math.floor((time - window.origin - window.size) / window.hop)
    last = math.floor((time - window.origin) / window.hop) + 1
    starts = (window.origin + i * window.hop for i in range(first, last + 1))
    return [(start, start + window.size) for start in starts if start <= time < start + window.size]


def _failure(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


class CutoffNode(Node):
    """Drops rows whose event time is more than ``cutoff`` behind the watermark (the greatest event time
    of earlier epochs), counting them in ``late_dropped``. Retractions of dropped rows are dropped too."""

    kind = "cutoff"

    def __init__(self, source: Node, time: Callable[[Any], float], cutoff: float) -> None:
        super().__init__([source])
        self.time = time
        self.cutoff = cutoff
        self.watermark = -math.inf
        self.late_dropped = 0
        self.dropped: dict[tuple[Any, Any], int] = {}

    def step(self, deltas: list[list[Delta]], ctx: EpochContext) -> list[Delta]:
        out = []
        latest = self.watermark
        # consolidated first: a retraction and re-insertion that cancel must not drop a row as late
        for change in consolidate_or_report(deltas[0], self.name, ctx.errors):
            pair = (change[0], change[1])
            try:
                time = self.time(change[1])
                held = self.dropped.get(pair, 0)
            except Exception as exc:
                report(ctx.errors, self.name, change, _failure(exc))
                continue
            if change[2] < 0 and held > 0:
                self._hold(pair, max(change[2], -held))
                continue
            if change[2] > 0 and time + self.cutoff < self.watermark:
                self.late_dropped += change[2]
                self._hold(pair, change[2])
                continue
            latest = max(latest, time)
            out.append(change)
        self.watermark = latest
        return out

    def stats(self) -> dict[str, int]:
        return {"late_dropped": self.late_dropped}

    def _hold(self, pair: tuple[Any, Any], diff: int) -> None:
        total = self.dropped.get(pair, 0) + diff
        if total:
            self.dropped[pair] = total
        else:
            self.dropped.pop(pair, None)


class SessionNode(Node):
    """Session windows per instance: when an instance changes, its sessions are recomputed from its rows
    and only the windows whose result changed are retracted and re-emitted."""

    kind = "session_window"

    def __init__(
        self,
        source: Node,
        time: Callable[[Any], float],
        window: Session,
        reducers: Mapping[str, Reducer],
        instance: Callable[[Any], Hashable] | None,
    ) -> None:
        super().__init__([source])
        self.time = time
        self.window = window
        self.reducers = dict(reducers)
        self.instance = instance
        # instance -> {(key, row): [multiplicity, time]}
        self.rows: dict[Hashable, dict[tuple[Any, Any], list[Any]]] = {}
        self.windows: dict[Hashable, set[Hashable]] = {}
        self.results = GroupResults(self)

    def step(self, deltas: list[list[Delta]], ctx: EpochContext) -> list[Delta]:
        touched: dict[Hashable, None] = {}
        for change in deltas[0]:
            try:
                inst = self.instance(change[1]) if self.instance else None
                time = self.time(change[1])
                hash((inst, change[0], change[1]))
            except Exception as exc:
                report(ctx.errors, self.name, change, _failure(exc))
                continue
            rows = self.rows.setdefault(inst, {})
            entry = rows.setdefault((change[0], change[1]), [0, time])
            entry[0] += change[2]
            if entry[0] == 0:
                del rows[(change[0], change[1])]
            touched[inst] = None
        out: list[Delta] = []
        for inst in touched:
            self._recompute(inst, out, ctx)
        return out

    def _recompute(self, inst: Hashable, out: list[Delta], ctx: EpochContext) -> None:
        rows = self.rows.get(inst, {})
        ordered = sorted(((t, row, m) for (_, row), (m, t) in rows.items() if m > 0), key=lambda e: e[0])
        sessions: list[list[tuple[Any, Any, int]]] = []
        for entry in ordered:
            if sessions and entry[0] - sessions[-1][-1][0] <= self.window.max_gap:
                sessions[-1].append(entry)
            else:
                sessions.append([entry])
        fresh: dict[Hashable, tuple[Any, str | None]] = {}
        for members in sessions:
            start, end = members[0][0], members[-1][0]
            fresh[(inst, start, end)] = self._reduce(inst, start, end, members)
        if not rows:
            self.rows.pop(inst, None)
        for group in self.windows.get(inst, set()) - set(fresh):
            self.results.emit(group, None, None, out, ctx)
        for group, (row, error) in fresh.items():
            self.results.emit(group, row, error, out, ctx)
        self.windows[inst] = set(fresh)
        if not fresh:
            del self.windows[inst]

    def _reduce(
        self, inst: Hashable, start: Any, end: Any, members: list[tuple[Any, Any, int]]
    ) -> tuple[Any, str | None]:
        results = {}
        count = sum(m for _, _, m in members)
        try:
            for name, reducer in self.reducers.items():
                acc = reducer.init()
                for _, row, mult in members:
                    acc = reducer.update(acc, reducer.value(row) if reducer.needs_value else None, mult)
                results[name] = reducer.result(acc, count)
        except Exception as exc:
            return None, f"reducer failed for window {describe((inst, start, end), 80)}: {_failure(exc)}"
        return FrozenDict(results, instance=inst, window_start=start, window_end=end), None
