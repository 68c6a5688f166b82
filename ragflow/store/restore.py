"""Loading a checkpoint into a ``DocumentStore`` before it starts: the saved documents go into the feeds,
the pipeline's memos, the index and the document table, and each source gets the position to resume from
(docs/persistence.md)."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..persistence import CheckpointBatch, Checkpointer, SavedDocument, SavedState, SourceState
from ..pipeline import DocumentFeed, Pipeline
from ..retrieval import SearchIndexes
from ..sources import position_scope
from .document_table import DocumentTable

__all__ = ["restore_checkpoint"]

log = logging.getLogger("ragflow.store")

_RESTORE_BATCH = 50_000
"""Chunks per index ``apply`` while restoring: bounds the temporary copies of one apply."""


def restore_checkpoint(
    saved: SavedState,
    *,
    feeds: Sequence[DocumentFeed],
    pipeline: Pipeline,
    index: SearchIndexes,
    table: DocumentTable,
    checkpointer: Checkpointer,
    state_dir: Path | None,
    seeded: bool = False,
) -> None:
    """Load ``saved`` into the feeds, the pipeline's memos, the index and the document table, and give
    each source the position to resume from. A document some of whose vectors are not in the cache (a
    lost write, a damaged cache, or a chunk the embedder refused) goes through the pipeline again from
    its saved parse when the store starts: only the missing vectors are computed. What the checkpoint
    holds for sources no longer configured is forgotten (through ``checkpointer``).

    ``seeded``: ``saved`` is another generation's checkpoint (a migration's seed), not this directory's:
    what it restores is queued for this directory's first checkpoint too (the documents resubmitted are
    saved when the pipeline has them again)."""
    started = time.perf_counter()
    scopes = {feed.name: position_scope(feed.source) for feed in feeds}
    # a position saved under another scope cannot be read: that source starts again from the beginning
    replayed = {
        name for name, state in saved.sources.items() if name in scopes and state.scope != scopes[name]
    }
    known = [s for s in saved.documents if s.doc.row.source in scopes and s.doc.row.source not in replayed]
    vectors = pipeline.cached_vectors({p.text for s in known for p in s.doc.outcome.chunks})
    kept: list[SavedDocument] = []
    resubmitted: list[SavedDocument] = []
    for s in known:
        complete = all(p.text in vectors for p in s.doc.outcome.chunks)
        (kept if complete else resubmitted).append(s)
    known_ids = {s.doc.row.doc_id for s in known}
    forget = CheckpointBatch(
        documents={s.doc.row.doc_id: None for s in saved.documents if s.doc.row.doc_id not in known_ids},
        sources={name: None for name in saved.sources if name not in scopes},
    )
    forget.sources.update(
        (name, SourceState(scope))
        for name, scope in scopes.items()
        if name not in saved.sources or name in replayed
    )
    if forget.documents:
        log.warning(
            "%d saved documents are not restored: their source is no longer configured, or its "
            "position changed meaning (it sends its documents again)",
            len(forget.documents),
        )
    if resubmitted:
        log.warning(
            "%d saved documents miss vectors in the embedding cache; they are indexed again from their "
            "saved parse when the store starts (only the missing vectors are computed)",
            len(resubmitted),
        )
    if seeded:
        forget.documents.update((s.doc.row.doc_id, s) for s in kept)
        forget.sources.update(
            (name, state) for name, state in saved.sources.items() if name in scopes and name not in replayed
        )
    checkpointer.add(forget)
    records = pipeline.restore(feeds, [s.doc for s in kept], vectors, [s.doc for s in resubmitted])
    index.restore(records, _RESTORE_BATCH)  # the lexical index re-tokenises only what changed
    table.load(kept, len(records))
    for feed in feeds:
        feed.position = _resume_position(feed.name, scopes[feed.name], known, saved, replayed)
    if saved.last_checkpoint is not None:
        log.info(
            "restored %d documents (%d chunks) from %s in %.2f s",
            len(kept),
            len(records),
            state_dir,
            time.perf_counter() - started,
        )


def _resume_position(
    name: str, scope: str, kept: list[SavedDocument], saved: SavedState, replayed: set[str]
) -> Any:
    """The position ``name`` resumes from: ``None`` (from the beginning) without a checkpoint."""
    if saved.last_checkpoint is None or name in replayed:
        return None
    if scope == "stream":
        state = saved.sources.get(name)
        return state.position if state is not None else None
    return {
        s.doc.row.doc_id: s.doc.row.position
        for s in kept
        if s.doc.row.source == name and s.doc.row.position is not None
    }
