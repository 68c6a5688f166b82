"""S3 source benchmark: put -> searchable latency (p50/p95) in polling mode (SeaweedFS) and in
notification mode (moto's server: S3 events to SQS), and the time to relist an unchanged bucket of N keys.

    python -m apps.bench.s3 [--puts 40] [--poll-interval 1.0] [--relist 10000,100000] [--no-latency]

The relist starts from the position a checkpoint would hold, built from one listing (checked against a
real first run over 100 of the keys) rather than by downloading every object first.

Both servers are started on free ports of 127.0.0.1 (``pip install 'ragflow[dev]'`` provides them). The
store uses a fast hashing embedder, so the numbers are the source's and the pipeline's, not the model's.
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ragflow.connectors.s3 import S3Source
from ragflow.connectors.s3.bucket import Bucket
from ragflow.connectors.s3.sync import version
from ragflow.store import DocumentStore
from tests.connectors.s3_helpers import counter, s3_source
from tests.fakes.hashing_embedder import HashingEmbedder
from tests.servers.s3 import MotoServer, SeaweedFS, s3_client, temporary_directory

_PUT_WORKERS = 32


def put_to_searchable(client: Any, bucket: str, source: S3Source, puts: int, spread: float) -> list[float]:
    """Seconds from just before each put to the object being retrievable, one put at a time."""
    latencies = []
    with DocumentStore(source, embedder=HashingEmbedder()) as store:
        assert store.wait_until_fresh(60), "the store did not get fresh"
        rng = random.Random(1)
        for i in range(puts):
            marker = f"marker{i}x{rng.randrange(10**9)}"
            key = f"bench/{marker}.md"
            path_filter = f"path == 's3://{bucket}/{key}'"
            time.sleep(rng.uniform(0.0, spread))  # land anywhere in the poll cycle
            started = time.perf_counter()
            client.put_object(Bucket=bucket, Key=key, Body=f"The {marker} document.".encode())
            while not store.retrieve(marker, k=1, metadata_filter=path_filter):
                if time.perf_counter() - started > 30:
                    raise RuntimeError(f"{key} not searchable after 30 s")
                time.sleep(0.002)
            latencies.append(time.perf_counter() - started)
    return latencies


def relist_seconds(seaweedfs: SeaweedFS, keys: int) -> tuple[float, float]:
    """(seconds to write ``keys`` objects, seconds for a relist of them that finds nothing changed)."""
    bucket = seaweedfs.new_bucket()
    client = s3_client(seaweedfs.endpoint, max_pool_connections=_PUT_WORKERS)
    started = time.perf_counter()
    with ThreadPoolExecutor(_PUT_WORKERS) as pool:  # small single-part puts, many at once
        list(pool.map(lambda i: client.put_object(Bucket=bucket, Key=_key(i), Body=b"x"), range(keys)))
    written = time.perf_counter() - started
    position = checkpointed_position(seaweedfs, bucket)
    assert len(position) == keys
    again = s3_source(seaweedfs.endpoint, bucket)
    emitted: list[Any] = []
    started = time.perf_counter()
    again.run(
        lambda changes, snapshot_done=False: emitted.extend(changes), threading.Event(), "static", position
    )
    seconds = time.perf_counter() - started
    assert not emitted and counter(again, "objects_downloaded") == 0
    return written, seconds


def checkpointed_position(seaweedfs: SeaweedFS, bucket: str) -> dict[str, Any]:
    """The position a checkpoint holds after a full first run, built from one listing instead of a run
    that downloads every object (100k GETs would dominate the benchmark); checked against a real run
    over the first 100 keys."""
    source = s3_source(seaweedfs.endpoint, bucket)
    listing = Bucket(source, source.status).list("")
    position = {f"s3://{bucket}/{obj.key}": version(obj) for obj in listing}
    sample = s3_source(seaweedfs.endpoint, bucket, prefix="k/00000")  # k/0000000.md .. k/0000099.md
    first: list[Any] = []
    sample.run(lambda changes, snapshot_done=False: first.extend(changes), threading.Event(), "static")
    assert first and all(position[c.doc_id] == c.position for c in first), "listed versions differ"
    return position


def _key(i: int) -> str:
    return f"k/{i:07d}.md"


def report(name: str, latencies: list[float], target: str) -> None:
    ms = sorted(x * 1000 for x in latencies)
    p95 = ms[min(len(ms) - 1, round(0.95 * (len(ms) - 1)))]
    print(
        f"{name:<34} n={len(ms):<4} p50 {statistics.median(ms):7.1f} ms   p95 {p95:7.1f} ms   "
        f"max {ms[-1]:7.1f} ms   target {target}"
    )


def latencies(seaweedfs: SeaweedFS, moto: MotoServer, puts: int, poll_interval: float) -> None:
    bucket = seaweedfs.new_bucket()
    polled = s3_source(seaweedfs.endpoint, bucket, poll_interval=poll_interval)
    report(
        f"polling (SeaweedFS, every {poll_interval:g} s)",
        put_to_searchable(seaweedfs.client(), bucket, polled, puts, poll_interval),
        f"<= {poll_interval * 1000 + 150:.0f} ms",
    )
    bucket, queue_url = moto.notified_bucket()
    notified = s3_source(
        moto.endpoint, bucket, notifications={"sqs_queue_url": queue_url}, reconcile_interval=300
    )
    report(
        "notifications (moto S3 -> SQS)",
        put_to_searchable(moto.client(), bucket, notified, puts, 0.3),
        "p50 <= 300 ms",
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--puts", type=int, default=40)
    parser.add_argument("--poll-interval", type=float, default=1.0)
    parser.add_argument("--relist", default="10000", help="comma-separated bucket sizes to relist")
    parser.add_argument("--no-latency", action="store_true", help="only the relists")
    args = parser.parse_args(argv)
    directory = temporary_directory()
    seaweedfs, moto = SeaweedFS(directory), MotoServer()
    seaweedfs.start()
    moto.start()
    try:
        if not args.no_latency:
            latencies(seaweedfs, moto, args.puts, args.poll_interval)
        for size in (int(s) for s in args.relist.split(",") if s):
            written, seconds = relist_seconds(seaweedfs, size)
            rate = size / seconds
            print(
                f"relist of {size:,} unchanged keys (SeaweedFS): {seconds:.2f} s = {rate:,.0f} keys/s, "
                f"0 downloaded (writing them took {written:.1f} s)"
            )
    finally:
        moto.stop()
        seaweedfs.stop()
        shutil.rmtree(directory, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
