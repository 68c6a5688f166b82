"""The random change streams the benchmarks replay: groupby rows, documents joined to chunks, and
one-change epochs."""

from __future__ import annotations

import dataclasses
import random
import sys
from typing import Any

Delta = tuple[Any, Any, int]
Epoch = dict[str, list[Delta]]
"""One epoch of changes by input name: ``rows``, or ``left`` and ``right`` for joins."""

GROUPS = 1000
RETRACT_SHARE = 0.2


@dataclasses.dataclass(frozen=True, slots=True)
class Workload:
    """Epochs to replay: the ``warm`` ones build the state untimed, the ``timed`` ones are measured."""

    warm: list[Epoch]
    timed: list[Epoch]

    @property
    def timed_changes(self) -> int:
        return sum(len(changes) for epoch in self.timed for changes in epoch.values())

    @property
    def epoch_size(self) -> int:
        return sum(len(changes) for changes in self.timed[0].values())

    @property
    def retract_share(self) -> float:
        retracted = sum(1 for epoch in self.timed for changes in epoch.values() for c in changes if c[2] < 0)
        return retracted / max(1, self.timed_changes)


def passing_value(rng: random.Random) -> int:
    """A value whose row survives the benchmark filter."""
    value = rng.randrange(1000)
    return value + 1 if value % 10 == 0 else value


def groupby_workload(rng: random.Random, warm_rows: int, epoch_size: int, epochs: int) -> Workload:
    """Rows ``(group, value)`` over ``GROUPS`` groups: inserts only to warm up, then inserts and
    retractions of live rows mixed 80/20; about a tenth of the rows fail the filter."""
    live: list[tuple[int, tuple[int, int]]] = []
    keys = iter(range(sys.maxsize))

    def inserts(count: int) -> list[Delta]:
        made = [(next(keys), (rng.randrange(GROUPS), rng.randrange(1000))) for _ in range(count)]
        live.extend(made)
        return [(key, row, 1) for key, row in made]

    def retractions(count: int) -> list[Delta]:
        out = []
        for _ in range(count):
            i = rng.randrange(len(live))
            live[i], live[-1] = live[-1], live[i]
            key, row = live.pop()
            out.append((key, row, -1))
        return out

    warm = [{"rows": inserts(warm_rows)}]
    timed = []
    for _ in range(epochs):
        retracted = int(epoch_size * RETRACT_SHARE)
        changes = retractions(retracted) + inserts(epoch_size - retracted)
        rng.shuffle(changes)
        timed.append({"rows": changes})
    return Workload(warm, timed)


class JoinWorld:
    """Documents (left: key ``doc``, row ``(doc, version)``) and ``fanout`` chunks each (right: row
    ``(doc, part, version)``). Epochs add documents with their chunks and update rows of either side
    (retract + insert), mixed so that about 20% of the changes are retractions."""

    def __init__(self, rng: random.Random, fanout: int) -> None:
        self.rng, self.fanout = rng, fanout
        self.docs: list[tuple[int, int]] = []
        self.chunks: list[tuple[int, tuple[int, int, int]]] = []
        # an update is 2 changes (1 retraction), a new document 1 + fanout insertions
        self.update_chance = (1 + fanout) / (4 + fanout)

    def add_document(self, out: Epoch) -> None:
        doc = len(self.docs)
        self.docs.append((doc, 0))
        out["left"].append((doc, (doc, 0), 1))
        for part in range(self.fanout):
            chunk = (len(self.chunks), (doc, part, 0))
            self.chunks.append(chunk)
            out["right"].append((*chunk, 1))

    def update_row(self, out: Epoch) -> None:
        if self.rng.random() < 0.5:
            i = self.rng.randrange(len(self.docs))
            doc, version = self.docs[i]
            self.docs[i] = (doc, version + 1)
            out["left"] += [(doc, (doc, version), -1), (doc, (doc, version + 1), 1)]
        else:
            i = self.rng.randrange(len(self.chunks))
            key, (doc, part, version) = self.chunks[i]
            self.chunks[i] = (key, (doc, part, version + 1))
            out["right"] += [(key, (doc, part, version), -1), (key, (doc, part, version + 1), 1)]

    def epoch(self, size: int, updates: bool = True) -> Epoch:
        out: Epoch = {"left": [], "right": []}
        while len(out["left"]) + len(out["right"]) < size:
            if updates and self.rng.random() < self.update_chance:
                self.update_row(out)
            else:
                self.add_document(out)
        return out


def join_workload(rng: random.Random, fanout: int, warm_rows: int, epoch_size: int, epochs: int) -> Workload:
    world = JoinWorld(rng, fanout)
    warm = [world.epoch(warm_rows, updates=False)]
    return Workload(warm, [world.epoch(epoch_size) for _ in range(epochs)])


class SingleChanges:
    """One-change epochs that all reach the sink: random inserts and retractions of rows that pass."""

    def __init__(self, rng: random.Random, warm_rows: int) -> None:
        self.rng = rng
        self.live = [(key, (rng.randrange(GROUPS), passing_value(rng))) for key in range(warm_rows)]
        self.next_key = warm_rows

    def warm(self) -> list[Delta]:
        return [(key, row, 1) for key, row in self.live]

    def next(self) -> Delta:
        if self.rng.random() < 0.5 and self.live:
            i = self.rng.randrange(len(self.live))
            self.live[i], self.live[-1] = self.live[-1], self.live[i]
            key, row = self.live.pop()
            return (key, row, -1)
        added = (self.next_key, (self.rng.randrange(GROUPS), passing_value(self.rng)))
        self.next_key += 1
        self.live.append(added)
        return (*added, 1)
