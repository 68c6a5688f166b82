"""S3 event notifications from SQS: a receiver thread that long-polls the queue and turns each message's
records (ObjectCreated:*, ObjectRemoved:*, delivered directly or wrapped by SNS) into hints, the keys the
source then looks at; and a deleter thread that deletes each handled message only once the changes it
announced are durable in a checkpoint."""

from __future__ import annotations

import json
import logging
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus

from ragflow.sources import CheckpointWait, Notifications, SourceStatus

__all__ = ["CheckpointedDeletes", "KeyHint", "SqsReceiver", "keys_in_message"]

log = logging.getLogger("ragflow.connectors.s3")

_MAX_BACKOFF_S = 30.0
_CHECKPOINT_WAIT_S = 30.0
"""How long one wait for a checkpoint may take before it is counted as failed and tried again."""


@dataclass(frozen=True, slots=True)
class KeyHint:
    """An object key an event named (``None`` for a message that names none), and the message to delete
    from the queue once the key's change is emitted."""

    key: str | None
    receipt_handle: str


def keys_in_message(body: str, bucket: str) -> list[str]:
    """The object keys of ``bucket`` that an S3 event message names (URL-decoded); ``[]`` for a test
    event, another bucket's events or a body that is not an S3 event."""
    try:
        message = json.loads(body)
        if isinstance(message, dict) and "Records" not in message and isinstance(message.get("Message"), str):
            message = json.loads(message["Message"])  # delivered through SNS
    except ValueError:
        return []
    records = message.get("Records") if isinstance(message, dict) else None
    keys = []
    for record in records if isinstance(records, list) else []:
        try:
            if not str(record["eventName"]).startswith(("ObjectCreated:", "ObjectRemoved:")):
                continue
            s3 = record["s3"]
            if s3["bucket"]["name"] == bucket:
                keys.append(unquote_plus(s3["object"]["key"]))
        except (KeyError, TypeError):
            continue
    return keys


class SqsReceiver:
    """Long-polls an SQS queue from its own thread and puts a ``KeyHint`` per key into ``notifications``.

    A failing queue (endpoint down, no permission) marks ``status`` unhealthy with the reason and is
    retried with exponential backoff and jitter; the periodic listing keeps the source correct meanwhile.
    """

    def __init__(
        self,
        client: Any,
        queue_url: str,
        bucket: str,
        notifications: Notifications[KeyHint],
        status: SourceStatus,
        report: Callable[[str | None], None],
        wait_seconds: int = 1,
        visible: Callable[[str], bool] = lambda key: True,
    ) -> None:
        self.client = client
        self.queue_url = queue_url
        self.bucket = bucket
        self.notifications = notifications
        self.status = status
        self.report = report
        """Called with what is wrong with the queue, or ``None`` once it works again."""
        self.wait_seconds = wait_seconds
        self.visible = visible
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"s3-sqs:{self.bucket}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.wait_seconds + 5)

    def delete(self, receipt_handles: list[str]) -> None:
        """Delete the messages whose changes were emitted; a failure only means they come back later."""
        unique = list(dict.fromkeys(receipt_handles))
        for start in range(0, len(unique), 10):
            entries = [{"Id": str(i), "ReceiptHandle": h} for i, h in enumerate(unique[start : start + 10])]
            try:
                self.status.count("requests", kind="sqs_delete")
                self.client.delete_message_batch(QueueUrl=self.queue_url, Entries=entries)
                self.status.count("notifications_deleted", len(entries))
            except Exception as exc:
                log.warning("could not delete %d SQS messages from %s: %s", len(entries), self.queue_url, exc)

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                self.status.count("requests", kind="sqs_receive")
                response = self.client.receive_message(
                    QueueUrl=self.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=self.wait_seconds
                )
            except Exception as exc:
                failures += 1
                self.status.count("request_errors", kind="sqs_receive")
                self.report(
                    f"cannot receive S3 notifications from SQS queue {self.queue_url}: {_reason(exc)}; "
                    "retrying with backoff (changes are still found by the periodic listing)"
                )
                self._stop.wait(min(_MAX_BACKOFF_S, 0.2 * 2**failures) * random.uniform(0.5, 1.0))
                continue
            if failures:
                failures = 0
                self.report(None)
            for message in response.get("Messages", []):
                self.status.count("notifications_received")
                keys: list[str | None] = [
                    k for k in keys_in_message(message.get("Body", ""), self.bucket) if self.visible(k)
                ]
                handle = message["ReceiptHandle"]
                for key in keys or [None]:
                    self.notifications.put(KeyHint(key, handle))


def _reason(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        error = response.get("Error", {})
        return f"{error.get('Code')}: {error.get('Message')}"
    return f"{type(exc).__name__}: {exc}"


class CheckpointedDeletes:
    """Deletes handled SQS messages only once the changes they announced are durable.

    The source hands over a batch of receipt handles right after emitting the batch's changes (or finding
    that nothing changed). A thread of its own, so that the next notifications are not held up, waits with
    the store's ``wait_checkpointed`` until everything emitted before the wait is applied to the index
    and, with a state directory, committed in a checkpoint; then it deletes the messages. A crash before
    that leaves them in the queue: SQS delivers them again once their visibility timeout passes, and the
    source finds their changes again (or, by a conditional GET, that they are in the index already).
    Without a store to wait on (``wait`` is ``None``: the source runs on its own) a message is deleted as
    soon as it is handed over.
    """

    def __init__(self, receiver: SqsReceiver, wait: CheckpointWait | None, status: SourceStatus) -> None:
        self.receiver = receiver
        self.wait = wait
        self.status = status
        self._cond = threading.Condition()
        self._handed: list[str] = []
        self._awaiting = 0
        self._closing = False
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self.wait is not None:
            self._thread = threading.Thread(
                target=self._run, name=f"s3-sqs-delete:{self.receiver.bucket}", daemon=True
            )
            self._thread.start()

    def add(self, receipt_handles: list[str]) -> None:
        """Delete these messages once what was emitted before this call is durable."""
        if not receipt_handles:
            return
        if self.wait is None:
            self.receiver.delete(receipt_handles)
            return
        with self._cond:
            self._handed.extend(receipt_handles)
            self._awaiting += len(receipt_handles)
            self.status.gauge("notifications_awaiting_checkpoint", self._awaiting)
            self._cond.notify_all()

    def close(self, timeout: float = 2.0) -> None:
        """Delete what becomes durable within ``timeout`` seconds, then stop; the rest stays queued."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout + 1.0)

    def _run(self) -> None:
        wait = self.wait
        if wait is None:
            return
        batch: list[str] = []
        failures = 0
        while True:
            with self._cond:
                while not self._handed and not batch and not self._closing:
                    self._cond.wait()
                batch += self._handed
                self._handed = []
                closing = self._closing
            if not batch:
                return
            if wait(2.0 if closing else _CHECKPOINT_WAIT_S):
                self.receiver.delete(batch)
                with self._cond:
                    self._awaiting -= len(batch)
                    self.status.gauge("notifications_awaiting_checkpoint", self._awaiting)
                batch, failures = [], 0
                continue
            failures += 1
            self.status.count("checkpoint_waits_failed")
            log.warning(
                "%d S3 notifications from %s are not deleted yet: their changes are not in a checkpoint "
                "(engine stopped, or a checkpoint write failed); SQS delivers them again if this lasts",
                len(batch),
                self.receiver.queue_url,
            )
            if closing:
                return  # left in the queue: delivered again after their visibility timeout
            with self._cond:
                self._cond.wait(min(_MAX_BACKOFF_S, 0.5 * 2**failures))
