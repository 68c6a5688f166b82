"""Two indexer workers in one consumer group filling one pgvector table from a 4-partition topic, in
process (fast embedder), and a query replica answering from the table: retrieval, statistics and
inputs, edits and deletes included, and a worker taking over a stopped one's partitions."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from tests.fakes.hashing_embedder import HashingEmbedder
from tests.scaleout.helpers import from_scratch, stored, wait_for
from tests.servers.kafka import CONSUMER_SETTINGS, shared_broker
from tests.servers.postgres import PostgresServer, shared_postgres

pytest.importorskip("confluent_kafka")
pytest.importorskip("psycopg")

from ragflow.cli._worker import IndexWorker
from ragflow.connectors.kafka import KafkaSource
from ragflow.indexers.pgvector import PgvectorIndex
from ragflow.parsers import DefaultParser
from ragflow.splitter import TokenSplitter
from ragflow.store.replica import ReplicaStore


def _text(key: str, version: int) -> bytes:
    words = " ".join(f"{key}w{i}v{version}" for i in range(150))
    return f"# {key}\n\n{words}\n\ncommon closing words of {key}\n".encode()


class _Running:
    def __init__(self, worker: IndexWorker) -> None:
        self.worker, self.stop = worker, threading.Event()
        self.thread = threading.Thread(target=worker.run, args=(self.stop,), daemon=True)
        self.thread.start()

    def halt(self) -> None:
        self.stop.set()
        self.thread.join(30)


@pytest.fixture
def setup() -> Iterator[tuple[str, str, str]]:
    broker = shared_broker()
    topic = broker.create_topic(partitions=4)
    table = PostgresServer.table_name("workers")
    yield broker.bootstrap, topic, table
    PgvectorIndex(dim=64, dsn=shared_postgres().dsn, table=table).drop()


def _worker(bootstrap: str, topic: str, table: str) -> IndexWorker:
    embedder = HashingEmbedder()
    source = KafkaSource(topic, bootstrap, group_id=f"g-{table}", consumer=CONSUMER_SETTINGS)
    index = PgvectorIndex(dim=embedder.dim, dsn=shared_postgres().dsn, table=table)
    splitter = TokenSplitter(max_tokens=embedder.max_tokens)
    return IndexWorker(source, index, DefaultParser(), splitter, embedder, batch=50)


def test_workers_fill_one_table_and_a_replica_answers_from_it(setup: tuple[str, str, str]) -> None:
    bootstrap, topic, table = setup
    dsn = shared_postgres().dsn
    producer = shared_broker().producer()
    documents = {f"doc{i}.md": _text(f"doc{i}", 0) for i in range(20)}
    for key, data in documents.items():
        producer.produce(topic, key=key.encode(), value=data)
    producer.flush(10)
    first, second = (_Running(_worker(bootstrap, topic, table)) for _ in range(2))
    try:
        wait_for(lambda: stored(dsn, table)[0] == from_scratch(topic, documents), 60, "the first build")
        # edits and deletes, while both run
        for i in range(0, 20, 3):
            documents[f"doc{i}.md"] = _text(f"doc{i}", 1)
            producer.produce(topic, key=f"doc{i}.md".encode(), value=documents[f"doc{i}.md"])
        for i in (1, 2):
            del documents[f"doc{i}.md"]
            producer.produce(topic, key=f"doc{i}.md".encode(), value=None)
        producer.flush(10)
        wait_for(lambda: stored(dsn, table)[0] == from_scratch(topic, documents), 60, "the edits")
        first.halt()  # the second takes its partitions over, from the offsets in PostgreSQL
        documents["doc4.md"] = _text("doc4", 2)
        documents["late.md"] = _text("late", 0)
        for key in ("doc4.md", "late.md"):
            producer.produce(topic, key=key.encode(), value=documents[key])
        producer.flush(10)
        wait_for(lambda: stored(dsn, table)[0] == from_scratch(topic, documents), 60, "the hand-over")
        chunks, rows = stored(dsn, table)
        assert rows == len(chunks)
        replica_index = PgvectorIndex(dim=64, dsn=dsn, table=table)
        replica = ReplicaStore(replica_index, embedder=HashingEmbedder())
        with replica:
            assert replica.wait_until_fresh(10)
            late = sorted(text for doc_id, _, text in chunks if doc_id.endswith("/late.md"))
            (hit,) = replica.retrieve(late[0], k=1)
            assert (hit.metadata["path"], hit.text) == (f"kafka://{topic}/late.md", late[0])
            assert replica.statistics()["file_count"] == len(documents)
            assert replica.statistics(filepath_globpattern="doc1*.md")["file_count"] == 10
            paths = {entry["path"] for entry in replica.inputs()}
            assert paths == {f"kafka://{topic}/{key}" for key in documents}
            assert not replica.retrieve("doc1w3v0", k=5, metadata_filter="contains(path, 'doc2.md')")
    finally:
        first.halt()
        second.halt()
    assert first.worker.transactions + second.worker.transactions >= 3
