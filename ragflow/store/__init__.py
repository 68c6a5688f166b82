"""``DocumentStore``: sources + parser + splitter + embedder + index kept in sync by the engine, with
retrieval, statistics, per-document status and freshness.

The package's modules, one job each: ``document_store`` (``DocumentStore``: building the pipeline, its
lifecycle, retrieval and the engine's callbacks), ``document_table`` (the documents the store holds and when
each became searchable), ``reports`` (what the store tells about itself: documents, inputs, errors,
progress, statistics, sources), ``restore`` (loading a checkpoint from a state directory),
``checkpoint_wait`` (a source waiting until its changes are checkpointed), ``parts`` (the default
parser, splitter and embedders), ``async_api`` (the asyncio face: ``async with``, ``aretrieve``,
``await_until_fresh``, ``updates()``, ``from_config``) and ``updates`` (the live change events).
"""

from __future__ import annotations

from .document_store import DocumentStore
from .reports import DocumentError, DocumentStatus, Progress, SourceReport
from .updates import StoreUpdate, UpdateStream

__all__ = [
    "DocumentError",
    "DocumentStatus",
    "DocumentStore",
    "Progress",
    "SourceReport",
    "StoreUpdate",
    "UpdateStream",
]
