"""Two KafkaSource stores in one consumer group (each with its own state directory and index): each member's
index holds exactly the latest documents of the partitions it is assigned — a member that loses partitions
to a new member retracts their documents, and a member that takes partitions over reads them whole — and
together they hold the topic's latest values. A member leaving checkpoints before it lets go."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from ragflow.store import DocumentStore
from tests.connectors.kafka_helpers import Ops, from_scratch, kafka_source, latest, random_ops, store_over
from tests.servers.kafka import KafkaBroker, shared_broker
from tests.test_store import eventually, index_contents

pytestmark = pytest.mark.timeout(240)

KEYS = [f"k{i}.md" for i in range(24)]


@pytest.fixture(scope="session")
def kafka() -> KafkaBroker:
    return shared_broker()


def produce_keyed(kafka: KafkaBroker, topic: str, ops: Ops, partitions: dict[str, int]) -> None:
    """Send ``ops`` as raw messages and note the partition each key went to in ``partitions``."""

    def delivered(error: Any, message: Any) -> None:
        assert error is None, error
        partitions[message.key().decode()] = message.partition()

    producer = kafka.producer()
    for key, text in ops:
        producer.produce(
            topic, key=key.encode(), value=None if text is None else text.encode(), on_delivery=delivered
        )
    producer.flush(30)


def assigned(store: DocumentStore) -> set[int]:
    """The partitions a store's source is assigned now (its ``partition_assigned`` gauges)."""
    gauges = store.feeds[0].source.status.gauges()  # type: ignore[attr-defined]
    return {int(g.labels["partition"]) for g in gauges if g.name == "partition_assigned" and g.value}


def holds_exactly(
    store: DocumentStore, topic: str, values: dict[str, str], partitions: dict[str, int]
) -> bool:
    """Whether the store's index is, chunk for chunk, a from-scratch build of the latest values of the
    keys in the partitions it is assigned (and its documents are those)."""
    mine = assigned(store)
    expected = {key: text for key, text in values.items() if partitions[key] in mine}
    return index_contents(store) == from_scratch(topic, expected) and {
        d.doc_id for d in store.documents()
    } == {f"kafka://{topic}/{key}" for key in expected}


def test_each_member_holds_exactly_its_partitions_and_a_leaving_member_hands_over(
    kafka: KafkaBroker, tmp_path: Path
) -> None:
    topic = kafka.create_topic(partitions=4)
    group = f"group-{topic}"
    partitions: dict[str, int] = {}
    rng = random.Random(5)
    a = store_over(kafka_source(kafka, topic, group_id=group), state_dir=tmp_path / "a")
    b = store_over(kafka_source(kafka, topic, group_id=group), state_dir=tmp_path / "b")
    a.start()
    first = random_ops(rng, KEYS, 150)
    produce_keyed(kafka, topic, first, partitions)
    values = latest(first)
    assert eventually(lambda: assigned(a) == {0, 1, 2, 3} and holds_exactly(a, topic, values, partitions), 30)

    b.start()  # a loses some partitions to b: it retracts their documents, b reads them whole
    assert eventually(lambda: bool(assigned(a) and assigned(b) and not assigned(a) & assigned(b)), 30), (
        "no split"
    )
    second = random_ops(rng, KEYS, 150)
    produce_keyed(kafka, topic, second, partitions)
    values = latest(second, values)
    assert eventually(
        lambda: (
            assigned(a) | assigned(b) == {0, 1, 2, 3}
            and holds_exactly(a, topic, values, partitions)
            and holds_exactly(b, topic, values, partitions)
        ),
        40,
    ), "a member holds a document of a partition it does not own, or misses one of its own"
    assert set(partitions.values()) & assigned(b), "the second member got no documents to prove anything"
    counters = {s.name: s.value for s in a.feeds[0].source.status.counters()}  # type: ignore[attr-defined]
    assert counters["retracted_documents"] > 0

    b.stop()  # leaves the group: checkpoints, then commits, before its partitions go back to a
    third = random_ops(rng, KEYS, 150)
    produce_keyed(kafka, topic, third, partitions)
    values = latest(third, values)
    assert eventually(
        lambda: assigned(a) == {0, 1, 2, 3} and index_contents(a) == from_scratch(topic, values), 40
    ), "the member that stayed does not hold the topic's latest values"
    a.stop()

    # b's index, stopped, is as of its stop; restarted alone it takes every partition: its own from its
    # checkpoint, the others read whole, and converges to the topic's latest values too
    again = store_over(kafka_source(kafka, topic, group_id=group), state_dir=tmp_path / "b")
    with again:
        assert eventually(lambda: index_contents(again) == from_scratch(topic, values), 40)
