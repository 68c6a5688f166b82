from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from ragflow.documents import Hit
from ragflow.retrieval.fusion import reciprocal_rank_fusion


def hits(ids: list[int]) -> list[Hit]:
    return [Hit(i, f"t{i}", {}, 0.0) for i in ids]


def reference_rrf(rankings: list[list[int]], weights: list[float], k: int) -> list[int]:
    """RRF written out from its definition: score(d) = sum over rankings holding d of w / (k + rank)."""
    ids = sorted({i for r in rankings for i in r})
    score = {
        i: sum(w / (k + r.index(i) + 1) for r, w in zip(rankings, weights, strict=True) if i in r)
        for i in ids
    }
    return sorted(ids, key=lambda i: (-score[i], i))


rankings = st.lists(st.integers(0, 30), unique=True, max_size=12)


@settings(max_examples=60, deadline=None)
@given(rankings, rankings, st.floats(0.1, 3.0), st.floats(0.1, 3.0), st.integers(0, 100))
def test_fusion_matches_the_reference_rrf(a: list[int], b: list[int], wa: float, wb: float, k: int) -> None:
    fused = reciprocal_rank_fusion([hits(a), hits(b)], [wa, wb], k)
    assert [h.id for h in fused] == reference_rrf([a, b], [wa, wb], k)
    assert all(0.0 <= h.dist < 1.0 for h in fused)
    assert [h.dist for h in fused] == sorted(h.dist for h in fused)


def test_a_chunk_first_in_both_rankings_has_distance_zero_and_leads() -> None:
    fused = reciprocal_rank_fusion([hits([7, 1, 2]), hits([7, 3])], [1.0, 1.0], 60, limit=2)
    assert [h.id for h in fused] == [7, 1] and fused[0].dist == 0.0


def test_weights_tilt_the_fusion() -> None:
    vector_first = reciprocal_rank_fusion([hits([1, 2]), hits([2, 1])], [2.0, 1.0], 60)
    words_first = reciprocal_rank_fusion([hits([1, 2]), hits([2, 1])], [1.0, 2.0], 60)
    assert [h.id for h in vector_first] == [1, 2] and [h.id for h in words_first] == [2, 1]
