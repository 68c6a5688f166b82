"""Changes ``(key, row, diff)``, their per-epoch consolidation, and the error records that user-code
failures turn into."""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

__all__ = ["Change", "Delta", "FrozenDict", "RowError", "consolidate", "describe"]


class Change(NamedTuple):
    """One change to a collection: ``diff`` +1 inserts ``(key, row)``, -1 retracts it."""

    key: Any
    row: Any
    diff: int


Delta = tuple[Any, Any, int]
"""A change as operators pass it between them: a plain ``(key, row, diff)`` tuple, cheaper to build than
``Change``. Sinks always receive ``Change`` values."""


class FrozenDict(Mapping[str, Any]):
    """An immutable, hashable mapping: the row type reducers produce and documents use for metadata."""

    __slots__ = ("_data", "_hash")

    def __init__(self, data: Mapping[str, Any] | Iterable[tuple[str, Any]] = (), **kwargs: Any) -> None:
        self._data: dict[str, Any] = dict(data, **kwargs)
        self._hash: int | None = None

    def __getitem__(self, name: str) -> Any:
        return self._data[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __hash__(self) -> int:
        if self._hash is None:
            self._hash = hash(frozenset(self._data.items()))
        return self._hash

    def __eq__(self, other: object) -> bool:
        if isinstance(other, FrozenDict):
            return self._data == other._data
        return isinstance(other, Mapping) and self._data == dict(other)

    def __repr__(self) -> str:
        return f"FrozenDict({self._data!r})"

    def __reduce__(self) -> tuple[type[FrozenDict], tuple[dict[str, Any]]]:
        return (FrozenDict, (self._data,))

    def replace(self, **changes: Any) -> FrozenDict:
        """A copy with some fields set."""
        return FrozenDict(self._data, **changes)


@dataclass(frozen=True, slots=True)
class RowError:
    """A row that a user function could not process: what the error table holds.

    ``key`` is the row's key (its ``repr`` when the key itself is not hashable); ``row`` is a short
    ``repr`` of the row so that error records are always hashable and printable.
    """

    operator: str
    key: Hashable
    message: str
    row: str


def describe(value: Any, limit: int = 200) -> str:
    """A ``repr`` short enough for an error message."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def hashable_key(key: Any) -> Hashable:
    """``key`` itself when hashable, else its ``repr``: error records must never be unhashable."""
    try:
        hash(key)
    except TypeError:
        return describe(key)
    return key


def consolidate(changes: Iterable[Delta]) -> list[Change]:
    """Sum the diffs of identical ``(key, row)`` pairs and drop those that sum to zero.

    Raises ``TypeError`` when a key or row is not hashable; callers that face user data use
    ``consolidate_or_report`` instead.
    """
    return [Change(key, row, diff) for key, row, diff in consolidate_deltas(changes)]


def consolidate_deltas(changes: Iterable[Delta]) -> list[Delta]:
    """``consolidate`` returning plain tuples, for use between operators."""
    totals: dict[tuple[Any, Any], int] = {}
    get = totals.get
    for key, row, diff in changes:
        pair = (key, row)
        totals[pair] = get(pair, 0) + diff
    return [(key, row, diff) for (key, row), diff in totals.items() if diff]


def consolidate_or_report(changes: list[Delta], operator: str, errors: list[Delta]) -> list[Delta]:
    """``consolidate_deltas``, routing changes whose key or row is not hashable to ``errors``."""
    try:
        return consolidate_deltas(changes)
    except TypeError:
        pass
    good: list[Delta] = []
    for change in changes:
        try:
            hash((change[0], change[1]))
        except TypeError as exc:
            report(errors, operator, change, f"key or row is not hashable ({exc}); use tuples or FrozenDict")
        else:
            good.append(change)
    return consolidate_deltas(good)


def report(errors: list[Delta], operator: str, change: Delta, message: str) -> None:
    """Record a failed row in the epoch's error changes, with the same diff as the change that failed,
    so that retracting the bad row later also retracts its error."""
    key = hashable_key(change[0])
    error = RowError(operator, key, message, describe(change[1]))
    errors.append(((operator, key), error, change[2]))
