"""What one caller may see, as JSON-ready values: the store's queries narrowed to the scope of the caller's
API key. The web page's endpoints (``web``) and the MCP tools (``mcp``) both answer with these, so a scoped
key sees the same documents through the page, the tools and the REST API, and no count from outside them.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ragflow.answer import Answer
from ragflow.documents import Hit
from ragflow.pipeline import ChunkPiece
from ragflow.store import DocumentStatus

from .auth import ApiKey, Role
from .limits import length_error
from .scopes import Scope
from .state import ServerState

__all__ = ["RECENT_CHANGES", "Caller", "answer_body", "passage", "status_of"]

RECENT_CHANGES = 30
"""How many of the latest indexed documents ``Caller.overview`` reports the freshness of."""

_STATES = {"INDEXED": "indexed", "INGESTED": "pending", "ERROR": "error"}
"""The store's document states, as the page and the tools name them."""


@dataclass(frozen=True, slots=True)
class Caller:
    """The server's state seen by the holder of ``key`` (``None``: no key, on an open server)."""

    state: ServerState
    key: ApiKey | None

    @property
    def scope(self) -> Scope | None:
        return self.key.scope if self.key is not None else None

    @property
    def role(self) -> Role:
        """The caller's role (an open server gives everyone ``admin``)."""
        return self.key.role if self.key is not None else Role.ADMIN

    def narrowed(self, metadata_filter: str | None, glob: str | None) -> tuple[str | None, str | None]:
        """The caller's filters ANDed with its key's scope (a filter can narrow the scope, never widen it).

        Raises:
            FilterError: a filter does not parse.
        """
        scope = self.scope
        return (metadata_filter, glob) if scope is None else scope.narrow(metadata_filter, glob)

    def check_k(self, k: int) -> None:
        """Raises ``ValueError`` naming the limit when ``k`` is out of range."""
        if not 1 <= k <= self.state.max_k:
            raise ValueError(f"k must be between 1 and {self.state.max_k} (the server's max_k), got {k}")

    @staticmethod
    def _check_length(text: str, limit: int, param: str, setting: str) -> None:
        """Raises ``ValueError`` naming the limit when ``text`` is longer than ``limit`` characters."""
        message = length_error(text, limit, param, setting)
        if message is not None:
            raise ValueError(message)

    # -- queries (blocking: run them off the event loop) ----------------------------------------------

    def passages(
        self, query: str, k: int, metadata_filter: str | None = None, glob: str | None = None
    ) -> list[dict[str, Any]]:
        """The ``k`` passages closest to ``query`` that the caller may see, best first."""
        self.check_k(k)
        self._check_length(query, self.state.limits.max_query_chars, "query", "max_query_chars")
        expression, pattern = self.narrowed(metadata_filter, glob)
        return [passage(hit) for hit in self.state.store.retrieve(query, k, expression, pattern)]

    def answer(
        self, question: str, k: int | None = None, metadata_filter: str | None = None, glob: str | None = None
    ) -> Answer:
        """An answer to ``question`` from the passages the caller may see, with citations."""
        if k is not None:
            self.check_k(k)
        self._check_length(question, self.state.limits.max_prompt_chars, "question", "max_prompt_chars")
        expression, pattern = self.narrowed(metadata_filter, glob)
        return self.state.answerer.answer(
            question, metadata_filter=expression, filepath_globpattern=pattern, k=k
        )

    def documents(self) -> list[DocumentStatus]:
        """The documents the caller may see, indexed or not, sorted by id."""
        statuses = self.state.store.documents()
        scope = self.scope
        return statuses if scope is None else [s for s in statuses if scope.allows(s.metadata)]

    def document(self, doc_id: str) -> DocumentStatus | None:
        """The document ``doc_id`` (or the one whose ``path`` it is), if the caller may see it."""
        found = [s for s in self.documents() if doc_id in (s.doc_id, s.metadata.get("path"))]
        return next((s for s in found if s.doc_id == doc_id), found[0] if found else None)

    def context(
        self, doc_id: str, start: int, end: int, page: int | None = None, around: int = 1
    ) -> dict[str, Any] | None:
        """The passage of ``doc_id`` at ``start:end`` (on ``page``) among its neighbours: the text of the
        ``around`` chunks before and after it in the same parsed unit. ``None`` when the caller may not
        see the document or it holds no such passage (any more: it was edited)."""
        status = self.document(doc_id)
        if status is None:
            return None
        chunks = self.state.store.chunks(status.doc_id)
        hit = next((c for c in chunks if c.start == start and c.end == end and c.page_number == page), None)
        if hit is None:
            return None
        unit = [c for c in chunks if c.page_number == hit.page_number and c.location == hit.location]
        at = unit.index(hit)
        shown = unit[max(0, at - around) : at + around + 1]
        text = _unit_text(shown)
        first, last = shown[0].start, shown[-1].end
        return {
            "doc_id": status.doc_id,
            "path": status.metadata.get("path", status.doc_id),
            "page": hit.page_number,
            "location": dict(hit.location or {}),
            "start": hit.start,
            "end": hit.end,
            "before": text[first : hit.start].strip(),
            "passage": hit.text,
            "after": text[hit.end : last].strip(),
            "chunk": hit.ordinal,
            "chunks_in_unit": len(unit),
        }

    def overview(self) -> dict[str, Any]:
        """Where indexing stands for the caller: readiness, its documents by state with the errors, the
        freshness of the latest changes, and (for a key that sees every document) the initial indexing's
        progress and the embedding rate, which count documents of every scope."""
        state = self.state
        documents = self.documents()
        by_state = Counter(_STATES.get(s.status, s.status.lower()) for s in documents)
        indexed = sorted(
            (s for s in documents if s.indexed_at is not None and s.seen_at is not None),
            key=lambda s: s.indexed_at or 0.0,
        )[-RECENT_CHANGES:]
        body: dict[str, Any] = {
            "ready": state.ready(),
            "time": time.time(),
            "role": self.role.label,
            "scoped": self.scope is not None,
            "uploads": _upload_prefix(state),
            "llm": state.answerer.llm.model if state.answerer.llm is not None else None,
            "documents": {name: by_state.get(name, 0) for name in _STATES.values()},
            "errors": [
                {"doc_id": s.doc_id, "path": s.metadata.get("path", s.doc_id), "message": s.error}
                for s in documents
                if s.error is not None
            ],
            "recent": [
                {
                    "doc_id": s.doc_id,
                    "path": s.metadata.get("path", s.doc_id),
                    "seen_at": s.seen_at,
                    "indexed_at": s.indexed_at,
                    "lag": max(0.0, (s.indexed_at or 0.0) - (s.seen_at or 0.0)),
                }
                for s in indexed
            ],
            "progress": None,
            "embedding": None,
        }
        if self.scope is None:
            progress = state.store.progress()
            body["progress"] = {
                "documents_seen": progress.documents_seen,
                "documents_done": progress.documents_done,
                "chunks_seen": progress.chunks_seen,
                "chunks_embedded": progress.chunks_embedded,
                "snapshot_complete": progress.snapshot_complete,
                "eta": progress.eta,
            }
            body["embedding"] = {**state.store.embedding_stats(), "chunk_rate": progress.chunk_rate}
        return body


def passage(hit: Hit) -> dict[str, Any]:
    """A retrieved chunk as the page and the tools show it: text, document, page, span, distance and
    metadata (where in the document it is, as its parser says)."""
    meta = hit.metadata
    dist = float(hit.dist)
    return {
        "text": hit.text,
        "doc_id": meta.get("doc_id"),
        "path": meta.get("path"),
        "page": meta.get("page_number"),
        "start": meta.get("start"),
        "end": meta.get("end"),
        "dist": dist if math.isfinite(dist) else None,
        "metadata": dict(meta),
    }


def status_of(document: DocumentStatus) -> dict[str, Any]:
    """One document's status as the page and the tools show it."""
    return {
        "doc_id": document.doc_id,
        "path": document.metadata.get("path", document.doc_id),
        "status": _STATES.get(document.status, document.status.lower()),
        "chunks": document.chunks,
        "error": document.error,
        "seen_at": document.seen_at,
        "indexed_at": document.indexed_at,
    }


def _unit_text(chunks: Sequence[ChunkPiece]) -> str:
    """The text of a parsed unit where ``chunks`` cover it (``chunk.text`` is ``unit[start:end]``; the
    whitespace the splitter dropped between two chunks reads as a line break)."""
    text = ["\n"] * max(c.end for c in chunks)
    for c in chunks:
        text[c.start : c.end] = c.text
    return "".join(text)


def _upload_prefix(state: ServerState) -> str | None:
    """The id prefix of uploaded documents (``upload://``), which the page may delete; ``None`` without
    uploads."""
    uploads = state.uploads
    return uploads.doc_id("") if uploads is not None else None


def answer_body(result: Answer) -> dict[str, Any]:
    """An answer as the tools return it (the REST answer's fields)."""
    return {
        "answer": result.text,
        "citations": [c.to_dict() for c in result.citations],
        "extractive": result.extractive,
        "found": result.found,
    }
