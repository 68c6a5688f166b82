"""How a checkpoint's documents and source positions are stored as rows of ``state.sqlite``: pickled
bodies under a checksum, so that a truncated or overwritten row is found on load instead of trusted."""

from __future__ import annotations

import hashlib
import pickle

from ..pipeline import ChunkPiece, DocRow, ParsedDoc, ParseOutcome
from .records import DamagedState, SavedDocument, SourceState

__all__ = ["decode_document", "decode_source", "document_row", "source_row"]


def _checksum(*parts: bytes) -> bytes:
    digest = hashlib.blake2b(digest_size=16, person=b"ragflow-state")
    for part in parts:
        digest.update(len(part).to_bytes(8, "little"))
        digest.update(part)
    return digest.digest()


def document_row(saved: SavedDocument) -> tuple[str, str, int, int, bytes, bytes]:
    """``saved`` as a ``documents`` row: doc_id, source, chunks, positioned, body, checksum."""
    row, outcome = saved.doc.row, saved.doc.outcome
    chunks = tuple(
        (c.text, c.start, c.end, c.ordinal, c.n_tokens, c.page_number, c.location) for c in outcome.chunks
    )
    fields = (row.digest, row.metadata, row.error, outcome.error, chunks, saved.indexed_at)
    try:
        body = pickle.dumps((*fields, row.position), protocol=5)
        positioned = row.position is not None
    except Exception:  # a position pickle cannot store: the source re-reads that document on resume
        body = pickle.dumps((*fields, None), protocol=5)
        positioned = False
    return (
        row.doc_id,
        row.source,
        len(chunks),
        int(positioned),
        body,
        _checksum(row.doc_id.encode(), row.source.encode(), body),
    )


def decode_document(doc_id: str, source: str, body: bytes, checksum: bytes) -> SavedDocument:
    """The document a ``documents`` row holds; ``DamagedState`` if its checksum or body is wrong."""
    if _checksum(doc_id.encode(), source.encode(), body) != checksum:
        raise DamagedState(f"checksum mismatch in the saved document {doc_id!r}")
    try:
        digest, metadata, error, parse_error, chunks, indexed_at, position = pickle.loads(body)
        row = DocRow(doc_id, digest, metadata, error, source=source, position=position)
        outcome = ParseOutcome(tuple(ChunkPiece(*chunk) for chunk in chunks), parse_error)
    except Exception as exc:
        raise DamagedState(f"the saved document {doc_id!r} cannot be read: {exc}") from exc
    return SavedDocument(ParsedDoc(row, outcome), indexed_at)


def source_row(name: str, state: SourceState) -> tuple[str, str, bytes, bytes]:
    """``state`` as a ``sources`` row: name, scope, position, checksum."""
    position = pickle.dumps(state.position, protocol=5)
    return name, state.scope, position, _checksum(name.encode(), state.scope.encode(), position)


def decode_source(name: str, scope: str, position: bytes, checksum: bytes) -> tuple[str, SourceState]:
    """The source position a ``sources`` row holds; ``DamagedState`` if its checksum or body is wrong."""
    if _checksum(name.encode(), scope.encode(), position) != checksum or scope not in ("document", "stream"):
        raise DamagedState(f"checksum mismatch in the saved position of source {name!r}")
    try:
        return name, SourceState(scope, pickle.loads(position))  # type: ignore[arg-type]
    except Exception as exc:
        raise DamagedState(f"the saved position of source {name!r} cannot be read: {exc}") from exc
