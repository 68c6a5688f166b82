"""The sources' health and their own metrics, through a real server on 127.0.0.1: ``GET /v1/sources``, the
``ragflow_source_*`` series of ``/metrics`` and ``ragflow status``. A folder whose root disappears is
unhealthy, with the reason, until it comes back; a source's counters and gauges keep their labels."""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from ragflow.cli import main
from ragflow.server import create_app
from ragflow.sources import EmitChanges, SourceStatus
from ragflow.store import DocumentStore
from tests.fakes.hashing_embedder import HashingEmbedder
from tests.server.conftest import Served, running

KEY = "s0urce-key"


def sources_of(url: str, **headers: str) -> dict[str, dict[str, Any]]:
    response = requests.get(url + "/v1/sources", headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    return {source["name"]: source for source in response.json()}


def samples_of(url: str, **headers: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of ``/metrics`` by (sample name, labels)."""
    response = requests.get(url + "/metrics", headers=headers, timeout=10)
    assert response.status_code == 200
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def series(name: str, **labels: str) -> tuple[str, frozenset[tuple[str, str]]]:
    return name, frozenset(labels.items())


def source_up(url: str, source: str) -> float:
    return samples_of(url)[series("ragflow_source_up", source=source)]


def status_output(url: str, capsys: pytest.CaptureFixture[str]) -> list[str]:
    capsys.readouterr()
    assert main(["status", "--url", url]) == 0
    return capsys.readouterr().out.splitlines()


def eventually(check: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_a_folder_whose_root_is_removed_is_unhealthy_with_the_reason_until_it_is_back(
    serve_app: Callable[..., Served], capsys: pytest.CaptureFixture[str]
) -> None:
    served = serve_app()
    folder = f"folder:{served.root}"
    before = sources_of(served.url)
    assert list(before) == [folder, "upload"]
    assert before[folder] | {"since": None} == {
        "name": folder,
        "kind": "folder",
        "documents": 5,
        "snapshot_complete": True,
        "healthy": True,
        "reason": None,
        "since": None,
        "counters": [],
        "gauges": [],
    }
    assert before["upload"]["kind"] == "upload" and before["upload"]["healthy"] is True
    assert source_up(served.url, folder) == 1 and source_up(served.url, "upload") == 1

    removed_at = time.time()
    shutil.rmtree(served.root)
    eventually(lambda: not sources_of(served.url)[folder]["healthy"])
    eventually(lambda: sources_of(served.url)[folder]["documents"] == 0)
    lost = sources_of(served.url)[folder]
    assert f"folder {os.path.realpath(served.root)} is missing" in lost["reason"]
    assert "restore it" in lost["reason"]
    assert removed_at - 1 <= lost["since"] <= time.time()
    assert source_up(served.url, folder) == 0 and source_up(served.url, "upload") == 1
    lines = status_output(served.url, capsys)
    assert "sources        2, 1 UNHEALTHY" in lines
    [at] = [i for i, line in enumerate(lines) if line.startswith(f"  {folder} (folder): UNHEALTHY since ")]
    assert lines[at].endswith("s ago), 0 documents")
    assert lines[at + 1] == f"    {lost['reason']}"
    assert "  upload (upload): healthy, 0 documents" in lines

    served.root.mkdir()
    (served.root / "back.md").write_text("The lantern is back in the harbor.\n")
    eventually(lambda: sources_of(served.url)[folder]["healthy"])
    eventually(lambda: sources_of(served.url)[folder]["documents"] == 1)
    back = sources_of(served.url)[folder]
    assert back["reason"] is None and back["since"] >= lost["since"]
    assert source_up(served.url, folder) == 1
    lines = status_output(served.url, capsys)
    assert "sources        2" in lines and not any("UNHEALTHY" in line for line in lines)
    assert f"  {folder} (folder): healthy, 1 documents" in lines


class CountingSource:
    """A source with nothing to list that reports counters and gauges of its own, as an S3 or Kafka source
    reports requests and consumer lag."""

    def __init__(self, name: str = "bucket") -> None:
        self.name = name
        self.status = SourceStatus()

    def run(self, emit: EmitChanges, stop: threading.Event, mode: str, position: Any = None) -> None:
        emit([], snapshot_done=True)
        if mode == "streaming":
            stop.wait()


def test_a_sources_own_counters_and_gauges_are_in_metrics_with_their_labels() -> None:
    source = CountingSource()
    status = source.status
    status.count("list_requests", 3, bucket="docs")
    status.count("list_requests", bucket="archive")
    status.count("objects listed", 7, source="nested")  # made valid; its own "source" label kept apart
    status.gauge("consumer_lag", 12, partition="0")
    status.gauge("consumer_lag", 4, partition="1")
    status.unhealthy("bucket 'docs' does not exist; create it or fix 'bucket'")
    store = DocumentStore([source], embedder=HashingEmbedder())
    with store, running(create_app(store, api_key=KEY)) as url:
        assert store.wait_until_fresh(30)
        auth = {"Authorization": f"Bearer {KEY}"}
        assert requests.get(url + "/v1/sources", timeout=10).status_code == 401
        assert requests.get(url + "/metrics", timeout=10).status_code == 401
        reported = sources_of(url, **auth)["bucket"]
        assert reported["kind"] == "CountingSource" and reported["healthy"] is False
        assert reported["reason"] == "bucket 'docs' does not exist; create it or fix 'bucket'"
        assert {"name": "consumer_lag", "labels": {"partition": "0"}, "value": 12.0} in reported["gauges"]

        response = requests.get(url + "/metrics", headers=auth, timeout=10)
        families = {family.name: family for family in text_string_to_metric_families(response.text)}
        assert families["ragflow_source_list_requests"].type == "counter"
        assert families["ragflow_source_consumer_lag"].type == "gauge"
        samples = samples_of(url, **auth)
        assert samples[series("ragflow_source_up", source="bucket")] == 0
        docs_requests = series("ragflow_source_list_requests_total", source="bucket", bucket="docs")
        assert samples[docs_requests] == 3
        assert samples[series("ragflow_source_list_requests_total", source="bucket", bucket="archive")] == 1
        objects = series("ragflow_source_objects_listed_total", source="bucket", exported_source="nested")
        assert samples[objects] == 7
        assert samples[series("ragflow_source_consumer_lag", source="bucket", partition="0")] == 12
        assert samples[series("ragflow_source_consumer_lag", source="bucket", partition="1")] == 4

        status.count("list_requests", 2, bucket="docs")  # read at each scrape
        status.healthy()
        samples = samples_of(url, **auth)
        assert samples[docs_requests] == 5
        assert samples[series("ragflow_source_up", source="bucket")] == 1

        schema = requests.get(url + "/openapi.json", headers=auth, timeout=10).json()
        assert "/v1/sources" in schema["paths"] and "SourceModel" in schema["components"]["schemas"]
