"""Reducers for ``groupby(...).reduce(...)``: incremental where the maths allows (count, sum, avg),
multiset-backed otherwise (min, max, collect, any, user functions)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["Reducer", "any_value", "avg", "collect", "count", "max", "min", "sum", "udf_reducer"]

_builtin_min = min
_builtin_max = max
_builtin_sorted = sorted

ValueFn = Callable[[Any], Any]


def _identity(row: Any) -> Any:
    return row


class Reducer:
    """Folds the rows of a group into one value, supporting retraction.

    ``value(row)`` extracts what is reduced; ``update(acc, value, diff)`` returns the new accumulator;
    ``result(acc, count)`` turns it into the output value (``count`` is the group's row count).
    """

    needs_value = True

    def __init__(self, value: ValueFn | None = None) -> None:
        self.value: ValueFn = value or _identity

    def init(self) -> Any:
        return {}

    def update(self, acc: Any, value: Any, diff: int) -> Any:
        # multiset accumulator: value -> multiplicity
        total = acc.get(value, 0) + diff
        if total:
            acc[value] = total
        else:
            del acc[value]
        return acc

    def result(self, acc: Any, count: int) -> Any:
        raise NotImplementedError


def _ordered(values: dict[Any, int]) -> list[Any]:
    """Multiset values in a deterministic order, each repeated by its multiplicity."""
    try:
        keys = _builtin_sorted(values)
    except TypeError:  # values of mixed, unorderable types
        keys = _builtin_sorted(values, key=repr)
    return [key for key in keys for _ in range(values[key])]


class _Count(Reducer):
    needs_value = False

    def init(self) -> Any:
        return None

    def update(self, acc: Any, value: Any, diff: int) -> Any:
        return None

    def result(self, acc: Any, count: int) -> Any:
        return count


class _Sum(Reducer):
    def init(self) -> Any:
        return 0

    def update(self, acc: Any, value: Any, diff: int) -> Any:
        return acc + value * diff

    def result(self, acc: Any, count: int) -> Any:
        return acc


class _Avg(_Sum):
    def result(self, acc: Any, count: int) -> Any:
        return acc / count


class _Min(Reducer):
    def result(self, acc: Any, count: int) -> Any:
        return _builtin_min(acc)


class _Max(Reducer):
    def result(self, acc: Any, count: int) -> Any:
        return _builtin_max(acc)


class _Collect(Reducer):
    def result(self, acc: Any, count: int) -> Any:
        return tuple(_ordered(acc))


class _Any(Reducer):
    def result(self, acc: Any, count: int) -> Any:
        return _ordered(acc)[0]


class _Udf(Reducer):
    def __init__(self, fn: Callable[[tuple[Any, ...]], Any], value: ValueFn | None) -> None:
        super().__init__(value)
        self.fn = fn

    def result(self, acc: Any, count: int) -> Any:
        return self.fn(tuple(_ordered(acc)))


def count() -> Reducer:
    """The number of rows in the group."""
    return _Count()


def sum(value: ValueFn | None = None) -> Reducer:
    """The sum of ``value(row)``; exact for ints, subject to float rounding order for floats."""
    return _Sum(value)


def avg(value: ValueFn | None = None) -> Reducer:
    """The mean of ``value(row)``."""
    return _Avg(value)


def min(value: ValueFn | None = None) -> Reducer:
    """The smallest ``value(row)``; values must be hashable and comparable."""
    return _Min(value)


def max(value: ValueFn | None = None) -> Reducer:
    """The largest ``value(row)``; values must be hashable and comparable."""
    return _Max(value)


def collect(value: ValueFn | None = None) -> Reducer:
    """All ``value(row)`` as a sorted tuple (sorted by ``repr`` when values are not comparable)."""
    return _Collect(value)


def any_value(value: ValueFn | None = None) -> Reducer:
    """One ``value(row)`` of the group, chosen deterministically (the smallest)."""
    return _Any(value)


def udf_reducer(fn: Callable[[tuple[Any, ...]], Any], value: ValueFn | None = None) -> Reducer:
    """A user reducer: ``fn`` gets the group's values as a sorted tuple and returns the result."""
    return _Udf(fn, value)
