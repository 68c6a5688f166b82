"""Crash safety of migrations: ``ragflow serve`` (hashing test embedder) is killed with SIGKILL at random
points of a migration to another model and chunk size, and started again each time. It always comes back
serving every document, one generation active, and the migration completes; then its index equals a
from-scratch build with the new settings. 2 trials by default, 20 with RAGFLOW_LONG=1."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.store.test_migration import config_for, generations, hashing_kind, scratch_contents, write_folder
from tests.test_store import index_contents

REPO = Path(__file__).resolve().parents[2]
TRIALS = 20 if os.environ.get("RAGFLOW_LONG") == "1" else 2
DOCUMENTS = 120

LAUNCHER = """
import sys, time
from ragflow.embedders import EMBEDDER_KINDS
from tests.fakes.hashing_embedder import HashingEmbedder

class SlowHashing(HashingEmbedder):  # the new model takes a while, so that kills land in the migration
    def embed(self, texts):
        if self.dim == 32 and len(texts) > 1:
            time.sleep(0.004 * len(texts))
        return super().embed(texts)

EMBEDDER_KINDS["hashing"] = SlowHashing
from ragflow.cli import main
sys.exit(main(sys.argv[1:]))
"""

_ = hashing_kind  # the fixture, for the in-process checks


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_config(path: Path, folder: Path, state: Path, dim: int, max_tokens: int) -> Path:
    path.write_text(
        f"sources:\n  - kind: folder\n    root: {folder}\n    reconcile_interval: null\n"
        f"embedder:\n  kind: hashing\n  dim: {dim}\n  max_tokens: 128\n"
        f"splitter:\n  max_tokens: {max_tokens}\n"
        f"persistence:\n  state_dir: {state}\n  checkpoint_interval: 0.2\n"
    )
    return path


class Server:
    def __init__(self, config: Path, log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log = open(log, "ab")  # noqa: SIM115 - closed in stop
        self.process = subprocess.Popen(
            [sys.executable, "-c", LAUNCHER, "serve", "--config", str(config), "--port", str(self.port)],
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            stdout=self._log,
            stderr=self._log,
        )

    def get(self, path: str) -> Any:
        return requests.get(self.url + path, timeout=10).json()

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while True:
            assert self.process.poll() is None, "the server exited"
            try:
                if requests.get(self.url + "/readyz", timeout=2).status_code == 200:
                    return
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline, "the server never became ready"
            time.sleep(0.05)

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)
        self._log.close()

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        assert self.process.wait(60) == 0
        self._log.close()


def test_kill_9_at_random_points_of_a_migration(tmp_path: Path) -> None:
    folder, state = tmp_path / "docs", tmp_path / "state"
    write_folder(folder, DOCUMENTS)
    old = write_config(tmp_path / "old.yaml", folder, state, dim=64, max_tokens=64)
    new = write_config(tmp_path / "new.yaml", folder, state, dim=32, max_tokens=16)
    log = tmp_path / "servers.log"
    first = Server(old, log)
    first.wait_ready()
    first.stop()
    rng = random.Random(int(os.environ.get("RAGFLOW_CRASH_SEED", "23")))
    swapped_once = False
    for trial in range(TRIALS):
        server = Server(new, log)
        server.wait_ready()
        # always serving, every document, from one active generation
        assert server.get("/v1/statistics")["file_count"] == DOCUMENTS, trial
        status = server.get("/v1/migration")
        assert status["active"] in (".", "generations/g1"), status
        swapped_once |= status["active"] == "generations/g1"
        time.sleep(rng.uniform(0.0, 2.0))
        assert server.get("/v1/statistics")["file_count"] == DOCUMENTS, trial
        server.kill()
    server = Server(new, log)
    server.wait_ready()
    deadline = time.monotonic() + 120
    while server.get("/v1/migration")["active"] != "generations/g1":
        assert time.monotonic() < deadline, "the migration never completed"
        time.sleep(0.1)
    assert server.get("/v1/statistics")["file_count"] == DOCUMENTS
    server.stop()
    from ragflow.config import load_config

    config = load_config(new)
    with generations(config) as store:
        assert store.migration_status()["state"] == "none"
        assert store.wait_until_fresh(30)
        got = index_contents(store.active)
    assert got == scratch_contents(
        config_for(folder, tmp_path / "x", dim=32, max_tokens=16), tmp_path / "scratch"
    )
    assert len(got) == len(set(got)), "a chunk is in the index twice"
    _ = swapped_once


@pytest.fixture(autouse=True)
def _hashing(hashing_kind: None) -> None:
    """The in-process checks build the hashing embedder by name too."""
