"""A LangChain retriever over an in-process ``DocumentStore``: ``invoke`` and ``ainvoke`` (and everything
built on them: chains, agents, LangGraph tools) return LangChain ``Document``s with ragflow's metadata."""

from __future__ import annotations

from typing import Any

from pydantic import ConfigDict

from ..documents import Hit
from ..store import DocumentStore
from ._hits import hit_metadata, hit_score, missing_framework

try:
    from langchain_core.callbacks import AsyncCallbackManagerForRetrieverRun, CallbackManagerForRetrieverRun
    from langchain_core.documents import Document
    from langchain_core.retrievers import BaseRetriever
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise missing_framework("langchain", "langchain-core", "langchain") from exc

__all__ = ["RagflowRetriever"]


class RagflowRetriever(BaseRetriever):
    """The ``k`` chunks of ``store`` closest to the query, as LangChain documents: ``page_content`` is the
    chunk's text, ``metadata`` ragflow's (``path``, ``doc_id``, ``page_number``...) with ``dist``, ``score``
    (cosine similarity) and ``citation``; ``id`` is the chunk's id. ``ainvoke`` awaits
    ``store.aretrieve``: the event loop is not blocked.

    Example:
        >>> retriever = RagflowRetriever(store=store, k=4)  # doctest: +SKIP
        >>> docs = await retriever.ainvoke("how do I rotate keys?")  # doctest: +SKIP
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    store: DocumentStore
    k: int = 4
    metadata_filter: str | None = None
    """A JMESPath filter over the chunks' metadata, with ``globmatch`` (see docs/rest-api.md)."""
    filepath_globpattern: str | None = None

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun
    ) -> list[Document]:
        return _documents(self.store.retrieve(query, self.k, self.metadata_filter, self.filepath_globpattern))

    async def _aget_relevant_documents(
        self, query: str, *, run_manager: AsyncCallbackManagerForRetrieverRun
    ) -> list[Document]:
        hits = await self.store.aretrieve(query, self.k, self.metadata_filter, self.filepath_globpattern)
        return _documents(hits)


def _documents(hits: list[Hit]) -> list[Document]:
    return [_document(hit, rank) for rank, hit in enumerate(hits, 1)]


def _document(hit: Hit, rank: int) -> Document:
    metadata: dict[str, Any] = {**hit_metadata(hit, rank), "score": hit_score(hit)}
    return Document(page_content=hit.text, metadata=metadata, id=str(hit.id))
