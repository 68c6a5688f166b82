"""PostgreSQL restarted (a fast shutdown that cuts every connection, down for a few seconds) while
``ragflow worker`` processes are applying a burst of folder changes and a replica is serving: the workers
retry or rewind to the offsets PostgreSQL holds, nothing exits, and once the database is back the table
equals a from-scratch build of the folder and the replica answers exactly the current documents."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.scaleout.helpers import wait_for
from tests.scaleout.test_crash import Cluster, _check_replicas, _document, _replica_ready
from tests.servers.postgres import shared_postgres

pytest.importorskip("confluent_kafka")
pytest.importorskip("psycopg")


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    made = Cluster(tmp_path)
    try:
        yield made
    finally:
        made.stop_all()
        from ragflow.indexers.pgvector import PgvectorIndex

        PgvectorIndex(dim=64, dsn=shared_postgres().dsn, table=made.table).drop()


def _burst(cluster: Cluster, rng: random.Random, names: list[str], changes: int) -> None:
    for _ in range(changes):
        path = cluster.folder / rng.choice(names)
        if path.exists() and rng.random() < 0.3:
            path.unlink()
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(_document(rng, path.stem))


def test_workers_and_a_replica_ride_out_a_postgres_restart_and_converge(cluster: Cluster) -> None:
    rng = random.Random(11)
    names = [f"d{i // 10}/doc{i}.txt" for i in range(40)]
    for name in names[:30]:
        path = cluster.folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(_document(rng, path.stem))
    cluster.start_feed()
    for n in range(2):
        cluster.start_worker(f"worker{n}")
    cluster.start_replica("replica0")
    wait_for(cluster.converged, 120, "the first build")
    wait_for(lambda: all(_replica_ready(url) for url in cluster.replicas), 60, "the replica")
    _burst(cluster, rng, names, 15)
    shared_postgres().restart(down_s=3.0)  # while the burst is being applied
    _burst(cluster, rng, names, 15)
    wait_for(cluster.converged, 120, "the table after the restart")
    cluster.alive()  # no worker, feeder or replica gave up
    wait_for(
        lambda: all(_replica_ready(url) for url in cluster.replicas), 60, "the replica after the restart"
    )
    _check_replicas(cluster)
