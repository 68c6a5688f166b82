"""The scale-out crash test, all processes real: ``ragflow feed`` over a folder, three ``ragflow worker``
processes in one consumer group over a 6-partition topic, two ``ragflow serve --index pgvector``
replicas. Random folder changes while one worker is killed with SIGKILL and another started; at each
quiet point the shared table and both replicas hold exactly the current documents — no ghost, no
duplicate chunk, nothing missing — compared with a from-scratch build of the folder.

The default run is small; ``-m slow`` runs a longer one (more documents, rounds and kills)."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.scaleout.helpers import from_scratch, random_document, stored, wait_for
from tests.servers.kafka import CONSUMER_SETTINGS, free_port, shared_broker
from tests.servers.postgres import PostgresServer, shared_postgres

pytest.importorskip("confluent_kafka")
pytest.importorskip("psycopg")

REPO = Path(__file__).resolve().parents[2]


class Cluster:
    """The processes of one test, each started by ``start`` and stopped by its PID."""

    def __init__(self, tmp: Path) -> None:
        broker = shared_broker()
        self.topic = broker.create_topic(partitions=6)
        self.table = PostgresServer.table_name("scaleout")
        self.folder = tmp / "docs"
        self.folder.mkdir()
        self.logs = tmp / "logs"
        self.logs.mkdir()
        self.bootstrap = broker.bootstrap
        index = {"kind": "pgvector", "dsn": shared_postgres().dsn, "table": self.table}
        feed = {
            "sources": [{"kind": "folder", "root": str(self.folder), "reconcile_interval": 2.0}],
            "persistence": {"state_dir": str(tmp / "feed-state")},
        }
        worker = {
            "sources": [
                {
                    "kind": "kafka",
                    "topics": self.topic,
                    "bootstrap_servers": self.bootstrap,
                    "group_id": f"workers-{self.table}",
                    "consumer": CONSUMER_SETTINGS,
                }
            ],
            "index": index,
            "persistence": {"state_dir": str(tmp / "unused")},
        }
        self.feed_config = tmp / "feed.yaml"
        self.feed_config.write_text(json.dumps(feed))  # JSON is YAML
        self.worker_config = tmp / "worker.yaml"
        self.worker_config.write_text(json.dumps(worker))
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.replicas: list[str] = []
        from ragflow.indexers.pgvector import PgvectorIndex

        PgvectorIndex(dim=64, dsn=shared_postgres().dsn, table=self.table).close()  # the tables

    def start(self, name: str, *args: str) -> None:
        with open(self.logs / f"{name}.log", "wb") as log:
            self.processes[name] = subprocess.Popen(
                [sys.executable, "-m", "tests.scaleout.child", *args],
                cwd=REPO,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONPATH": str(REPO)},
            )

    def start_worker(self, name: str) -> None:
        self.start(name, "worker", "--config", str(self.worker_config), "--batch", "20")

    def start_replica(self, name: str) -> None:
        port = free_port()
        self.start(
            name, "serve", "--index", "pgvector", "--config", str(self.worker_config), "--port", str(port)
        )
        self.replicas.append(f"http://127.0.0.1:{port}")

    def start_feed(self) -> None:
        self.start(
            "feed", "feed", "--config", str(self.feed_config), "--topic", self.topic,
            "--bootstrap-servers", self.bootstrap,
        )  # fmt: skip

    def kill(self, name: str) -> None:
        process = self.processes.pop(name)
        os.kill(process.pid, signal.SIGKILL)
        process.wait(10)

    def stop_all(self) -> None:
        for name in list(self.processes):
            process = self.processes.pop(name)
            if process.poll() is None:
                os.kill(process.pid, signal.SIGTERM)
                try:
                    process.wait(20)
                except subprocess.TimeoutExpired:
                    os.kill(process.pid, signal.SIGKILL)
                    process.wait(10)

    def alive(self) -> None:
        dead = {name: p.returncode for name, p in self.processes.items() if p.poll() is not None}
        if dead:
            logs = {name: (self.logs / f"{name}.log").read_text()[-2000:] for name in dead}
            raise AssertionError(f"processes exited: {dead}\n{logs}")

    def documents(self) -> dict[str, bytes]:
        return {p.relative_to(self.folder).as_posix(): p.read_bytes() for p in self.folder.rglob("*.txt")}

    def converged(self) -> bool:
        self.alive()
        chunks, rows = stored(shared_postgres().dsn, self.table)
        return rows == len(chunks) and chunks == from_scratch(self.topic, self.documents())


def _get(url: str, path: str, **query: Any) -> Any:
    with urllib.request.urlopen(f"{url}{path}?{urllib.parse.urlencode(query)}", timeout=10) as response:
        return json.loads(response.read())


def _replica_ready(url: str) -> bool:
    try:
        _get(url, "/v1/statistics")
        return True
    except OSError:
        return False


def _check_replicas(cluster: Cluster) -> None:
    """Each replica lists exactly the current documents and returns exactly each one's chunks."""
    expected = from_scratch(cluster.topic, cluster.documents())
    by_doc: dict[str, set[str]] = {}
    for doc_id, _, text in expected:
        by_doc.setdefault(doc_id, set()).add(text)
    for url in cluster.replicas:
        assert _get(url, "/v1/statistics")["file_count"] == len(by_doc)
        assert {entry["path"] for entry in _get(url, "/v1/inputs")} == set(by_doc)
        for doc_id, texts in by_doc.items():
            hits = _get(url, "/v1/retrieve", query="words", k=100, metadata_filter=f"path == '{doc_id}'")
            assert sorted(hit["text"] for hit in hits) == sorted(texts), doc_id


def _run(cluster: Cluster, documents: int, rounds: int, seed: int) -> None:
    rng = random.Random(seed)
    names = [f"d{i // 10}/doc{i}.txt" for i in range(documents)]
    for name in names:
        path = cluster.folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(random_document(rng, Path(name).stem))
    cluster.start_feed()
    for n in range(3):
        cluster.start_worker(f"worker{n}")
    for n in range(2):
        cluster.start_replica(f"replica{n}")
    wait_for(cluster.converged, 120, "the first build")
    wait_for(lambda: all(_replica_ready(url) for url in cluster.replicas), 60, "the replicas")
    _check_replicas(cluster)
    spare = 3
    for round_ in range(rounds):
        for _ in range(rng.randrange(3, 10)):
            name = rng.choice(names)
            path = cluster.folder / name
            if path.exists() and rng.random() < 0.3:
                path.unlink()
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(random_document(rng, Path(name).stem))
            if round_ % 2 == 0 and _ == 1:  # mid-burst: a worker dies, another joins
                victim = rng.choice([n for n in cluster.processes if n.startswith("worker")])
                cluster.kill(victim)
                cluster.start_worker(f"worker{spare}")
                spare += 1
        wait_for(cluster.converged, 120, f"round {round_}")
        _check_replicas(cluster)


def test_workers_killed_and_replaced_converge_to_a_from_scratch_build(cluster: Cluster) -> None:
    _run(cluster, documents=24, rounds=2, seed=1)


@pytest.mark.slow
def test_longer_crash_run_converges(cluster: Cluster) -> None:
    _run(cluster, documents=120, rounds=8, seed=2)
