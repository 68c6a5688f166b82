"""Load shedding: each class of route (queries, answers, uploads) handles a bounded number of requests at
once, and answers the rest 503 with ``Retry-After`` at once rather than queueing them, so a crowd costs
its own excess a retry instead of costing everybody latency. Health checks, metrics and the page are in no
class: they never wait behind work."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from functools import partial

from prometheus_client import CollectorRegistry, Counter, Gauge
from starlette.types import ASGIApp, Receive, Scope, Send

from .middleware import send_error_response

__all__ = ["ROUTE_CLASSES", "LoadShedder", "ShedLoad", "route_class"]

log = logging.getLogger("ragflow.server")

ROUTE_CLASSES = ("query", "answer", "upload")
_SETTINGS = {
    "query": "max_inflight_queries",
    "answer": "max_inflight_answers",
    "upload": "max_inflight_uploads",
}

_ANSWER_PATHS = frozenset(
    ("/v2/answer", "/v1/pw_ai_answer", "/v2/summarize", "/v1/pw_ai_summary", "/v1/chat/completions")
)
RETRY_AFTER_S = 1


def route_class(method: str, path: str) -> str | None:
    """The class of ``method path``: ``answer`` (may call the LLM), ``upload`` (uploads and deletes),
    ``query`` (every other ``/v1``, ``/v2`` route and ``/mcp``), or ``None`` (health, readiness, metrics,
    schema, page: never bounded).

    Example:
        >>> route_class("POST", "/v1/retrieve"), route_class("GET", "/healthz")
        ('query', None)
    """
    if path in _ANSWER_PATHS:
        return "answer"
    if path == "/v1/documents" or (path.startswith("/v1/documents/") and method == "DELETE"):
        return "upload"
    if path == "/mcp" or path.startswith(("/v1/", "/v2/")):
        return "query" if path != "/v1/models" else None
    return None


class LoadShedder:
    """How many requests of each class are in flight, their bounds, and the metrics: the gauge
    ``ragflow_requests_in_flight{route_class}`` and the counter ``ragflow_requests_shed_total{route_class}``.
    Used from the event loop only (no lock needed)."""

    def __init__(self, bounds: Mapping[str, int], registry: CollectorRegistry | None = None) -> None:
        self.bounds = dict(bounds)
        self.in_flight = dict.fromkeys(self.bounds, 0)
        self.shed = dict.fromkeys(self.bounds, 0)
        """Requests answered 503, per class, since start."""
        if registry is not None:
            shed = Counter(
                "ragflow_requests_shed",
                "Requests answered 503 + Retry-After because their route class was at its in-flight bound",
                ["route_class"],
                registry=registry,
            )
            gauge = Gauge(
                "ragflow_requests_in_flight",
                "Requests being handled now, per route class (query, answer, upload)",
                ["route_class"],
                registry=registry,
            )
            self._shed_counter: Counter | None = shed
            for name in self.bounds:
                shed.labels(name)  # present at 0 from the start
                gauge.labels(name).set_function(partial(self.in_flight.__getitem__, name))
        else:
            self._shed_counter = None

    def try_enter(self, name: str) -> bool:
        """Take a place in class ``name``; ``False`` (counted as shed) when it has none free."""
        if self.in_flight[name] >= self.bounds[name]:
            self.shed[name] += 1
            if self._shed_counter is not None:
                self._shed_counter.labels(name).inc()
            return False
        self.in_flight[name] += 1
        return True

    def leave(self, name: str) -> None:
        self.in_flight[name] -= 1


class ShedLoad:
    """Answer 503 with ``Retry-After`` to a request whose route class is at its bound (see ``LoadShedder``);
    streamed responses hold their place until the stream ends."""

    def __init__(self, app: ASGIApp, shedder: LoadShedder) -> None:
        self.app = app
        self.shedder = shedder

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        name = route_class(scope["method"], scope["path"]) if scope["type"] == "http" else None
        if name is None or name not in self.shedder.bounds:
            await self.app(scope, receive, send)
            return
        if not self.shedder.try_enter(name):
            bound = self.shedder.bounds[name]
            message = (
                f"the server is busy: {bound} {name} requests are being handled already "
                f"(server.{_SETTINGS[name]}); retry in {RETRY_AFTER_S} s"
            )
            log.debug("shed %s %s: %s", scope["method"], scope["path"], message)
            await send_error_response(send, 503, message, "overloaded", {"Retry-After": str(RETRY_AFTER_S)})
            return
        try:
            await self.app(scope, receive, send)
        finally:
            self.shedder.leave(name)
