"""One run of the S3 source: the versions it emitted (``known``) kept in step with the bucket by listings
(the polls of the shared ``SyncLoop``) and by the keys SQS notifications name (its hints), with failures
turned into an unhealthy status and retried with backoff and jitter."""

from __future__ import annotations

import dataclasses
import logging
import random
import re
import threading
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Literal

from ragflow.errors import SourceError
from ragflow.sources import ChangeKind, DocumentChange, EmitChanges, SourceRun, Wake, deletion, diff_listing

from .bucket import Bucket, Fetched, ListedObject, S3Failure
from .notifications import CheckpointedDeletes, KeyHint, SqsReceiver

if TYPE_CHECKING:
    from .source import S3Source

log = logging.getLogger("ragflow.connectors.s3")

_MD5 = re.compile(r"[0-9a-f]{32}")
_SLICE_OBJECTS = 64
"""Objects downloaded (concurrently) and emitted per group in a listing; bounds memory."""
_SLICE_BYTES = 32 * 1024 * 1024
_BACKOFF_BASE_S = 0.5
_BACKOFF_MAX_S = 30.0

Position = dict[str, Any]
"""A document's version: ``{"etag", "size", "modified", "error"}`` (``error``: ``None``, ``"denied"``,
``"oversize"``), as the checkpoint saves it."""


class _S3Sync(SourceRun[KeyHint]):
    """One ``run`` of an ``S3Source``."""

    def __init__(self, config: S3Source, emit: EmitChanges, stop: threading.Event) -> None:
        interval = config.reconcile_interval if config.notifications else config.poll_interval
        super().__init__(emit, stop, poll_interval=interval)
        self._config = config
        self._status = config.status
        self._bucket = Bucket(config, config.status)
        self._known: dict[str, Position] = {}
        self._pool = ThreadPoolExecutor(
            config.download_concurrency, thread_name_prefix=f"s3-get:{config.bucket}"
        )
        self._receiver: SqsReceiver | None = None
        self._deletes: CheckpointedDeletes | None = None
        self._problems: dict[str, str | None] = {"s3": None, "sqs": None}
        self._problems_lock = threading.Lock()
        self._failures = 0
        self._retry_at: float | None = None
        self._mode: Literal["static", "streaming"] = "streaming"
        self._object_failed = False
        """An object's download failed for a passing reason during this listing: it is retried."""

    # -- the run's steps (``SourceRun``) -------------------------------------------------------------------

    def start(self, mode: Literal["static", "streaming"], position: Any) -> None:
        self._mode = mode
        self._known = _known_from_position(position)
        try:
            self._bucket.check(self._config.prefix)
        except S3Failure as exc:
            if not exc.transient:
                raise SourceError(str(exc)) from None
            self._report("s3", str(exc))  # the snapshot keeps trying
        notifications = self._config.notifications
        if mode == "streaming" and notifications is not None:
            self._receiver = SqsReceiver(
                self._config.make_client("sqs", notifications["endpoint_url"] or self._config.endpoint_url),
                notifications["sqs_queue_url"],
                self._config.bucket,
                self.notifications,
                self._status,
                lambda reason: self._report("sqs", reason),
                wait_seconds=notifications["wait_seconds"],
                visible=self._config.visible,
            )
            self._deletes = CheckpointedDeletes(self._receiver, self._config.wait_checkpointed, self._status)
            self._deletes.start()
            self._receiver.start()  # before the first listing: an event during it is queued, not lost

    def snapshot(self) -> list[DocumentChange] | None:
        while not self._stop.is_set():
            try:
                self._relist()
                return []
            except S3Failure as exc:
                if self._mode == "static":
                    raise SourceError(str(exc)) from None  # botocore has retried already
                self._failed(exc)
                self._stop.wait(max(0.0, (self._retry_at or 0.0) - time.monotonic()))
        return None

    def sync(self, wake: Wake[KeyHint]) -> None:
        if wake.hints:
            self._sync_hints(wake.hints)
        retry_due = self._retry_at is not None and time.monotonic() >= self._retry_at
        if wake.poll_due or retry_due:
            try:
                self._relist()
            except S3Failure as exc:
                self._failed(exc)

    def wake_in(self) -> float | None:
        return None if self._retry_at is None else max(0.0, self._retry_at - time.monotonic())

    def close(self) -> None:
        if self._receiver is not None:
            self._receiver.stop()
        if self._deletes is not None:
            self._deletes.close()
        self._pool.shutdown(wait=False, cancel_futures=True)

    # -- health ----------------------------------------------------------------------------------------------

    def _report(self, part: str, reason: str | None) -> None:
        with self._problems_lock:
            self._problems[part] = reason
            reasons = [r for r in self._problems.values() if r]
        if reasons:
            self._status.unhealthy("; ".join(reasons))
        else:
            self._status.healthy()

    def _failed(self, exc: S3Failure) -> None:
        self._failures += 1
        delay = min(_BACKOFF_MAX_S, _BACKOFF_BASE_S * 2 ** (self._failures - 1)) * random.uniform(0.5, 1.0)
        self._retry_at = time.monotonic() + delay
        self._report("s3", str(exc))
        log.warning(
            "S3 source %s: %s (attempt %d; next try in %.1f s)", self._config.name, exc, self._failures, delay
        )

    def _succeeded(self) -> None:
        if self._failures:
            log.info("S3 source %s works again", self._config.name)
        self._failures = 0
        self._retry_at = None
        self._report("s3", None)

    # -- listings --------------------------------------------------------------------------------------------

    def _relist(self) -> None:
        """List everything, diff it against ``known``, download what changed and emit it (renames seen in
        this listing as one group each). Raises ``S3Failure``, emitting nothing, if the listing fails."""
        started = time.monotonic()
        listing = (
            (self._doc_id(obj.key), obj)
            for obj in self._bucket.list(self._config.prefix)
            if self._config.visible(obj.key)
        )
        upserts: list[ListedObject] = []
        deletes: list[str] = []
        for doc_id, obj in diff_listing(self._known, listing, self._unchanged):
            if obj is None:
                deletes.append(doc_id)
            else:
                upserts.append(obj)
        seconds = time.monotonic() - started
        listed = (
            len(self._known) - len(deletes) + sum(self._doc_id(o.key) not in self._known for o in upserts)
        )
        self._status.count("listings")
        self._status.gauge("last_listing_seconds", seconds)
        self._status.gauge("listing_objects_per_second", listed / seconds if seconds > 0 else 0.0)
        self._object_failed = False
        renames, upserts, deletes = self._renames(upserts, deletes)
        for old, new in renames:
            group = [c for c in (self._delete(old), *self._download([new])) if c is not None]
            self.emit(group)
        for start in range(0, len(deletes), 1000):
            self.emit([c for d in deletes[start : start + 1000] if (c := self._delete(d)) is not None])
        for chunk in _slices(upserts):
            if self._stop.is_set():
                break
            self.emit(self._download(chunk))
        self._status.gauge("objects", len(self._known))
        if not self._object_failed:
            self._succeeded()

    def _renames(
        self, upserts: list[ListedObject], deletes: list[str]
    ) -> tuple[list[tuple[str, ListedObject]], list[ListedObject], list[str]]:
        """Pairs (old doc_id, new object) of a copy to a new key and a delete of the old one, told by the same
        content ETag and size: each pair is emitted as one atomic group."""
        gone: dict[tuple[str, int], list[str]] = {}
        for doc_id in deletes:
            before = self._known.get(doc_id, {})
            if before.get("error") is None and "etag" in before:
                gone.setdefault((before["etag"], before["size"]), []).append(doc_id)
        pairs, rest = [], []
        for obj in upserts:
            olds = gone.get((obj.etag, obj.size))
            if olds and self._doc_id(obj.key) not in self._known:
                pairs.append((olds.pop(0), obj))
            else:
                rest.append(obj)
        paired = {old for old, _ in pairs}
        return pairs, rest, [d for d in deletes if d not in paired]

    def _unchanged(self, before: Position, obj: ListedObject) -> bool:
        error = before.get("error")
        if error == "denied":
            return False  # asked again at each listing: the permission may have been granted since
        oversize = obj.size > self._config.max_object_size
        if (error == "oversize") != oversize:
            return False  # the object or the limit changed sides of the limit
        return _same_version(before, obj)

    # -- notifications ---------------------------------------------------------------------------------------

    def _sync_hints(self, hints: list[KeyHint]) -> None:
        """GET each notified key unless its ETag is still the one known (304), emit what changed as one
        group, then hand the messages over to be deleted once that is checkpointed; a key that failed
        keeps its message (with every other key it names), which SQS delivers again."""
        self._status.count("notifications_handled", len(hints))
        keys = list(dict.fromkeys(h.key for h in hints if h.key is not None))
        failed: set[str] = set()
        changes: list[DocumentChange] = []
        results = self._pool.map(self._fetch_known, keys)
        for key, result in zip(keys, results, strict=True):
            if isinstance(result, S3Failure):
                failed.add(key)
                self._failed(result)
                continue
            change = self._record(key, result)
            if change is not None:
                changes.append(change)
        self.emit(changes)
        if not failed and self._retry_at is None:
            self._report("s3", None)
        if self._deletes is not None:
            # a message naming several keys stays whole while any of them failed
            kept = {h.receipt_handle for h in hints if h.key in failed}
            self._deletes.add([h.receipt_handle for h in hints if h.receipt_handle not in kept])

    def _fetch_known(self, key: str) -> Fetched | S3Failure | DocumentChange:
        before = self._known.get(self._doc_id(key))
        etag = before.get("etag") if before is not None and before.get("error") is None else None
        return self._fetch(key, etag, None)

    # -- reading objects -------------------------------------------------------------------------------------

    def _download(self, objects: list[ListedObject]) -> list[DocumentChange]:
        results = self._pool.map(lambda obj: self._fetch(obj.key, None, obj), objects)
        changes: list[DocumentChange] = []
        for obj, result in zip(objects, results, strict=True):
            if isinstance(result, S3Failure):
                self._failed(result)  # not recorded as known: the next listing (a retry) reads it again
                self._object_failed = True
                continue
            change = self._record(obj.key, result)
            if change is not None:
                changes.append(change)
        return changes

    def _fetch(
        self, key: str, etag: str | None, listed: ListedObject | None
    ) -> Fetched | S3Failure | DocumentChange:
        """The object's bytes (or 304/404), or a document error for an object too big or forbidden, or the
        transient failure to retry later. Runs in the download pool."""
        limit = self._config.max_object_size
        if listed is not None and listed.size > limit:
            return self._error_change(listed, "oversize", self._oversize_message(key, listed.size))
        try:
            fetched = self._bucket.fetch(key, etag, limit)
        except S3Failure as exc:
            if exc.transient:
                return exc
            return self._error_change(listed or ListedObject(key, "", 0, 0), "denied", str(exc))
        if fetched.listed is not None and fetched.data is None:
            return self._error_change(
                fetched.listed, "oversize", self._oversize_message(key, fetched.listed.size)
            )
        return fetched

    def _oversize_message(self, key: str, size: int) -> str:
        return (
            f"{self._bucket.uri(key)} is {size} bytes, over max_object_size ({self._config.max_object_size} "
            "bytes); raise max_object_size or exclude it"
        )

    def _error_change(self, obj: ListedObject, kind: str, message: str) -> DocumentChange:
        position = version(obj, kind)
        return DocumentChange(
            self._doc_id(obj.key), ChangeKind.UPSERT, None, self._metadata(obj, None), position, message
        )

    def _record(self, key: str, result: Fetched | DocumentChange) -> DocumentChange | None:
        """Take ``result`` into ``known``; the change to emit, or ``None`` when nothing changed."""
        doc_id = self._doc_id(key)
        before = self._known.get(doc_id)
        if isinstance(result, DocumentChange):
            change = result
        elif result.gone:
            return self._delete(doc_id)  # vanished between the listing (or event) and the GET
        elif result.unchanged or result.listed is None or result.data is None:
            return None
        else:
            obj = result.listed
            change = DocumentChange(
                doc_id, ChangeKind.UPSERT, result.data, self._metadata(obj, result.version_id), version(obj)
            )
        if before is not None and before == change.position:
            return None  # the same version (or the same error) as emitted before
        self._known[doc_id] = change.position
        return change

    def _delete(self, doc_id: str) -> DocumentChange | None:
        if self._known.pop(doc_id, None) is None:
            return None
        # a position of its own, like every change: the store follows a push to its checkpoint by it
        return dataclasses.replace(deletion(doc_id, doc_id), position={"deleted": True})

    def _metadata(self, obj: ListedObject, version_id: str | None) -> dict[str, Any]:
        seen = time.time_ns()
        metadata: dict[str, Any] = {
            "path": self._doc_id(obj.key),
            "key": obj.key,
            "bucket": self._config.bucket,
            "etag": obj.etag,
            "size": obj.size,
            "modified_at": obj.modified_ns // 10**9,
            "seen_at": seen // 10**9,
            "seen_at_ns": seen,
        }
        if version_id is not None:
            metadata["version_id"] = version_id
        return metadata

    def _doc_id(self, key: str) -> str:
        return f"s3://{self._config.bucket}/{key}"


def version(obj: ListedObject, error: str | None = None) -> Position:
    """The position of the document read from ``obj`` (``error``: why it could not be read), as the
    checkpoint saves it."""
    return {"etag": obj.etag, "size": obj.size, "modified": obj.modified_ns // 10**9, "error": error}


def _same_version(before: Position, obj: ListedObject) -> bool:
    if before.get("etag") != obj.etag:
        return False
    if _MD5.fullmatch(obj.etag):
        return True  # a single-part upload's ETag is the content's MD5
    # multipart or encrypted: the ETag is no content digest, so size and LastModified must agree too
    return before.get("size") == obj.size and before.get("modified") == obj.modified_ns // 10**9


def _known_from_position(position: Any) -> dict[str, Position]:
    if position is None:
        return {}
    if not isinstance(position, Mapping):
        raise SourceError(
            f"S3Source cannot resume from a position of type {type(position).__name__}; expected a mapping "
            "doc_id -> version saved from its earlier changes"
        )
    # an entry that is not a version (an older format) is simply read again
    return {str(d): dict(v) for d, v in position.items() if isinstance(v, Mapping) and "etag" in v}


def _slices(objects: Iterable[ListedObject]) -> Iterable[list[ListedObject]]:
    chunk: list[ListedObject] = []
    size = 0
    for obj in objects:
        chunk.append(obj)
        size += obj.size
        if len(chunk) >= _SLICE_OBJECTS or size >= _SLICE_BYTES:
            yield chunk
            chunk, size = [], 0
    if chunk:
        yield chunk
