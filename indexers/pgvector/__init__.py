"""The ``pgvector`` index: chunks in PostgreSQL with pgvector, shared by indexer workers and query
replicas (extra ``ragflow[pgvector]``; see docs/indexes.md and docs/scaling.md)."""

from ._index import DocumentEntry, PgvectorIndex, PositionAdvance, StalePositionError

__all__ = ["DocumentEntry", "PgvectorIndex", "PositionAdvance", "StalePositionError"]
