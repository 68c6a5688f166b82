"""PostgreSQL restarted (a fast shutdown that cuts every connection, down for a few seconds) while
``ragflow worker`` processes are applying a burst of folder changes and a replica is serving: the workers
retry or rewind to the offsets PostgreSQL holds, nothing exits, and once the database is back the table
equals a from-scratch build of the folder and the replica answers exactly the current documents."""

from __future__ import annotations

import random

import pytest

from tests.scaleout.helpers import churn, wait_for
from tests.scaleout.test_crash import Cluster, _check_replicas, _replica_ready
from tests.servers.postgres import shared_postgres

pytest.importorskip("confluent_kafka")
pytest.importorskip("psycopg")


def test_workers_and_a_replica_ride_out_a_postgres_restart_and_converge(cluster: Cluster) -> None:
    rng = random.Random(11)
    names = [f"d{i // 10}/doc{i}.txt" for i in range(40)]
    churn(cluster.folder, rng, names, 30)
    cluster.start_feed()
    for n in range(2):
        cluster.start_worker(f"worker{n}")
    cluster.start_replica("replica0")
    wait_for(cluster.converged, 120, "the first build")
    wait_for(lambda: all(_replica_ready(url) for url in cluster.replicas), 60, "the replica")
    churn(cluster.folder, rng, names, 15)
    shared_postgres().restart(down_s=3.0)  # while the burst is being applied
    churn(cluster.folder, rng, names, 15)
    wait_for(cluster.converged, 120, "the table after the restart")
    cluster.alive()  # no worker, feeder or replica gave up
    wait_for(
        lambda: all(_replica_ready(url) for url in cluster.replicas), 60, "the replica after the restart"
    )
    _check_replicas(cluster)
