"""The ``pgvector`` index: chunks in PostgreSQL with pgvector, shared by indexer workers and query
replicas (extra ``ragflow[pgvector]``; see docs/indexes.md and docs/scaling.md). It is a
``ragflow.shared_index.SharedIndex``, whose value types and error it hands on."""

from ragflow.errors import StalePositionError
from ragflow.shared_index import DocumentEntry, PositionAdvance

from ._index import PgvectorIndex

__all__ = ["DocumentEntry", "PgvectorIndex", "PositionAdvance", "StalePositionError"]
