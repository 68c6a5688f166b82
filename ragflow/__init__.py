"""ragflow: keep a vector index continuously in sync with documents in folders, S3 and Kafka."""

from __future__ import annotations

from .documents import Chunk, Hit, TextUnit, VectorRecord
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
from .retrieval import CrossEncoderReranker, RetrievalSettings
from .sources import (
    ChangeKind,
    DocumentChange,
    DocumentSource,
    Notifications,
    SourceRun,
    SyncLoop,
    Wake,
    deletion,
    diff_listing,
)
from .store import DocumentError, DocumentStatus, DocumentStore, Progress, StoreUpdate, UpdateStream

__all__ = [
    "ChangeKind",
    "Chunk",
    "ConfigError",
    "CrossEncoderReranker",
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
    "Notifications",
    "ParseError",
    "Progress",
    "RagflowError",
    "RetrievalSettings",
    "SchemaError",
    "SourceError",
    "SourceRun",
    "StoreUpdate",
    "SyncLoop",
    "TextUnit",
    "UpdateStream",
    "VectorRecord",
    "Wake",
    "deletion",
    "diff_listing",
]
__version__ = "0.1.0"
