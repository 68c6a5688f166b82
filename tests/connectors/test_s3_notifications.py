"""The S3 source's SQS messages (moto's server): each is deleted only once the store says the changes
emitted before it are checkpointed; one whose change was never checkpointed comes back to the next run."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from ragflow.connectors.s3 import S3Source
from tests.connectors.s3_helpers import Recorder, counter, s3_source, uri
from tests.servers.s3 import MotoServer
from tests.test_store import eventually

pytest.importorskip("boto3")


def notified(moto: MotoServer, bucket: str, queue_url: str) -> S3Source:
    return s3_source(
        moto.endpoint, bucket, notifications={"sqs_queue_url": queue_url}, reconcile_interval=300
    )


def queue_counts(moto: MotoServer, queue_url: str) -> tuple[int, int]:
    """(visible, handed out and not deleted) messages of the queue."""
    attributes = moto.client("sqs").get_queue_attributes(QueueUrl=queue_url, AttributeNames=["All"])
    values = attributes["Attributes"]
    return int(values["ApproximateNumberOfMessages"]), int(values["ApproximateNumberOfMessagesNotVisible"])


class Checkpoints:
    """A stand-in for the store's ``wait_checkpointed``: each wait blocks until ``commit()``."""

    def __init__(self) -> None:
        self.committed = threading.Event()
        self.waits = 0

    def commit(self) -> None:
        self.committed.set()

    def __call__(self, timeout: float) -> bool:
        self.waits += 1
        return self.committed.wait(timeout)


def test_a_message_is_deleted_only_once_its_change_is_checkpointed(moto_server: MotoServer) -> None:
    bucket, queue_url = moto_server.notified_bucket()
    source = notified(moto_server, bucket, queue_url)
    source.wait_checkpointed = checkpoints = Checkpoints()
    run = Recorder(source)
    try:
        run.wait_until(run.snapshot_done.is_set, "the snapshot")
        moto_server.client().put_object(Bucket=bucket, Key="a.md", Body=b"The amber lantern.")
        run.wait_until(lambda: uri(bucket, "a.md") in run.data(), "the notified change")
        assert eventually(lambda: checkpoints.waits > 0, timeout=5), "no wait for the checkpoint"
        time.sleep(0.5)  # time enough to delete it, were it deleted before its checkpoint
        received = counter(source, "notifications_received")  # the put's, and moto's s3:TestEvent
        assert received >= 1 and counter(source, "notifications_deleted") == 0
        assert queue_counts(moto_server, queue_url) == (0, received)  # handed out, none deleted
        assert _gauge(source, "notifications_awaiting_checkpoint") == received
        checkpoints.commit()
        assert eventually(lambda: counter(source, "notifications_deleted") == received, timeout=5)
        assert queue_counts(moto_server, queue_url) == (0, 0)
        assert _gauge(source, "notifications_awaiting_checkpoint") == 0
    finally:
        run.stop()


def test_a_message_whose_change_was_not_checkpointed_comes_back_to_the_next_run(
    moto_server: MotoServer,
) -> None:
    bucket, queue_url = moto_server.notified_bucket()
    moto_server.client("sqs").set_queue_attributes(QueueUrl=queue_url, Attributes={"VisibilityTimeout": "2"})
    first = notified(moto_server, bucket, queue_url)
    first.wait_checkpointed = lambda timeout: threading.Event().wait(timeout)  # never durable
    run = Recorder(first)
    run.wait_until(run.snapshot_done.is_set, "the snapshot")
    moto_server.client().put_object(Bucket=bucket, Key="b.md", Body=b"The brass compass.")
    run.wait_until(lambda: uri(bucket, "b.md") in run.data(), "the notified change")
    run.stop()  # as a crash would: the change never reached a checkpoint
    held = counter(first, "notifications_received")  # the put's, and moto's s3:TestEvent
    assert held >= 1 and counter(first, "notifications_deleted") == 0
    assert sum(queue_counts(moto_server, queue_url)) == held
    second = notified(moto_server, bucket, queue_url)
    second.wait_checkpointed = lambda timeout: True
    rerun = Recorder(second, position=run.position())  # b.md's version, as a later checkpoint saved it
    try:
        assert eventually(lambda: counter(second, "notifications_deleted") == held, timeout=15)
        assert counter(second, "notifications_received") == held  # the same messages, delivered again
        assert rerun.changes() == []  # its object is unchanged since that version: a 304, nothing emitted
        assert queue_counts(moto_server, queue_url) == (0, 0)
    finally:
        rerun.stop()


def test_without_a_store_a_message_is_deleted_once_its_change_is_emitted(moto_server: MotoServer) -> None:
    bucket, queue_url = moto_server.notified_bucket()
    source = notified(moto_server, bucket, queue_url)
    assert source.wait_checkpointed is None
    run = Recorder(source)
    try:
        run.wait_until(run.snapshot_done.is_set, "the snapshot")
        moto_server.client().put_object(Bucket=bucket, Key="c.md", Body=b"The copper kettle.")
        run.wait_until(lambda: uri(bucket, "c.md") in run.data(), "the notified change")
        assert eventually(lambda: queue_counts(moto_server, queue_url) == (0, 0), timeout=5)
    finally:
        run.stop()


def _gauge(source: S3Source, name: str) -> Any:
    return next((s.value for s in source.status.gauges() if s.name == name), None)
