"""The dataflow graph: nodes that turn one epoch's input changes into output changes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from .changes import Delta

__all__ = ["EpochContext", "Node"]


@dataclass(slots=True)
class EpochContext:
    """What a node may use while it processes one epoch: the epoch number and the error collector."""

    epoch: int
    errors: list[Delta] = field(default_factory=list)


class Node:
    """One operator instance. ``step`` gets, per input, that input's changes in this epoch (possibly
    not consolidated) and returns the node's output changes for the epoch."""

    kind = "node"

    def __init__(self, inputs: Sequence[Node] = ()) -> None:
        self.inputs: tuple[Node, ...] = tuple(inputs)
        self.name = self.kind  # set to "<kind>#<n>" when the engine registers the node

    def step(self, deltas: list[list[Delta]], ctx: EpochContext) -> list[Delta]:
        raise NotImplementedError

    def stats(self) -> dict[str, int]:
        """Counters worth reporting (none by default)."""
        return {}

    def __repr__(self) -> str:
        return f"<{self.name}>"
