"""Health checks on a thread of their own (``HealthListener`` in ``ProbeServer``, as ``serve`` runs it):
a real server on 127.0.0.1 answers ``/healthz`` and ``/readyz`` while its event loop is blocked, hands
every other request (on a new or a kept-alive connection) to the loop unchanged, counts the probes in
``/metrics``, and keeps serving if the listener fails."""

from __future__ import annotations

import queue
import socket
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from ragflow.connectors.folder import FolderSource
from ragflow.server import create_app
from ragflow.server.app import http_server
from ragflow.server.health_listener import HealthListener, parse_probe, probe_response
from ragflow.server.probe_server import ProbeServer
from ragflow.store import DocumentStore
from tests.fakes.hashing_embedder import HashingEmbedder


@dataclass
class Blockable:
    """A served app whose ``GET /test/block`` holds the event loop until ``release`` is set."""

    url: str
    port: int
    server: ProbeServer
    entered: threading.Event
    release: threading.Event


@contextmanager
def blockable_server(root: Path) -> Iterator[Blockable]:
    (root / "a.md").write_text("The harbor lantern is lit at dusk.")
    store = DocumentStore(FolderSource(root, reconcile_interval=None), embedder=HashingEmbedder())
    entered, release = threading.Event(), threading.Event()

    async def block(request: Request) -> Response:
        entered.set()
        release.wait(30)  # on purpose: nothing else runs on the loop meanwhile
        return PlainTextResponse("released")

    with ExitStack() as stack:
        store.start()
        stack.callback(store.stop)
        assert store.wait_until_fresh(30)
        app = create_app(store)
        app.add_route("/test/block", block, methods=["GET"])
        server = http_server(app, "127.0.0.1", 0)
        assert isinstance(server, ProbeServer)
        thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
        thread.start()
        stack.callback(thread.join, 15)
        stack.callback(setattr, server, "should_exit", True)
        stack.callback(release.set)
        while not server.started or server.health is None:  # the listener starts just after
            assert thread.is_alive(), "the server did not start"
            thread.join(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        yield Blockable(f"http://127.0.0.1:{port}", port, server, entered, release)


@pytest.fixture
def blockable(tmp_path: Path) -> Iterator[Blockable]:
    with blockable_server(tmp_path) as served:
        yield served


def test_health_checks_are_answered_while_the_event_loop_is_blocked(blockable: Blockable) -> None:
    url = blockable.url
    assert requests.get(url + "/readyz", timeout=10).status_code == 200  # the first pass is searchable
    with ThreadPoolExecutor(2) as pool:
        blocked = pool.submit(requests.get, url + "/test/block", timeout=30)
        assert blockable.entered.wait(10), "the blocking route never ran"
        statistics: Future[requests.Response] = pool.submit(requests.get, url + "/v1/statistics", timeout=30)
        health = requests.get(url + "/healthz", timeout=10)
        ready = requests.get(url + "/readyz", timeout=10)
        assert (health.status_code, health.json()) == (200, {"status": "ok"})
        assert (ready.status_code, ready.json()) == (200, {"status": "ready"})
        assert health.headers["content-type"] == "application/json"
        assert not statistics.done(), "the loop answered while it was blocked: the test proves nothing"
        blockable.release.set()
        assert blocked.result().text == "released"
        assert statistics.result().status_code == 200


def test_a_kept_alive_connection_goes_on_to_the_loop_after_its_probes(blockable: Blockable) -> None:
    with requests.Session() as session:
        for _ in range(3):
            assert session.get(blockable.url + "/healthz", timeout=10).json() == {"status": "ok"}
        stats = session.get(blockable.url + "/v1/statistics", timeout=10)
        assert stats.status_code == 200 and "file_count" in stats.json()
        assert session.get(blockable.url + "/healthz", timeout=10).status_code == 200
        metrics = session.get(blockable.url + "/metrics", timeout=10).text
    probes = [
        line
        for line in metrics.splitlines()
        if line.startswith("ragflow_http_requests_total{") and "/healthz" in line
    ]
    assert probes and float(probes[0].rsplit(" ", 1)[1]) >= 4, probes


def test_connections_handed_to_the_loop_have_nagle_off_like_its_own() -> None:
    """asyncio turns Nagle off only on sockets that say they are TCP; without it a response written in two
    parts waits for the client's delayed ACK (40 ms a request)."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    adopted: queue.Queue[socket.socket] = queue.Queue()
    health = HealthListener(
        [listener], answer=lambda path: None, record=lambda path, s: None, adopt=adopted.put, headers=list
    )
    health.start()
    try:
        with socket.create_connection(listener.getsockname(), timeout=10) as client:
            client.sendall(b"GET /v1/statistics HTTP/1.1\r\nHost: x\r\n\r\n")
            sock = adopted.get(timeout=10)
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
            assert sock.proto == socket.IPPROTO_TCP
            assert sock.recv(100, socket.MSG_PEEK).startswith(b"GET /v1/statistics")  # left unread
            sock.close()
    finally:
        health.stop()
        listener.close()


def test_pipelined_probes_and_a_closing_probe_over_a_raw_socket(blockable: Blockable) -> None:
    probe = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    closing = b"GET /readyz?verbose=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    with socket.create_connection(("127.0.0.1", blockable.port), timeout=10) as sock:
        sock.sendall(probe + probe + closing)
        received = b""
        while chunk := sock.recv(65536):  # the server closes after the third answer
            received += chunk
    answers = received.split(b"HTTP/1.1 ")[1:]
    assert len(answers) == 3 and all(a.startswith(b"200 OK\r\n") for a in answers)
    assert answers[0].endswith(b'{"status":"ok"}') and answers[2].endswith(b'{"status":"ready"}')
    assert b"connection: close" in answers[2].lower() and b"connection: close" not in answers[0].lower()


def test_a_request_that_is_not_a_probe_reaches_the_loop_intact(blockable: Blockable) -> None:
    with socket.create_connection(("127.0.0.1", blockable.port), timeout=10) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nPOST /v1/retrieve HTTP/1.1\r\nHost: x\r\n")
        sock.sendall(b"Content-Type: application/json\r\nContent-Length: 30\r\nConnection: close\r\n\r\n")
        sock.sendall(b'{"query": "lantern", "k": 1}  ')
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    answers = received.split(b"HTTP/1.1 ")[1:]
    assert [a[:3] for a in answers] == [b"200", b"200"], received
    assert b"The harbor lantern is lit at dusk." in answers[1]


def test_a_failing_listener_leaves_the_loop_serving(blockable: Blockable, caplog: Any) -> None:
    health = blockable.server.health
    assert health is not None

    def broken(path: str) -> bytes | None:
        raise RuntimeError("broken answer")

    health.answer = broken  # one connection's failure: the loop answers it
    assert requests.get(blockable.url + "/healthz", timeout=10).json() == {"status": "ok"}

    def fail(now: float) -> None:
        raise RuntimeError("broken listener")

    health._expire = fail  # type: ignore[method-assign]  # the thread itself fails
    health._thread.join(10)
    assert not health._thread.is_alive()
    for path in ("/healthz", "/v1/statistics"):  # new connections: accepted by the loop again
        assert requests.get(blockable.url + path, timeout=10).status_code == 200
    assert "broken listener" in caplog.text


@pytest.mark.parametrize(
    ("request_bytes", "probe"),
    [
        (b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", ("/healthz", True)),
        (b"GET /readyz?x=1 HTTP/1.1\r\nConnection: keep-alive, close\r\n\r\n", ("/readyz", False)),
        (b"GET /healthz HTTP/1.1\r\nContent-Length: 0\r\n\r\n", ("/healthz", True)),
        (b"GET /healthz HTTP/1.1\r\nHost: x\r\n", None),  # incomplete
        (b"HEAD /healthz HTTP/1.1\r\n\r\n", None),
        (b"GET /healthz HTTP/1.0\r\n\r\n", None),
        (b"GET /healthz/ HTTP/1.1\r\n\r\n", None),
        (b"GET /v1/statistics HTTP/1.1\r\n\r\n", None),
        (b"GET /healthz HTTP/1.1\r\nOrigin: http://a\r\n\r\n", None),  # CORS headers come from the loop
        (b"GET /healthz HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello", None),
        (b"GET /healthz HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", None),
        (b"GET /healthz HTTP/1.1\r\nBad Header: x\r\n\r\n", None),
        (b"GET /healthz HTTP/1.1\r\n folded\r\n\r\n", None),
    ],
)
def test_only_complete_plain_probes_are_taken_from_the_loop(
    request_bytes: bytes, probe: tuple[str, bool] | None
) -> None:
    parsed = parse_probe(request_bytes)
    assert (None if parsed is None else (parsed.path, parsed.keep_alive)) == probe
    if parsed is not None:
        assert parsed.length == request_bytes.index(b"\r\n\r\n") + 4


def test_the_probe_response_carries_the_servers_headers_first() -> None:
    response = probe_response(b'{"status":"ok"}', [(b"date", b"D"), (b"server", b"uvicorn")], keep_alive=True)
    assert response == (
        b"HTTP/1.1 200 OK\r\ndate: D\r\nserver: uvicorn\r\ncontent-type: application/json\r\n"
        b'content-length: 15\r\n\r\n{"status":"ok"}'
    )
