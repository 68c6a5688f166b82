"""A query replica: a ``DocumentStore`` that indexes nothing itself and answers from a shared index that
other processes (``ragflow worker``) keep up to date: retrieval searches the index, and statistics,
inputs, documents and errors are read from the index's own catalog of documents (see docs/scaling.md).
Any number of replicas can serve one index; they hold no state of their own."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Literal, Protocol, runtime_checkable

from ..documents import Embedder, Metadata, VectorIndex
from ..errors import ConfigError
from ..filters import compile_filter
from ..retrieval import CrossEncoderReranker, RetrievalSettings
from ..sources import EmitChanges
from .document_store import DocumentStore
from .reports import DocumentError, DocumentStatus

__all__ = ["ReplicaStore", "SharedCatalog"]

Mode = Literal["static", "streaming"]


@runtime_checkable
class SharedCatalog(Protocol):
    """What an index shared by several processes tells about the documents its chunks came from, as
    the commits that wrote them left them (``ragflow.indexers.pgvector`` is one)."""

    def document_rows(self, filter: Callable[[Metadata], bool] | None = None) -> list[dict[str, Any]]:
        """``doc_id``, ``metadata``, ``chunks``, ``error`` and ``indexed_at`` (Unix seconds) of each
        document whose metadata ``filter`` accepts, sorted by id."""
        ...

    def last_change(self) -> float | None:
        """When the index last changed (Unix seconds), deletions included; ``None`` before any change."""
        ...


class _NothingToIndex:
    """The replica's one source: an empty snapshot, then nothing until stopped."""

    name = "replica"

    def run(
        self,
        emit: EmitChanges,
        stop: threading.Event,
        mode: Literal["static", "streaming"],
        position: Any = None,
    ) -> None:
        emit([], snapshot_done=True)
        if mode == "streaming":
            stop.wait()


class ReplicaStore(DocumentStore):
    """A stateless replica over ``index``, an index that is also a ``SharedCatalog``.

    Args:
        index: The shared index (a ``PgvectorIndex`` on the database the workers write to).
        embedder: Embeds queries; it must be the model the workers embed chunks with.
        lexical: Whether lexical and hybrid search are served (the index's own words; ``False``:
            vector only), as ``DocumentStore``'s.
        retrieval: The search defaults a request does not override (mode, fusion, reranking), as
            ``DocumentStore``'s; ``RagflowConfig.retrieval_options()`` gives these three from the
            configuration's ``retrieval:`` section.
        reranker: The cross-encoder of ``rerank``, as ``DocumentStore``'s.

    Raises:
        ConfigError: ``index`` keeps no catalog of documents (a local index such as faiss).
    """

    def __init__(
        self,
        index: VectorIndex,
        *,
        embedder: Embedder | None = None,
        lexical: bool = True,
        retrieval: RetrievalSettings | None = None,
        reranker: CrossEncoderReranker | None = None,
    ) -> None:
        if not isinstance(index, SharedCatalog):
            raise ConfigError(
                f"a query replica needs a shared index that keeps its documents (such as pgvector), "
                f"not {type(index).__name__}"
            )
        super().__init__(
            [_NothingToIndex()],
            embedder=embedder,
            index=index,
            lexical=lexical,
            retrieval=retrieval,
            reranker=reranker,
        )
        self.catalog: SharedCatalog = index

    def statistics(
        self, metadata_filter: str | None = None, filepath_globpattern: str | None = None
    ) -> dict[str, int | None]:
        """As ``DocumentStore.statistics``, over the documents the shared index holds."""
        predicate = compile_filter(metadata_filter, filepath_globpattern)
        rows = [row for row in self.catalog.document_rows(predicate) if row["error"] is None]
        modified = [int(m) for row in rows if (m := row["metadata"].get("modified_at")) is not None]
        indexed = [row["indexed_at"] for row in rows]
        if predicate is None and (changed := self.catalog.last_change()) is not None:
            indexed.append(changed)  # a deletion changes the index too
        return {
            "file_count": len(rows),
            "last_modified": max(modified) if modified else None,
            "last_indexed": int(max(indexed)) if indexed else None,
        }

    def documents(self) -> list[DocumentStatus]:
        """Every document of the shared index, sorted by id."""
        return [
            DocumentStatus(
                row["doc_id"],
                dict(row["metadata"]),
                "ERROR" if row["error"] is not None else "INDEXED",
                row["chunks"],
                row["error"],
                None,
                row["indexed_at"],
            )
            for row in self.catalog.document_rows()
        ]

    def inputs(
        self,
        metadata_filter: str | None = None,
        filepath_globpattern: str | None = None,
        return_status: bool = False,
    ) -> list[dict[str, Any]]:
        """Per-document metadata of the shared index (Pathway's ``/v1/inputs``)."""
        predicate = compile_filter(metadata_filter, filepath_globpattern)
        result = []
        for row in self.catalog.document_rows(predicate):
            entry = dict(row["metadata"])
            if return_status:
                entry["_indexing_status"] = "ERROR" if row["error"] is not None else "INDEXED"
                if row["error"] is not None:
                    entry["_error"] = row["error"]
                entry["_indexed_at"] = row["indexed_at"]
            result.append(entry)
        return result

    def errors(self) -> list[DocumentError]:
        """Documents the workers could not index, and why."""
        return [
            DocumentError(row["doc_id"], "parse", row["error"])
            for row in self.catalog.document_rows()
            if row["error"] is not None
        ]
