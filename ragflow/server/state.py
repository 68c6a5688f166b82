"""What the endpoints share: the store, the answerer, the upload source and the readiness latch."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from starlette.requests import Request

from ragflow.answer import Answerer
from ragflow.documents import DocumentChange
from ragflow.engine import EpochReport
from ragflow.store import DocumentStore
from ragflow.store.query_warmup import QueryWarmup, query_warmup

from .audit import AuditLog
from .auth import ApiKey, KeyRing
from .limits import RequestLimits
from .metrics import ServerMetrics

__all__ = ["OPEN_PATHS", "ServerState", "Uploads", "caller_of", "state_of"]

OPEN_PATHS = ("/healthz", "/readyz", "/")
"""Paths that answer without the API key: the health checks (load balancers and orchestrators probe them)
and the web page, which holds no data and asks for a key."""

_T = TypeVar("_T")


class Uploads(Protocol):
    """Where ``POST /v1/documents`` puts documents: ``ragflow.connectors.upload.UploadSource`` is one."""

    name: str

    def doc_id(self, name: str) -> str: ...

    def put(self, name: str, data: bytes, metadata: Mapping[str, Any] | None = None) -> DocumentChange: ...

    def delete(self, name: str) -> bool: ...


@dataclass(eq=False)
class ServerState:
    """What the endpoints share; ``app.state.ragflow``."""

    store: DocumentStore
    answerer: Answerer
    uploads: Uploads | None
    metrics: ServerMetrics
    max_k: int
    owns_store: bool = False
    """Set by ``serve``: start the store with the server if needed, stop it on shutdown."""
    keys: KeyRing = field(default_factory=lambda: KeyRing(()))
    """The keys requests need (none: the server is open)."""
    audit_log: AuditLog | None = None
    refused: Callable[[str], None] = lambda reason: None
    """Counts a refusal in ``/metrics`` by its reason."""
    limits: RequestLimits = field(default_factory=RequestLimits)
    """The longest query, prompt and chat a request may send (``create_app``'s ``limits``)."""
    warmup: QueryWarmup = field(init=False)
    """Loads the query embedder from the start, so that the first query runs at full speed."""
    _ready: bool = field(default=False, init=False)
    _epochs: int = field(default=0, init=False)
    _updated: threading.Condition = field(default_factory=threading.Condition, init=False)

    def __post_init__(self) -> None:
        self.warmup = query_warmup(self.store)

    def ready(self) -> bool:
        """Whether the initial snapshot is searchable and the query embedder loaded and warm (latched:
        later ingestion does not unready it)."""
        if (
            not self._ready
            and self.store.engine.failure is None
            and self.warmup.ready
            and self.store.wait_until_fresh(0)
        ):
            self._ready = True
        return self._ready

    def on_epoch(self, report: EpochReport) -> None:
        with self._updated:
            self._epochs += 1
            self._updated.notify_all()

    def wait_for(self, check: Callable[[], _T | None], timeout: float) -> _T | None:
        """Re-run ``check()`` after each epoch until it returns something other than ``None``."""
        deadline = time.monotonic() + timeout
        while True:
            with self._updated:
                epochs = self._epochs
            result = check()
            remaining = deadline - time.monotonic()
            if result is not None or remaining <= 0:
                return result
            with self._updated:
                if self._epochs == epochs:
                    self._updated.wait(min(remaining, 0.25))


def state_of(request: Request) -> ServerState:
    """The state of the app serving ``request`` (``app.state.ragflow``)."""
    state: ServerState = request.app.state.ragflow
    return state


def caller_of(request: Request) -> ApiKey | None:
    """The key ``request`` came with (``None``: no key, on an open server or an open path)."""
    key: ApiKey | None = getattr(request.state, "api_key", None)
    return key
