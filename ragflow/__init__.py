"""ragflow: keep a vector index continuously in sync with documents in folders, S3 and Kafka."""

from __future__ import annotations

from .documents import ChangeKind, Chunk, DocumentChange, DocumentSource, Hit, TextUnit, VectorRecord
from .errors import (
    ConfigError,
    EmbedError,
    EngineError,
    FilterError,
    IndexStoreError,
    ParseError,
    RagflowError,
    SchemaError,
    SourceError,
)
from .store import DocumentError, DocumentStatus, DocumentStore, Progress

__all__ = [
    "ChangeKind",
    "Chunk",
    "ConfigError",
    "DocumentChange",
    "DocumentError",
    "DocumentSource",
    "DocumentStatus",
    "DocumentStore",
    "EmbedError",
    "EngineError",
    "FilterError",
    "Hit",
    "IndexStoreError",
    "ParseError",
    "Progress",
    "RagflowError",
    "SchemaError",
    "SourceError",
    "TextUnit",
    "VectorRecord",
]
__version__ = "0.1.0"
