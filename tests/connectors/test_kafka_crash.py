"""kill -9 of a store reading Kafka at random moments while messages arrive, more messages while it is
down, a restart: in the end the index holds the topic's latest values with no chunk lost or duplicated."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.connectors.kafka_helpers import from_scratch, kafka_source, latest, produce, random_ops, store_over
from tests.servers.kafka import KafkaBroker, shared_broker
from tests.test_store import index_contents

LONG = os.environ.get("RAGFLOW_LONG") == "1"
KEYS = [f"doc{i}.md" for i in range(30)]


@pytest.fixture(scope="session")
def kafka() -> KafkaBroker:
    return shared_broker()


def start_child(kafka: KafkaBroker, topic: str, state: Path) -> subprocess.Popen[str]:
    child = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.connectors.kafka_crash_child",
            kafka.bootstrap,
            topic,
            f"g-{topic}",
            str(state),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=Path(__file__).parents[2],
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "ready"
    return child


@pytest.mark.timeout(900 if LONG else 240)
@pytest.mark.parametrize("trials", [pytest.param(50, marks=pytest.mark.slow) if LONG else 3])
def test_kill_9_while_producing_loses_and_duplicates_nothing(
    kafka: KafkaBroker, tmp_path: Path, trials: int
) -> None:
    rng = random.Random(11)
    topic = kafka.create_topic(partitions=3)
    producer = kafka.producer()
    sent: list[tuple[str, str | None]] = []
    for trial in range(trials):
        child = start_child(kafka, topic, tmp_path)
        stop = threading.Event()

        def keep_producing(stop: threading.Event = stop, seed: int = trial) -> None:
            local = random.Random(seed)
            while not stop.is_set():
                ops = random_ops(local, KEYS, local.randint(1, 20))
                produce(producer, topic, "raw", ops, seed=seed)
                sent.extend(ops)
                time.sleep(local.uniform(0, 0.05))

        writer = threading.Thread(target=keep_producing)
        writer.start()
        time.sleep(rng.uniform(0.05, 1.5))
        os.kill(child.pid, signal.SIGKILL)
        child.wait(10)
        stop.set()
        writer.join()
        while_down = random_ops(rng, KEYS, rng.randint(0, 30))
        produce(producer, topic, "raw", while_down, seed=trial)
        sent.extend(while_down)
    store = store_over(kafka_source(kafka, topic, group_id=f"g-{topic}"), state_dir=tmp_path)
    store.run_static()
    contents = index_contents(store)
    assert contents == from_scratch(topic, latest(sent)), "a chunk was lost, duplicated or stale"
    assert store.index.count() == len(contents)
