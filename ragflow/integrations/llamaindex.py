"""A LlamaIndex retriever over an in-process ``DocumentStore``: ``retrieve`` and ``aretrieve`` (and the
query engines and agents built on them) return ``NodeWithScore``s of ``TextNode``s with ragflow's
metadata."""

from __future__ import annotations

from typing import Any

from ..documents import Hit
from ..store import DocumentStore
from ._hits import hit_metadata, hit_score, missing_framework

try:
    from llama_index.core.callbacks import CallbackManager
    from llama_index.core.retrievers import BaseRetriever
    from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise missing_framework("llamaindex", "llama-index-core", "llamaindex") from exc

__all__ = ["RagflowRetriever"]

_NOT_FOR_THE_LLM = ["dist", "citation", "start", "end"]
"""Metadata kept out of the text LlamaIndex gives a model or an embedder (it stays on the node)."""


class RagflowRetriever(BaseRetriever):
    """The ``k`` chunks of ``store`` closest to the query as nodes scored by cosine similarity; each node's
    ``metadata`` is ragflow's (``path``, ``doc_id``, ``page_number``...) with ``dist`` and ``citation``, and
    its ``id_`` is the chunk's id. ``aretrieve`` awaits ``store.aretrieve``: the event loop is not blocked.

    Example:
        >>> retriever = RagflowRetriever(store, k=4)  # doctest: +SKIP
        >>> nodes = await retriever.aretrieve("how do I rotate keys?")  # doctest: +SKIP
    """

    def __init__(
        self,
        store: DocumentStore,
        *,
        k: int = 4,
        metadata_filter: str | None = None,
        filepath_globpattern: str | None = None,
        callback_manager: CallbackManager | None = None,
        **options: Any,
    ) -> None:
        self.store = store
        self.k = k
        self.metadata_filter = metadata_filter
        """A JMESPath filter over the chunks' metadata, with ``globmatch`` (see docs/rest-api.md)."""
        self.filepath_globpattern = filepath_globpattern
        super().__init__(callback_manager=callback_manager, **options)

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        query = query_bundle.query_str
        return _nodes(self.store.retrieve(query, self.k, self.metadata_filter, self.filepath_globpattern))

    async def _aretrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        query = query_bundle.query_str
        hits = await self.store.aretrieve(query, self.k, self.metadata_filter, self.filepath_globpattern)
        return _nodes(hits)


def _nodes(hits: list[Hit]) -> list[NodeWithScore]:
    return [_node(hit, rank) for rank, hit in enumerate(hits, 1)]


def _node(hit: Hit, rank: int) -> NodeWithScore:
    node = TextNode(
        id_=str(hit.id),
        text=hit.text,
        metadata=hit_metadata(hit, rank),
        excluded_llm_metadata_keys=_NOT_FOR_THE_LLM,
        excluded_embed_metadata_keys=_NOT_FOR_THE_LLM,
    )
    return NodeWithScore(node=node, score=hit_score(hit))
