"""A Haystack component over an in-process ``DocumentStore``: its ``run`` (``Pipeline.run``) and its
``run_async`` (``Pipeline.run_async``; ``AsyncPipeline`` in Haystack 2) return ``{"documents": [...]}`` of
Haystack ``Document``s with ragflow's metadata."""

from __future__ import annotations

from typing import Any

from ..documents import Hit
from ..store import DocumentStore
from ._hits import hit_metadata, hit_score, missing_framework

try:
    from haystack import Document, component
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise missing_framework("haystack", "haystack-ai", "haystack") from exc

__all__ = ["RagflowRetriever"]


@component
class RagflowRetriever:
    """The ``top_k`` chunks of ``store`` closest to ``query``: Haystack documents whose ``content`` is the
    chunk's text, ``score`` the cosine similarity, ``meta`` ragflow's metadata (``path``, ``doc_id``,
    ``page_number``...) with ``dist`` and ``citation``, and ``id`` the chunk's id.

    Filters are ragflow's (a JMESPath ``metadata_filter`` with ``globmatch``, a ``filepath_globpattern``),
    not Haystack's filter dictionaries. The component holds a live store, so it has no ``to_dict``: build
    pipelines that use it in Python, not from YAML.

    Example:
        >>> pipeline = Pipeline()  # doctest: +SKIP
        >>> pipeline.add_component("retriever", RagflowRetriever(store, top_k=4))  # doctest: +SKIP
        >>> pipeline.run({"retriever": {"query": "how do I rotate keys?"}})  # doctest: +SKIP
    """

    def __init__(
        self,
        store: DocumentStore,
        *,
        top_k: int = 4,
        metadata_filter: str | None = None,
        filepath_globpattern: str | None = None,
    ) -> None:
        self.store = store
        self.top_k = top_k
        self.metadata_filter = metadata_filter
        self.filepath_globpattern = filepath_globpattern

    @component.output_types(documents=list[Document])
    def run(
        self,
        query: str,
        top_k: int | None = None,
        metadata_filter: str | None = None,
        filepath_globpattern: str | None = None,
    ) -> dict[str, list[Document]]:
        """The closest chunks to ``query``; each argument left out takes the component's setting."""
        hits = self.store.retrieve(query, *self._options(top_k, metadata_filter, filepath_globpattern))
        return {"documents": _documents(hits)}

    @component.output_types(documents=list[Document])
    async def run_async(
        self,
        query: str,
        top_k: int | None = None,
        metadata_filter: str | None = None,
        filepath_globpattern: str | None = None,
    ) -> dict[str, list[Document]]:
        """``run`` awaiting ``store.aretrieve``: the event loop is not blocked."""
        hits = await self.store.aretrieve(query, *self._options(top_k, metadata_filter, filepath_globpattern))
        return {"documents": _documents(hits)}

    def _options(
        self, top_k: int | None, metadata_filter: str | None, filepath_globpattern: str | None
    ) -> tuple[int, str | None, str | None]:
        return (
            self.top_k if top_k is None else top_k,
            self.metadata_filter if metadata_filter is None else metadata_filter,
            self.filepath_globpattern if filepath_globpattern is None else filepath_globpattern,
        )


def _documents(hits: list[Hit]) -> list[Document]:
    return [_document(hit, rank) for rank, hit in enumerate(hits, 1)]


def _document(hit: Hit, rank: int) -> Document:
    meta: dict[str, Any] = hit_metadata(hit, rank)
    return Document(id=str(hit.id), content=hit.text, meta=meta, score=hit_score(hit))
