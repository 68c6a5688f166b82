"""The S3 source inside a DocumentStore: convergence to a from-scratch build after random changes (polled,
and notified with notifications dropped and reordered), and a restart over an unchanged bucket that reads
and embeds nothing."""

from __future__ import annotations

import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ragflow.connectors.s3 import S3Source
from ragflow.store import DocumentStore
from tests.connectors.s3_changes import random_change
from tests.connectors.s3_helpers import counter, s3_source
from tests.fakes.hashing_embedder import HashingEmbedder
from tests.servers.s3 import MotoServer, SeaweedFS
from tests.test_store import LONG_MODE, eventually, index_contents

pytest.importorskip("boto3")

EXAMPLES = 20 if LONG_MODE else 3


def from_scratch(source: S3Source) -> list[tuple[Any, ...]]:
    store = DocumentStore(source, embedder=HashingEmbedder())
    store.run_static()
    return index_contents(store)


def assert_converges(store: DocumentStore, expected: list[tuple[Any, ...]], history: list[str]) -> None:
    converged = eventually(lambda: index_contents(store) == expected, timeout=20)
    live = index_contents(store)
    assert converged, (
        f"after {history}: live index differs from a from-scratch build\n"
        f"missing: {sorted(set(expected) - set(live))[:5]}\nghosts: {sorted(set(live) - set(expected))[:5]}"
    )
    assert store.index.count() == len(expected)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(seed=st.integers(0, 2**32 - 1), bursts=st.lists(st.integers(1, 5), min_size=2, max_size=4))
def test_polled_bucket_converges_to_a_from_scratch_build_after_random_changes(
    seaweedfs: SeaweedFS, seed: int, bursts: list[int]
) -> None:
    rng = random.Random(seed)
    bucket, client = seaweedfs.new_bucket(), seaweedfs.client()
    history = [random_change(client, bucket, rng, "put") for _ in range(3)]
    with DocumentStore(
        s3_source(seaweedfs.endpoint, bucket, poll_interval=0.1), embedder=HashingEmbedder()
    ) as store:
        assert store.wait_until_fresh(30)
        for burst in bursts:
            history += [random_change(client, bucket, rng) for _ in range(burst)]
            assert_converges(store, from_scratch(s3_source(seaweedfs.endpoint, bucket)), history)


class NotificationThief:
    """A second consumer of the notification queue that takes some messages and drops them, or sends them
    again later (out of order), so that only reconciliation can repair the index."""

    def __init__(self, sqs: Any, queue_url: str, rng: random.Random) -> None:
        self.sqs, self.queue_url, self.rng = sqs, queue_url, rng
        self.stop = threading.Event()
        self.dropped = self.delayed = 0
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            response = self.sqs.receive_message(
                QueueUrl=self.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0
            )
            for message in response.get("Messages", []):
                handle = message["ReceiptHandle"]
                choice = self.rng.random()
                if choice < 0.4:
                    self.dropped += 1
                elif choice < 0.7:
                    self.delayed += 1
                    self.sqs.send_message(
                        QueueUrl=self.queue_url, MessageBody=message["Body"], DelaySeconds=1
                    )
                else:
                    self.sqs.change_message_visibility(
                        QueueUrl=self.queue_url, ReceiptHandle=handle, VisibilityTimeout=0
                    )
                    continue
                self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=handle)
            time.sleep(0.01)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)


@pytest.mark.parametrize("seed", range(4 if LONG_MODE else 1))
def test_notified_bucket_converges_with_notifications_dropped_and_reordered(
    moto_server: MotoServer, seed: int
) -> None:
    rng = random.Random(seed)
    bucket, queue_url = moto_server.notified_bucket()
    client = moto_server.client()
    history = [random_change(client, bucket, rng, "put") for _ in range(3)]
    source = s3_source(
        moto_server.endpoint, bucket, notifications={"sqs_queue_url": queue_url}, reconcile_interval=1.0
    )
    thief = NotificationThief(moto_server.client("sqs"), queue_url, random.Random(seed))
    try:
        with DocumentStore(source, embedder=HashingEmbedder()) as store:
            assert store.wait_until_fresh(30)
            for _ in range(3 if LONG_MODE else 2):
                history += [random_change(client, bucket, rng) for _ in range(rng.randint(2, 6))]
                assert_converges(store, from_scratch(s3_source(moto_server.endpoint, bucket)), history)
    finally:
        thief.close()
    assert thief.dropped + thief.delayed > 0, "the thief took no notification: the test proved nothing"
    assert counter(source, "notifications_received") > 0


def test_notifications_make_changes_searchable_without_waiting_for_a_listing(moto_server: MotoServer) -> None:
    bucket, queue_url = moto_server.notified_bucket()
    client = moto_server.client()
    source = s3_source(
        moto_server.endpoint, bucket, notifications={"sqs_queue_url": queue_url}, reconcile_interval=300
    )
    with DocumentStore(source, embedder=HashingEmbedder()) as store:
        assert store.wait_until_fresh(30)
        client.put_object(
            Bucket=bucket, Key="notes/lantern.md", Body=b"The copper lantern glows over the harbor."
        )
        assert eventually(
            lambda: any("lantern" in h.text for h in store.retrieve("copper lantern", k=1)), timeout=5
        )
        client.delete_object(Bucket=bucket, Key="notes/lantern.md")
        assert eventually(lambda: store.index.count() == 0, timeout=5)
        assert counter(source, "listings") == 1  # only the first: the changes came through SQS
    sqs = moto_server.client("sqs")
    attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["All"])["Attributes"]
    assert attributes["ApproximateNumberOfMessages"] == "0"  # every handled message was deleted
    assert attributes["ApproximateNumberOfMessagesNotVisible"] == "0"


COUNTING_OBJECTS = 1000


def test_restart_over_an_unchanged_bucket_downloads_nothing_and_embeds_nothing(
    seaweedfs: SeaweedFS, tmp_path: Path
) -> None:
    bucket, client = seaweedfs.new_bucket(), seaweedfs.client()
    rng = random.Random(7)
    bodies = [
        f"Object {i}. {' '.join(rng.sample(['river', 'stone', 'maple', 'orbit', 'ember'], 3))}"
        for i in range(COUNTING_OBJECTS)
    ]
    with ThreadPoolExecutor(16) as pool:
        list(
            pool.map(
                lambda i: client.put_object(Bucket=bucket, Key=f"k/{i:05d}.md", Body=bodies[i].encode()),
                range(COUNTING_OBJECTS),
            )
        )
    state = tmp_path / "state"
    first_source = s3_source(seaweedfs.endpoint, bucket)
    with DocumentStore(first_source, embedder=HashingEmbedder(), state_dir=state) as store:
        assert store.wait_until_fresh(120)
        assert store.statistics()["file_count"] == COUNTING_OBJECTS
    assert counter(first_source, "objects_downloaded") == COUNTING_OBJECTS
    embedder, source = HashingEmbedder(), s3_source(seaweedfs.endpoint, bucket)
    with DocumentStore(source, embedder=embedder, state_dir=state) as store:
        assert store.wait_until_fresh(60)
        assert store.statistics()["file_count"] == COUNTING_OBJECTS
        assert counter(source, "objects_listed") == COUNTING_OBJECTS
        assert counter(source, "objects_downloaded") == 0 and counter(source, "requests", kind="get") == 0
        assert embedder.embedded == []
