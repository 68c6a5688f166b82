"""What the S3 source tests share: a recorder that runs a source as the engine does, and bucket writes."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, Literal

from ragflow.connectors.s3 import S3Source
from ragflow.sources import ChangeKind, DocumentChange
from tests.servers.s3 import ACCESS_KEY, SECRET_KEY


def s3_source(endpoint: str, bucket: str, **options: Any) -> S3Source:
    options.setdefault("poll_interval", 0.2)
    return S3Source(
        bucket,
        endpoint_url=endpoint,
        region="us-east-1",
        addressing_style="path",
        access_key_id=ACCESS_KEY,
        secret_access_key=SECRET_KEY,
        max_retries=2,
        **options,
    )


class Recorder:
    """Runs ``source`` in a thread as the engine does and records each ``emit`` group; ``state()`` is the
    documents as the emitted changes leave them."""

    def __init__(
        self, source: S3Source, mode: Literal["static", "streaming"] = "streaming", position: Any = None
    ):
        self.source = source
        self.groups: list[list[DocumentChange]] = []
        self.snapshot_done = threading.Event()
        self.stop_event = threading.Event()
        self.error: BaseException | None = None
        self._cond = threading.Condition()
        self.thread = threading.Thread(target=self._main, args=(mode, position), daemon=True)
        self.thread.start()

    def _main(self, mode: Literal["static", "streaming"], position: Any) -> None:
        try:
            self.source.run(self._emit, self.stop_event, mode, position)
        except BaseException as exc:
            self.error = exc
        finally:
            self.snapshot_done.set()
            with self._cond:
                self._cond.notify_all()

    def _emit(self, changes: list[DocumentChange], snapshot_done: bool = False) -> None:
        with self._cond:
            if changes:
                self.groups.append(list(changes))
            if snapshot_done:
                self.snapshot_done.set()
            self._cond.notify_all()

    def changes(self) -> list[DocumentChange]:
        with self._cond:
            return [c for g in self.groups for c in g]

    def state(self) -> dict[str, DocumentChange]:
        docs: dict[str, DocumentChange] = {}
        for change in self.changes():
            if change.kind is ChangeKind.UPSERT:
                docs[change.doc_id] = change
            else:
                docs.pop(change.doc_id, None)
        return docs

    def position(self) -> dict[str, Any]:
        return {d: c.position for d, c in self.state().items()}

    def data(self) -> dict[str, bytes | None]:
        return {d: c.data for d, c in self.state().items()}

    def wait_until(self, check: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not check():
                left = deadline - time.monotonic()
                if left <= 0 or self.error is not None:
                    raise AssertionError(
                        f"timed out waiting for {what}; error={self.error!r}; state={self.data()}"
                    )
                self._cond.wait(min(left, 0.05))

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(10)
        assert not self.thread.is_alive(), "the source did not stop within 10 s"


def uri(bucket: str, key: str) -> str:
    return f"s3://{bucket}/{key}"


def counter(source: S3Source, name: str, **labels: str) -> float:
    return sum(
        s.value for s in source.status.counters() if s.name == name and labels.items() <= s.labels.items()
    )


UPSERT, DELETE = ChangeKind.UPSERT, ChangeKind.DELETE
