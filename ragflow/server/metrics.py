"""Prometheus metrics of a served store: documents by status, chunks, queued changes, epoch latency,
freshness (a document's ``seen_at`` to its ``indexed_at``), embedding rate, errors and HTTP requests."""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)

if TYPE_CHECKING:
    from ragflow.engine import EpochReport
    from ragflow.store import DocumentStatus, DocumentStore

__all__ = ["CONTENT_TYPE_LATEST", "ServerMetrics"]

# The *_created series (when each counter was made) only double the output here.
disable_created_metrics()

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_FRESHNESS_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0)
# The embedding rate is measured over this many recent seconds.
_RATE_WINDOW_S = 60.0


class ServerMetrics:
    """The metrics of one app, in a registry of its own (two apps in one process do not mix).

    Epoch latency and the embedding rate are recorded from the store's epoch reports; document counts,
    chunks and freshness are read when ``/metrics`` is scraped, so serving costs nothing between scrapes.
    Freshness is observed once per indexed document version, at the first scrape that sees it.
    """

    def __init__(self, store: DocumentStore) -> None:
        self.store = store
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.documents = Gauge("ragflow_documents", "Documents by indexing status", ["status"], registry=r)
        self.chunks = Gauge("ragflow_chunks", "Chunks in the vector index", registry=r)
        self.queued = Gauge("ragflow_queued_changes", "Source changes waiting for an epoch", registry=r)
        self.errors = Gauge(
            "ragflow_document_errors", "Documents or chunks that could not be indexed", registry=r
        )
        self.ready = Gauge("ragflow_ready", "1 once the initial snapshot is searchable", registry=r)
        self.last_indexed = Gauge(
            "ragflow_last_indexed_timestamp_seconds", "When the latest change became searchable", registry=r
        )
        self.embedded = Gauge("ragflow_chunks_embedded", "Chunk texts embedded since start", registry=r)
        self.cache_hits = Gauge(
            "ragflow_embedding_cache_hits", "Chunk embeddings read from the cache", registry=r
        )
        self.embed_rate = Gauge(
            "ragflow_embed_rate_chunks_per_second",
            f"Chunks embedded per second over {_RATE_WINDOW_S:g} s",
            registry=r,
        )
        self.epochs = Counter("ragflow_epochs", "Epochs processed", registry=r)
        self.epoch_seconds = Histogram(
            "ragflow_epoch_duration_seconds",
            "Time to process one epoch",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.freshness = Histogram(
            "ragflow_freshness_seconds",
            "From a document version being seen at its source (seen_at) to being searchable (indexed_at)",
            buckets=_FRESHNESS_BUCKETS,
            registry=r,
        )
        self.last_checkpoint = Gauge(
            "ragflow_last_checkpoint_timestamp_seconds",
            "When the state directory last committed a checkpoint (0: never, or no state directory)",
            registry=r,
        )
        self.checkpoint_pending = Gauge(
            "ragflow_checkpoint_pending_documents", "Documents changed since the last checkpoint", registry=r
        )
        self.checkpoint_failures = Gauge(
            "ragflow_checkpoint_failures",
            "Checkpoints failed in a row (a full disk); 0 once one succeeds",
            registry=r,
        )
        self.requests = Counter(
            "ragflow_http_requests", "HTTP requests", ["method", "route", "status"], registry=r
        )
        self.request_seconds = Histogram(
            "ragflow_http_request_duration_seconds",
            "HTTP request latency",
            ["route"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self._lock = threading.Lock()
        self._observed: dict[str, float] = {}
        self._embedded_samples: deque[tuple[float, int]] = deque()
        store.on_update(self._on_epoch)

    def record_request(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.request_seconds.labels(route).observe(seconds)

    def render(self, ready: bool) -> bytes:
        """The Prometheus text exposition of every metric, refreshed from the store now."""
        statuses = self.store.documents()
        counts = {"INDEXED": 0, "INGESTED": 0, "ERROR": 0}
        for status in statuses:
            counts[status.status] = counts.get(status.status, 0) + 1
        for name, count in counts.items():
            self.documents.labels(name).set(count)
        self._observe_freshness(statuses)
        self.chunks.set(self.store.index.count())
        self.queued.set(_queued_changes(self.store))
        self.errors.set(len(self.store.errors()))
        self.ready.set(1 if ready else 0)
        last = self.store.statistics()["last_indexed"]
        self.last_indexed.set(last if last is not None else 0)
        stats = self.store.embedding_stats()
        self.embedded.set(stats["computed"])
        self.cache_hits.set(stats["cache_hits"])
        self.embed_rate.set(self._rate(stats["computed"]))
        persistence = self.store.persistence_stats()
        if persistence is not None:
            self.last_checkpoint.set(persistence["last_checkpoint"] or 0)
            self.checkpoint_pending.set(persistence["pending_documents"])
            self.checkpoint_failures.set(persistence["failures"])
        return generate_latest(self.registry)

    def _on_epoch(self, report: EpochReport) -> None:
        self.epochs.inc()
        self.epoch_seconds.observe(report.seconds)
        computed = self.store.embedding_stats()["computed"]
        now = time.monotonic()
        with self._lock:
            self._embedded_samples.append((now, computed))
            while self._embedded_samples and self._embedded_samples[0][0] < now - _RATE_WINDOW_S:
                self._embedded_samples.popleft()

    def _rate(self, computed_now: int) -> float:
        now = time.monotonic()
        with self._lock:
            if not self._embedded_samples:
                return 0.0
            since, computed_then = self._embedded_samples[0]
        if now - since < 1e-3 or since < now - _RATE_WINDOW_S:
            return 0.0
        return max(0, computed_now - computed_then) / (now - since)

    def _observe_freshness(self, statuses: list[DocumentStatus]) -> None:
        with self._lock:
            present = set()
            for status in statuses:
                present.add(status.doc_id)
                if status.indexed_at is None or status.seen_at is None:
                    continue
                if self._observed.get(status.doc_id) == status.indexed_at:
                    continue
                self._observed[status.doc_id] = status.indexed_at
                self.freshness.observe(max(0.0, status.indexed_at - status.seen_at))
            for gone in self._observed.keys() - present:
                del self._observed[gone]


def _queued_changes(store: DocumentStore) -> int:
    """Changes pushed by sources and not yet taken by an epoch."""
    engine = store.engine
    # The engine has no public counter yet; `_pending_changes` is what it bounds max_pending_changes with.
    value: Any = getattr(engine, "pending_changes", None)
    if value is None:
        value = getattr(engine, "_pending_changes", 0)
    return int(value() if callable(value) else value)
