"""Maximal marginal relevance (Carbonell & Goldstein, 1998): a result list that is relevant but not ten
copies of the same passage."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from ..documents import Hit

__all__ = ["maximal_marginal_relevance"]


def maximal_marginal_relevance(
    query: npt.NDArray[np.float32],
    hits: Sequence[Hit],
    vectors: npt.NDArray[np.float32],
    k: int,
    diversity: float,
) -> list[Hit]:
    """``k`` of ``hits`` chosen one at a time by ``(1 - diversity) * sim(query, hit) - diversity *
    max sim(hit, chosen)`` (cosine of L2-normalised ``vectors``, one row per hit); ties go to the
    earlier hit. ``diversity`` 0 keeps the relevance order; 1 picks the least redundant."""
    if not 0.0 <= diversity <= 1.0:
        raise ValueError(f"diversity must be between 0 and 1, got {diversity}")
    relevance = vectors @ query
    similarity = vectors @ vectors.T
    chosen: list[int] = []
    redundancy = np.full(len(hits), -np.inf)
    left = np.ones(len(hits), bool)
    for _ in range(min(k, len(hits))):
        penalty = np.where(np.isfinite(redundancy), redundancy, 0.0)
        score = np.where(left, (1 - diversity) * relevance - diversity * penalty, -np.inf)
        best = int(np.argmax(score))
        chosen.append(best)
        left[best] = False
        redundancy = np.maximum(redundancy, similarity[best])
    return [hits[n] for n in chosen]
