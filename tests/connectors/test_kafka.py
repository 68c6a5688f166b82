"""KafkaSource in a DocumentStore against a real Kafka-protocol broker (tansu): convergence in each format,
restarts from checkpointed offsets, poison messages and the dead-letter topic, health and lag."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ragflow.connectors.kafka import KafkaSource
from ragflow.sources import source_status
from ragflow.store import DocumentStore
from tests.connectors.kafka_helpers import (
    FORMATS,
    Format,
    Ops,
    from_scratch,
    kafka_source,
    latest,
    produce,
    random_ops,
    store_over,
)
from tests.servers.kafka import KafkaBroker, TcpProxy, free_port, shared_broker
from tests.test_store import eventually, index_contents, paragraph

pytestmark = pytest.mark.timeout(240)

KEYS = [f"doc{i}.md" for i in range(10)]


@pytest.fixture(scope="session")
def kafka() -> KafkaBroker:
    """The session's broker (started once, on first use, and stopped by PID at exit)."""
    return shared_broker()


def converged(store: DocumentStore, topic: str, documents: dict[str, str], timeout: float = 20) -> bool:
    expected = from_scratch(topic, documents)
    return eventually(lambda: index_contents(store) == expected, timeout)


@pytest.fixture(scope="module")
def streams(kafka: KafkaBroker) -> Iterator[dict[Format, tuple[str, DocumentStore, dict[str, str]]]]:
    """One running store per format over its own 3-partition topic; the dict is the topic's latest values."""
    running: dict[Format, tuple[str, DocumentStore, dict[str, str]]] = {}
    for fmt in FORMATS:
        topic = kafka.create_topic(partitions=3)
        store = store_over(kafka_source(kafka, topic, format=fmt))
        store.start()
        running[fmt] = (topic, store, {})
    for _, store, _ in running.values():
        assert store.wait_until_fresh(30)
    yield running
    for _, store, _ in running.values():
        store.stop()


op = st.tuples(st.sampled_from(KEYS), st.one_of(st.none(), st.integers(0, 10_000)))


@pytest.mark.parametrize("fmt", FORMATS)
@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
@given(bursts=st.lists(st.lists(op, min_size=1, max_size=25), min_size=1, max_size=3))
def test_random_produce_overwrite_tombstone_converges_to_latest_values(
    kafka: KafkaBroker,
    streams: dict[Format, tuple[str, DocumentStore, dict[str, str]]],
    fmt: Format,
    bursts: list[list[tuple[str, int | None]]],
) -> None:
    topic, store, state = streams[fmt]
    producer = kafka.producer()
    for number, burst in enumerate(bursts):
        ops: Ops = [(k, None if n is None else paragraph(random.Random(n), 5 + n % 70)) for k, n in burst]
        produce(producer, topic, fmt, ops, seed=number)
        after = latest(ops, state)
        state.clear()
        state.update(after)
    assert converged(store, topic, state), f"{fmt}: the index is not the latest value per key"


@pytest.mark.parametrize("fmt", FORMATS)
def test_static_run_from_a_fresh_state_builds_the_latest_values(kafka: KafkaBroker, fmt: Format) -> None:
    topic = kafka.create_topic(partitions=3)
    ops = random_ops(random.Random(7), KEYS, 120)
    produce(kafka.producer(), topic, fmt, ops, seed=1)
    store = store_over(kafka_source(kafka, topic, format=fmt))
    store.run_static()
    assert index_contents(store) == from_scratch(topic, latest(ops))


def test_restart_resumes_from_checkpointed_offsets_and_embeds_only_new_messages(
    kafka: KafkaBroker, tmp_path: Path
) -> None:
    topic = kafka.create_topic(partitions=3)
    rng = random.Random(3)
    first = random_ops(rng, KEYS, 60)
    produce(kafka.producer(), topic, "raw", first, seed=0)
    store = store_over(kafka_source(kafka, topic), state_dir=tmp_path)
    store.run_static()
    assert index_contents(store) == from_scratch(topic, latest(first))
    second = [("new.md", "A brand new document about kafka offsets."), (first[0][0], None)]
    produce(kafka.producer(), topic, "raw", second, seed=1)
    again = store_over(kafka_source(kafka, topic), state_dir=tmp_path)
    again.run_static()
    assert index_contents(again) == from_scratch(topic, latest(second, latest(first)))
    assert again.embedder.embedded == ["A brand new document about kafka offsets."]  # type: ignore[attr-defined]


def test_poison_messages_are_document_errors_copied_to_the_dead_letter_topic(kafka: KafkaBroker) -> None:
    from confluent_kafka import Consumer

    topic, dead = kafka.create_topic(partitions=3), kafka.create_topic(partitions=1)
    producer = kafka.producer()
    producer.produce(topic, key=b"good1", value=b'{"text": "first good document"}')
    producer.produce(topic, key=b"bad", value=b"{this is not json")
    producer.produce(topic, key=b"empty", value=b'{"id": "empty"}')
    producer.produce(topic, key=b"good2", value=b'{"text": "second good document"}')
    producer.flush(10)
    source = kafka_source(kafka, topic, format="json", dead_letter_topic=dead)
    with store_over(source) as store:
        assert store.wait_until_fresh(30)
        ids = {d.doc_id: d for d in store.documents()}
        assert ids[f"kafka://{topic}/good1"].status == ids[f"kafka://{topic}/good2"].status == "INDEXED"
        errors = {e.doc_id: e.message for e in store.errors()}
        bad = errors[f"kafka://{topic}/bad"]
        assert bad.startswith(f"kafka message {topic}[") and "]@" in bad and "is not JSON" in bad
        assert "neither a 'text'" in errors[f"kafka://{topic}/empty"]
        # the bad document recovers with its next good message; consumption goes on
        producer.produce(topic, key=b"bad", value=b'{"text": "fixed now"}')
        producer.flush(10)
        assert eventually(lambda: f"kafka://{topic}/bad" not in {e.doc_id for e in store.errors()})
        counters = {(s.name, s.labels.get("topic")): s.value for s in source.status.counters()}
        assert counters[("poison_messages", topic)] == 2 and counters[("dead_letters", topic)] == 2
    reader = Consumer({"bootstrap.servers": kafka.bootstrap, "group.id": f"dlq-{dead}", **_fast()})
    reader.subscribe([dead])
    copies: list[Any] = []
    deadline = time.monotonic() + 20
    while len(copies) < 2 and time.monotonic() < deadline:
        copies += [m for m in reader.consume(10, 0.2) if m.error() is None]
    reader.close()
    assert sorted(m.key() for m in copies) == [b"bad", b"empty"]
    headers = dict(copies[0].headers())
    assert headers["ragflow-source-topic"] == topic.encode() and b"ragflow" not in copies[0].value()
    assert {"ragflow-error", "ragflow-source-partition", "ragflow-source-offset"} <= set(headers)


def test_raw_documents_take_their_type_from_headers_or_the_content_type_option(kafka: KafkaBroker) -> None:
    from tests.test_parsers import make_pdf

    topic = kafka.create_topic(partitions=3)
    producer = kafka.producer()
    html = b"<h1>Quarterly</h1><p>Revenue <b>grew</b> in Oslo.</p><script>track()</script>"
    producer.produce(topic, key=b"page-7", value=html, headers=[("content-type", b"text/html")])
    pdf = make_pdf(["Minutes of the board", "Second page"])
    producer.produce(topic, key=b"minutes", value=pdf, headers=[("content-type", b"application/pdf")])
    producer.produce(topic, key=b"row-1", value=b"name,city\nAnn,Oslo\n", headers=[("path", b"team.csv")])
    producer.produce(topic, key=b"plain", value=b"<p>no header</p>")
    producer.flush(10)
    with store_over(kafka_source(kafka, topic, content_type="text/html")) as store:
        assert store.wait_until_fresh(30)
        assert eventually(lambda: len(store.documents()) == 4)
        texts: dict[str, list[tuple[Any, str]]] = {}
        for doc_id, page, _, _, text in index_contents(store):
            texts.setdefault(doc_id.rsplit("/", 1)[1], []).append((page, text))
    assert texts["page-7"] == [(None, "Quarterly\n\nRevenue grew in Oslo.")]
    assert texts["minutes"] == [(1, "Minutes of the board"), (2, "Second page")]
    assert texts["row-1"] == [(None, "name: Ann; city: Oslo")]
    assert texts["plain"] == [(None, "no header")]  # the content_type option, for messages without one


def test_the_same_bytes_declared_as_different_types_are_parsed_apart(kafka: KafkaBroker) -> None:
    topic = kafka.create_topic(partitions=1)
    producer = kafka.producer()
    page = b"<p>Same <b>bytes</b></p>"
    producer.produce(topic, key=b"as-html", value=page, headers=[("content-type", b"text/html")])
    producer.produce(topic, key=b"as-text", value=page, headers=[("content-type", b"text/plain")])
    producer.flush(10)

    def texts() -> dict[str, str]:
        return {doc_id.rsplit("/", 1)[1]: text for doc_id, _, _, _, text in index_contents(store)}

    with store_over(kafka_source(kafka, topic)) as store:
        assert eventually(lambda: texts() == {"as-html": "Same bytes", "as-text": page.decode()})
        # only the declared type changes: the document is parsed again, not served from the parse cache
        producer.produce(topic, key=b"as-text", value=page, headers=[("content-type", b"text/html")])
        producer.flush(10)
        assert eventually(lambda: texts() == {"as-html": "Same bytes", "as-text": "Same bytes"})


def test_consumer_lag_per_partition_is_reported_and_falls_to_zero(kafka: KafkaBroker) -> None:
    topic = kafka.create_topic(partitions=3)
    produce(kafka.producer(), topic, "raw", random_ops(random.Random(1), KEYS, 30), seed=0)
    source = kafka_source(kafka, topic)
    with store_over(source) as store:
        assert store.wait_until_fresh(30)

        def lags() -> dict[str, float]:
            status = source_status(source)
            assert status is not None
            return {s.labels["partition"]: s.value for s in status.gauges() if s.name == "consumer_lag"}

        assert eventually(lambda: set(lags()) == {"0", "1", "2"} and not any(lags().values()))


def test_broker_down_at_start_and_mid_run_is_unhealthy_then_recovers_by_itself(tmp_path: Path) -> None:
    proxy = TcpProxy(target=free_port())
    broker = KafkaBroker(proxy.target, advertised_port=proxy.port)
    source = KafkaSource(
        "news",
        bootstrap_servers=broker.bootstrap,
        consumer={"session.timeout.ms": 6000, "heartbeat.interval.ms": 500, "reconnect.backoff.max.ms": 500},
        commit_interval=0.5,
    )
    store = store_over(source, state_dir=tmp_path)
    store.start()
    try:
        assert eventually(lambda: not source.status.health.healthy, 15), "not unhealthy with no broker"
        reason = source.status.health.reason or ""
        assert "cannot reach the Kafka brokers" in reason and broker.bootstrap in reason
        broker.start()
        proxy.restore()
        broker.create_topic("news", partitions=3)
        produce(broker.producer(), "news", "raw", [("a.md", "before the outage")], seed=0)
        assert store.wait_until_fresh(30)
        assert eventually(lambda: [h.text for h in store.retrieve("outage", k=5)] == ["before the outage"])
        assert source.status.health.healthy
        proxy.cut()
        assert eventually(lambda: not source.status.health.healthy, 30), "not unhealthy after the cut"
        proxy.restore()
        produce(broker.producer(), "news", "raw", [("b.md", "after the outage")], seed=1)
        assert eventually(lambda: len(store.retrieve("outage", k=5)) == 2, 40)
        assert eventually(lambda: source.status.health.healthy, 15)
    finally:
        store.stop()
        proxy.cut()
        broker.stop()


def test_start_latest_skips_what_the_topic_held_before(kafka: KafkaBroker) -> None:
    topic = kafka.create_topic(partitions=1)
    producer = kafka.producer()
    for key in ("old1.md", "old2.md"):  # one message per batch: tansu's end offsets are right then
        produce(producer, topic, "raw", [(key, f"old document {key}")], seed=0)
    with store_over(kafka_source(kafka, topic, start="latest")) as store:
        assert store.wait_until_fresh(30)
        time.sleep(0.5)
        produce(producer, topic, "raw", [("new.md", "a new document")], seed=0)
        assert eventually(lambda: [d.doc_id for d in store.documents()] == [f"kafka://{topic}/new.md"])


def test_the_kafka_kind_is_installed_and_configurable_by_name() -> None:
    from ragflow.plugins import load_connector

    assert load_connector("kafka") is KafkaSource


def _fast() -> dict[str, Any]:
    return {"session.timeout.ms": 6000, "heartbeat.interval.ms": 500, "auto.offset.reset": "earliest"}
