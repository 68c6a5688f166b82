"""ASGI middleware of the REST API: trailing-slash tolerance, API keys and roles, request size limit and
request metrics. Plain ASGI (not ``BaseHTTPMiddleware``) so that streamed responses pass straight through."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Collection

from starlette.exceptions import HTTPException
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .auth import AuthFailures, KeyRing, Role
from .errors import error_body
from .roles import required_role
from .state import OPEN_PATHS

__all__ = [
    "Authenticate",
    "BodyTooLarge",
    "HealthCheck",
    "LimitBodySize",
    "RecordRequests",
    "StripTrailingSlash",
    "send_error_response",
]

log = logging.getLogger("ragflow.server.auth")


async def send_error_response(
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


class Authenticate:
    """Who is calling, and may they: the key (``Authorization: Bearer <key>`` or ``X-API-Key: <key>``) is
    looked up in ``keys``; no or an unknown key is a 401, a known key below the route's role
    (``roles.ROUTE_ROLES``) a 403 naming the role needed, and a client's bad-key requests beyond
    ``failures``' limit a 429 with ``Retry-After``. Each refusal goes to ``refused(reason)`` and the log,
    never with the secret. The caller's ``ApiKey`` is left in ``request.state.api_key`` for the routes.

    Without keys every request passes (the server is open; it listens on 127.0.0.1 by default)."""

    def __init__(
        self,
        app: ASGIApp,
        keys: KeyRing,
        failures: AuthFailures,
        refused: Callable[[str], None],
        open_paths: Collection[str] = OPEN_PATHS,
    ) -> None:
        self.app = app
        self.open_paths = frozenset(open_paths)
        """Paths that may answer without a key (checked against the role table as well)."""
        self.keys = keys
        self.failures = failures
        self.refused = refused
        self._roles: dict[tuple[str, str], Role | None] = {}
        """The role of each ``(method, path)`` served by a route without path parameters: at most one entry
        per such route and method, so a request to one costs a dict lookup, not a scan of every route."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self.keys or scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = _given_key(scope)
        key = self.keys.find(given) if given is not None else None
        if key is None:
            await self._without_key(scope, receive, send, given)
            return
        scope.setdefault("state", {})["api_key"] = key
        needed = self._required_role(scope)
        if needed is None or key.role >= needed:
            await self.app(scope, receive, send)
            return
        where = f"{scope['method']} {scope['path']} from {_client(scope)}"
        self._refuse("wrong_role", f"key {key.name!r} (role {key.role.label}) refused {where}")
        message = (
            f"this endpoint needs an API key with role {needed.label!r} or higher; "
            f"key {key.name!r} has role {key.role.label!r}"
        )
        await send_error_response(send, 403, message, "permission_error")

    def _required_role(self, scope: Scope) -> Role | None:
        place = (scope["method"], scope["path"])
        try:
            return self._roles[place]
        except KeyError:
            pass
        routes = scope["app"].router.routes
        needed = required_role(routes, scope)
        if _static_route(routes, scope):
            self._roles[place] = needed
        return needed

    async def _without_key(self, scope: Scope, receive: Receive, send: Send, given: bytes | None) -> None:
        if scope["path"] in self.open_paths and self._required_role(scope) is None:
            await self.app(scope, receive, send)
            return
        client = _client(scope)
        where = f"{scope['method']} {scope['path']} from {client}"
        retry = self.failures.retry_after(client)
        if retry is not None:
            self.refused("rate_limited")
            message = f"too many requests with a wrong API key from {client}; retry in {math.ceil(retry)} s"
            await send_error_response(
                send, 429, message, "rate_limited", {"Retry-After": str(math.ceil(retry))}
            )
            return
        reason = "no_key" if given is None else "unknown_key"
        self._refuse(reason, f"{'no' if given is None else 'an unknown'} API key: refused {where}")
        if self.failures.record(client):
            log.warning(
                "%s made %d requests with a wrong or no API key within %g s; its further ones get 429",
                client,
                self.failures.limit,
                self.failures.window,
            )
        text = "no API key was given" if given is None else "the API key is wrong"
        await send_error_response(
            send,
            401,
            f"{text}: send it as 'Authorization: Bearer <key>' or 'X-API-Key: <key>'",
            "authentication_error",
            {"WWW-Authenticate": "Bearer"},
        )

    def _refuse(self, reason: str, message: str) -> None:
        self.refused(reason)
        log.info("auth: %s", message)


def _static_route(routes: list[BaseRoute], scope: Scope) -> bool:
    """Whether the route that serves ``scope`` has no path parameters (its path is the template, so the
    role found for this method and path holds for every later request to it)."""
    for route in routes:
        match, _ = route.matches(scope)
        if match is Match.FULL:
            return not getattr(route, "param_convertors", True)
    return False


def _given_key(scope: Scope) -> bytes | None:
    headers = dict(scope["headers"])
    given = headers.get(b"x-api-key")
    authorization = headers.get(b"authorization", b"")
    if given is None and authorization[:7].lower() == b"bearer ":
        given = authorization[7:].strip()
    return given


def _client(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


class HealthCheck:
    """``GET /healthz`` answered here while the engine runs, before authentication, shedding, the body
    guards and the router: a liveness probe costs the event loop as little as possible, so that it answers
    quickly when the loop is busiest (every other request, and a stopped engine's 503, take the route).
    ``engine_failure()`` is the store's ``engine.failure``."""

    BODY = b'{"status":"ok"}'

    def __init__(self, app: ASGIApp, engine_failure: Callable[[], BaseException | None]) -> None:
        self.app = app
        self.engine_failure = engine_failure
        self._route: BaseRoute | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["path"] != "/healthz"
            or scope["method"] != "GET"
            or self.engine_failure() is not None
        ):
            await self.app(scope, receive, send)
            return
        if self._route is None:  # for RecordRequests: the route's template, as the router would set it
            self._route = next(
                (r for r in scope["app"].router.routes if getattr(r, "path", None) == "/healthz"), None
            )
        scope["route"] = self._route
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(self.BODY))]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": self.BODY})


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
            await send_error_response(send, 413, str(BodyTooLarge(self.limit).detail), "request_too_large")
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
            await send_error_response(send, 413, str(exc.detail), "request_too_large")


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
