"""The REST API over a ``DocumentStore``: Pathway-compatible retrieval, statistics, inputs, answers and
summaries, plus health, readiness, metrics, per-document errors, uploads, an OpenAPI schema and an
OpenAI-compatible chat endpoint. ``create_app`` builds it; ``serve`` runs it with uvicorn."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import uvicorn
from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware

from ragflow import __version__
from ragflow.answer import Answerer, LLMSettings
from ragflow.errors import ConfigError
from ragflow.store import DocumentStore

from .errors import install_error_handlers
from .metrics import ServerMetrics
from .middleware import LimitBodySize, RecordRequests, RequireApiKey, StripTrailingSlash
from .openapi import build_openapi
from .routes import add_routes
from .state import OPEN_PATHS, ServerState, Uploads

__all__ = ["create_app", "serve"]

log = logging.getLogger("ragflow.server")


def create_app(
    store: DocumentStore,
    *,
    uploads: Uploads | None = None,
    api_key: str | None = None,
    llm: LLMSettings | None = None,
    max_k: int = 100,
    max_request_bytes: int = 10_000_000,
    adaptive: bool = False,
) -> FastAPI:
    """The REST API over ``store`` (see docs/rest-api.md).

    Args:
        store: The store to serve; ``serve`` starts it if it is not running yet.
        uploads: A source of ``store`` to put documents uploaded with ``POST /v1/documents`` into
            (``ragflow.connectors.upload.UploadSource``); without it the upload endpoints are absent.
        api_key: Required on every request but health checks, as a bearer token or ``X-API-Key``.
        llm: The chat model for answers; without it answers are extractive.
        max_k: The largest ``k`` a request may ask for.
        max_request_bytes: The largest request body (uploads included).
        adaptive: Answer with 2, 4, 8... sources until the model finds the answer.

    Raises:
        ConfigError: ``uploads`` is not one of the store's sources, or a limit is not positive.
    """
    if uploads is not None and not any(feed.source is uploads for feed in store.feeds):
        raise ConfigError(
            f"uploads source {uploads.name!r} is not a source of the store, so uploaded documents would "
            "never be indexed; build the store with it, e.g. DocumentStore([FolderSource(...), uploads])"
        )
    if max_k < 1 or max_request_bytes < 1:
        raise ConfigError(
            f"max_k and max_request_bytes must be positive, got {max_k} and {max_request_bytes}"
        )
    metrics = ServerMetrics(store)
    state = ServerState(store, Answerer(store, llm, adaptive=adaptive), uploads, metrics, max_k)
    store.on_update(state.on_epoch)
    app = FastAPI(
        title="ragflow",
        version=__version__,
        description="Live retrieval and question answering over documents kept in sync with their sources.",
        lifespan=_lifespan,
        redirect_slashes=False,
        docs_url="/docs",
        middleware=[
            Middleware(RecordRequests, record=metrics.record_request),
            Middleware(StripTrailingSlash),
            Middleware(RequireApiKey, api_key=api_key, open_paths=OPEN_PATHS),
            Middleware(LimitBodySize, limit=max_request_bytes),
        ],
    )
    app.state.ragflow = state
    install_error_handlers(app)
    add_routes(app, with_uploads=uploads is not None)
    app.openapi = lambda: build_openapi(app, api_key is not None, max_k)  # type: ignore[method-assign]
    return app


def serve(app: FastAPI, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Serve ``app`` until SIGINT/SIGTERM, then finish the requests in flight and stop the store.

    Starts the store if it is not running yet. Returns normally after a signal.
    """
    state: ServerState = app.state.ragflow
    state.owns_store = True
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, timeout_graceful_shutdown=10))
    in_main = threading.current_thread() is threading.main_thread()
    # uvicorn re-raises the signal that stopped it once it is done; make that a no-op so serve returns
    ignored = (
        {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
        if in_main
        else {}
    )
    try:
        server.run()
    finally:
        for sig, handler in ignored.items():
            signal.signal(sig, handler)


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    state: ServerState = app.state.ragflow
    if state.owns_store and not _started(state.store):
        state.store.start()
    try:
        yield
    finally:
        if state.owns_store:
            log.info("stopping the document store")
            await run_in_threadpool(state.store.stop)


def _started(store: DocumentStore) -> bool:
    # DocumentStore has no public "running" flag yet; it sets _started_at in start() and run_static().
    return getattr(store, "_started_at", None) is not None
