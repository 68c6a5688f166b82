"""A real HTTP server on 127.0.0.1 that speaks the OpenAI REST protocol, for tests of the hosted-model
edge: deterministic embeddings, plus knobs to fail or delay requests.

It serves ``POST /v1/embeddings`` out of the box. Other endpoints (chat completions...) plug in with
``add_route``: a handler takes the parsed JSON body and returns ``(status, json_body)``.

Example:
    >>> with FakeOpenAIServer(dim=8) as server:  # doctest: +SKIP
    ...     client = openai.OpenAI(base_url=server.base_url, api_key=server.api_key)
    ...     client.embeddings.create(model="fake-embed", input=["hi"])
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
import numpy.typing as npt

from tests.fakes.local_http import serve, shut

__all__ = ["FakeOpenAIServer", "Handler", "RecordedRequest"]

Handler = Callable[[dict[str, Any]], tuple[int, dict[str, Any]]]
"""A route: the request's JSON body -> (HTTP status, JSON response body)."""


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One request the server received (failed ones included)."""

    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass(slots=True)
class _Failure:
    status: int | None  # None: drop the connection without answering
    retry_after: float | None
    message: str


@dataclass
class FakeOpenAIServer:
    """Serve the OpenAI protocol on an ephemeral port of 127.0.0.1 from a background thread.

    Embeddings are a pure function of the input text (see ``vector_for``), deliberately *not*
    normalised, so a client has to normalise them itself.
    """

    dim: int = 16
    api_key: str = "test-key"
    delay: float = 0.0
    """Seconds to wait before answering each request."""
    requests: list[RecordedRequest] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._routes: dict[tuple[str, str], Handler] = {("POST", "/v1/embeddings"): self._embeddings}
        self._failures: list[_Failure] = []
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None

    # -- lifecycle --------------------------------------------------------------------------------

    def start(self) -> FakeOpenAIServer:
        self._httpd = serve(_make_request_handler(self), "fake-openai")
        return self

    def stop(self) -> None:
        shut(self._httpd)
        self._httpd = None

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._httpd is not None, "the server is not running"
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        """What to pass as ``base_url`` to an OpenAI client."""
        return f"http://127.0.0.1:{self.port}/v1"

    # -- knobs ------------------------------------------------------------------------------------

    def add_route(self, method: str, path: str, handler: Handler) -> None:
        """Serve ``method path`` (e.g. ``"POST", "/v1/chat/completions"``) with ``handler``."""
        self._routes[(method.upper(), path)] = handler

    def fail_next(
        self,
        count: int,
        status: int | None = 500,
        *,
        retry_after: float | None = None,
        message: str = "injected",
    ) -> None:
        """Answer the next ``count`` requests with ``status`` (and a ``Retry-After`` header if given);
        ``status=None`` closes the connection without any answer instead."""
        with self._lock:
            self._failures.extend(_Failure(status, retry_after, message) for _ in range(count))

    def requests_to(self, path: str) -> list[RecordedRequest]:
        return [request for request in self.requests if request.path == path]

    # -- the protocol -----------------------------------------------------------------------------

    def vector_for(self, text: str, dim: int | None = None) -> npt.NDArray[np.float32]:
        """The (unnormalised) embedding this server returns for ``text``."""
        seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
        return (np.random.default_rng(seed).standard_normal(dim or self.dim) * 3).astype(np.float32)

    def _embeddings(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        inputs = body.get("input")
        if isinstance(inputs, str):
            inputs = [inputs]
        if not body.get("model"):
            return 400, _error("you must provide a model parameter", "invalid_request_error")
        if not isinstance(inputs, list) or not inputs or not all(isinstance(text, str) for text in inputs):
            return 400, _error(
                "'input' must be a string or a non-empty array of strings", "invalid_request_error"
            )
        if any(text == "" for text in inputs):
            # Like OpenAI's API, which refuses empty strings.
            return 400, _error("'$.input' is invalid: empty strings are not allowed", "invalid_request_error")
        dim = body.get("dimensions") or self.dim
        data = []
        for index, text in enumerate(inputs):
            vector = self.vector_for(text, dim)
            embedding: Any = (
                base64.b64encode(vector.tobytes()).decode()
                if body.get("encoding_format") == "base64"
                else vector.tolist()
            )
            data.append({"object": "embedding", "index": index, "embedding": embedding})
        tokens = sum(len(text.split()) for text in inputs)
        return 200, {
            "object": "list",
            "data": data,
            "model": body["model"],
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }

    def _next_failure(self) -> _Failure | None:
        with self._lock:
            return self._failures.pop(0) if self._failures else None


def _error(message: str, kind: str, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def _make_request_handler(server: FakeOpenAIServer) -> type[BaseHTTPRequestHandler]:
    class RequestHandler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            self._serve("POST")

        def do_GET(self) -> None:
            self._serve("GET")

        def log_message(self, format: str, *args: Any) -> None:
            pass  # keep test output clean

        def _serve(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw) if raw else {}
            except json.JSONDecodeError:
                body = {"_unparsable": raw.decode(errors="replace")}
            server.requests.append(RecordedRequest(method, self.path, dict(self.headers), body))
            if server.delay:
                time.sleep(server.delay)
            failure = server._next_failure()
            if failure is not None:
                if failure.status is None:
                    self.close_connection = True
                    return
                headers = {} if failure.retry_after is None else {"Retry-After": f"{failure.retry_after:g}"}
                self._reply(failure.status, _error(failure.message, "server_error"), headers)
                return
            if self.headers.get("Authorization") != f"Bearer {server.api_key}":
                self._reply(
                    401, _error("Incorrect API key provided", "invalid_request_error", "invalid_api_key")
                )
                return
            handler = server._routes.get((method, self.path))
            if handler is None:
                self._reply(404, _error(f"no route for {method} {self.path}", "invalid_request_error"))
                return
            status, payload = handler(body)
            self._reply(status, payload)

        def _reply(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
            data = json.dumps(payload).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (a timeout test): nobody is left to answer

    return RequestHandler
