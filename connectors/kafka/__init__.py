"""The Kafka source: documents from topics (``raw``, ``json`` or ``debezium`` messages), deleted by
tombstones, with per-partition offsets checkpointed together with the index (exactly-once into it).

Modules, one job each: ``source`` (``KafkaSource``, the options), ``consume`` (one run: the consumer,
assignments and hand-overs, commits, lag and health), ``formats`` (a message as a document change) and
``offsets`` (the position, ``start``)."""

from __future__ import annotations

from .formats import FORMATS, Message, MessageFormat, decode, document_path
from .source import KafkaSource

__all__ = ["FORMATS", "KafkaSource", "Message", "MessageFormat", "decode", "document_path"]
