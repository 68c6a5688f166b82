"""Inner and left joins on key expressions, maintained incrementally: for each epoch the output change
is ``dL ⋈ R_old + L_new ⋈ dR``, plus, for left joins, the unmatched left rows that appear or vanish."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any, Literal

from .changes import Delta, report
from .graph import EpochContext, Node

__all__ = ["JoinNode"]

Side = dict[Hashable, dict[tuple[Any, Any], int]]


def _pair(left: Any, right: Any) -> tuple[Any, Any]:
    return (left, right)


def _failure(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


class JoinNode(Node):
    """Joins rows whose ``left_on(left_row) == right_on(right_row)``.

    Output key ``(left_key, right_key)`` (``right_key`` is None for unmatched left rows of a left join);
    output row ``select(left_row, right_row)``, by default the pair ``(left_row, right_row)``.
    """

    kind = "join"

    def __init__(
        self,
        left: Node,
        right: Node,
        left_on: Callable[[Any], Hashable],
        right_on: Callable[[Any], Hashable],
        how: Literal["inner", "left"] = "inner",
        select: Callable[[Any, Any], Any] | None = None,
    ) -> None:
        super().__init__([left, right])
        self.left_on, self.right_on = left_on, right_on
        self.how = how
        self.select = select or _pair
        self.left: Side = {}
        self.right: Side = {}

    def _keyed(self, changes: list[Delta], on: Callable[[Any], Hashable], ctx: EpochContext) -> list[tuple]:
        try:
            keyed = [(on(change[1]), change) for change in changes]
            # one C-level pass proves every join key, key and row hashable, so no row can fail later
            hash(tuple(keyed))
            return keyed
        except Exception:
            pass  # redo row by row so only the failing rows are dropped
        keyed = []
        for change in changes:
            try:
                join_key = on(change[1])
                hash(join_key)
                hash((change[0], change[1]))
            except Exception as exc:
                report(ctx.errors, self.name, change, _failure(exc))
                continue
            keyed.append((join_key, change))
        return keyed

    def step(self, deltas: list[list[Delta]], ctx: EpochContext) -> list[Delta]:
        left_changes = self._keyed(deltas[0], self.left_on, ctx)
        right_changes = self._keyed(deltas[1], self.right_on, ctx)
        out: list[Delta] = []
        unmatched_before: dict[Hashable, dict[tuple[Any, Any], int] | None] = {}
        if self.how == "left":
            for join_key, _ in left_changes + right_changes:
                if join_key not in unmatched_before:
                    # the left rows that were emitted unmatched before this epoch (None: they were matched)
                    had_right = bool(self.right.get(join_key))
                    unmatched_before[join_key] = None if had_right else dict(self.left.get(join_key, {}))
        pairs = self.select is _pair
        left, right = self.left, self.right
        for join_key, change in left_changes:
            matches = right.get(join_key)
            if matches:
                key, row, diff = change
                if pairs:
                    out += [((key, rkey), (row, rrow), diff * mult) for (rkey, rrow), mult in matches.items()]
                else:
                    for (rkey, rrow), mult in matches.items():
                        self._emit(out, ctx, change, (key, rkey), row, rrow, diff * mult)
            _apply(left, join_key, change)
        for join_key, change in right_changes:
            matches = left.get(join_key)
            if matches:
                key, row, diff = change
                if pairs:
                    out += [((lkey, key), (lrow, row), diff * mult) for (lkey, lrow), mult in matches.items()]
                else:
                    for (lkey, lrow), mult in matches.items():
                        self._emit(out, ctx, change, (lkey, key), lrow, row, diff * mult)
            _apply(right, join_key, change)
        for join_key, before in unmatched_before.items():
            after = None if self.right.get(join_key) else self.left.get(join_key, {})
            self._emit_unmatched(out, ctx, before, -1)
            self._emit_unmatched(out, ctx, after, 1)
        return out

    def _emit_unmatched(
        self, out: list[Delta], ctx: EpochContext, rows: dict[tuple[Any, Any], int] | None, sign: int
    ) -> None:
        for (lkey, lrow), mult in (rows or {}).items():
            change = (lkey, lrow, sign * mult)
            self._emit(out, ctx, change, (lkey, None), lrow, None, sign * mult)

    def _emit(
        self, out: list[Delta], ctx: EpochContext, cause: Delta, key: Any, lrow: Any, rrow: Any, diff: int
    ) -> None:
        try:
            out.append((key, self.select(lrow, rrow), diff))
        except Exception as exc:
            report(ctx.errors, self.name, (key, (lrow, rrow), diff), _failure(exc))


def _apply(side: Side, join_key: Hashable, change: Delta) -> None:
    rows = side.get(join_key)
    if rows is None:
        rows = side[join_key] = {}
    pair = (change[0], change[1])
    total = rows.get(pair, 0) + change[2]
    if total:
        rows[pair] = total
    else:
        del rows[pair]
        if not rows:
            del side[join_key]
