"""``ragflow worker``: one of N indexer processes in a Kafka consumer group, each parsing, splitting and
embedding the documents of the partitions it is assigned and applying them to a shared pgvector index,
one transaction per batch together with the partitions' offsets (exactly-once into PostgreSQL).

It sees the source as a ``ConsumerGroupSource`` and the index as a ``SharedIndex``: both are built from
the configuration by their entry point names (``kafka``, ``pgvector``), never imported."""

from __future__ import annotations

import argparse
import collections
import logging
import signal
import threading
import time
from collections.abc import Sequence
from types import FrameType
from typing import Any

import numpy as np
import numpy.typing as npt

from ragflow.cli._config_options import add_config_arguments, config_from
from ragflow.cli._errors import EXIT_OK
from ragflow.cli._output import add_log_level_argument, configure_logging, say
from ragflow.documents import Embedder, Parser, Splitter, VectorRecord
from ragflow.errors import ConfigError, IndexStoreError, StalePositionError
from ragflow.pipeline import document_chunks
from ragflow.shared_index import DocumentEntry, PositionAdvance, SharedIndex
from ragflow.sources import ChangeKind, ConsumerGroupSource, DocumentChange

log = logging.getLogger("ragflow.worker")

HELP = "index a Kafka topic into a shared pgvector index, as one of N workers in a consumer group"
DESCRIPTION = (
    "Consume the configured kafka source's topics in its consumer group (start as many workers as you "
    "like, on any machines: Kafka shares the partitions among them), parse, split and embed each "
    "document, and apply each batch to the configured pgvector index in one transaction together with "
    "the partitions' offsets. Offsets are read from PostgreSQL, never from the group: a rebalance or a "
    "crash neither loses nor repeats a change. Query the index with 'ragflow serve --index pgvector'. "
    "SIGTERM or Ctrl-C stops it after the batch in progress."
)

_CACHE_ENTRIES = 100_000
"""Chunk vectors a worker keeps in memory (its own embedding cache)."""
_RETRY_S = (0.5, 1.0, 2.0, 5.0)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``worker``'s options."""
    add_config_arguments(parser)
    parser.add_argument(
        "--batch", type=int, default=500, help="most messages applied in one transaction (default 500)"
    )
    add_log_level_argument(parser)


def run(args: argparse.Namespace) -> int:
    """Run ``ragflow worker`` until SIGTERM or Ctrl-C and return its exit code."""
    configure_logging(args.log_level)
    config = config_from(args)
    if args.batch < 1:
        raise ConfigError(f"--batch must be at least 1, got {args.batch}")
    kinds = [section.kind for section in config.sources]
    if kinds != ["kafka"]:
        raise ConfigError(
            f"ragflow worker reads exactly one source of kind kafka; the configuration has {kinds}"
        )
    if config.index.kind != "pgvector":
        raise ConfigError(
            f"ragflow worker writes to a shared index of kind pgvector; the configuration's is "
            f"{config.index.kind!r} (index: {{kind: pgvector, dsn: ..., table: ...}})"
        )
    (source,) = config.build_sources()
    if not isinstance(source, ConsumerGroupSource):
        raise ConfigError(f"source {source.name!r} cannot be consumed by a group of workers")
    embedder = config.build_embedder()
    index = config.build_index(embedder.dim)
    if not isinstance(index, SharedIndex):
        raise ConfigError(f"index kind {config.index.kind!r} cannot be shared by several workers")
    worker = IndexWorker(
        source, index, config.build_parser(), config.build_splitter(embedder), embedder, batch=args.batch
    )
    stop = threading.Event()

    def interrupt(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        say(f"worker: group {source.group_id!r}, topics {', '.join(source.topics)} -> {worker.index.table}")
        worker.run(stop)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
    say(f"stopped after {worker.applied_messages} messages in {worker.transactions} transactions")
    return EXIT_OK


class IndexWorker:
    """The consumer loop of one worker: ``source`` gives the topics, group, consumer settings and message
    format (the ``kafka`` source is one); ``index`` takes each batch with its offsets (``pgvector``)."""

    def __init__(
        self,
        source: ConsumerGroupSource,
        index: SharedIndex,
        parser: Parser,
        splitter: Splitter,
        embedder: Embedder,
        *,
        batch: int = 500,
    ) -> None:
        self.source, self.index = source, index
        self.parser, self.splitter, self.embedder = parser, splitter, embedder
        self.batch = batch
        self.expected: dict[tuple[str, int], int | None] = {}
        """Assigned partitions and the offset PostgreSQL holds for each (``None``: none yet)."""
        self.cache: collections.OrderedDict[str, npt.NDArray[np.float32]] = collections.OrderedDict()
        self.applied_messages = 0
        self.transactions = 0
        self.consumer: Any = None
        self.stopping = threading.Event()
        """``run``'s ``stop``: ends a wait for the database."""

    def run(self, stop: threading.Event) -> None:
        """Consume and apply until ``stop`` is set."""
        self.stopping = stop
        from confluent_kafka import Consumer

        settings = {
            "fetch.wait.max.ms": 10,
            "auto.offset.reset": "earliest",
            **self.source.consumer,
            "bootstrap.servers": self.source.bootstrap_servers,
            "group.id": self.source.group_id,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
        }
        self.consumer = Consumer(settings)
        self.consumer.subscribe(self.source.topics, on_assign=self._on_assign, on_revoke=self._on_revoke)
        try:
            while not stop.is_set():
                # wait for one message, then take whatever else is already fetched, up to the batch: a
                # lone change is applied at once and a backlog in large batches (no fixed wait on the
                # hot path; consume(n, timeout) would hold a lone message until the timeout)
                first = self.consumer.poll(0.2)
                if first is None:
                    continue
                more = self.consumer.consume(self.batch - 1, 0) if self.batch > 1 else []
                self._apply([first, *more], stop)
        finally:
            self.consumer.close()
            self.index.close()

    # -- assignments ----------------------------------------------------------------------------

    def _on_assign(self, consumer: Any, partitions: list[Any]) -> None:
        from confluent_kafka import OFFSET_BEGINNING

        saved = self._positions()
        for tp in partitions:
            offset = saved.get((tp.topic, tp.partition))
            self.expected[(tp.topic, tp.partition)] = offset
            tp.offset = OFFSET_BEGINNING if offset is None else offset
        consumer.assign(partitions)
        log.info("assigned %s", sorted(f"{tp.topic}[{tp.partition}]@{tp.offset}" for tp in partitions))

    def _on_revoke(self, consumer: Any, partitions: list[Any]) -> None:
        for tp in partitions:
            self.expected.pop((tp.topic, tp.partition), None)
        log.info("revoked %s", sorted(f"{tp.topic}[{tp.partition}]" for tp in partitions))

    def _positions(self) -> dict[tuple[str, int], int]:
        """The offsets PostgreSQL holds, waited for while it is unreachable (nothing can be applied without
        them): retried on the schedule, then every last pause, until it answers or the worker stops."""
        attempt = 0
        while True:
            try:
                positions: dict[tuple[str, int], int] = self.index.positions(
                    self.source.group_id, self.source.topics
                )
                return positions
            except IndexStoreError as exc:
                if self.stopping.is_set():
                    raise
                pause = _RETRY_S[min(attempt, len(_RETRY_S) - 1)]
                attempt += 1
                log.warning("cannot read positions (retrying in %.1f s): %s", pause, exc)
                self.stopping.wait(pause)

    def _rewind(self, places: Sequence[tuple[str, int]]) -> None:
        """Seek ``places`` back to the offsets PostgreSQL holds (after a failed or refused commit)."""
        from confluent_kafka import OFFSET_BEGINNING, TopicPartition

        saved = self._positions()
        for place in places:
            if place in self.expected:
                offset = saved.get(place)
                self.expected[place] = offset
                self.consumer.seek(TopicPartition(*place, OFFSET_BEGINNING if offset is None else offset))

    # -- one batch ------------------------------------------------------------------------------

    def _apply(self, raw_messages: list[Any], stop: threading.Event) -> None:
        changes: dict[str, DocumentChange] = {}
        ends: dict[tuple[str, int], int] = {}
        for raw in raw_messages:
            place = (raw.topic(), raw.partition())
            if raw.error() is not None or place not in self.expected:
                continue  # an error event, or fetched before its partition was revoked
            change = self.source.change_of(raw)
            changes.pop(change.doc_id, None)  # the newest message of a document wins
            changes[change.doc_id] = change
            ends[place] = raw.offset() + 1
        if not ends:
            return
        try:
            records, documents = self._index_changes(list(changes.values()))
        except IndexStoreError as exc:  # reading the stored vectors failed: the database is away
            log.warning("batch not indexed (%s); resuming from the stored offsets", exc)
            self._rewind(list(ends))
            return
        for attempt, pause in enumerate((*_RETRY_S, None)):
            advances = [
                PositionAdvance(
                    self.source.group_id, topic, partition, self.expected[(topic, partition)], end
                )
                for place, end in ends.items()
                if place in self.expected
                for topic, partition in [place]
            ]
            try:
                self.index.commit(records, documents=documents, positions=advances)
            except IndexStoreError as exc:
                stale = isinstance(exc, StalePositionError)
                if stale or pause is None or stop.is_set():
                    # another worker owns those partitions now, or the database stays down: read again
                    # from what PostgreSQL holds
                    log.warning("batch not applied (%s); resuming from the stored offsets", exc)
                    self._rewind(list(ends))
                    return
                log.warning("commit failed (attempt %d, retrying in %.1f s): %s", attempt + 1, pause, exc)
                time.sleep(pause)
                continue
            for advance in advances:
                self.expected[(advance.topic, advance.partition)] = advance.next_offset
            self.applied_messages += len(raw_messages)
            self.transactions += 1
            return

    def _index_changes(
        self, changes: list[DocumentChange]
    ) -> tuple[list[VectorRecord], dict[str, DocumentEntry | None]]:
        """The chunk records and document entries of a batch's changes (the newest per document)."""
        documents: dict[str, DocumentEntry | None] = {}
        chunks = []
        for change in changes:
            if change.kind is ChangeKind.DELETE:
                documents[change.doc_id] = None
                continue
            row, outcome, pieces = document_chunks(change, self.source.name, self.parser, self.splitter)
            documents[change.doc_id] = DocumentEntry(change.doc_id, row.metadata, len(pieces), outcome.error)
            chunks += pieces
        vectors = self._vectors([chunk.text for _, chunk in chunks], [d for d in documents if documents[d]])
        records = [
            VectorRecord(key, vectors[chunk.text], chunk.text, chunk.metadata, chunk.extra)
            for key, chunk in chunks
        ]
        return records, documents

    def _vectors(self, texts: list[str], doc_ids: list[str]) -> dict[str, npt.NDArray[np.float32]]:
        """A vector per distinct text: from this worker's cache, from the chunks already stored for the
        documents (embedded by whichever worker), else embedded now."""
        found = {text: self.cache[text] for text in texts if text in self.cache}
        missing = {text for text in texts if text not in found}
        if missing:
            stored = self.index.stored_vectors(doc_ids)
            found.update({text: stored[text] for text in missing if text in stored})
        todo = sorted({text for text in texts if text not in found})
        if todo:
            for text, vector in zip(todo, self.embedder.embed(todo), strict=True):
                found[text] = np.asarray(vector, np.float32)
        for text, vector in found.items():
            self.cache[text] = vector
            self.cache.move_to_end(text)
        while len(self.cache) > _CACHE_ENTRIES:
            self.cache.popitem(last=False)
        return found
