"""ASGI middleware of the REST API: trailing-slash tolerance, API key, request size limit and request
metrics. Plain ASGI (not ``BaseHTTPMiddleware``) so that streamed responses pass straight through."""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable, Collection

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import error_body

__all__ = ["BodyTooLarge", "LimitBodySize", "RecordRequests", "RequireApiKey", "StripTrailingSlash"]


async def _send_error(
    send: Send, status: int, message: str, kind: str, headers: dict[str, str] | None = None
) -> None:
    body = error_body(message, kind)
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


class StripTrailingSlash:
    """Route ``/v1/retrieve/`` like ``/v1/retrieve`` (Pathway's clients tolerate both)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path: str = scope["path"]
            if len(path) > 1 and path.endswith("/"):
                scope["path"] = path.rstrip("/") or "/"
                scope["raw_path"] = scope["path"].encode()
        await self.app(scope, receive, send)


class RequireApiKey:
    """Refuse requests without ``Authorization: Bearer <key>`` or ``X-API-Key: <key>`` (401), except on
    ``open_paths`` (health checks)."""

    def __init__(self, app: ASGIApp, api_key: str | None, open_paths: Collection[str] = ()) -> None:
        self.app = app
        self.key = api_key.encode() if api_key else None
        self.open_paths = frozenset(open_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.key is None or scope["type"] != "http" or scope["path"] in self.open_paths:
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        given = headers.get(b"x-api-key")
        authorization = headers.get(b"authorization", b"")
        if given is None and authorization[:7].lower() == b"bearer ":
            given = authorization[7:].strip()
        if given is not None and hmac.compare_digest(given, self.key):
            await self.app(scope, receive, send)
            return
        reason = "no API key was given" if given is None else "the API key is wrong"
        await _send_error(
            send,
            401,
            f"{reason}: send it as 'Authorization: Bearer <key>' or 'X-API-Key: <key>'",
            "authentication_error",
            {"WWW-Authenticate": "Bearer"},
        )


class BodyTooLarge(HTTPException):
    """A request body went over the limit while it was being read."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is larger than the server's limit of {limit} bytes")


class LimitBodySize:
    """Answer 413 to a body over ``limit`` bytes: at once from ``Content-Length``, or as soon as a
    streamed (chunked) body goes over."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await _send_error(send, 413, str(BodyTooLarge(self.limit).detail), "request_too_large")
            return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise BodyTooLarge(self.limit)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge as exc:
            if started:
                raise
            await _send_error(send, 413, str(exc.detail), "request_too_large")


class RecordRequests:
    """Call ``record(method, route, status, seconds)`` after each HTTP request; ``route`` is the matched
    route's path template (``/v1/documents/{doc_id}``), so metrics stay bounded whatever the URLs."""

    def __init__(self, app: ASGIApp, record: Callable[[str, str, int, float], None]) -> None:
        self.app = app
        self.record = record

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def tracking_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            self.record(scope["method"], template, status, time.perf_counter() - started)
