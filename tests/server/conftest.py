"""Fixtures for the REST API tests: a real uvicorn server on a free port of 127.0.0.1 over a real folder
and a DocumentStore with the fast ``HashingEmbedder``."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI

from ragflow.connectors.folder import FolderSource
from ragflow.connectors.upload import UploadSource
from ragflow.server import create_app
from ragflow.store import DocumentStore
from tests.fakes.hashing_embedder import HashingEmbedder

DOCS = {
    "guides/lantern.md": "# Lantern\n\nThe harbor lantern is lit at dusk by the keeper. "
    "It guides ships past the copper reef.\n",
    "guides/falcon.md": "# Falcon\n\nThe falcon nests on the canyon summit. "
    "It hunts at dawn over the tundra.\n",
    "notes/meadow.txt": "The meadow floods every spring when the river rises above the stone bridge.\n",
    "notes/orbit.txt": "A comet's orbit crosses the path of the violet planet every ninety years.\n",
    "reports/q1.html": "<html><body><p>Quarterly report: revenue of the marble quarry grew by ten percent."
    "</p></body></html>",
}


@dataclass
class Served:
    """A running server and what it serves."""

    url: str
    store: DocumentStore
    uploads: UploadSource
    root: Path
    app: FastAPI


@contextmanager
def running(app: FastAPI) -> Iterator[str]:
    """Serve ``app`` with uvicorn in a thread on a free port; yields its base URL."""
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets that say they are TCP, and without it
    # keep-alive requests wait 40 ms for delayed ACKs
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=2))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@contextmanager
def serving(
    root: Path,
    files: dict[str, str] | None = None,
    folder_options: dict[str, Any] | None = None,
    **app_options: Any,
) -> Iterator[Served]:
    """A folder with ``files`` (default ``DOCS``), a live store over it (a ``FolderSource`` with
    ``folder_options``) plus an upload source, and a server for it, fresh before it is yielded."""
    for name, text in (DOCS if files is None else files).items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    uploads = UploadSource()
    folder = FolderSource(root, reconcile_interval=None, **(folder_options or {}))
    store = DocumentStore([folder, uploads], embedder=HashingEmbedder())
    with ExitStack() as stack:
        store.start()
        stack.callback(store.stop)
        assert store.wait_until_fresh(30), "the store did not index the folder"
        app = create_app(store, uploads=uploads, **app_options)
        url = stack.enter_context(running(app))
        yield Served(url, store, uploads, root, app)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """One server for the tests of a module that do not change its documents."""
    with serving(tmp_path_factory.mktemp("docs")) as served:
        yield served


@pytest.fixture
def serve_app(tmp_path: Path) -> Iterator[Callable[..., Served]]:
    """``serve_app(files=None, **create_app_options)``: a server of the test's own, stopped at teardown."""
    with ExitStack() as stack:
        count = 0

        def start(files: dict[str, str] | None = None, **options: Any) -> Served:
            nonlocal count
            count += 1
            root = tmp_path / f"docs{count}"
            root.mkdir()
            return stack.enter_context(serving(root, files, **options))

        yield start
