"""The checkpointer: buffers each epoch's document changes and source positions and commits them to the
state file from its own thread, so that indexing and queries never wait for a checkpoint."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from ..errors import ConfigError
from .failures import failure_reason
from .records import CheckpointBatch
from .statefile import StateFile

__all__ = ["Checkpointer"]

log = logging.getLogger("ragflow.persistence")  # the package's one logger (see statefile.py)

_MAX_RETRY_SECONDS = 30.0


class Checkpointer:
    """Buffers each epoch's document changes and source positions (``add``, cheap, from the engine's
    thread) and commits them to the state file in one transaction at most every ``interval`` seconds, or
    sooner once ``max_pending`` documents wait, from its own thread, and on ``flush``/``close``.

    A failed commit (a full disk) is logged with what to do, keeps the previous checkpoint, and is retried
    with backoff while the changes keep accumulating; indexing and queries never wait for it.
    """

    def __init__(
        self,
        state: StateFile,
        interval: float = 1.0,
        max_pending: int = 5000,
        before_write: Callable[[], object] | None = None,
    ) -> None:
        if not interval > 0:
            raise ConfigError(f"checkpoint_interval must be a positive number of seconds, got {interval}")
        self.state = state
        self.before_write = before_write
        self.interval = interval
        self.max_pending = max_pending
        self._pending = CheckpointBatch()
        self._pending_lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None
        self._failures = 0
        self._ignored_after_close = False
        self.checkpoints = 0
        self.write_seconds = 0.0
        self.documents_written = 0

    def add(self, batch: CheckpointBatch) -> None:
        """Queue ``batch`` (one epoch's changes) for the next checkpoint."""
        if self._closed.is_set():
            if batch and not self._ignored_after_close:
                self._ignored_after_close = True
                log.warning("changes after the store stopped are not saved in %s", self.state.path)
            return
        with self._pending_lock:
            self._pending.update(batch)
            size = len(self._pending.documents)
        if size >= self.max_pending and not self._failures:
            self._wake.set()

    def start(self) -> None:
        """Write checkpoints from a background thread until ``close``."""
        if self._thread is None and not self._closed.is_set():
            self._thread = threading.Thread(target=self._run, name="ragflow-checkpoint", daemon=True)
            self._thread.start()

    def flush(self) -> bool:
        """Write what is pending now, in this thread; ``False`` if that failed (it stays pending)."""
        with self._write_lock:
            if self.before_write is not None:
                # even with nothing pending: what it could not save at the last checkpoint (a full disk
                # then) is saved as soon as there is space, and at the latest when the store stops
                try:
                    self.before_write()
                except Exception as exc:
                    self._report_failure(exc)
                    return False
            with self._pending_lock:
                batch, self._pending = self._pending, CheckpointBatch()
            if not batch:
                return True
            started = time.perf_counter()
            try:
                info = self.state.write(batch)
            except Exception as exc:
                with self._pending_lock:
                    batch.update(self._pending)  # changes queued meanwhile are newer
                    self._pending = batch
                self._report_failure(exc)
                return False
            self.write_seconds += time.perf_counter() - started
            self.checkpoints += 1
            self.documents_written += len(batch.documents)
            if self._failures:
                log.info("checkpoint to %s succeeded again (epoch %d)", self.state.path, info.epoch)
                self._failures = 0
            return True

    @property
    def closed(self) -> bool:
        """Whether ``close`` was called (the state file is closed and its directory released)."""
        return self._closed.is_set()

    def pending(self) -> int:
        """Documents changed since the last checkpoint."""
        with self._pending_lock:
            return len(self._pending.documents)

    def stats(self) -> dict[str, Any]:
        """``last_checkpoint`` (Unix seconds or ``None``), ``checkpoints`` written by this process,
        ``failures`` in a row (0 once a checkpoint succeeds again), ``pending_documents`` and
        ``write_seconds`` (total time spent writing)."""
        last = self.state.last_checkpoint
        return {
            "last_checkpoint": last.written_at if last is not None else None,
            "checkpoints": self.checkpoints,
            "failures": self._failures,
            "pending_documents": self.pending(),
            "write_seconds": self.write_seconds,
        }

    def close(self) -> None:
        """Stop the thread, write what is pending, close the state file (and release its directory)."""
        if self._closed.is_set():
            return
        self._closed.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
        try:
            self.flush()
        finally:
            self.state.close()

    def _run(self) -> None:
        while not self._closed.is_set():
            self._wake.wait(self._delay())
            self._wake.clear()
            if self._closed.is_set():
                return
            try:
                self.flush()
            except Exception:  # never let the thread die: the next round retries
                log.exception("unexpected error while writing a checkpoint to %s", self.state.path)

    def _delay(self) -> float:
        """Seconds until the next checkpoint: the interval, doubled after each failure up to 30 s."""
        return min(self.interval * 2 ** min(self._failures, 16), max(self.interval, _MAX_RETRY_SECONDS))

    def _report_failure(self, exc: BaseException) -> None:
        self._failures += 1
        if self._failures > 1 and self._failures % 10:
            return  # said already; repeat it now and then while it lasts
        last = self.state.last_checkpoint
        kept = (
            f"the checkpoint of epoch {last.epoch} written {time.time() - last.written_at:.0f} s ago"
            if last is not None
            else "no checkpoint yet"
        )
        retry = self._delay()
        log.error(
            "checkpoint to %s failed (attempt %d): %s. Kept %s; indexing and queries go on, and the "
            "checkpoint is retried in %.0f s",
            self.state.path,
            self._failures,
            failure_reason(exc, self.state.directory),
            kept,
            retry,
        )
