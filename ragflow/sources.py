"""The source contract: what a source (folder, upload, S3, Kafka) owes the engine, and the shared pieces that
implement most of it: one wait-then-sync loop for notified and polled sources, and the listing diff.

What a source owes the engine, in short (``docs/sources.md`` tells it at length):

- ``run(emit, stop, mode, position)`` emits the current state, then ``emit([], snapshot_done=True)`` (or the
  last snapshot group with ``snapshot_done=True``), then, streaming, live changes until ``stop``.
- A change is a ``DocumentChange``: ``UPSERT`` (create or replace, with the whole new content) or ``DELETE``,
  keyed by a ``doc_id`` stable for the life of the document at its source.
- Each change carries a ``position``. It is saved in the same atomic checkpoint as the document state it
  produced, and handed back to ``run`` after a restart, which then emits only what changed since: so every
  change is applied exactly once across a crash. A source's ``position_scope`` attribute says how positions
  add up: ``"document"`` (default: the position is that document's version, such as a file fingerprint or an
  S3 ETag, and ``run`` resumes from ``{doc_id: position}``) or ``"stream"`` (the position is the whole
  source's state after the change, such as Kafka offsets, and ``run`` resumes from the last one).
- A source that must know its changes are durable before it lets go of part of its input (Kafka, when a
  partition is revoked) declares a ``wait_checkpointed`` attribute set to ``None``; the store replaces it
  with a ``CheckpointWait``.
- A source that must know which documents the store holds from it (Kafka, to retract the documents of
  partitions that another member now owns) declares a ``held_documents`` attribute set to ``None``; the
  store replaces it with a ``HeldDocuments``.
"""

from __future__ import annotations

import enum
import operator
import queue
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, Protocol, TypeVar, runtime_checkable

from .errors import ConfigError

__all__ = [
    "STOP_CHECK_S",
    "ChangeKind",
    "CheckpointWait",
    "ConsumerGroupSource",
    "DocumentChange",
    "DocumentSource",
    "EmitChanges",
    "HeldDocuments",
    "Notifications",
    "PositionScope",
    "SourceHealth",
    "SourceRun",
    "SourceStatus",
    "SyncLoop",
    "Wake",
    "deletion",
    "diff_listing",
    "position_scope",
    "source_status",
]

Mode = Literal["static", "streaming"]
PositionScope = Literal["document", "stream"]
"""How a source's change positions add up to the position it resumes from (see ``position_scope``)."""
H = TypeVar("H")
"""The type of a notification's hint: a watchdog event, an SQS message, an uploaded change."""
V = TypeVar("V")
L = TypeVar("L")

STOP_CHECK_S = 0.05
"""Upper bound on how long ``stop`` may go unnoticed while a source waits."""


class ChangeKind(enum.Enum):
    """What happened to a document at its source."""

    UPSERT = "upsert"
    """The document was created or its content/metadata changed; ``data`` holds the whole new content."""
    DELETE = "delete"
    """The document is gone; ``data`` is ``None``."""


@dataclass(frozen=True, slots=True)
class DocumentChange:
    """One document-level change a source reports.

    ``doc_id`` is stable for the life of the document at its source (a folder source uses the path
    relative to its root). ``position`` is opaque to everyone but the source that made it: the source's
    state right after this change, saved in checkpoints. ``error`` is set (and ``data`` is ``None``) when
    the source saw the document but could not read it (too big, permission denied...): the pipeline
    records it as the document's error instead of indexing it.
    """

    doc_id: str
    kind: ChangeKind
    data: bytes | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    position: Any = None
    error: str | None = None


EmitChanges = Callable[..., None]
"""``emit(changes: list[DocumentChange], snapshot_done: bool = False)``: one atomic group."""

CheckpointWait = Callable[[float], bool]
"""``wait_checkpointed(timeout)``, given by the store to a source that declares the attribute: blocks
until every change the source emitted before the call is applied to the index and, with a state
directory, committed in a checkpoint; ``False`` if not within ``timeout`` seconds (the engine stopped or
failed, a checkpoint write failed). Safe from any of the source's threads. The store follows each emitted
group by the position object of its last change, so a source that uses it gives every group's last change
a position object of its own (a DELETE too: the S3 source's is ``{"deleted": True}``)."""


HeldDocuments = Callable[[], dict[str, Mapping[str, Any]]]
"""``held_documents()``, given by the store to a source that declares the attribute: ``doc_id -> metadata``
of every document the store holds from the source, as the source emitted it (those restored from a
checkpoint included, deleted ones not). Safe from any of the source's threads."""


@runtime_checkable
class DocumentSource(Protocol):
    """A source of document changes (folder, S3, Kafka...), run in its own thread by the engine.

    ``run`` first emits the current state (every document as an UPSERT; when started from a saved
    ``position``, only what changed since, including DELETEs), calls ``emit([], snapshot_done=True)`` once
    that initial state is complete, and then, in ``"streaming"`` mode, keeps emitting live changes until
    ``stop`` is set, and returns. In ``"static"`` mode it returns right after the snapshot. Each ``emit``
    call is one atomic group of changes (an atomic save, a directory move). ``run`` must not raise for a
    single bad document: that becomes a ``DocumentChange`` with ``error`` set.

    Optional attribute ``position_scope``: ``"document"`` (the default) or ``"stream"``, see the module
    docstring. Optional attribute ``wait_checkpointed``: declared ``None`` by a source that
    wants a ``CheckpointWait``; the store sets it before ``run``. Likewise ``held_documents`` for a
    ``HeldDocuments``. ``SourceRun`` implements ``run`` for a
    source written as one class per run.
    """

    name: str

    def run(
        self,
        emit: EmitChanges,
        stop: threading.Event,
        mode: Mode,
        position: Any = None,
    ) -> None: ...


@runtime_checkable
class ConsumerGroupSource(Protocol):
    """A source read from partitioned logs by a consumer group (the ``kafka`` source): what ``ragflow
    worker`` needs to consume its topics itself, with the offsets kept by a shared index instead of the
    group. ``consumer`` holds the user's client settings (librdkafka's names)."""

    name: str
    topics: list[str]
    group_id: str
    bootstrap_servers: str
    consumer: dict[str, Any]

    def change_of(self, message: Any) -> DocumentChange:
        """The change a consumed client message (a ``confluent_kafka.Message``) stands for, in the
        source's message format; a poison message becomes an UPSERT with ``error`` set."""
        ...


def position_scope(source: object) -> PositionScope:
    """How ``source``'s change positions add up to the position it resumes from.

    ``"document"``: each change's position is the state of that one document (the folder source's file
    fingerprints); the source resumes from the mapping ``doc_id -> position`` of the documents it holds.
    ``"stream"``: each position is the whole source's state after the change (a Kafka offset); the source
    resumes from the last one. A source says which with a ``position_scope`` attribute; ``"document"``
    without one.
    """
    scope = getattr(source, "position_scope", "document")
    if scope == "document":
        return "document"
    if scope == "stream":
        return "stream"
    name = getattr(source, "name", type(source).__name__)
    raise ConfigError(f"source {name!r} has position_scope {scope!r}; use 'document' or 'stream'")


@dataclass(frozen=True, slots=True)
class SourceHealth:
    """Whether a source can reach what it reads (a folder, a bucket, a broker) and, if not, why."""

    healthy: bool
    reason: str | None
    """What is wrong and what to do, when unhealthy (``None`` when healthy)."""
    since: float
    """When the source last became healthy or unhealthy (Unix seconds)."""


@dataclass(frozen=True, slots=True)
class SourceSample:
    """One value a source reports for ``/metrics``: ``name`` without the ``ragflow_source_`` prefix."""

    name: str
    labels: Mapping[str, str]
    value: float


class SourceStatus:
    """What a running source tells operators, read by ``DocumentStore.sources()``, ``/v1/sources``,
    ``ragflow status`` and ``/metrics``: its health with the reason, and its own counters and gauges
    (requests made, objects listed, consumer lag per partition...). Thread-safe: the source's threads
    write it, the server reads it. A source exposes one as its ``status`` attribute.

    Example:
        >>> status = SourceStatus()
        >>> status.unhealthy("bucket 'docs' does not exist; create it or fix 'bucket'")
        >>> status.count("list_requests")
        >>> status.gauge("consumer_lag", 12, partition="0")
        >>> status.health.healthy, [(s.name, s.value) for s in status.counters()]
        (False, [('list_requests', 1.0)])
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._health = SourceHealth(True, None, time.time())
        self._counters: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        self._gauges: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}

    @property
    def health(self) -> SourceHealth:
        with self._lock:
            return self._health

    def healthy(self) -> None:
        """The source works (again); a no-op when it already did."""
        with self._lock:
            if not self._health.healthy:
                self._health = SourceHealth(True, None, time.time())

    def unhealthy(self, reason: str) -> None:
        """The source cannot do its work now, because of ``reason`` (say what to do about it)."""
        with self._lock:
            if self._health.healthy or self._health.reason != reason:
                since = self._health.since if not self._health.healthy else time.time()
                self._health = SourceHealth(False, reason, since)

    def count(self, name: str, amount: float = 1.0, **labels: str) -> None:
        """Add ``amount`` to the counter ``name`` (exported as ``ragflow_source_<name>_total``)."""
        key = (name, tuple(sorted(labels.items())))
        with self._lock:
            self._counters[key] = self._counters.get(key, 0.0) + amount

    def gauge(self, name: str, value: float, **labels: str) -> None:
        """Set the gauge ``name`` (exported as ``ragflow_source_<name>``)."""
        with self._lock:
            self._gauges[(name, tuple(sorted(labels.items())))] = float(value)

    def counters(self) -> list[SourceSample]:
        with self._lock:
            return [SourceSample(n, dict(labels), v) for (n, labels), v in sorted(self._counters.items())]

    def gauges(self) -> list[SourceSample]:
        with self._lock:
            return [SourceSample(n, dict(labels), v) for (n, labels), v in sorted(self._gauges.items())]


def source_status(source: object) -> SourceStatus | None:
    """The ``status`` a source exposes, or ``None`` for a source that reports nothing."""
    status = getattr(source, "status", None)
    return status if isinstance(status, SourceStatus) else None


def deletion(doc_id: str, path: str, seen_ns: int | None = None) -> DocumentChange:
    """The DELETE of ``doc_id`` with the metadata every source gives one (``path``, ``seen_at``...)."""
    seen = seen_ns if seen_ns is not None else time.time_ns()
    metadata = {"path": path, "seen_at": seen // 1_000_000_000, "seen_at_ns": seen}
    return DocumentChange(doc_id, ChangeKind.DELETE, metadata=metadata)


def diff_listing(
    known: Mapping[str, V],
    listing: Iterable[tuple[str, L]],
    unchanged: Callable[[V, L], bool] = operator.eq,
    under: str = "",
) -> Iterator[tuple[str, L | None]]:
    """Compare a listing of ``(doc_id, version)`` with the versions last emitted, ``known``.

    Yields ``(doc_id, version)`` for each listed document that is new or whose known version is not
    ``unchanged`` (``==`` by default), lazily as the listing is read, so a long listing is not held in
    memory. Then yields ``(doc_id, None)``, in ``doc_id`` order, for each known document whose id starts
    with ``under`` and that the listing did not name: those are deletes. A listing that fails part-way
    must raise, never just end: the documents it did not reach would read as deleted.

    ``known`` may change while the caller handles what this yields (it usually records the new version);
    the deletes are decided once the listing is exhausted.

    Example:
        >>> list(diff_listing({"a": "v1", "b": "v1"}, [("a", "v2"), ("c", "v1")]))
        [('a', 'v2'), ('c', 'v1'), ('b', None)]
    """
    listed: set[str] = set()
    for doc_id, version in listing:
        listed.add(doc_id)
        before = known.get(doc_id)
        if before is None or not unchanged(before, version):
            yield doc_id, version
    gone = sorted(d for d in known if d.startswith(under) and d not in listed)
    for doc_id in gone:
        yield doc_id, None


class Notifications(Generic[H]):
    """Where notifier threads (a watchdog observer, an SQS receiver, the upload API) drop hints for the
    source's loop. Thread-safe; ``None`` cannot be a hint."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[H] = queue.SimpleQueue()

    def put(self, hint: H) -> None:
        self._queue.put(hint)

    def get(self, timeout: float) -> H | None:
        """The next hint, waiting at most ``timeout`` seconds; ``None`` if none came."""
        try:
            return self._queue.get(timeout=max(timeout, 0.0))
        except queue.Empty:
            return None

    def drain(self) -> list[H]:
        """Every hint queued now, without waiting."""
        hints = []
        while True:
            try:
                hints.append(self._queue.get_nowait())
            except queue.Empty:
                return hints


@dataclass(frozen=True, slots=True)
class Wake(Generic[H]):
    """Why ``SyncLoop`` woke the source: notifications arrived, the poll came due, or both (or neither,
    when the source asked for a wake of its own through ``wake_in``)."""

    hints: list[H]
    """The notifications that arrived, in order; sync what they name."""
    poll_due: bool
    """The poll (or reconcile) interval passed: list everything and diff it against what is known."""


class SyncLoop(Generic[H]):
    """One loop for every source: waits for a notification or the next poll deadline, whichever comes
    first, and yields a ``Wake`` saying which. A notified source (watchdog, SQS, Kafka) passes its
    ``notifications``; a source that must poll (S3 LIST, a folder without inotify) passes a
    ``poll_interval``; a source with both reconciles every ``poll_interval`` to catch lost notifications.

    Args:
        stop: Iteration ends once it is set (noticed within ``STOP_CHECK_S``).
        notifications: Where hints arrive; ``None`` for a polling-only source.
        poll_interval: Seconds from the end of one poll to the next; ``None``: never. Read each time the
            next poll is scheduled, so a source may change it (the folder polls faster once inotify fails).
        coalesce_window: After a first hint, keep gathering hints this many seconds into the same wake.
        wake_in: Seconds until the source has time-based work of its own (a grace period that ends), or
            ``None``; asked before each wait. The loop then yields a wake without hints when it is due.

    Example:
        >>> stop = threading.Event()
        >>> hints: Notifications[str] = Notifications()
        >>> hints.put("reports/q1.pdf")
        >>> for wake in SyncLoop(stop, hints, poll_interval=30.0):
        ...     print(wake.hints, wake.poll_due)
        ...     stop.set()
        ['reports/q1.pdf'] False
    """

    def __init__(
        self,
        stop: threading.Event,
        notifications: Notifications[H] | None = None,
        poll_interval: float | None = None,
        *,
        coalesce_window: float = 0.0,
        wake_in: Callable[[], float | None] | None = None,
    ) -> None:
        self.notifications: Notifications[H] = notifications if notifications is not None else Notifications()
        self.poll_interval = poll_interval
        self._stop = stop
        self._coalesce_window = coalesce_window
        self._wake_in = wake_in

    def __iter__(self) -> Iterator[Wake[H]]:
        next_poll = self._next_poll()
        while not self._stop.is_set():
            now = time.monotonic()
            own = self._wake_in() if self._wake_in is not None else None
            own_at = now + own if own is not None else float("inf")
            first = self.notifications.get(min(STOP_CHECK_S, next_poll - now, own_at - now))
            hints = self._gather(first) if first is not None else []
            now = time.monotonic()
            poll_due = now >= next_poll
            if hints or poll_due or now >= own_at:
                yield Wake(hints, poll_due)
            if poll_due:
                next_poll = self._next_poll()

    def _next_poll(self) -> float:
        interval = self.poll_interval
        return time.monotonic() + interval if interval is not None else float("inf")

    def _gather(self, first: H) -> list[H]:
        hints = [first, *self.notifications.drain()]
        deadline = time.monotonic() + self._coalesce_window
        while (left := deadline - time.monotonic()) > 0:
            hint = self.notifications.get(left)
            if hint is None:
                break
            hints.append(hint)
        return hints


class SourceRun(ABC, Generic[H]):
    """One ``run`` of a source, from its saved position until ``stop``: the skeleton every source shares.

    A source class holds its configuration; its ``run`` builds a ``SourceRun`` subclass and calls
    ``run(mode, position)``, which calls ``start``, ``snapshot``, then ``sync`` for each ``Wake`` of
    ``self.loop`` (streaming only), then ``close``. Notifier threads put hints into ``self.notifications``.

    Example (a polled listing, such as S3 LIST; ``list_etags`` and ``fetch`` are the source's own):
        >>> class BucketRun(SourceRun[str]):
        ...     def start(self, mode, position):
        ...         self.known = dict(position or {})
        ...     def snapshot(self):
        ...         self.sync(Wake([], poll_due=True))
        ...         return []
        ...     def sync(self, wake):
        ...         changes = []
        ...         for key, etag in diff_listing(self.known, list_etags()):
        ...             if etag is None:
        ...                 del self.known[key]
        ...                 changes.append(deletion(key, key))
        ...             else:
        ...                 self.known[key] = etag
        ...                 changes.append(DocumentChange(key, ChangeKind.UPSERT, fetch(key), position=etag))
        ...         self.emit(changes)
    """

    def __init__(
        self,
        emit: EmitChanges,
        stop: threading.Event,
        poll_interval: float | None = None,
        coalesce_window: float = 0.0,
    ) -> None:
        self._emit = emit
        self._stop = stop
        self.notifications: Notifications[H] = Notifications()
        self.loop: SyncLoop[H] = SyncLoop(
            stop, self.notifications, poll_interval, coalesce_window=coalesce_window, wake_in=self.wake_in
        )

    def run(self, mode: Mode, position: Any) -> None:
        """Emit the initial state from ``position``, then (streaming) live changes until ``stop``."""
        if mode not in ("static", "streaming"):
            raise ConfigError(f"a source's mode must be 'static' or 'streaming', got {mode!r}")
        try:
            self.start(mode, position)
            last = self.snapshot()
            if last is None:
                return
            self._emit(last, snapshot_done=True)
            if mode == "streaming":
                for wake in self.loop:
                    self.sync(wake)
        finally:
            self.close()

    @abstractmethod
    def start(self, mode: Mode, position: Any) -> None:
        """Take the saved ``position`` (``None``: from the beginning) and, streaming, start notifications
        before the snapshot, so a change made while it runs is queued, not lost."""

    @abstractmethod
    def snapshot(self) -> list[DocumentChange] | None:
        """Emit the initial state (from the position: what changed since) and return its last group,
        which ``run`` emits with ``snapshot_done=True``; ``None`` when ``stop`` cut it short."""

    @abstractmethod
    def sync(self, wake: Wake[H]) -> None:
        """Bring the emitted state up to date after ``wake`` and emit what changed."""

    def wake_in(self) -> float | None:
        """Seconds until this run has time-based work of its own; ``None``: none (see ``SyncLoop``)."""
        return None

    def close(self) -> None:
        """Stop notifications; called once ``run`` ends, however it ends."""

    def emit(self, changes: list[DocumentChange]) -> None:
        """Emit ``changes`` as one atomic group; nothing when there are none."""
        if changes:
            self._emit(changes)
