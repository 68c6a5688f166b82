"""Grouped operators: ``groupby(...).reduce(...)`` (also behind tumbling/sliding windows) and
``deduplicate`` (upsert by key). Each keeps per-group state and emits, for every group an epoch touched,
the retraction of its old result and the insertion of its new one."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Hashable, Iterable, Mapping
from typing import Any

from .changes import Delta, FrozenDict, RowError, consolidate_or_report, describe, hashable_key, report
from .graph import EpochContext, Node
from .reducers import Reducer

__all__ = ["DeduplicateNode", "GroupReduceNode"]

Decorate = Callable[[Hashable, dict[str, Any]], Any]


def _failure(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


class GroupResults:
    """The last result each group emitted (a row or an error), so the next change can retract it."""

    def __init__(self, operator: Node) -> None:
        self.operator = operator
        self.rows: dict[Hashable, Any] = {}
        self.errors: dict[Hashable, RowError] = {}

    def emit(
        self, group: Hashable, new_row: Any, new_error: str | None, out: list[Delta], ctx: EpochContext
    ) -> None:
        old_row = self.rows.pop(group, None)
        if old_row is not None and old_row == new_row:
            self.rows[group] = old_row
        else:
            if old_row is not None:
                out.append((group, old_row, -1))
            if new_row is not None:
                self.rows[group] = new_row
                out.append((group, new_row, 1))
        old_error = self.errors.pop(group, None) if self.errors else None
        if old_error is None and new_error is None:
            return
        key = (self.operator.name, hashable_key(group))
        error = None
        if new_error is not None:
            error = RowError(self.operator.name, hashable_key(group), new_error, describe(group))
            self.errors[group] = error
        if old_error != error:
            if old_error is not None:
                ctx.errors.append((key, old_error, -1))
            if error is not None:
                ctx.errors.append((key, error, 1))


class GroupReduceNode(Node):
    """Groups rows by ``by(row)`` (or, for windows, by each of ``groups_of(row)``) and reduces each group.

    The output key is the group; the output row is a ``FrozenDict`` of the reducer results, passed
    through ``decorate(group, results)`` when given (windows add their bounds that way).
    """

    kind = "groupby_reduce"

    def __init__(
        self,
        source: Node,
        reducers: Mapping[str, Reducer],
        by: Callable[[Any], Hashable] | None = None,
        groups_of: Callable[[Any], Iterable[Hashable]] | None = None,
        decorate: Decorate | None = None,
    ) -> None:
        super().__init__([source])
        self.names = list(reducers)
        self.reducers = list(reducers.values())
        self.by = by
        self.groups_of = groups_of
        self.decorate = decorate
        # group -> [row count, accumulator per reducer]
        self.state: dict[Hashable, list[Any]] = {}
        self.results = GroupResults(self)
        # per reducer (1-based accumulator slot, value fn, update); count keeps no accumulator of its own
        self._multiset = [
            (i, r.value, r.update)
            for i, r in enumerate(self.reducers, 1)
            if r.needs_value and isinstance(r.init(), dict)
        ]
        self._arithmetic = [
            (i, r.value, r.update)
            for i, r in enumerate(self.reducers, 1)
            if r.needs_value and not isinstance(r.init(), dict)
        ]

    def _groups(self, row: Any) -> Iterable[Hashable]:
        if self.groups_of is not None:
            return self.groups_of(row)
        if self.by is not None:
            return (self.by(row),)
        return ((),)

    def step(self, deltas: list[list[Delta]], ctx: EpochContext) -> list[Delta]:
        if self.groups_of is None:
            touched_fast = self._step_by_columns(deltas[0])
            if touched_fast is not None:
                out_fast: list[Delta] = []
                for group in touched_fast:
                    self._emit(group, out_fast, ctx)
                return out_fast
        return self._step_by_rows(deltas, ctx)

    def _step_by_columns(self, changes: list[Delta]) -> dict[Hashable, None] | None:
        """Apply all changes column by column (each user function mapped over the rows in C); None,
        with the state untouched, when some row fails, so the row-by-row path reports it alone."""
        rows = [change[1] for change in changes]
        try:
            groups = list(map(self.by, rows)) if self.by is not None else [()] * len(rows)
            multiset = [list(map(fn, rows)) for _, fn, _ in self._multiset]
            hash((tuple(groups), *map(tuple, multiset)))
            arithmetic = [list(map(fn, rows)) for _, fn, _ in self._arithmetic]
        except Exception:
            return None
        state, reducers = self.state, self.reducers
        touched = dict.fromkeys(groups)
        staged = []
        try:
            for (i, _, update), values in zip(self._arithmetic, arithmetic, strict=True):
                init = reducers[i - 1].init()
                folded = {group: state[group][i] if group in state else init for group in touched}
                for group, value, change in zip(groups, values, changes, strict=True):
                    folded[group] = update(folded[group], value, change[2])
                staged.append((i, folded))
        except Exception:
            return None
        for group in touched:  # from here on nothing can fail
            if group not in state:
                state[group] = [0, *(r.init() for r in reducers)]
        for group, change in zip(groups, changes, strict=True):
            state[group][0] += change[2]
        for i, folded in staged:
            for group, acc in folded.items():
                state[group][i] = acc
        for (i, _, update), values in zip(self._multiset, multiset, strict=True):
            for group, value, change in zip(groups, values, changes, strict=True):
                acc = state[group]
                acc[i] = update(acc[i], value, change[2])
        return touched

    def _step_by_rows(self, deltas: list[list[Delta]], ctx: EpochContext) -> list[Delta]:
        touched: dict[Hashable, None] = {}
        state = self.state
        reducers = self.reducers
        value_fns = [r.value if r.needs_value else None for r in reducers]
        # multiset accumulators hash their values: check up front so a bad row fails alone
        hashed = [i for i, r in enumerate(reducers) if isinstance(r.init(), dict)]
        # arithmetic accumulators: fold each value once on its own first, so a value they cannot fold
        # (a str into a sum) fails alone instead of leaving the group half updated
        folded = [(i, r) for i, r in enumerate(reducers) if r.needs_value and i not in hashed]
        for change in deltas[0]:
            row, diff = change[1], change[2]
            try:
                groups = list(self._groups(row))
                values = [fn(row) if fn is not None else None for fn in value_fns]
                hash((*groups, *(values[i] for i in hashed)))
                for i, reducer in folded:
                    reducer.update(reducer.init(), values[i], diff)
            except Exception as exc:
                report(ctx.errors, self.name, change, _failure(exc))
                continue
            for group in groups:
                acc = state.get(group)
                if acc is None:
                    acc = state[group] = [0, *(r.init() for r in reducers)]
                acc[0] += diff
                for i, reducer in enumerate(reducers, 1):
                    acc[i] = reducer.update(acc[i], values[i - 1], diff)
                touched[group] = None
        out: list[Delta] = []
        for group in touched:
            self._emit(group, out, ctx)
        return out

    def _emit(self, group: Hashable, out: list[Delta], ctx: EpochContext) -> None:
        acc = self.state[group]
        count = acc[0]
        new_row, error = None, None
        if count == 0:
            del self.state[group]
        elif count > 0:
            try:
                results = {
                    name: reducer.result(acc[i], count)
                    for i, (name, reducer) in enumerate(zip(self.names, self.reducers, strict=True), 1)
                }
                new_row = self.decorate(group, results) if self.decorate else FrozenDict(results)
            except Exception as exc:
                error = f"reducer failed for group {describe(group, 80)}: {_failure(exc)}"
        self.results.emit(group, new_row, error, out, ctx)


class DeduplicateNode(Node):
    """Keeps one row per ``by(row)`` group: the one with the greatest ``order(row)`` or, without
    ``order``, the most recently inserted one still present. Output key is the group."""

    kind = "deduplicate"

    def __init__(
        self, source: Node, by: Callable[[Any], Hashable], order: Callable[[Any], Any] | None = None
    ) -> None:
        super().__init__([source])
        self.by = by
        self.order = order
        # group -> {(key, row): [multiplicity, arrival sequence]}
        self.members: dict[Hashable, dict[tuple[Any, Any], list[int]]] = {}
        self.arrivals = itertools.count()
        self.results = GroupResults(self)

    def step(self, deltas: list[list[Delta]], ctx: EpochContext) -> list[Delta]:
        touched: dict[Hashable, None] = {}
        # consolidated first: a retraction and re-insertion that cancel must not refresh the arrival order
        for change in consolidate_or_report(deltas[0], self.name, ctx.errors):
            try:
                group = self.by(change[1])
                hash(group)
            except Exception as exc:
                report(ctx.errors, self.name, change, _failure(exc))
                continue
            members = self.members.setdefault(group, {})
            entry = members.get((change[0], change[1]))
            if entry is None:
                entry = members[(change[0], change[1])] = [0, 0]
            if change[2] > 0:
                entry[1] = next(self.arrivals)
            entry[0] += change[2]
            if entry[0] == 0:
                del members[(change[0], change[1])]
            touched[group] = None
        out: list[Delta] = []
        for group in touched:
            members = self.members[group]
            live = [(pair, seq) for pair, (mult, seq) in members.items() if mult > 0]
            if not members:
                del self.members[group]
            new_row, error = None, None
            if live:
                try:
                    new_row = self._best(live)
                except Exception as exc:
                    error = f"order failed for group {describe(group, 80)}: {_failure(exc)}"
            self.results.emit(group, new_row, error, out, ctx)
        return out

    def _best(self, live: list[tuple[tuple[Any, Any], int]]) -> Any:
        if self.order is None:
            return max(live, key=lambda item: item[1])[0][1]
        order = self.order
        # ties broken by repr so the result does not depend on arrival order
        return max(live, key=lambda item: (order(item[0][1]), repr(item[0][1])))[0][1]
