"""``ragflow bench load`` end to end against a real server process (the hashing embedder, for speed): the
clients' requests are counted and timed, the folder's edits are found again, a burst of files is followed
until indexed, memory and open files are sampled, and the CLI prints the table."""

from __future__ import annotations

import os
import sys

import pytest

from ragflow.bench._load import LoadOptions, load_table, run_load
from ragflow.cli import main

SERVER = f"{sys.executable} -m tests.bench.hashing_server {{port}} {{state}} folder {{folder}}"


def test_a_short_load_run_measures_every_operation_and_the_burst() -> None:
    options = LoadOptions(
        server_cmd=SERVER,
        clients=4,
        seconds=3,
        warmup=0.5,
        docs=6,
        mix=(("retrieve", 3.0), ("answer", 1.0)),
        edit_interval=0.2,
        burst=200,
    )
    result = run_load(options)
    summary = result.summary()
    assert set(result.latencies) == {"retrieve", "answer"}, summary
    assert result.throughput > 0 and not result.errors and result.shed == 0, summary
    assert result.converged is not None, "the last edit was never found"
    assert result.healthz and result.rss and result.fds
    # the server's CPU and its query batching during the measured seconds, from /proc and /metrics
    assert result.cpu_measured is not None and summary["server_cpu_ms_per_ok"] > 0, summary
    assert summary["query_passes"] and summary["queries_per_pass"] >= 1, summary
    assert len(result.load or ()) == 2
    assert result.burst_indexed is not None and result.burst_rss_peak, summary
    table = load_table([result])
    assert "| 4 clients | 4 |" in table and "4 clients: burst of 2" in table and "files indexed in" in table


def test_a_rate_paces_the_clients_together() -> None:
    options = LoadOptions(
        server_cmd=SERVER, clients=4, seconds=3, warmup=0.5, docs=3, edit_interval=0, rate=10
    )
    result = run_load(options)
    # 10 requests/s over 3 s, whatever the server could answer (the hashing server answers hundreds)
    assert 15 <= result.ok <= 45 and not result.errors, result.summary()


def test_the_cli_runs_the_load_benchmark(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["bench", "load", "--server-cmd", SERVER, "--clients", "2", "--seconds", "1", "--docs", "3"])
    assert code == 0
    out = capsys.readouterr().out
    assert "| 2 clients | 2 |" in out and "retrieve p50/p95/p99" in out


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("RAGFLOW_LONG") != "1", reason="a 30-minute soak: RAGFLOW_LONG=1")
def test_a_30_minute_soak_keeps_memory_and_open_files_bounded() -> None:
    command = f"{sys.executable} -m ragflow.cli serve {{folder}} --port {{port}} --state-dir {{state}}"
    mix = (("retrieve", 8.0), ("answer", 1.0), ("upload", 1.0))
    result = run_load(LoadOptions(server_cmd=command, clients=16, seconds=1800, mix=mix, soak=True))
    ok, why = result.soak_verdict()
    assert ok, why
    assert not result.errors and result.converged is not None, result.summary()
