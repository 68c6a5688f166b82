"""One run of a ``KafkaSource``: a consumer in the source's group, seeking every assigned partition to the
offset the checkpoint saved, turning each batch of messages into one atomic group of changes, making the
emitted offsets durable before it lets a partition go, and reporting health and lag.

A member's index holds the documents of exactly the partitions it is assigned: on every assignment, the
documents of partitions it held and no longer owns are retracted (one atomic group) and their offsets
forgotten, so no member serves a stale copy of a document that another member now keeps up to date.

Where an assigned partition starts: the offset this state saved for it (the source of truth: the index
holds the partition's documents up to there); else ``start`` — with ``earliest`` (the default) the whole
partition is read, so the member's index gets every document of it; with ``latest`` or a time, a partition
new to a state that has run before starts at the group's committed offset, which the previous owner wrote
only once its checkpoint held everything before it (a hand-over).
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import threading
import time
from typing import TYPE_CHECKING, Any, Literal

from ragflow.errors import ConfigError, SourceError
from ragflow.sources import STOP_CHECK_S, DocumentChange, EmitChanges, SourceRun, Wake, deletion

from .formats import Message, decode
from .offsets import BEGINNING, Offsets, as_position, read_position

if TYPE_CHECKING:
    from .source import KafkaSource

__all__ = ["KafkaRun"]

log = logging.getLogger("ragflow.connectors.kafka")

_BATCH = 1000
"""Messages per ``consume`` call: one emit (one atomic group) at most."""
_LAG_EVERY_S = 1.0
_PROBE_EVERY_S = 2.0
_CHECKPOINT_TIMEOUT_S = 120.0
"""How long a revoke (or the end of a run) waits for the emitted changes to be checkpointed."""
_DEFAULTS: dict[str, Any] = {
    # low latency on an idle topic (a broker that does not wake a waiting fetch on new data answers only
    # after this); under load fetches fill before it anyway
    "fetch.wait.max.ms": 10,
    "reconnect.backoff.ms": 100,
    "reconnect.backoff.max.ms": 5000,
    "auto.offset.reset": "earliest",
}
_PRODUCER_PREFIXES = ("security.", "sasl.", "ssl.", "client.", "socket.", "broker.")


class KafkaRun(SourceRun[None]):
    """A consumer loop on ``SourceRun``: every wake (the loop polls continuously) consumes one batch."""

    def __init__(self, source: KafkaSource, emit: EmitChanges, stop: threading.Event) -> None:
        super().__init__(emit, stop, poll_interval=0.0)
        self.source = source
        self.status = source.status
        self.offsets: Offsets = {}
        """The next offset per partition, as emitted."""
        self.assigned: set[tuple[str, int]] = set()
        self.at_end: set[tuple[str, int]] = set()
        """Assigned partitions read to their end (an EOF event, no message since)."""
        self.assignment_seen = False
        self.fresh = True
        """No saved position: the first assignment starts from ``start`` (a rebuild), not the group's."""
        self.by_time: set[tuple[str, int]] = set()
        """Partitions started by timestamp that gave no message at or after it yet."""
        self.emitted: Offsets = {}
        """The offsets of the last emit (replaced, never changed in place: the committer thread reads it)."""
        self.durable: Offsets = {}
        """Offsets known to be checkpointed (committed to the group on the next round)."""
        self.committed: Offsets = {}
        self.consumer: Any = None
        self.producer: Any = None
        self.closing = False
        self._next_lag = 0.0
        self._next_probe = 0.0
        self._next_commit = 0.0
        self._committer: threading.Thread | None = None
        self._committer_stop = threading.Event()

    # -- SourceRun ------------------------------------------------------------------------------

    def start(self, mode: Literal["static", "streaming"], position: Any) -> None:
        from confluent_kafka import Consumer, KafkaException

        saved = read_position(position, self.source.name)
        self.fresh = saved is None
        self.offsets = dict(saved or {})
        self.emitted = dict(self.offsets)
        self.durable = dict(self.offsets)
        settings = {
            **_DEFAULTS,
            **self.source.consumer,
            "bootstrap.servers": self.source.bootstrap_servers,
            "group.id": self.source.group_id,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "enable.partition.eof": True,
            "error_cb": self._on_error,
        }
        try:
            self.consumer = Consumer(settings)
        except KafkaException as exc:
            raise ConfigError(f"source {self.source.name!r}: bad consumer settings: {exc}") from None
        self.consumer.subscribe(
            self.source.topics, on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost
        )
        self._probe(time.monotonic())
        if mode == "streaming":
            self._committer = threading.Thread(
                target=self._commit_loop, name=f"kafka-commit-{self.source.name}", daemon=True
            )
            self._committer.start()

    def snapshot(self) -> list[DocumentChange] | None:
        """Read every assigned partition to its end (the state when the run started), then say done."""
        while not self._stop.is_set():
            self._consume_batch()
            if self.assignment_seen and self.at_end >= self.assigned:
                return []
        return None

    def sync(self, wake: Wake[None]) -> None:
        self._consume_batch()

    def close(self) -> None:
        self._committer_stop.set()
        if self._committer is not None:
            self._committer.join(timeout=_CHECKPOINT_TIMEOUT_S)
        if self.consumer is None:
            return
        try:
            self._hand_over(self.assigned)
        finally:
            self.closing = True
            self.consumer.close()  # leaves the group; the revoke it triggers has nothing left to do
            if self.producer is not None:
                self.producer.flush(10)

    # -- consuming ------------------------------------------------------------------------------

    def _consume_batch(self) -> None:
        from confluent_kafka import KafkaError

        messages = self.consumer.consume(_BATCH, STOP_CHECK_S)
        now = time.monotonic()
        changes: dict[str, DocumentChange] = {}
        per_topic: collections.Counter[str] = collections.Counter()  # counted once per batch: cheaper
        for raw in messages:
            error = raw.error()
            place = (raw.topic(), raw.partition())
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    if place in self.assigned:
                        self.at_end.add(place)
                    self.status.healthy()
                else:
                    self._on_error(error)
                continue
            if place not in self.assigned:
                continue  # fetched before its partition was revoked: the new owner reads it
            self.at_end.discard(place)
            message = Message.of(raw)
            if place in self.by_time:
                start = self.source.start.timestamp_millis or 0
                if (message.timestamp_millis or 0) < start:
                    continue
                self.by_time.discard(place)
            self.offsets[place] = message.offset + 1
            decoded = decode(message, self.source.decode_options)
            per_topic[message.topic] += 1
            if decoded.poison is not None:
                self._poisoned(message, decoded.poison)
            changes.pop(decoded.change.doc_id, None)  # a newer message for a document replaces the older
            changes[decoded.change.doc_id] = decoded.change
        for topic, count in per_topic.items():
            self.status.count("messages", count, topic=topic)
        if messages:
            self.status.healthy()
        if changes:
            group = list(changes.values())
            group[-1] = dataclasses.replace(group[-1], position=as_position(self.offsets))
            self.emit(group)
            self.emitted = dict(self.offsets)
        self._housekeeping(now)

    def _poisoned(self, message: Message, reason: str) -> None:
        log.warning("source %r: %s", self.source.name, reason)
        self.status.count("poison_messages", topic=message.topic)
        topic = self.source.dead_letter_topic
        if topic is None:
            return
        headers = [
            *message.headers,
            ("ragflow-error", reason.encode()),
            ("ragflow-source-topic", message.topic.encode()),
            ("ragflow-source-partition", str(message.partition).encode()),
            ("ragflow-source-offset", str(message.offset).encode()),
        ]
        try:
            self._dead_letter_producer().produce(topic, message.value, message.key, headers=headers)
            self.producer.poll(0)
            self.status.count("dead_letters", topic=message.topic)
        except Exception as exc:  # the document's error stands; the copy is best effort
            log.error("source %r: could not copy %s to %r: %s", self.source.name, message.where, topic, exc)

    def _dead_letter_producer(self) -> Any:
        if self.producer is None:
            from confluent_kafka import Producer

            passed = {k: v for k, v in self.source.consumer.items() if k.startswith(_PRODUCER_PREFIXES)}
            self.producer = Producer(
                {**passed, "bootstrap.servers": self.source.bootstrap_servers, "linger.ms": 5}
            )
        return self.producer

    # -- assignment -----------------------------------------------------------------------------

    def _on_assign(self, consumer: Any, partitions: list[Any]) -> None:
        from confluent_kafka import OFFSET_BEGINNING, OFFSET_END

        places = [(tp.topic, tp.partition) for tp in partitions]
        self._let_go(keep=set(places))
        start = self.source.start
        # with ``earliest`` a partition new to this index is read whole; else the previous owner's
        # committed offset is where it stopped (a fresh state starts at ``start``: a rebuild)
        handover = (not self.fresh or self.assignment_seen) and start.where != "earliest"
        new = [tp for tp, place in zip(partitions, places, strict=True) if place not in self.offsets]
        committed = {}
        if handover and new:
            try:
                committed = {
                    (tp.topic, tp.partition): tp.offset
                    for tp in consumer.committed(new, timeout=10)
                    if tp.offset >= 0
                }
            except Exception as exc:
                log.warning("source %r: could not read the group's offsets: %s", self.source.name, exc)
        by_time = []
        for tp, place in zip(partitions, places, strict=True):
            if place in self.offsets:
                saved = self.offsets[place]
                tp.offset = OFFSET_BEGINNING if saved == BEGINNING else saved
            elif place in committed:
                tp.offset = self.offsets[place] = committed[place]
            elif start.where == "earliest":
                tp.offset = OFFSET_BEGINNING
                self.offsets[place] = BEGINNING
            elif start.where == "latest":
                tp.offset = OFFSET_END
            else:
                tp.offset = start.timestamp_millis
                by_time.append(tp)
                self.by_time.add(place)
        if by_time:
            # the broker's answer is only where to begin reading: messages before ``start`` are skipped
            found = {(t.topic, t.partition): t.offset for t in consumer.offsets_for_times(by_time, 10)}
            for tp in by_time:
                tp.offset = found.get((tp.topic, tp.partition), OFFSET_BEGINNING)
                if tp.offset < 0:
                    tp.offset = OFFSET_END if tp.offset == OFFSET_END else OFFSET_BEGINNING
        consumer.assign(partitions)
        self.assigned = set(places)
        self.at_end = set()
        self.assignment_seen = True
        self.status.count("rebalances")
        self.status.gauge("assigned_partitions", len(places))
        for topic, partition in places:
            self.status.gauge("partition_assigned", 1, topic=topic, partition=str(partition))
        log.info("source %r: assigned %s", self.source.name, _names(places))

    def _on_revoke(self, consumer: Any, partitions: list[Any]) -> None:
        # the documents stay until the next assignment says which partitions went elsewhere: the eager
        # protocol revokes every partition at every rebalance, and most come back
        places = {(tp.topic, tp.partition) for tp in partitions}
        self._unassigned(places)
        if not self.closing:
            self._hand_over(places)

    def _on_lost(self, consumer: Any, partitions: list[Any]) -> None:
        # another member may own them already: nothing may be committed for them
        places = {(tp.topic, tp.partition) for tp in partitions}
        self._unassigned(places)
        log.warning("source %r: lost %s (session timed out)", self.source.name, _names(places))

    def _unassigned(self, places: set[tuple[str, int]]) -> None:
        self.assigned -= places
        self.at_end -= places
        for topic, partition in places:
            self.status.gauge("consumer_lag", 0, topic=topic, partition=str(partition))
            self.status.gauge("partition_assigned", 0, topic=topic, partition=str(partition))

    def _let_go(self, keep: set[tuple[str, int]]) -> None:
        """Retract the documents of every partition outside ``keep`` (one atomic group) and forget their
        offsets, so that the index holds exactly the documents of the partitions this member owns, and a
        partition that comes back is read again from ``start``. The retraction carries the position
        without those offsets: a restart resumes from a consistent cut either way (before it, the next
        assignment retracts them again)."""
        held = self.source.held_documents() if self.source.held_documents is not None else {}
        retract: dict[str, tuple[str, int]] = {}
        for doc_id, metadata in held.items():
            place = _place(metadata)
            if place is not None and place not in keep:
                retract[doc_id] = place
        gone = {p for p in self.offsets if p not in keep} | set(retract.values())
        if not gone:
            return
        for place in gone:
            self.offsets.pop(place, None)
            self.by_time.discard(place)
        self.durable = {p: o for p, o in self.durable.items() if p in self.offsets}
        if retract:
            seen_ns = time.time_ns()
            changes = [
                deletion(doc_id, str(held[doc_id].get("path", doc_id)), seen_ns) for doc_id in sorted(retract)
            ]
            changes[-1] = dataclasses.replace(changes[-1], position=as_position(self.offsets))
            self.emit(changes)
            self.emitted = dict(self.offsets)
            self.status.count("retracted_documents", len(retract))
        log.info(
            "source %r: %s now belong to other members; retracted their %d document(s) from this index",
            self.source.name,
            _names(gone),
            len(retract),
        )

    def _hand_over(self, places: set[tuple[str, int]]) -> None:
        """Make what was emitted from ``places`` durable, then commit it to the group, so that the next
        owner starts right after it: nothing lost, nothing read twice."""
        if not places:
            return
        emitted = dict(self.offsets)
        wait = self.source.wait_checkpointed
        if wait is not None and not wait(_CHECKPOINT_TIMEOUT_S):
            log.warning(
                "source %r: the changes from %s were not checkpointed in time; their offsets are not "
                "committed, so the next owner reads again from the last commit",
                self.source.name,
                _names(places),
            )
            return
        self.durable.update(emitted)
        self._commit({p: o for p, o in emitted.items() if p in places}, asynchronous=False)

    # -- commits, lag, health -------------------------------------------------------------------

    def _commit_loop(self) -> None:
        """Every ``commit_interval``: wait for what was emitted until now to be checkpointed, and mark it
        durable; the consumer thread commits it (a consumer is used from one thread)."""
        while not self._committer_stop.wait(self.source.commit_interval):
            emitted = self.emitted
            wait = self.source.wait_checkpointed
            if wait is None or wait(_CHECKPOINT_TIMEOUT_S):
                self.durable = {**self.durable, **emitted}

    def _housekeeping(self, now: float) -> None:
        if now >= self._next_commit:
            self._next_commit = now + self.source.commit_interval / 2
            durable = self.durable
            self._commit({p: o for p, o in durable.items() if p in self.assigned}, asynchronous=True)
        if now >= self._next_lag:
            self._next_lag = now + _LAG_EVERY_S
            self._resolve_offsets()
            self._report_lag()
        if not self.status.health.healthy and now >= self._next_probe:
            self._probe(now)

    def _commit(self, offsets: Offsets, asynchronous: bool) -> None:
        from confluent_kafka import TopicPartition

        due = {p: o for p, o in offsets.items() if o >= 0 and self.committed.get(p) != o}
        if not due:
            return
        try:
            self.consumer.commit(
                offsets=[TopicPartition(t, p, o) for (t, p), o in due.items()], asynchronous=asynchronous
            )
            self.committed.update(due)
            self.status.count("commits")
        except Exception as exc:  # monitoring and hand-over only: the checkpoint holds the truth
            log.warning("source %r: committing offsets to the group failed: %s", self.source.name, exc)

    def _resolve_offsets(self) -> None:
        """Record where partitions started at ``latest`` stand, once the consumer knows (so a restart
        before their first message does not skip what came meanwhile)."""
        from confluent_kafka import TopicPartition

        unknown = [p for p in self.assigned if p not in self.offsets and p not in self.by_time]
        if not unknown:
            return
        try:
            found = self.consumer.position([TopicPartition(t, p) for t, p in unknown])
        except Exception:
            return
        for tp in found:
            if tp.offset >= 0 and (tp.topic, tp.partition) not in self.offsets:
                self.offsets[(tp.topic, tp.partition)] = tp.offset

    def _report_lag(self) -> None:
        from confluent_kafka import TopicPartition

        for topic, partition in sorted(self.assigned):
            try:
                _, high = self.consumer.get_watermark_offsets(TopicPartition(topic, partition), cached=True)
            except Exception:
                continue
            offset = self.offsets.get((topic, partition))
            if high is None or high < 0 or offset is None:
                continue
            lag = high if offset == BEGINNING else max(0, high - offset)
            self.status.gauge("consumer_lag", lag, topic=topic, partition=str(partition))

    def _probe(self, now: float) -> None:
        """Ask the brokers for the topics' metadata: healthy when they answer and every topic exists."""
        self._next_probe = now + _PROBE_EVERY_S
        try:
            metadata = self.consumer.list_topics(timeout=0.5)
        except Exception as exc:
            self.status.unhealthy(self._unreachable(str(exc)))
            return
        missing = [t for t in self.source.topics if t not in metadata.topics or metadata.topics[t].error]
        if missing:
            self.status.unhealthy(f"topic(s) {missing} do not exist on {self.source.bootstrap_servers}")
        else:
            self.status.healthy()

    def _on_error(self, error: Any) -> None:
        """librdkafka's client-level errors (it retries connections by itself, with backoff)."""
        from confluent_kafka import KafkaError

        code = error.code()
        if code in (KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT, KafkaError._RESOLVE):
            self.status.unhealthy(self._unreachable(error.str()))
            self._next_probe = time.monotonic() + _PROBE_EVERY_S
        elif code in (KafkaError._AUTHENTICATION, KafkaError._SSL):
            self.status.unhealthy(
                f"cannot authenticate with {self.source.bootstrap_servers}: {error.str()}; check the "
                "security settings under 'consumer'"
            )
        elif error.fatal():
            raise SourceError(f"source {self.source.name!r}: fatal Kafka error: {error.str()}")
        else:
            log.warning("source %r: %s", self.source.name, error.str())

    def _unreachable(self, detail: str) -> str:
        return (
            f"cannot reach the Kafka brokers {self.source.bootstrap_servers} ({detail}); retrying with "
            "backoff"
        )


def _place(metadata: Any) -> tuple[str, int] | None:
    """The ``(topic, partition)`` a held document was read from; ``None`` if its metadata does not say."""
    try:
        return str(metadata["topic"]), int(metadata["partition"])
    except (KeyError, TypeError, ValueError):
        return None


def _names(places: set[tuple[str, int]] | list[tuple[str, int]]) -> str:
    return ", ".join(f"{t}[{p}]" for t, p in sorted(places)) or "nothing"
