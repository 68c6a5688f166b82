"""Prometheus metrics of a served store: documents by status, chunks, queued changes, epoch latency,
freshness (a document's ``seen_at`` to its ``indexed_at``), embedding rate, errors, HTTP requests, and each
source's health, counters and gauges."""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from functools import partial
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
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ragflow.embedders import embedder_stats

if TYPE_CHECKING:
    from ragflow.engine import EpochReport
    from ragflow.sources import SourceSample
    from ragflow.store import DocumentStatus, DocumentStore, SourceReport

__all__ = ["CONTENT_TYPE_LATEST", "ServerMetrics"]

log = logging.getLogger("ragflow.server")

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
        gauge = partial(Gauge, registry=r)
        self.documents = gauge("ragflow_documents", "Documents by indexing status", ["status"])
        self.chunks = gauge("ragflow_chunks", "Chunks in the vector index")
        self.queued = gauge("ragflow_queued_changes", "Source changes waiting for an epoch")
        self.errors = gauge("ragflow_document_errors", "Documents or chunks that could not be indexed")
        self.ready = gauge("ragflow_ready", "1 once the initial snapshot is searchable")
        self.last_indexed = gauge(
            "ragflow_last_indexed_timestamp_seconds", "When the latest change became searchable"
        )
        self.embedded = gauge("ragflow_chunks_embedded", "Chunk texts embedded since start")
        self.cache_hits = gauge("ragflow_embedding_cache_hits", "Chunk embeddings read from the cache")
        self.embed_rate = gauge(
            "ragflow_embed_rate_chunks_per_second", f"Chunks embedded per second over {_RATE_WINDOW_S:g} s"
        )
        self.embedder = gauge(
            "ragflow_embedder_info",
            "How the embedding model runs (1): device, precision of a full batch and of one text",
            ["device", "precision", "single_precision"],
        )
        self.embedder_compiled = gauge(
            "ragflow_embedder_compiled",
            "The bfloat16 pass (1): compiled for this CPU, compiling (uncompiled until done) or uncompiled",
            ["state"],
        )
        self.embedder_batch = gauge("ragflow_embedder_batch_size", "Texts per forward pass")
        self.embedder_rate = gauge(
            "ragflow_embedder_chunks_per_second",
            "Chunks per second inside the indexing model since start (its own time only)",
        )
        self.query_passes = gauge(
            "ragflow_query_embed_passes",
            "Forward passes that embedded retrieval queries since start (concurrent queries share one)",
        )
        self.queries_embedded = gauge("ragflow_queries_embedded", "Retrieval queries embedded since start")
        self.indexing_yields = gauge(
            "ragflow_indexing_yields",
            "Indexing batches that waited for queries to be embedded first, since start",
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
        self.last_checkpoint = gauge(
            "ragflow_last_checkpoint_timestamp_seconds",
            "When the state directory last committed a checkpoint (0: never, or no state directory)",
        )
        self.checkpoint_pending = gauge(
            "ragflow_checkpoint_pending_documents", "Documents changed since the last checkpoint"
        )
        self.checkpoint_failures = gauge(
            "ragflow_checkpoint_failures", "Checkpoints failed in a row (a full disk); 0 once one succeeds"
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
        r.register(SourceMetrics(store))
        self.migration_active = gauge(
            "ragflow_migration_active",
            "1 while a migration builds the next generation beside the serving one (docs/persistence.md)",
        )
        self.migration_documents = gauge(
            "ragflow_migration_documents",
            "The migration's documents: done (in the new generation) and total (to do)",
            ["kind"],
        )
        self.migration_rate = gauge(
            "ragflow_migration_documents_per_second", "Documents the migration indexes per second"
        )
        self.migration_eta = gauge(
            "ragflow_migration_eta_seconds", "Seconds until the migration catches up (estimate; -1: unknown)"
        )
        self.migration_gate = gauge(
            "ragflow_migration_gate_score",
            "The evaluation gate's last score (persistence.migration_gate's metric) of the serving and "
            "the new generation (-1: not evaluated)",
            ["generation"],
        )
        self.migration_swaps = gauge(
            "ragflow_migration_swapped_at_seconds", "When the last swap happened (Unix seconds; 0: none)"
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
        self._describe_embedder()
        self._observe_query_batching()
        persistence = self.store.persistence_stats()
        if persistence is not None:
            self.last_checkpoint.set(persistence["last_checkpoint"] or 0)
            self.checkpoint_pending.set(persistence["pending_documents"])
            self.checkpoint_failures.set(persistence["failures"])
        self._observe_migration()
        return generate_latest(self.registry)

    def _observe_query_batching(self) -> None:
        batcher = getattr(self.store, "query_batcher", None)  # a MigratingStore's serving generation's
        if batcher is not None:
            self.query_passes.set(batcher.passes)
            self.queries_embedded.set(batcher.queries)
            priority = batcher.priority
            self.indexing_yields.set(priority.yields if priority is not None else 0)

    def _observe_migration(self) -> None:
        status_of = getattr(self.store, "migration_status", None)
        status: dict[str, Any] = status_of() if callable(status_of) else {"state": "none"}
        self.migration_active.set(1 if status["state"] in ("building", "catching_up", "held") else 0)
        self.migration_documents.labels("done").set(status.get("documents_done") or 0)
        self.migration_documents.labels("total").set(status.get("documents_total") or 0)
        self.migration_rate.set(status.get("rate_documents_per_second") or 0)
        eta = status.get("eta_seconds")
        self.migration_eta.set(eta if eta is not None else -1)
        self.migration_swaps.set(status.get("swapped_at") or 0)
        gate = status.get("gate") or {}
        for generation, key in (("serving", "active_score"), ("new", "new_score")):
            score = gate.get(key)
            self.migration_gate.labels(generation).set(score if score is not None else -1)

    def _describe_embedder(self) -> None:
        described = embedder_stats(self.store.embedder)
        if not described.get("device"):
            return
        labels = (described["device"], described["precision"], described["single_precision"])
        self.embedder.clear()
        self.embedder.labels(*labels).set(1)
        self.embedder_compiled.clear()
        if described.get("compiled"):
            self.embedder_compiled.labels(described["compiled"]).set(1)
        self.embedder_batch.set(described["batch_size"])
        self.embedder_rate.set(described["texts_per_second"])

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


class SourceMetrics(Collector):
    """Each source's health and its own counters and gauges (``SourceStatus``), read at each scrape:
    ``ragflow_source_up{source}``, ``ragflow_source_<name>_total{source,...}`` for a counter and
    ``ragflow_source_<name>{source,...}`` for a gauge. Names and label names are made valid for Prometheus
    (other characters become ``_``); a source's own ``source`` label is exported as ``exported_source``.
    A gauge whose series would clash with a counter's (or either with ``ragflow_source_up``) is left out,
    with a warning."""

    def __init__(self, store: DocumentStore) -> None:
        self._store = store
        self._warned: set[str] = set()

    def describe(self) -> Iterable[Metric]:
        return ()  # the names depend on what the sources report: nothing to check at registration

    def collect(self) -> Iterator[Metric]:
        reports = self._store.sources()
        up = GaugeMetricFamily(
            "ragflow_source_up",
            "1 while the source can reach what it reads, 0 while not (GET /v1/sources says why)",
            labels=["source"],
        )
        counters: dict[str, Metric] = {}
        gauges: dict[str, Metric] = {}
        for report in reports:
            up.add_metric([report.name], 1.0 if report.healthy else 0.0)
            _add_samples(counters, report, report.counters, "counter")
            _add_samples(gauges, report, report.gauges, "gauge")
        yield up
        taken = {up.name}
        for family in [*counters.values(), *gauges.values()]:
            series = {family.name, *(sample.name for sample in family.samples)}
            if series & taken:
                if family.name not in self._warned:
                    self._warned.add(family.name)
                    log.warning("source metric %s is left out of /metrics: its name is taken", family.name)
                continue
            taken |= series
            yield family


def _add_samples(
    families: dict[str, Metric], report: SourceReport, samples: Iterable[SourceSample], kind: str
) -> None:
    for sample in samples:
        name = "ragflow_source_" + re.sub("[^a-zA-Z0-9_:]", "_", sample.name)
        if kind == "counter":
            name = name.removesuffix("_total")
        family = families.get(name)
        if family is None:
            family = families[name] = Metric(name, f"{kind.capitalize()} {sample.name!r} of a source", kind)
        sample_name = f"{name}_total" if kind == "counter" else name
        family.add_sample(sample_name, _labels(report.name, sample.labels), sample.value)


def _labels(source: str, labels: Mapping[str, str]) -> dict[str, str]:
    """``source`` plus the sample's own labels, their names made valid (``__`` starts reserved names)."""
    exported = {"source": source}
    for key, value in labels.items():
        label = re.sub("[^a-zA-Z0-9_]", "_", key).lstrip("_")
        if not label or label[0].isdigit():
            label = f"label_{label}"
        exported["exported_source" if label == "source" else label] = str(value)
    return exported


def _queued_changes(store: DocumentStore) -> int:
    """Changes pushed by sources and not yet taken by an epoch."""
    engine = store.engine
    # The engine has no public counter yet; `_pending_changes` is what it bounds max_pending_changes with.
    value: Any = getattr(engine, "pending_changes", None)
    if value is None:
        value = getattr(engine, "_pending_changes", 0)
    return int(value() if callable(value) else value)
