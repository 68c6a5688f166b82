"""The pipelines under test and their plain-loop equivalents, which must compute the same results."""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any, Protocol

from ragflow.engine import Engine, FrozenDict, Table, reducers

from .workloads import Delta, Epoch


def scaled(row: tuple[int, int]) -> tuple[int, int]:
    return (row[0], row[1] * 3)


def kept(row: tuple[int, int]) -> bool:
    return row[1] % 10 != 0


def group_of(row: tuple[int, int]) -> int:
    return row[0]


def value_of(row: tuple[int, int]) -> int:
    return row[1]


def join_key(row: tuple[int, ...]) -> int:
    return row[0]


class Subject(Protocol):
    """Something that consumes epochs and can show what it computed."""

    def apply(self, epoch: Epoch) -> None: ...

    def snapshot(self) -> dict[Any, Any]: ...


class EnginePipeline:
    """An engine fed through ``advance``; subclasses build their graph on ``self.inputs``."""

    def __init__(self, *names: str) -> None:
        self.engine = Engine()
        self.inputs = {name: self.engine.input(name=name) for name in names}

    def apply(self, epoch: Epoch) -> None:
        self.engine.advance({self.inputs[name]: changes for name, changes in epoch.items()})


class GroupbyPipeline(EnginePipeline):
    def __init__(self) -> None:
        super().__init__("rows")
        table = self.inputs["rows"].map(scaled).filter(kept)
        reduced = table.groupby(group_of).reduce(n=reducers.count(), total=reducers.sum(value_of))
        self.output = reduced.collect()

    def snapshot(self) -> dict[Any, Any]:
        return {group: (row["n"], row["total"]) for group, row in self.output.as_dict().items()}


class GroupbyLoop:
    """The groupby pipeline as one dict loop: map, filter, count and sum per group, a result per group."""

    def __init__(self) -> None:
        self.state: dict[int, list[int]] = {}
        self.results: dict[int, tuple[int, int]] = {}

    def apply(self, epoch: Epoch) -> None:
        state = self.state
        touched: dict[int, None] = {}
        for _, row, diff in epoch["rows"]:
            row = scaled(row)
            if not kept(row):
                continue
            group = group_of(row)
            acc = state.get(group)
            if acc is None:
                acc = state[group] = [0, 0]
            acc[0] += diff
            acc[1] += value_of(row) * diff
            touched[group] = None
        for group in touched:
            count, total = state[group]
            if count:
                self.results[group] = (count, total)
            else:
                del state[group]
                self.results.pop(group, None)

    def snapshot(self) -> dict[Any, Any]:
        return self.results


class JoinPipeline(EnginePipeline):
    def __init__(self) -> None:
        super().__init__("left", "right")
        self.output = self.inputs["left"].join(self.inputs["right"], join_key, join_key).collect()

    def snapshot(self) -> dict[Any, Any]:
        return self.output.multiset()


def add_multiplicity(counts: dict[Any, int], item: Any, diff: int) -> None:
    total = counts.get(item, 0) + diff
    if total:
        counts[item] = total
    else:
        del counts[item]


class JoinLoop:
    """The inner join as one dict loop: an index per side, output pairs applied to a result multiset."""

    def __init__(self) -> None:
        self.left: dict[Hashable, dict[tuple[Any, Any], int]] = {}
        self.right: dict[Hashable, dict[tuple[Any, Any], int]] = {}
        self.results: dict[tuple[Any, Any], int] = {}

    def apply(self, epoch: Epoch) -> None:
        out: list[Delta] = []
        for key, row, diff in epoch["left"]:
            on = join_key(row)
            for (rkey, rrow), mult in self.right.get(on, {}).items():
                out.append(((key, rkey), (row, rrow), diff * mult))
            add_multiplicity(self.left.setdefault(on, {}), (key, row), diff)
        for key, row, diff in epoch["right"]:
            on = join_key(row)
            for (lkey, lrow), mult in self.left.get(on, {}).items():
                out.append(((lkey, key), (lrow, row), diff * mult))
            add_multiplicity(self.right.setdefault(on, {}), (key, row), diff)
        for key, row, diff in out:
            add_multiplicity(self.results, (key, row), diff)

    def snapshot(self) -> dict[Any, Any]:
        return self.results


def chunks_of(key: Any, row: tuple[int, int]) -> list[tuple[Hashable, tuple[int, int]]]:
    return [((key, 0), row), ((key, 1), row)]


def summary(result: FrozenDict) -> tuple[int, int]:
    return (result["n"], result["total"])


def five_operators(rows: Table) -> Table:
    """map → filter → flat_map → groupby-reduce → map."""
    chunks = rows.map(scaled).filter(kept).flat_map(chunks_of)
    reduced = chunks.groupby(group_of).reduce(n=reducers.count(), total=reducers.sum(value_of))
    return reduced.map(summary)
