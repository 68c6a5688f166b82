from __future__ import annotations

import numpy as np

from ragflow.documents import Hit
from ragflow.retrieval.diversity import maximal_marginal_relevance


def unit(*xs: float) -> np.ndarray:
    v = np.array(xs, np.float32)
    return v / np.linalg.norm(v)


QUERY = unit(1, 0, 0)
HITS = [Hit(i, f"t{i}", {}, 0.0) for i in range(3)]
# 0 and 1 are near copies close to the query; 2 is less relevant but different
VECTORS = np.stack([unit(1, 0.1, 0), unit(1, 0.11, 0), unit(0.6, 0, 0.8)])


def test_no_diversity_keeps_relevance_order() -> None:
    assert [h.id for h in maximal_marginal_relevance(QUERY, HITS, VECTORS, 3, 0.0)] == [0, 1, 2]


def test_diversity_moves_a_near_copy_below_a_different_passage() -> None:
    assert [h.id for h in maximal_marginal_relevance(QUERY, HITS, VECTORS, 2, 0.5)] == [0, 2]


def test_the_result_is_deterministic() -> None:
    runs = {tuple(h.id for h in maximal_marginal_relevance(QUERY, HITS, VECTORS, 3, 0.7)) for _ in range(5)}
    assert len(runs) == 1
