"""A DocumentStore over a Kafka topic in a process of its own, for the Kafka crash test: the test produces,
kills this process with SIGKILL at random moments and starts it again.

    python -m tests.connectors.kafka_crash_child BOOTSTRAP TOPIC GROUP STATE_DIR

Prints ``ready`` once fresh, then runs until killed (checkpoints every 0.2 s)."""

from __future__ import annotations

import sys
import threading

from tests.connectors.kafka_helpers import store_over
from tests.crash_harness import say
from tests.servers.kafka import CONSUMER_SETTINGS


def main(argv: list[str]) -> int:
    from ragflow.connectors.kafka import KafkaSource

    bootstrap, topic, group, state_dir = argv
    source = KafkaSource(topic, bootstrap_servers=bootstrap, group_id=group, consumer=CONSUMER_SETTINGS)
    store = store_over(source, state_dir=state_dir, checkpoint_interval=0.2)
    store.start()
    if not store.wait_until_fresh(60):
        say("not fresh after 60 s")
        return 1
    say("ready")
    threading.Event().wait()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
