"""Kill -9 a store syncing an S3 bucket at random moments while objects change, change more while it is
down, restart: the index equals a from-scratch build (nothing lost, nothing duplicated) and the restart
reads only objects that changed. In notification mode, a message is deleted from SQS only once its
change is checkpointed: a kill before that leaves it queued, and the restart takes and deletes it."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.connectors.s3_changes import keys_of, random_change, touched_keys
from tests.connectors.s3_helpers import s3_source
from tests.connectors.test_s3_store import from_scratch
from tests.servers.s3 import MotoServer, SeaweedFS
from tests.test_store import LONG_MODE

pytest.importorskip("boto3")

REPO = Path(__file__).resolve().parents[2]
TRIALS = 50 if LONG_MODE else 3
NOTIFIED_TRIALS = 10 if LONG_MODE else 1


def child(endpoint: str, bucket: str, state: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.s3_crash_child", endpoint, bucket, str(state), *extra],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


def wait_ready(process: subprocess.Popen[str]) -> None:
    assert process.stdout is not None
    line = process.stdout.readline().strip()
    if line != "ready":
        process.kill()
        raise AssertionError(
            f"the child did not get ready: {line!r}; stderr: {process.communicate()[1][-2000:]}"
        )


def kill_twice_while_changing(
    endpoint: str, client: Any, bucket: str, state: Path, rng: random.Random, *extra: str
) -> list[str]:
    """Start the child, change the bucket, kill it at a random moment, change more while it is down;
    twice. Returns the changes in words."""
    history: list[str] = []
    for _kill in range(2):
        process = child(endpoint, bucket, state, *extra)
        wait_ready(process)
        history += [random_change(client, bucket, rng) for _ in range(rng.randint(1, 6))]
        # the kill lands anywhere: listing or receiving, embedding, checkpointing, deleting messages
        time.sleep(rng.uniform(0.0, 0.6))
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        history += [random_change(client, bucket, rng) for _ in range(rng.randint(0, 4))]  # while down
    return history


@pytest.mark.parametrize("trial", range(TRIALS))
def test_kill_9_at_random_then_restart_loses_nothing_duplicates_nothing_rereads_only_changes(
    seaweedfs: SeaweedFS, tmp_path: Path, trial: int
) -> None:
    rng = random.Random(trial)
    bucket, client = seaweedfs.new_bucket(), seaweedfs.client()
    for _ in range(12):
        random_change(client, bucket, rng, "put")
    state = tmp_path / "state"
    initial = set(keys_of(client, bucket))
    history = kill_twice_while_changing(seaweedfs.endpoint, client, bucket, state, rng)
    result = assert_equals_from_scratch(seaweedfs.endpoint, bucket, state, history)
    # the child says ready once its snapshot is checkpointed: only objects changed since may be read again
    unchanged = initial - touched_keys(history)
    reread = set(result["downloaded"]) & unchanged
    assert not reread, f"unchanged objects read again after the restart: {sorted(reread)}"


def queued(moto: MotoServer, queue_url: str) -> int:
    """Messages still in the queue, visible or handed out and not deleted."""
    attributes = moto.client("sqs").get_queue_attributes(QueueUrl=queue_url, AttributeNames=["All"])
    names = ("ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible")
    return sum(int(attributes["Attributes"][name]) for name in names)


def drained(moto: MotoServer, queue_url: str, timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while queued(moto, queue_url):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def assert_equals_from_scratch(server: str, bucket: str, state: Path, history: list[str]) -> dict[str, Any]:
    dump = child(server, bucket, state, "--dump")
    out, err = dump.communicate(timeout=120)
    assert dump.returncode == 0, err[-2000:]
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    expected = [list(row) for row in from_scratch(s3_source(server, bucket))]
    assert result["contents"] == expected, (
        f"after {history}: the restarted index differs from a from-scratch build"
    )
    return result


def test_kill_9_between_apply_and_checkpoint_leaves_the_notification_queued_for_the_restart(
    moto_server: MotoServer, tmp_path: Path
) -> None:
    bucket, queue_url = moto_server.notified_bucket()
    client, state = moto_server.client(), tmp_path / "state"
    client.put_object(Bucket=bucket, Key="old.md", Body=b"The old harbor map.")
    process = child(moto_server.endpoint, bucket, state, "--sqs", queue_url, "--hold-checkpoints")
    wait_ready(process)
    assert drained(moto_server, queue_url), "the snapshot's notification was not deleted once checkpointed"
    client.put_object(Bucket=bucket, Key="new.md", Body=b"The new lighthouse log.")
    assert process.stdout is not None
    line = process.stdout.readline().strip()  # the put, applied to the index; its checkpoint never comes
    assert line == "epoch 1", f"expected the put's epoch, got {line!r}"
    time.sleep(1.0)  # time enough to delete the message, were it deleted before its checkpoint
    assert queued(moto_server, queue_url) == 1, "the message was deleted before its change was checkpointed"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert queued(moto_server, queue_url) == 1  # SQS delivers it again once its visibility timeout passes
    restarted = child(moto_server.endpoint, bucket, state, "--sqs", queue_url)
    wait_ready(restarted)
    try:
        assert drained(moto_server, queue_url), "the restart did not take and delete the message again"
    finally:
        os.kill(restarted.pid, signal.SIGKILL)
        restarted.wait()
    assert_equals_from_scratch(moto_server.endpoint, bucket, state, ["put old.md", "put new.md"])


@pytest.mark.parametrize("trial", range(NOTIFIED_TRIALS))
def test_kill_9_at_random_with_notifications_then_restart_converges_and_drains_the_queue(
    moto_server: MotoServer, tmp_path: Path, trial: int
) -> None:
    rng = random.Random(1000 + trial)
    bucket, queue_url = moto_server.notified_bucket()
    client, state = moto_server.client(), tmp_path / "state"
    history = [random_change(client, bucket, rng, "put") for _ in range(6)]
    history += kill_twice_while_changing(moto_server.endpoint, client, bucket, state, rng, "--sqs", queue_url)
    process = child(moto_server.endpoint, bucket, state, "--sqs", queue_url)
    wait_ready(process)
    try:  # every message, redelivered after the kills, is deleted once its change is checkpointed
        assert drained(moto_server, queue_url), f"after {history}: messages left in the queue"
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
    assert_equals_from_scratch(moto_server.endpoint, bucket, state, history)
