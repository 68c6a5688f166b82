"""API key, request size limit and k limit, each through a real server."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from ragflow.connectors.folder import FolderSource
from ragflow.server import create_app
from ragflow.server.auth import ApiKey, Role, key_digest
from ragflow.server.scopes import Scope
from ragflow.store import DocumentStore
from tests.fakes.hashing_embedder import HashingEmbedder
from tests.server.conftest import Served, running

KEY = "s3cret-key"


@pytest.fixture
def guarded(serve_app: Callable[..., Served]) -> Served:
    return serve_app(api_key=KEY, max_k=5, max_request_bytes=2_000)


@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Bearer wrong"}, {"X-API-Key": "wrong"}, {"Authorization": KEY}]
)
def test_requests_without_the_right_key_are_401(guarded: Served, headers: dict[str, str]) -> None:
    for method, path in [
        ("POST", "/v1/retrieve"),
        ("GET", "/v1/statistics"),
        ("GET", "/metrics"),
        ("GET", "/nope"),
    ]:
        response = requests.request(method, guarded.url + path, json={"query": "x", "k": 1}, headers=headers)
        assert response.status_code == 401, path
        assert response.headers["WWW-Authenticate"] == "Bearer"
        error = response.json()["error"]
        assert error["type"] == "authentication_error" and "Authorization: Bearer" in error["message"]


@pytest.mark.parametrize(
    "headers", [{"Authorization": f"Bearer {KEY}"}, {"authorization": f"bearer {KEY}"}, {"X-API-Key": KEY}]
)
def test_the_key_is_accepted_as_a_bearer_token_or_x_api_key(guarded: Served, headers: dict[str, str]) -> None:
    response = requests.post(guarded.url + "/v1/retrieve", json={"query": "falcon", "k": 1}, headers=headers)
    assert response.status_code == 200 and len(response.json()) == 1


def test_health_checks_need_no_key(guarded: Served) -> None:
    assert requests.get(guarded.url + "/healthz", timeout=10).status_code == 200
    assert requests.get(guarded.url + "/readyz/", timeout=10).status_code == 200


READER, SCOPED = "an-unscoped-reader-0123456789", "a-scoped-reader-0123456789"
KEYS = [
    ApiKey("reader", Role.READ, key_digest(READER)),
    ApiKey("support", Role.READ, key_digest(SCOPED), Scope("**/support/**", None)),
]


class UnloadableEmbedder(HashingEmbedder):
    def load(self) -> None:
        raise RuntimeError("no weights in /models/hr-salaries")


def health(url: str, path: str, headers: dict[str, str] | None = None) -> tuple[int, str, str]:
    """``(status, error type, error message)`` of a health check that is not answering OK."""
    response = requests.get(url + path, headers=headers or {}, timeout=10)
    error = response.json()["error"]
    return response.status_code, error["type"], error["message"]


def test_health_checks_tell_a_caller_without_a_key_the_state_but_not_counts_or_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "a.md").write_text("Some words to index.")
    keyed, reader = {"X-API-Key": KEY}, {"X-API-Key": READER}
    state_only: tuple[dict[str, str], ...] = (
        {},
        {"X-API-Key": "a-wrong-key-0123456789"},
        {"X-API-Key": SCOPED},
    )
    store = DocumentStore(FolderSource(tmp_path, reconcile_interval=None), embedder=HashingEmbedder())
    with running(
        create_app(store, api_key=KEY, api_keys=KEYS)
    ) as url:  # the store is not started: never ready
        for headers in state_only:  # a scoped key too: the counts span every scope
            status, kind, message = health(url, "/readyz", headers)
            assert (status, kind) == (503, "not_ready") and "API key" in message
            assert "documents" not in message and not any(c.isdigit() for c in message)
        for headers in (keyed, reader):
            assert "0/0 documents and 0/0 chunks done" in health(url, "/readyz", headers)[2]
        monkeypatch.setattr(store.engine, "_failure", RuntimeError("cannot read /docs/hr/salaries.pdf"))
        for path in ("/healthz", "/readyz"):
            for headers in state_only:
                status, kind, message = health(url, path, headers)
                assert (status, kind) == (503, "failed") and "salaries" not in message
            assert health(url, path, reader)[1] == "failed" and "salaries.pdf" in health(url, path, reader)[2]


def test_a_query_model_that_cannot_load_is_shown_failed_without_its_error_to_a_caller_without_a_key(
    tmp_path: Path,
) -> None:
    store = DocumentStore(FolderSource(tmp_path, reconcile_interval=None), embedder=UnloadableEmbedder())
    with running(create_app(store, api_key=KEY)) as url:  # the model loads in a thread: wait for it
        deadline = time.monotonic() + 10
        while health(url, "/readyz")[1] != "failed" and time.monotonic() < deadline:
            time.sleep(0.02)
        status, kind, message = health(url, "/readyz")
        assert (status, kind) == (503, "failed") and "hr-salaries" not in message
        assert "no weights in /models/hr-salaries" in health(url, "/readyz", {"X-API-Key": KEY})[2]


def test_an_open_server_shows_its_progress_to_anyone(tmp_path: Path) -> None:
    store = DocumentStore(FolderSource(tmp_path, reconcile_interval=None), embedder=HashingEmbedder())
    with running(create_app(store)) as url:
        assert "0/0 documents" in health(url, "/readyz")[2]  # no keys: every route is open anyway


def test_the_schema_declares_the_security_schemes(guarded: Served) -> None:
    schema = requests.get(guarded.url + "/openapi.json", headers={"X-API-Key": KEY}, timeout=10).json()
    assert set(schema["components"]["securitySchemes"]) == {"bearer", "apiKey"}
    assert "401" in schema["paths"]["/v1/retrieve"]["post"]["responses"]
    assert "security" not in schema["paths"]["/healthz"]["get"]


def test_k_over_the_configured_limit_is_a_400(guarded: Served) -> None:
    headers = {"X-API-Key": KEY}
    response = requests.post(guarded.url + "/v1/retrieve", json={"query": "x", "k": 6}, headers=headers)
    assert response.status_code == 400 and "at most 5" in response.json()["error"]["message"]
    answer = requests.post(guarded.url + "/v2/answer", json={"prompt": "x", "k": 6}, headers=headers)
    assert answer.status_code == 400 and answer.json()["error"]["param"] == "k"


def test_a_body_over_the_limit_is_a_413(guarded: Served) -> None:
    headers = {"X-API-Key": KEY}
    big: dict[str, Any] = {"query": "word " * 1000, "k": 1}
    response = requests.post(guarded.url + "/v1/retrieve", json=big, headers=headers, timeout=10)
    assert response.status_code == 413
    assert (
        response.json()["error"]["type"] == "request_too_large" and "2000 bytes" in response.json()["detail"]
    )
    upload = requests.post(
        guarded.url + "/v1/documents", files={"file": ("big.txt", b"x" * 5000)}, headers=headers, timeout=10
    )
    assert upload.status_code == 413


def test_a_chunked_body_is_cut_off_at_the_limit(guarded: Served) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"query": "'
        for _ in range(50):
            yield b"word " * 20
        yield b'", "k": 1}'

    headers: dict[str, Any] = {"X-API-Key": KEY, "Content-Type": "application/json"}
    response = requests.post(guarded.url + "/v1/retrieve", data=chunks(), headers=headers, timeout=10)
    assert response.status_code == 413
    assert response.json()["error"]["type"] == "request_too_large"


def test_a_lying_content_length_does_not_hang_or_crash_the_server(guarded: Served) -> None:
    host, port = guarded.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as conn:
        conn.sendall(
            f"POST /v1/retrieve HTTP/1.1\r\nHost: x\r\nX-API-Key: {KEY}\r\nContent-Type: application/json\r\n"
            "Content-Length: 100000\r\n\r\n{}".encode()
        )
        assert conn.recv(4096).startswith(b"HTTP/1.1 413")
    assert requests.get(guarded.url + "/healthz", timeout=10).status_code == 200
