"""A real HTTP server on 127.0.0.1 speaking OpenAI's chat completions protocol (``POST
/v1/chat/completions``, JSON or ``stream: true`` server-sent events), with knobs to delay, fail, answer
garbage or cut a stream short, for tests of answering.

By default it answers like a well-behaved RAG model: it quotes the first sentence of source [1] of the
prompt and cites it, or says ``No information found.`` when the prompt has no sources. ``reply`` replaces
that with any function of the request's messages.

Example:
    >>> with FakeLLMServer() as llm:  # doctest: +SKIP
    ...     client = openai.OpenAI(base_url=llm.base_url, api_key=llm.api_key)
    ...     client.chat.completions.create(model=llm.model, messages=[{"role": "user", "content": "hi"}])
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.fakes.local_http import serve, shut

__all__ = ["FakeLLMServer", "Fault", "default_reply"]

Reply = Callable[[list[dict[str, Any]]], str]
"""The request's messages -> the answer's text."""

_SOURCE = re.compile(r"^\[(\d+)\][^\n]*\n(.+?)(?=\n\n\[\d+\]|\n\nQuestion:|\Z)", re.MULTILINE | re.DOTALL)


def default_reply(messages: list[dict[str, Any]]) -> str:
    """Quote the first sentence of source [1] and cite it; ``No information found.`` without sources."""
    prompt = str(messages[-1].get("content", "")) if messages else ""
    sources = {int(n): text for n, text in _SOURCE.findall(prompt)}
    if 1 not in sources:
        return "No information found."
    first = re.split(r"(?<=[.!?])\s", sources[1].strip(), maxsplit=1)[0]
    return f"According to the documents, {first} [1]"


@dataclass(slots=True)
class Fault:
    """What to do instead of answering one request."""

    status: int | None = 500
    """HTTP status of an error answer; ``None`` closes the connection without answering."""
    body: bytes | None = None
    """Sent with status 200 instead of a JSON error (``garbage``)."""
    delay: float = 0.0
    stream_chunks: int | None = None
    """For a streamed answer: send this many chunks, then cut the connection."""


@dataclass
class FakeLLMServer:
    """Serve chat completions on an ephemeral port of 127.0.0.1 from a background thread."""

    api_key: str = "llm-key"
    model: str = "fake-llm"
    delay: float = 0.0
    """Seconds to wait before answering each request."""
    reply: Reply = default_reply
    requests: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._faults: list[Fault] = []
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None

    def start(self) -> FakeLLMServer:
        self._httpd = serve(_handler_for(self), "fake-llm")
        return self

    def stop(self) -> None:
        shut(self._httpd)
        self._httpd = None

    def __enter__(self) -> FakeLLMServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        """What to pass as ``base_url`` to an OpenAI client."""
        assert self._httpd is not None, "the server is not running"
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    # -- knobs ------------------------------------------------------------------------------------

    def fail_next(self, count: int = 1, status: int | None = 500, delay: float = 0.0) -> None:
        """Answer the next ``count`` requests with HTTP ``status`` (``None``: drop the connection)."""
        self._add(count, Fault(status=status, delay=delay))

    def garbage_next(self, count: int = 1, body: bytes = b"<html>definitely not JSON</html>") -> None:
        """Answer the next ``count`` requests with status 200 and ``body``."""
        self._add(count, Fault(status=200, body=body))

    def hang_next(self, count: int = 1, seconds: float = 5.0) -> None:
        """Wait ``seconds`` before answering the next ``count`` requests (a client timeout)."""
        self._add(count, Fault(status=None, delay=seconds))

    def cut_stream_next(self, chunks: int = 1) -> None:
        """Stream only ``chunks`` chunks of the next streamed answer, then close the connection."""
        self._add(1, Fault(status=200, stream_chunks=chunks))

    def _add(self, count: int, fault: Fault) -> None:
        with self._lock:
            self._faults.extend([fault] * count)

    def _next_fault(self) -> Fault | None:
        with self._lock:
            return self._faults.pop(0) if self._faults else None


def _handler_for(server: FakeLLMServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            try:
                body = json.loads(self.rfile.read(length) or b"{}")
            except ValueError:
                body = {}
            server.requests.append(body)
            fault = server._next_fault()
            delay = server.delay + (fault.delay if fault else 0.0)
            if delay:
                time.sleep(delay)
            if self.headers.get("Authorization") != f"Bearer {server.api_key}":
                self._json(401, _error("Incorrect API key provided", "invalid_request_error"))
            elif self.path != "/v1/chat/completions":
                self._json(404, _error(f"no route POST {self.path}", "invalid_request_error"))
            elif fault is not None and fault.status is None:
                self.close_connection = True
            elif fault is not None and fault.body is not None:
                self._raw(fault.status or 200, fault.body, "text/html")
            elif fault is not None and fault.stream_chunks is None:
                self._json(fault.status or 500, _error("injected failure", "server_error"))
            elif not isinstance(body.get("messages"), list) or not body.get("model"):
                self._json(400, _error("'messages' and 'model' are required", "invalid_request_error"))
            else:
                text = server.reply(body["messages"])
                cut = fault.stream_chunks if fault is not None else None
                if body.get("stream"):
                    self._stream(body["model"], text, cut)
                else:
                    self._json(200, _completion(body["model"], text))

        def _stream(self, model: str, text: str, cut: int | None) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            pieces = re.findall(r"\S+\s*", text) or [""]
            events = [_chunk(model, {"role": "assistant", "content": ""}, None)]
            events += [_chunk(model, {"content": piece}, None) for piece in pieces]
            events.append(_chunk(model, {}, "stop"))
            try:
                for i, event in enumerate(events):
                    if cut is not None and i >= cut:
                        self.wfile.write(b'data: {"truncated')  # a torn event, then a closed connection
                        self.wfile.flush()
                        self.close_connection = True
                        return
                    self.wfile.write(b"data: " + json.dumps(event).encode() + b"\n\n")
                    self.wfile.flush()
                self.wfile.write(b"data: [DONE]\n\n")
            except (BrokenPipeError, ConnectionResetError):
                pass
            self.close_connection = True

        def _json(self, status: int, payload: dict[str, Any]) -> None:
            self._raw(status, json.dumps(payload).encode(), "application/json")

        def _raw(self, status: int, data: bytes, content_type: str) -> None:
            try:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (a timeout test)

    return Handler


def _completion(model: str, text: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }


def _chunk(model: str, delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


def _error(message: str, kind: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": None, "code": None}}
