"""Loading a store's query embedder before anyone asks: a server is ready only when its first query runs at
full speed, not after the seconds a local model takes to load on first use."""

from __future__ import annotations

import logging
import threading
import time
import weakref
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ragflow.documents import Embedder

    from .document_store import DocumentStore

__all__ = ["QueryWarmup", "query_warmup"]

logger = logging.getLogger(__name__)

_WARMUPS: weakref.WeakKeyDictionary[object, QueryWarmup] = weakref.WeakKeyDictionary()
_WARMUPS_LOCK = threading.Lock()


class QueryWarmup:
    """Loads an embedder in a background thread: ``load()`` where it has one (a local model; its load ends
    with one real query), nothing otherwise (a remote API has nothing to load, and a warm-up request would
    cost a call).

    Example:
        >>> class RemoteEmbedder:  # no load(): nothing to warm
        ...     model_id = "remote"
        >>> QueryWarmup(RemoteEmbedder()).start().wait(5)  # type: ignore[arg-type]
        True
    """

    def __init__(self, embedder: Embedder) -> None:
        self.embedder = embedder
        self.error: BaseException | None = None
        """Why loading failed; the first query then fails with the same error, and readiness says it."""
        self.seconds: float | None = None
        """How long loading took, once done."""
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ragflow-query-warmup", daemon=True)
        self._start_lock = threading.Lock()

    def start(self) -> QueryWarmup:
        """Begin loading (once; later calls do nothing)."""
        with self._start_lock:
            if self._thread.ident is None:
                self._thread.start()
        return self

    @property
    def done(self) -> bool:
        """Whether loading has ended, well or not."""
        return self._done.is_set()

    @property
    def ready(self) -> bool:
        """Whether the embedder is loaded and answers at full speed."""
        return self._done.is_set() and self.error is None

    def wait(self, timeout: float | None = None) -> bool:
        """Wait up to ``timeout`` seconds for loading to end; whether it ended well."""
        self._done.wait(timeout)
        return self.ready

    def _run(self) -> None:
        started = time.perf_counter()
        load = getattr(self.embedder, "load", None)
        try:
            if callable(load):
                load()
        except BaseException as exc:  # reported by readiness, and again by the first query
            self.error = exc
            logger.error("cannot load the query embedder %s: %s", self.embedder.model_id, exc)
        finally:
            self.seconds = time.perf_counter() - started
            self._done.set()


def query_warmup(store: DocumentStore) -> QueryWarmup:
    """The warm-up of ``store``'s query embedder, started on the first call; the server's readiness and
    ``ragflow serve``'s ready line wait on the same one."""
    with _WARMUPS_LOCK:
        warmup = _WARMUPS.get(store)
        if warmup is None:
            warmup = _WARMUPS[store] = QueryWarmup(store.query_embedder)
    return warmup.start()
