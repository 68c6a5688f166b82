"""The evaluation gate of a migration (``persistence.migration_gate``, docs/persistence.md): before the swap,
both generations answer the questions of a labelled evaluation set (the format of ``ragflow eval``,
docs/retrieval.md), and the swap waits while the new generation scores lower than the serving one by more
than the tolerance. Both scores are reported; ``ragflow migrate start --force`` swaps anyway."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..retrieval import SearchMode
from ..retrieval.evaluation import CUTOFFS, ModeScores, load_questions, score_mode
from .document_store import DocumentStore

__all__ = ["GATE_METRICS", "GateKeeper", "GateVerdict", "MigrationGate"]

log = logging.getLogger("ragflow.store")


def _recall_at(k: int) -> Callable[[ModeScores], float]:
    return lambda scores: scores.recall(k)


GATE_METRICS: Mapping[str, Callable[[ModeScores], float]] = {
    "mrr@10": lambda scores: scores.mrr10,
    "ndcg@10": lambda scores: scores.ndcg10,
    **{f"recall@{k}": _recall_at(k) for k in CUTOFFS},
}
"""What a gate can compare, as ``ragflow eval`` prints it."""


@dataclass(frozen=True)
class GateVerdict:
    """Both generations' scores on the evaluation set, and whether the new one may serve."""

    metric: str
    active: float
    new: float
    tolerance: float
    questions: int
    seconds: float
    evaluated_at: float

    @property
    def passed(self) -> bool:
        return self.new >= self.active - self.tolerance

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "active_score": round(self.active, 4),
            "new_score": round(self.new, 4),
            "tolerance": self.tolerance,
            "questions": self.questions,
            "passed": self.passed,
            "evaluation_seconds": round(self.seconds, 2),
            "evaluated_at": self.evaluated_at,
        }


class MigrationGate:
    """The evaluation set and the rule: the new generation's ``metric`` must be at least the active
    one's minus ``tolerance``.

    Args:
        eval_set: A question file (JSON lines, ``{"query": ..., "relevant": [...]}``), read now: a
            missing or malformed file is a ``ConfigError`` at start, not at the swap.
        metric: One of ``GATE_METRICS`` (default ``mrr@10``).
        tolerance: How much lower the new generation may score and still be swapped in (``0``: at least
            as well).
        search_mode: The mode the questions are asked in (``None``: the store's default).
        recheck_seconds: While the gate holds, how often both generations are evaluated again once the
            documents changed (a held migration keeps its new generation up to date).
    """

    def __init__(
        self,
        eval_set: str | Path,
        metric: str = "mrr@10",
        tolerance: float = 0.0,
        search_mode: SearchMode | None = None,
        recheck_seconds: float = 60.0,
    ) -> None:
        if metric not in GATE_METRICS:
            raise ConfigError(
                f"migration_gate metric must be one of {', '.join(GATE_METRICS)}, got {metric!r}"
            )
        if tolerance < 0 or recheck_seconds < 0:
            raise ConfigError("migration_gate tolerance and recheck_seconds must be 0 or more")
        self.eval_set = Path(eval_set)
        self.questions = load_questions(self.eval_set)
        self.metric = metric
        self.tolerance = tolerance
        self.search_mode = search_mode
        self.recheck_seconds = recheck_seconds

    def score(self, store: DocumentStore) -> float:
        """``store``'s ``metric`` on the evaluation set."""
        k = max(CUTOFFS)

        def search(query: str) -> tuple[list[Mapping[str, Any]], float]:
            started = time.perf_counter()
            hits = store.retrieve(query, k, search_mode=self.search_mode)
            return [hit.metadata for hit in hits], time.perf_counter() - started

        return GATE_METRICS[self.metric](score_mode(self.search_mode or "default", self.questions, search))

    def judge(self, active: DocumentStore, new: DocumentStore) -> GateVerdict:
        started = time.perf_counter()
        scores = self.score(active), self.score(new)
        seconds = time.perf_counter() - started
        return GateVerdict(self.metric, *scores, self.tolerance, len(self.questions), seconds, time.time())


class GateKeeper:
    """One migration's gate: evaluates when the new generation has caught up, holds the swap while it
    scores lower, evaluates again (at most every ``recheck_seconds``) once the documents changed, and
    lets ``force`` override it. Called from the migration thread only; ``describe`` from any."""

    def __init__(self, gate: MigrationGate | None) -> None:
        self.gate = gate
        self.forced = False
        self.verdict: GateVerdict | None = None
        self._evaluated_on: Hashable = None
        self._evaluated_at = 0.0

    def allows(self, active: DocumentStore, new: DocumentStore, contents: Callable[[], Hashable]) -> bool:
        """Whether the swap may happen; evaluates both generations when due (``contents()`` tells whether
        the documents changed since the last evaluation; asked only once ``recheck_seconds`` passed)."""
        if self.gate is None or self.forced or (self.verdict is not None and self.verdict.passed):
            return True
        if self.verdict is None:
            due = True
        elif time.monotonic() - self._evaluated_at < self.gate.recheck_seconds:
            due = False
        else:
            now = contents()
            due, self._evaluated_at = now != self._evaluated_on, time.monotonic()
        if due:
            now = contents()
            verdict = self.gate.judge(active, new)
            self.verdict, self._evaluated_on, self._evaluated_at = verdict, now, time.monotonic()
            log.log(
                logging.INFO if verdict.passed else logging.WARNING,
                "migration gate: %s %.4f for the new generation against %.4f for the serving one on %d "
                "questions of %s: %s",
                verdict.metric,
                verdict.new,
                verdict.active,
                verdict.questions,
                self.gate.eval_set,
                "passed, swapping"
                if verdict.passed
                else "the swap waits (`ragflow migrate start --force` swaps anyway)",
            )
        return self.verdict is not None and self.verdict.passed

    @property
    def holding(self) -> bool:
        return (
            self.gate is not None and not self.forced and self.verdict is not None and not self.verdict.passed
        )

    def describe(self) -> dict[str, Any] | None:
        """What ``migration_status()`` shows under ``gate`` (``None`` without a gate)."""
        if self.gate is None:
            return None
        verdict = self.verdict.to_dict() if self.verdict is not None else {"passed": None}
        return {
            "eval_set": str(self.gate.eval_set),
            "metric": self.gate.metric,
            "tolerance": self.gate.tolerance,
            **verdict,
            "forced": self.forced,
        }
