"""A guard in front of every route: a JSON body nested deeper than the server's limit is answered 400 before
anything parses it (Python's ``json`` recurses once per level: 100,000 levels end in ``RecursionError``)."""

from __future__ import annotations

import re

import numpy as np
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .middleware import send_error_response

__all__ = ["JsonDepthGuard", "json_depth"]

# A JSON string, escapes included, written so that the regex engine never backtracks within it.
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_OPEN = np.zeros(256, dtype=np.int8)
_OPEN[[ord("["), ord("{")]] = 1
_OPEN[[ord("]"), ord("}")]] = -1


def json_depth(raw: bytes, limit: int | None = None) -> int:
    """How deeply ``raw`` (JSON text) nests arrays and objects, brackets inside strings not counted.

    Linear in the size; with ``limit``, text with no more brackets than ``limit`` is not scanned (its depth
    cannot exceed it) and ``0`` is returned.

    Example:
        >>> json_depth(b'{"a": [1, {"b": "[[["}]}')
        3
    """
    if limit is not None and raw.count(b"[") + raw.count(b"{") <= limit:
        return 0
    steps = _OPEN[np.frombuffer(_STRING.sub(b"", raw), dtype=np.uint8)]
    return int(np.cumsum(steps, dtype=np.int64).max(initial=0))


def too_deep_message(depth: int, limit: int) -> str:
    return (
        f"the JSON body nests {depth:,} levels deep; this server accepts at most {limit} "
        "(server.max_json_depth)"
    )


class JsonDepthGuard:
    """Read a request's body (any but a multipart upload's, whose parts are checked where they are read),
    answer 400 when its JSON nests deeper than ``limit``, else hand the same body on. Sits inside the body
    size limit, so what it buffers is bounded."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        content_type = dict(scope["headers"]).get(b"content-type", b"")
        if content_type.startswith(b"multipart/"):
            await self.app(scope, receive, send)
            return
        parts: list[bytes] = []
        message: Message = {"type": "http.request", "body": b"", "more_body": True}
        while message.get("more_body", False):
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away: nobody to answer
            parts.append(message.get("body", b""))
        body = b"".join(parts)
        depth = json_depth(body, self.limit)
        if depth > self.limit:
            await send_error_response(send, 400, too_deep_message(depth, self.limit), "invalid_request_error")
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)
