"""What the Kafka tests share: producing keyed documents in each format, a from-scratch build of the latest
value per key to compare an index with, and a store over a Kafka source."""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Mapping
from typing import Any, Literal

from ragflow.connectors.kafka import KafkaSource, document_path
from ragflow.sources import ChangeKind, DocumentChange, EmitChanges
from ragflow.store import DocumentStore
from tests.fakes.hashing_embedder import HashingEmbedder
from tests.servers.kafka import CONSUMER_SETTINGS, KafkaBroker
from tests.test_store import index_contents, paragraph

Format = Literal["raw", "json", "debezium"]
FORMATS: tuple[Format, ...] = ("raw", "json", "debezium")
Ops = list[tuple[str, str | None]]
"""(key, text) in order; text ``None`` deletes the key."""


def encode(fmt: Format, key: str, text: str | None, rng: random.Random | None = None) -> tuple[bytes, Any]:
    """The Kafka key and value that put ``text`` as document ``key`` (``None``: delete it) in ``fmt``;
    deletes and Debezium envelopes vary in form with ``rng``."""
    pick = (rng or random.Random(0)).random()
    if fmt == "raw":
        return key.encode(), None if text is None else text.encode()
    if fmt == "json":
        if text is None:
            return key.encode(), None if pick < 0.5 else json.dumps({"id": key, "op": "delete"}).encode()
        return key.encode(), json.dumps({"id": key, "text": text, "metadata": {"n": len(text)}}).encode()
    row_key = json.dumps({"id": key}).encode()
    if text is None:
        if pick < 0.3:
            return row_key, None  # the tombstone Debezium sends after a delete
        event: dict[str, Any] = {"op": "d", "before": {"id": key, "text": "old"}, "after": None}
    else:
        event = {"op": "u" if pick < 0.5 else "c", "before": None, "after": {"id": key, "text": text}}
    wrapped = {"schema": {"type": "struct"}, "payload": event} if pick >= 0.6 else event
    return row_key, json.dumps(wrapped).encode()


def produce(broker_producer: Any, topic: str, fmt: Format, ops: Ops, seed: int) -> None:
    """Send ``ops`` (key, text or ``None`` to delete) in order and wait until the broker has them all."""
    rng = random.Random(seed)
    for key, text in ops:
        k, v = encode(fmt, key, text, rng)
        broker_producer.produce(topic, value=v, key=k)
    broker_producer.flush(30)


def latest(ops: Ops, into: dict[str, str] | None = None) -> dict[str, str]:
    """The latest text per key after ``ops`` (deleted keys absent)."""
    state = dict(into or {})
    for key, text in ops:
        if text is None:
            state.pop(key, None)
        else:
            state[key] = text
    return state


class _Documents:
    """A source that emits given documents once: the from-scratch reference."""

    def __init__(self, changes: list[DocumentChange]) -> None:
        self.name, self.changes = "reference", changes

    def run(self, emit: EmitChanges, stop: threading.Event, mode: str, position: Any = None) -> None:
        emit(self.changes, snapshot_done=True)


def from_scratch(topic: str, documents: Mapping[str, str]) -> list[tuple[Any, ...]]:
    """The index contents a store built from nothing but ``documents`` (key -> text) holds."""
    changes = [
        DocumentChange(
            document_path(topic, key), ChangeKind.UPSERT, text.encode(), {"path": document_path(topic, key)}
        )
        for key, text in sorted(documents.items())
    ]
    store = DocumentStore(_Documents(changes), embedder=HashingEmbedder())
    store.run_static()
    return index_contents(store)


def kafka_source(broker: KafkaBroker, topic: str, **options: Any) -> KafkaSource:
    consumer = {**CONSUMER_SETTINGS, **options.pop("consumer", {})}
    options.setdefault("group_id", f"g-{topic}")
    options.setdefault("commit_interval", 0.5)
    return KafkaSource(topic, bootstrap_servers=broker.bootstrap, consumer=consumer, **options)


def store_over(source: KafkaSource, **options: Any) -> DocumentStore:
    return DocumentStore(source, embedder=HashingEmbedder(), **options)


def random_ops(rng: random.Random, keys: list[str], count: int) -> Ops:
    return [
        (rng.choice(keys), None if rng.random() < 0.25 else paragraph(rng, rng.randint(3, 60)))
        for _ in range(count)
    ]
