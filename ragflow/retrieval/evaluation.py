"""Retrieval quality on labelled questions: the question file, which hits count as relevant, and
recall@k, MRR@10 and nDCG@10 per search mode (what ``ragflow eval`` prints; docs/retrieval.md).

A question file holds one JSON object a line: ``{"query": "...", "relevant": ["guide/backup.md", ...]}``
(``question`` and ``pages`` are read as ``query`` and ``relevant``: the format of
``apps/eval_data/postgresql15_questions.jsonl``). A hit is relevant when its document is named by an entry:
its ``doc_id`` or ``path`` equals the entry, or its path ends with ``/`` + the entry.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError

__all__ = [
    "CUTOFFS",
    "MISSED_AT",
    "EvalQuestion",
    "ModeScores",
    "QuestionResult",
    "load_questions",
    "score_mode",
]

CUTOFFS = (1, 5, 10)
MISSED_AT = 5  # a question is a miss without a relevant hit among this many (recall@5)


@dataclass(frozen=True)
class EvalQuestion:
    query: str
    relevant: tuple[str, ...]


@dataclass(frozen=True)
class QuestionResult:
    """One question under one mode: the rank (from 1) of its first relevant hit, ``None`` if none in the
    hits, and the documents that came first instead."""

    question: EvalQuestion
    rank: int | None
    ndcg10: float
    seconds: float
    top: tuple[str, ...]


@dataclass
class ModeScores:
    mode: str
    results: list[QuestionResult] = field(default_factory=list)

    def recall(self, k: int) -> float:
        """The share of questions with a relevant hit among the first ``k``."""
        return sum(r.rank is not None and r.rank <= k for r in self.results) / len(self.results)

    @property
    def mrr10(self) -> float:
        return sum(1 / r.rank for r in self.results if r.rank is not None and r.rank <= 10) / len(
            self.results
        )

    @property
    def ndcg10(self) -> float:
        return sum(r.ndcg10 for r in self.results) / len(self.results)

    def latency_ms(self, quantile: float) -> float:
        times = sorted(r.seconds for r in self.results)
        return 1000 * times[min(len(times) - 1, int(quantile * len(times)))]

    def misses(self, k: int) -> list[QuestionResult]:
        """The questions without a relevant hit among the first ``k``."""
        return [r for r in self.results if r.rank is None or r.rank > k]

    def to_dict(self) -> dict[str, Any]:
        """The scores, and every question without a relevant hit in the first ``MISSED_AT``."""
        return {
            "mode": self.mode,
            "questions": len(self.results),
            **{f"recall@{c}": round(self.recall(c), 4) for c in CUTOFFS},
            "mrr@10": round(self.mrr10, 4),
            "ndcg@10": round(self.ndcg10, 4),
            "latency_ms_p50": round(self.latency_ms(0.5), 2),
            "latency_ms_p95": round(self.latency_ms(0.95), 2),
            "misses": [
                {
                    "query": r.question.query,
                    "relevant": list(r.question.relevant),
                    "rank": r.rank,
                    "top": list(r.top),
                }
                for r in self.misses(MISSED_AT)
            ],
        }


def load_questions(path: str | Path) -> list[EvalQuestion]:
    """The questions of a JSON-lines file (see the module's docstring). Raises ``ConfigError`` naming
    the line of a malformed one."""
    questions = []
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            query = row["query"] if "query" in row else row["question"]
            relevant = row["relevant"] if "relevant" in row else row["pages"]
        except (ValueError, KeyError, TypeError):
            raise ConfigError(
                f'{path}:{number}: expected {{"query": "...", "relevant": ["path or doc id", ...]}}, '
                f"got {line[:80]!r}"
            ) from None
        if isinstance(relevant, str):
            relevant = [relevant]
        if not isinstance(query, str) or not relevant or not all(isinstance(r, str) for r in relevant):
            raise ConfigError(
                f"{path}:{number}: 'query' must be a text and 'relevant' a non-empty list of texts"
            )
        questions.append(EvalQuestion(query, tuple(relevant)))
    if not questions:
        raise ConfigError(f"{path} holds no questions")
    return questions


def document_of(metadata: Mapping[str, Any], relevant: Sequence[str]) -> str | None:
    """The entry of ``relevant`` that names the hit's document, if one does."""
    doc_id, path = str(metadata.get("doc_id", "")), str(metadata.get("path", ""))
    for entry in relevant:
        if entry in (doc_id, path) or path.endswith("/" + entry) or doc_id.endswith("/" + entry):
            return entry
    return None


def score_mode(
    mode: str,
    questions: Sequence[EvalQuestion],
    search: Callable[[str], tuple[list[Mapping[str, Any]], float]],
) -> ModeScores:
    """Every question through ``search(query) -> (hits' metadata best first, seconds)``, scored."""
    scores = ModeScores(mode)
    for question in questions:
        hits, seconds = search(question.query)
        found = [document_of(h, question.relevant) for h in hits]
        rank = next((n for n, entry in enumerate(found, 1) if entry is not None), None)
        # binary gain per relevant document, counted at its first chunk only
        seen: set[str] = set()
        gain = 0.0
        for n, entry in enumerate(found[:10], 1):
            if entry is not None and entry not in seen:
                seen.add(entry)
                gain += 1 / math.log2(n + 1)
        ideal = sum(1 / math.log2(n + 1) for n in range(1, min(len(question.relevant), 10) + 1))
        top = tuple(dict.fromkeys(Path(str(h.get("path") or h.get("doc_id"))).name for h in hits[:3]))
        scores.results.append(QuestionResult(question, rank, gain / ideal, seconds, top))
    return scores
