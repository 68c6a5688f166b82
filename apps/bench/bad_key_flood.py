"""Benchmark of a bad-key flood: a good-key client's ``POST /v1/retrieve`` latency through a real uvicorn
server, alone and while another process sends 1,000 requests with wrong keys; printed as Markdown.

    python -m apps.bench.bad_key_flood [--bad 1000] [--connections 4] [--good 300] [--rounds 3]

The flood runs in its own process (its own interpreter, so it does not hold this process's GIL) over
``--connections`` keep-alive connections from 127.0.0.1, the same address as the good client: after the
server's limit of wrong keys (10 per minute by default) its requests are answered 429. The good client
sends sequential requests on one keep-alive connection. Target: loaded p99 within 2x the unloaded p99.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from apps.bench.server import percentile

GOOD_KEY = "bench-good-key-0123456789"

FLOOD = r"""
import collections, http.client, json, sys, threading
host, port, n, connections = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
counts = collections.Counter()
lock = threading.Lock()
def run(share):
    conn = http.client.HTTPConnection(host, port, timeout=30)
    for i in range(share):
        conn.request("GET", "/v1/statistics", headers={"X-API-Key": f"wrong-key-{i:020d}"})
        response = conn.getresponse()
        response.read()
        with lock:
            counts[response.status] += 1
shares = [n // connections + (i < n % connections) for i in range(connections)]
threads = [threading.Thread(target=run, args=(share,)) for share in shares]
print("go", flush=True)
for t in threads: t.start()
for t in threads: t.join()
print(json.dumps(counts), flush=True)
"""


@dataclass(frozen=True)
class FloodResult:
    unloaded_ms: list[float]
    loaded_ms: list[float]
    bad_statuses: dict[int, int]
    flood_seconds: float

    @property
    def ratio(self) -> float:
        return percentile(self.loaded_ms, 0.99) / percentile(self.unloaded_ms, 0.99)


def good_requests(
    url: str, key: str, count: int | None = None, until: subprocess.Popen[str] | None = None
) -> list[float]:
    """Latencies (ms) of sequential good-key retrievals: ``count`` of them, or as many as run until
    ``until`` exits."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80, timeout=30)
    body = json.dumps({"query": "harbor lantern", "k": 3})
    headers = {"X-API-Key": key, "Content-Type": "application/json"}
    latencies: list[float] = []
    while (count is not None and len(latencies) < count) or (until is not None and until.poll() is None):
        started = time.perf_counter()
        conn.request("POST", "/v1/retrieve", body=body, headers=headers)
        response = conn.getresponse()
        response.read()
        assert response.status == 200, response.status
        latencies.append((time.perf_counter() - started) * 1000)
    conn.close()
    return latencies


def flood_while_measuring(
    url: str, key: str, bad: int = 1000, connections: int = 4, good: int = 300
) -> FloodResult:
    """The good client's latencies alone (``good`` requests), then while ``bad`` wrong-key requests run."""
    good_requests(url, key, 20)  # warm up the connection and the query path
    unloaded = good_requests(url, key, good)
    parts = urlsplit(url)
    flood = subprocess.Popen(
        [sys.executable, "-c", FLOOD, parts.hostname or "", str(parts.port), str(bad), str(connections)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert flood.stdout is not None
    assert flood.stdout.readline().strip() == "go"
    started = time.perf_counter()
    loaded = good_requests(url, key, until=flood)
    seconds = time.perf_counter() - started
    statuses = {int(k): v for k, v in json.loads(flood.stdout.read()).items()}
    flood.wait()
    return FloodResult(unloaded, loaded, statuses, seconds)


def main() -> None:
    from ragflow.connectors.folder import FolderSource
    from ragflow.server import create_app
    from ragflow.server.auth import ApiKey, Role, key_digest
    from ragflow.store import DocumentStore
    from tests.fakes.hashing_embedder import HashingEmbedder
    from tests.server.conftest import DOCS, running

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bad", type=int, default=1000)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--good", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        for name, text in DOCS.items():
            (Path(folder) / name).parent.mkdir(parents=True, exist_ok=True)
            (Path(folder) / name).write_text(text)
        with DocumentStore(
            FolderSource(folder, reconcile_interval=None), embedder=HashingEmbedder()
        ) as store:
            assert store.wait_until_fresh(60)
            app = create_app(store, api_keys=[ApiKey("good", Role.READ, key_digest(GOOD_KEY))])
            with running(app) as url:
                results = [
                    flood_while_measuring(url, GOOD_KEY, args.bad, args.connections, args.good)
                    for _ in range(args.rounds)
                ]
    load = os.getloadavg()[0]
    print(f"- Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load average {load:.1f} at the end")
    print(f"- Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    options = f"--bad {args.bad} --connections {args.connections} --good {args.good} --rounds {args.rounds}"
    print(f"- Command: `python -m apps.bench.bad_key_flood {options}`\n")
    print(
        "| round | unloaded p50 / p99 | during the flood p50 / p99 (requests) | p99 ratio "
        "| flood: statuses, seconds |"
    )
    print("|---|---|---|---|---|")
    for i, r in enumerate(results, 1):
        statuses = ", ".join(f"{n}x {status}" for status, n in sorted(Counter(r.bad_statuses).items()))
        print(
            f"| {i} | {percentile(r.unloaded_ms, 0.5):.1f} / {percentile(r.unloaded_ms, 0.99):.1f} ms "
            f"| {percentile(r.loaded_ms, 0.5):.1f} / {percentile(r.loaded_ms, 0.99):.1f} ms "
            f"({len(r.loaded_ms)}) "
            f"| {r.ratio:.2f} | {statuses}; {r.flood_seconds:.2f} s |"
        )


if __name__ == "__main__":
    main()
