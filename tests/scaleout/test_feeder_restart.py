"""``ragflow feed`` killed (SIGKILL) in the middle of a burst of folder changes, more changes while it is
down, then restarted: at least once, so the topic ends up holding every current document as its key's
newest message (deleted ones as tombstones), and then the workers bring the table to a from-scratch build
of the folder. Real processes, as in ``test_crash``."""

from __future__ import annotations

import random
import time

import pytest

from tests.scaleout.helpers import churn, wait_for
from tests.scaleout.test_crash import Cluster

pytest.importorskip("confluent_kafka")
pytest.importorskip("psycopg")

_PARTITIONS = 6


def _topic_view(cluster: Cluster, quiet_s: float = 1.5) -> dict[str, bytes]:
    """Each key's newest value in the topic, keys whose newest message is a tombstone left out."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    consumer = Consumer(
        {"bootstrap.servers": cluster.bootstrap, "group.id": "view", "enable.auto.commit": False,
         "fetch.wait.max.ms": 10}
    )  # fmt: skip
    try:
        consumer.assign([TopicPartition(cluster.topic, p, OFFSET_BEGINNING) for p in range(_PARTITIONS)])
        view: dict[str, bytes | None] = {}
        last = time.monotonic()
        while time.monotonic() - last < quiet_s:
            for message in consumer.consume(500, 0.2):
                key = message.key()
                if message.error() is None and key is not None:
                    view[key.decode()] = message.value()
                    last = time.monotonic()
    finally:
        consumer.close()
    return {key: value for key, value in view.items() if value is not None}


def test_a_feeder_killed_mid_burst_resends_after_restart_and_topic_then_table_converge(
    cluster: Cluster,
) -> None:
    rng = random.Random(7)
    names = [f"d{i // 10}/doc{i}.txt" for i in range(40)]
    churn(cluster.folder, rng, names, 30)
    cluster.start_feed()
    for n in range(2):
        cluster.start_worker(f"worker{n}")
    wait_for(cluster.converged, 120, "the first build")
    churn(cluster.folder, rng, names, 10)
    cluster.kill("feed")  # mid-burst: some changes sent, some not, positions maybe behind
    churn(cluster.folder, rng, names, 20)
    time.sleep(0.5)
    cluster.start_feed()
    wait_for(lambda: _topic_view(cluster) == cluster.documents(), 120, "the topic")
    wait_for(cluster.converged, 120, "the table")
