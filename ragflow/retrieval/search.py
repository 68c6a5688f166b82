"""One retrieval request end to end: the vector and/or lexical search with the filter inside each,
reciprocal-rank fusion, then the optional cross-encoder, diversity and context stages."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Literal, get_args

import numpy as np
import numpy.typing as npt

from ..documents import Hit, Metadata
from ..errors import ConfigError
from ..pipeline import ChunkPiece
from .context import with_context
from .diversity import maximal_marginal_relevance
from .fusion import reciprocal_rank_fusion
from .indexes import SearchIndexes
from .rerank import NO_RERANKER, CrossEncoderReranker

__all__ = ["SEARCH_MODES", "RetrievalSettings", "Retriever", "SearchMode"]

SearchMode = Literal["vector", "lexical", "hybrid"]
SEARCH_MODES: tuple[SearchMode, ...] = get_args(SearchMode)

Vector = npt.NDArray[np.float32]


@dataclass(frozen=True)
class RetrievalSettings:
    """How a store retrieves when a request does not say (docs/retrieval.md).

    Attributes:
        search_mode: ``hybrid`` (both rankings fused), ``vector`` or ``lexical`` (BM25).
        rrf_k: the ``k`` of reciprocal-rank fusion (60, as in the paper that introduced it).
        vector_weight: the weight of the vector ranking in the fusion.
        lexical_weight: the weight of the lexical ranking in the fusion.
        fusion_depth: how many hits of each ranking a hybrid search fuses (at least what it returns).
        rerank: rerank every request (with the store's cross-encoder) unless it says otherwise.
        rerank_k: how many fused hits the cross-encoder scores.
    """

    search_mode: SearchMode = "hybrid"
    rrf_k: int = 60
    vector_weight: float = 1.0
    lexical_weight: float = 1.0
    fusion_depth: int = 30
    rerank: bool = False
    rerank_k: int = 20

    def __post_init__(self) -> None:
        check_mode(self.search_mode)
        if self.rrf_k < 0 or self.fusion_depth < 1 or self.rerank_k < 1:
            raise ConfigError(f"rrf_k >= 0, fusion_depth >= 1 and rerank_k >= 1 are needed, got {self}")
        if self.vector_weight < 0 or self.lexical_weight < 0 or self.vector_weight + self.lexical_weight == 0:
            raise ConfigError(f"fusion weights must be >= 0 and not both 0, got {self}")


def check_mode(mode: str) -> SearchMode:
    if mode not in SEARCH_MODES:
        raise ConfigError(f"search_mode must be one of {', '.join(SEARCH_MODES)}, got {mode!r}")
    return mode


class Retriever:
    """Answers ``retrieve`` for a store: ``embed_query`` embeds the query, ``vectors_of`` gives the
    vectors of chunk texts (the embedding cache first) for diversity, ``chunks_of`` a document's chunks
    for context."""

    def __init__(
        self,
        indexes: SearchIndexes,
        embed_query: Callable[[str], Vector],
        vectors_of: Callable[[Sequence[str]], Vector],
        chunks_of: Callable[[str], Sequence[ChunkPiece]],
        settings: RetrievalSettings | None = None,
        reranker: CrossEncoderReranker | None = None,
    ) -> None:
        self.indexes = indexes
        self.embed_query, self.vectors_of, self.chunks_of = embed_query, vectors_of, chunks_of
        self.settings = settings or RetrievalSettings()
        self.reranker = reranker
        if self.settings.search_mode != "vector" and indexes.lexical is None:
            self.settings = replace(self.settings, search_mode="vector")

    def retrieve(
        self,
        query: str,
        k: int,
        predicate: Callable[[Metadata], bool] | None,
        *,
        search_mode: str | None = None,
        rerank: bool | None = None,
        rerank_k: int | None = None,
        diversity: float | None = None,
        context_window: int = 0,
    ) -> list[Hit]:
        """See ``DocumentStore.retrieve``."""
        mode = check_mode(search_mode or self.settings.search_mode)
        if mode != "vector" and self.indexes.lexical is None:
            raise ConfigError(
                f"search_mode {mode!r} needs the lexical index, which this store was built without"
            )
        rerank = self.settings.rerank if rerank is None else rerank
        if rerank and self.reranker is None:
            raise ConfigError(NO_RERANKER)
        if diversity is not None and not 0.0 <= diversity <= 1.0:
            raise ConfigError(f"diversity must be between 0 and 1, got {diversity}")
        if context_window < 0:
            raise ConfigError(f"context_window must be >= 0, got {context_window}")
        if k < 1:
            return []
        pool = max(k, rerank_k or self.settings.rerank_k) if rerank else k
        if diversity:
            pool = max(pool, 4 * k)
        vector = self.embed_query(query) if mode != "lexical" or diversity else None
        hits = self._search(mode, query, vector, pool, predicate)
        if rerank:
            assert self.reranker is not None
            hits = self.reranker.rerank(query, hits)
        if diversity and hits:
            assert vector is not None
            found = self.vectors_of([h.text for h in hits])
            hits = maximal_marginal_relevance(vector, hits, found, k, diversity)
        return with_context(hits[:k], context_window, self.chunks_of)

    def _search(
        self,
        mode: SearchMode,
        query: str,
        vector: Vector | None,
        pool: int,
        predicate: Callable[[Metadata], bool] | None,
    ) -> list[Hit]:
        lexical = self.indexes.lexical
        if mode == "vector":
            assert vector is not None
            return self.indexes.vector.search(vector, pool, predicate)
        assert lexical is not None
        if mode == "lexical":
            return lexical.search(query, pool, predicate)
        assert vector is not None
        depth = max(pool, self.settings.fusion_depth)
        s = self.settings

        by_vector, by_words = self.indexes.search_both(vector, query, depth, predicate)
        weights = (s.vector_weight, s.lexical_weight)
        return reciprocal_rank_fusion([by_vector, by_words], weights, s.rrf_k, limit=pool)
