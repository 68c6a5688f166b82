"""``serve``: a real process that starts the store with the server, answers, and on SIGINT/SIGTERM finishes
cleanly, stopping the store (exit code 0); and retrieval through HTTP with the real local model."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.server.conftest import DOCS, running

REPO = Path(__file__).resolve().parents[2]

SERVER = """
import sys, threading
from ragflow.connectors.folder import FolderSource
from ragflow.server import create_app, serve
from ragflow.store import DocumentStore
from tests.fakes.hashing_embedder import HashingEmbedder

store = DocumentStore(FolderSource(sys.argv[1], reconcile_interval=None), embedder=HashingEmbedder())
serve(create_app(store), "127.0.0.1", int(sys.argv[2]))
alive = [t.name for t in threading.enumerate() if t.name == "ragflow-engine" and t.is_alive()]
print("serve returned; engine threads alive:", alive, flush=True)
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_serve_starts_the_store_and_a_signal_stops_both_cleanly(tmp_path: Path, signum: int) -> None:
    (tmp_path / "a.md").write_text("The harbor lantern is lit at dusk.")
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(tmp_path), str(port)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, process.communicate()[1]
            try:
                if requests.get(url + "/readyz", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline, "the server never became ready"
            time.sleep(0.1)
        hits = requests.post(url + "/v1/retrieve", json={"query": "lantern", "k": 1}, timeout=10).json()
        assert hits[0]["text"] == "The harbor lantern is lit at dusk."
        process.send_signal(signum)
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, err
    assert "serve returned; engine threads alive: []" in out
    assert "stopping the document store" in err or "Shutting down" in err


@pytest.mark.model
def test_retrieval_with_the_real_local_model_finds_the_meaning(tmp_path: Path) -> None:
    from ragflow.connectors.folder import FolderSource
    from ragflow.embedders.local import LocalEmbedder
    from ragflow.server import create_app
    from ragflow.store import DocumentStore

    for name, text in DOCS.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    with DocumentStore(FolderSource(tmp_path, reconcile_interval=None), embedder=LocalEmbedder()) as store:
        assert store.wait_until_fresh(120)
        with running(create_app(store)) as url:
            hits = requests.post(
                url + "/v1/retrieve",
                json={"query": "Who turns on the light by the sea at night?", "k": 2},
                timeout=30,
            ).json()
            assert hits[0]["metadata"]["doc_id"] == "guides/lantern.md"
            money = requests.get(
                url + "/v1/retrieve", params={"query": "company earnings", "k": "1"}, timeout=30
            )
            assert money.json()[0]["metadata"]["doc_id"] == "reports/q1.html"
