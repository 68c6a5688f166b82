"""Retrieval beyond the vector index: a lexical (BM25) index kept in step with it, hybrid search by
reciprocal-rank fusion, an optional cross-encoder, diversity (MMR) and context expansion
(docs/retrieval.md)."""

from __future__ import annotations

from .context import with_context
from .diversity import maximal_marginal_relevance
from .fusion import reciprocal_rank_fusion
from .indexes import SearchIndexes
from .lexical import LEXICAL_FILE, LexicalIndex
from .rerank import CrossEncoderReranker
from .search import SEARCH_MODES, RetrievalSettings, Retriever, SearchMode
from .tokens import lexical_tokens

__all__ = [
    "LEXICAL_FILE",
    "SEARCH_MODES",
    "CrossEncoderReranker",
    "LexicalIndex",
    "RetrievalSettings",
    "Retriever",
    "SearchIndexes",
    "SearchMode",
    "lexical_tokens",
    "maximal_marginal_relevance",
    "reciprocal_rank_fusion",
    "with_context",
]
