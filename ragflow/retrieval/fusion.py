"""Reciprocal-rank fusion (Cormack, Clarke & Büttcher, 2009) of the vector and the lexical rankings."""

from __future__ import annotations

from collections.abc import Sequence

from ..documents import Hit

__all__ = ["reciprocal_rank_fusion"]


def reciprocal_rank_fusion(
    rankings: Sequence[Sequence[Hit]], weights: Sequence[float], k: int = 60, limit: int | None = None
) -> list[Hit]:
    """The hits of all ``rankings`` by descending ``sum(weight / (k + rank))`` (ranks from 1), equal
    sums by chunk id. A hit found by several rankings keeps the first ranking's text and metadata. Its
    ``dist`` becomes ``1 - sum / sum(weight / (k + 1))``: 0 for a chunk first in every ranking, ascending
    like every ``dist``, but not a cosine distance.

    >>> a, b = Hit(1, "a", {}, 0.1), Hit(2, "b", {}, 0.2)
    >>> [h.id for h in reciprocal_rank_fusion([[a, b], [b]], [1.0, 1.0])]
    [2, 1]
    """
    scores: dict[int, float] = {}
    first: dict[int, Hit] = {}
    for ranking, weight in zip(rankings, weights, strict=True):
        for rank, hit in enumerate(ranking, 1):
            scores[hit.id] = scores.get(hit.id, 0.0) + weight / (k + rank)
            first.setdefault(hit.id, hit)
    best = sum(weights) / (k + 1) or 1.0
    order = sorted(scores, key=lambda i: (-scores[i], i))[:limit]
    return [Hit(i, first[i].text, first[i].metadata, max(0.0, 1.0 - scores[i] / best)) for i in order]
