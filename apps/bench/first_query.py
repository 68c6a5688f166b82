"""Benchmark of the first query after a restart, black-box: ``ragflow serve`` on a state directory is
stopped and started again, ``/readyz`` is polled until it answers ready, then ``/v1/retrieve`` is timed for
the first query and for the ten after it (different queries, k=5, HTTP keep-alive off as a new client has).

    python -m apps.bench.first_query [--docs N] [--restarts N]

Target: the first query after a restart takes no longer than 2x a warm query (the tenth). Prints Markdown.
The corpus is the docstrings of the Python standard library's modules.
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

from apps.bench.embedding import QUERIES as SHORT_QUERIES
from apps.bench.pipeline import stdlib_corpus, write_corpus

QUERIES = (
    *SHORT_QUERIES,
    "encode an object as JSON",
    "open a network connection",
    "serve files over HTTP",
    "read a configuration file",
    "format a date as text",
    "compress data with zlib",
)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start(docs: Path, state: Path, port: int) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "ragflow.cli", "serve", str(docs), "--port", str(port)]
    command += ["--state-dir", str(state), "--log-level", "warning"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def until_ready(url: str, timeout: float) -> float:
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        try:
            if requests.get(url + "/readyz", timeout=5).status_code == 200:
                return time.perf_counter() - started
        except requests.ConnectionError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{url} was not ready within {timeout:.0f} s")


def query_ms(url: str, query: str) -> float:
    started = time.perf_counter()
    response = requests.post(url + "/v1/retrieve", json={"query": query, "k": 5}, timeout=60)
    elapsed = (time.perf_counter() - started) * 1000
    response.raise_for_status()
    return elapsed


def stop(server: subprocess.Popen[bytes]) -> None:
    server.send_signal(signal.SIGTERM)
    try:
        server.wait(60)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=20)
    parser.add_argument("--restarts", type=int, default=3)
    args = parser.parse_args(argv)
    load_average = os.getloadavg()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        docs, state = Path(tmp) / "docs", Path(tmp) / "state"
        docs.mkdir()
        write_corpus(docs, stdlib_corpus(args.docs))
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        server = start(docs, state, port)
        try:
            until_ready(url, 1800)  # the initial indexing, and the calibration on a first run
        finally:
            stop(server)
        for _ in range(args.restarts):
            started = time.perf_counter()
            server = start(docs, state, port)
            try:
                ready = until_ready(url, 600)
                times = [query_ms(url, query) for query in QUERIES]
            finally:
                stop(server)
            rows.append(
                (ready, time.perf_counter() - started, times[0], times[10], statistics.median(times[1:]))
            )
    print(f"- Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print(
        f"- Machine: {platform.platform()}, {os.cpu_count()} CPUs, "
        f"load average {load_average[0]:.2f} at start"
    )
    print(
        "- Command: `python -m apps.bench.first_query "
        f"{' '.join(argv if argv is not None else sys.argv[1:])}`"
    )
    print(
        f"- {args.docs} documents, `ragflow serve` restarted {args.restarts} times on the same "
        "state directory"
    )
    print()
    print("| restart | start to ready | first query | tenth query | median of queries 2-11 | first ÷ tenth |")
    print("|--:|--:|--:|--:|--:|--:|")
    for i, (ready, _, first, tenth, warm) in enumerate(rows, 1):
        print(
            f"| {i} | {ready:.1f} s | {first:.0f} ms | {tenth:.0f} ms | {warm:.0f} ms | {first / tenth:.2f} |"
        )
    ratios = [first / tenth for _, _, first, tenth, _ in rows]
    print()
    print(f"First ÷ tenth query, median over restarts: {statistics.median(ratios):.2f} (target ≤ 2).")


if __name__ == "__main__":
    main()
