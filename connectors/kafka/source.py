"""The Kafka source's public face: ``KafkaSource``, its options and their checks. The work of one run lives
in ``consume`` (and what it draws on: ``formats``, ``offsets``)."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from ragflow.errors import ConfigError
from ragflow.sources import CheckpointWait, DocumentChange, EmitChanges, HeldDocuments, SourceStatus

from .formats import FORMATS, DecodeOptions, Message, MessageFormat, decode
from .offsets import StartAt, parse_start

__all__ = ["KafkaSource"]

# Settings the source owns: the group commit is not the source of truth, and offsets are stored by the
# source itself after each checkpoint.
_OWNED_SETTINGS = frozenset(
    {"enable.auto.commit", "enable.auto.offset.store", "group.id", "bootstrap.servers"}
)


class KafkaSource:
    """Documents from Kafka topics: each message is the whole new version of the document its key (or
    its envelope) names, and a tombstone (or a delete event) removes it.

    Args:
        topics: One topic or a list of topics.
        bootstrap_servers: The brokers, ``host:port[,host:port...]``.
        group_id: The consumer group; members of one group share the topics' partitions. Default
            ``ragflow-<name>``.
        format: ``raw`` (the key is the document id, the value its bytes, parsed like a file), ``json``
            (``{"id"?, "text" | "data_base64", "metadata"?, "op"?}``) or ``debezium`` (CDC events of a
            table of documents).
        start: Where a partition starts when neither the state nor the group has an offset for it:
            ``earliest`` (default), ``latest``, a Unix time in milliseconds or an ISO 8601 time.
        consumer: librdkafka settings passed through (SASL, TLS, timeouts...); the dead-letter producer
            gets its ``security.*``, ``sasl.*``, ``ssl.*`` and ``client.*`` ones.
        max_message_bytes: A larger value is a poison message (a document with an error).
        dead_letter_topic: Where poison messages are copied (with ``ragflow-error`` and
            ``ragflow-source-*`` headers); ``None``: not copied.
        content_type: ``raw`` only: the documents' MIME type when a message has no ``content-type``
            header (``text/markdown``, ``application/pdf``...).
        id_column: ``debezium`` only: the column holding the document id.
        text_column: ``debezium`` only: the column holding the document text.
        name: The source's name in the pipeline.
        commit_interval: Seconds between commits of checkpointed offsets to the group (for monitoring
            and for handing partitions over to another member).

    Positions: the next offset per topic and partition (``position_scope = "stream"``), saved in the
    same checkpoint as the documents; see docs/sources.md for the delivery guarantees.

    Example:
        >>> source = KafkaSource("docs", bootstrap_servers="127.0.0.1:9092", format="json")
        >>> source.position_scope, source.group_id
        ('stream', 'ragflow-kafka')
    """

    position_scope = "stream"

    def __init__(
        self,
        topics: str | Sequence[str],
        bootstrap_servers: str = "localhost:9092",
        group_id: str | None = None,
        format: Literal["raw", "json", "debezium"] = "raw",
        start: str | int | dt.datetime = "earliest",
        consumer: Mapping[str, Any] | None = None,
        max_message_bytes: int = 10 * 1024 * 1024,
        dead_letter_topic: str | None = None,
        content_type: str | None = None,
        id_column: str = "id",
        text_column: str = "text",
        name: str = "kafka",
        commit_interval: float = 5.0,
    ) -> None:
        self.topics = [topics] if isinstance(topics, str) else list(topics)
        if not self.topics or any(not isinstance(t, str) or not t for t in self.topics):
            raise ConfigError(f"KafkaSource topics must be one or more topic names, got {topics!r}")
        if not bootstrap_servers:
            raise ConfigError("KafkaSource bootstrap_servers must name at least one broker, host:port")
        if format not in FORMATS:
            raise ConfigError(f"KafkaSource format must be one of {', '.join(FORMATS)}, got {format!r}")
        if max_message_bytes <= 0:
            raise ConfigError(f"KafkaSource max_message_bytes must be positive, got {max_message_bytes}")
        if commit_interval <= 0:
            raise ConfigError(f"KafkaSource commit_interval must be positive seconds, got {commit_interval}")
        owned = sorted(_OWNED_SETTINGS & set(consumer or {}))
        if owned:
            raise ConfigError(
                f"KafkaSource consumer settings {owned} are set by the source itself; use the options "
                "bootstrap_servers and group_id, and leave offset commits to the source"
            )
        if dead_letter_topic is not None and dead_letter_topic in self.topics:
            raise ConfigError(f"dead_letter_topic {dead_letter_topic!r} is also a topic the source reads")
        self.name = name
        self.bootstrap_servers = bootstrap_servers
        self.group_id = group_id or f"ragflow-{name}"
        self.format: MessageFormat = format
        self.start: StartAt = parse_start(start)
        self.consumer = dict(consumer or {})
        self.dead_letter_topic = dead_letter_topic
        self.commit_interval = commit_interval
        self.decode_options = DecodeOptions(format, max_message_bytes, content_type, id_column, text_column)
        self.status = SourceStatus()
        """Health (with the reason), message counters and ``consumer_lag`` per partition, for /metrics."""
        self.wait_checkpointed: CheckpointWait | None = None
        """Set by the store (see ``ragflow.sources``): makes everything emitted so far durable."""
        self.held_documents: HeldDocuments | None = None
        """Set by the store: the documents it holds from this source (to retract those of partitions
        that moved to another member)."""

    def run(
        self,
        emit: EmitChanges,
        stop: threading.Event,
        mode: Literal["static", "streaming"],
        position: Any = None,
    ) -> None:
        """Emit every message from ``position`` (``None``: from ``start``) to the end of the assigned
        partitions, then ``snapshot_done``, then, streaming, each new message until ``stop``."""
        from .consume import KafkaRun

        KafkaRun(self, emit, stop).run(mode, position)

    def change_of(self, message: Any) -> DocumentChange:
        """The change a consumed ``confluent_kafka.Message`` stands for, decoded as this source decodes
        its messages (a poison message: an UPSERT with ``error`` set). ``ragflow worker`` consumes with its
        own offsets and decodes through this (``ragflow.sources.ConsumerGroupSource``)."""
        return decode(Message.of(message), self.decode_options).change
