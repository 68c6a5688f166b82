"""A small real HTTP server with the REST API's shape whose visibility delay is known: a change written
through ``DelayedTarget`` shows in its answers exactly ``delay`` seconds after the write returned (and, with
``linger``, an edited document keeps serving its old text that much longer). The freshness driver's tests
measure it."""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from ragflow.bench._workload import Operation
from tests.fakes.local_http import send_json, serve, shut

SUFFIX = re.compile(r"ends_with\(path, `([^`]*)`\)")


class DelayedServer:
    """Documents as paragraph lists, each version visible ``delay`` s after its write."""

    def __init__(self, delay: float, linger: float = 0.0, stall: float = 0.0) -> None:
        self.delay = delay
        self.linger = linger
        self.stall = stall
        """The first two retrieves after each write (a request and its retry) answer this many seconds late:
        a server too busy."""
        self._stalls = 0
        self._lock = threading.Lock()
        self._versions: dict[str, list[tuple[float, list[str] | None]]] = {}
        self._httpd: ThreadingHTTPServer | None = None

    def write(self, name: str, paragraphs: list[str] | None) -> None:
        """Record a new version of ``name`` (``None``: deleted), written now."""
        with self._lock:
            self._versions.setdefault(name, []).append((time.perf_counter(), paragraphs))
            self._stalls = 2 if self.stall else 0

    def stall_now(self) -> float:
        """How long the request being answered must wait first."""
        with self._lock:
            stall = self.stall if self._stalls else 0.0
            self._stalls = max(0, self._stalls - 1)
        return stall

    def paragraphs(self, name: str, now: float) -> list[str]:
        """What the server shows of ``name`` at ``now``."""
        with self._lock:
            versions = [v for v in self._versions.get(name, []) if v[0] + self.delay <= now]
            if not versions:
                return []
            written, current = versions[-1]
            shown = list(current or [])
            if self.linger and len(versions) > 1 and current and now < written + self.delay + self.linger:
                shown += [p for p in versions[-2][1] or [] if p not in shown]
            return shown

    def names(self, now: float) -> list[str]:
        with self._lock:
            names = list(self._versions)
        return [n for n in names if self.paragraphs(n, now)]

    def __enter__(self) -> str:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                send_json(self, 404, {"error": {"message": "no such route"}})

            def do_POST(self) -> None:
                # the driver may have given up waiting for a stalled answer: nothing to answer then
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self._answer()

            def _answer(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                now = time.perf_counter()
                if self.path == "/v1/retrieve" and body.get("metadata_filter"):
                    time.sleep(server.stall_now())
                    now = time.perf_counter()
                if self.path == "/v1/retrieve":
                    suffixes = [json.loads(m) for m in SUFFIX.findall(body.get("metadata_filter") or "")]
                    names = [
                        n for n in server.names(now) if any(("/fake/" + n).endswith(x) for x in suffixes)
                    ]
                    hits = [
                        {"text": p, "metadata": {"path": "/fake/" + n}, "dist": 0.5}
                        for n in names
                        for p in server.paragraphs(n, now)
                    ]
                    send_json(self, 200, hits[: int(body.get("k", 3))])
                elif self.path == "/v1/statistics":
                    send_json(self, 200, {"file_count": len(server.names(now)), "last_indexed": None})
                elif self.path == "/v1/inputs":
                    send_json(self, 200, [{"path": "/fake/" + n} for n in server.names(now)])
                else:
                    send_json(self, 404, {"error": {"message": "no such route"}})

        self._httpd = serve(Handler, "delayed-server")
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def __exit__(self, *exc: object) -> None:
        shut(self._httpd)


class DelayedTarget:
    """Writes the workload's operations into a ``DelayedServer``: the write is over when ``apply`` returns."""

    kind = "delayed"

    def __init__(self, server: DelayedServer) -> None:
        self.server = server
        self.docs: dict[str, list[str]] = {}

    def apply(self, operation: Operation) -> None:
        if operation.op == "put":
            self.docs[operation.name] = operation.text.strip().split("\n\n")
            self.server.write(operation.name, self.docs[operation.name])
        elif operation.op == "remove":
            del self.docs[operation.name]
            self.server.write(operation.name, None)
        else:
            paragraphs = self.docs.pop(operation.name)
            self.docs[operation.new_name] = paragraphs
            self.server.write(operation.new_name, paragraphs)
            self.server.write(operation.name, None)

    def path_suffix(self, name: str) -> str:
        return "/" + name

    def close(self) -> None:
        pass
