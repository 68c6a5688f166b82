"""The REST API over a ``DocumentStore``: Pathway-compatible retrieval, statistics, inputs, answers and
summaries, plus health, readiness, metrics, per-document errors, uploads, an OpenAPI schema and an
OpenAI-compatible chat endpoint. ``create_app`` builds it; ``serve`` runs it with uvicorn."""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import uvicorn
from fastapi import FastAPI
from prometheus_client import Counter
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware

from ragflow import __version__
from ragflow.answer import Answerer, LLMSettings
from ragflow.errors import ConfigError
from ragflow.store import DocumentStore

from .audit import AuditLog
from .auth import ApiKey, AuthFailures, KeyRing
from .errors import install_error_handlers
from .json_guard import JsonDepthGuard
from .limits import RequestLimits
from .mcp import MCP_PATH, McpEndpoint
from .metrics import ServerMetrics
from .middleware import Authenticate, HealthCheck, LimitBodySize, RecordRequests, StripTrailingSlash
from .openapi import build_openapi
from .probe_server import ProbeServer
from .routes import add_routes
from .shedding import LoadShedder, ShedLoad
from .state import ServerState, Uploads
from .web import add_web_routes

__all__ = ["create_app", "http_server", "serve", "tls_files"]

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
    api_keys: Sequence[ApiKey] = (),
    max_auth_failures: int = 10,
    auth_failure_window: float = 60.0,
    audit_log: AuditLog | None = None,
    cors_origins: Sequence[str] = (),
    limits: RequestLimits | None = None,
) -> FastAPI:
    """The REST API over ``store`` (see docs/rest-api.md).

    Args:
        store: The store to serve; ``serve`` starts it if it is not running yet.
        uploads: A source of ``store`` to put documents uploaded with ``POST /v1/documents`` into
            (``ragflow.connectors.upload.UploadSource``); without it the upload endpoints are absent.
        api_key: Required on every request but health checks, as a bearer token or ``X-API-Key``: one
            admin key named ``api_key`` (the single key of earlier versions).
        llm: The chat model for answers; without it answers are extractive.
        max_k: The largest ``k`` a request may ask for.
        max_request_bytes: The largest request body (uploads included).
        adaptive: Answer with 2, 4, 8... sources until the model finds the answer.
        api_keys: Named keys with a role and an optional scope (docs/security.md); with ``api_key`` or
            these, every request but health checks needs a key whose role the route allows.
        max_auth_failures: Requests with a wrong or no key one client may make within
            ``auth_failure_window`` seconds before its further ones are answered 429.
        audit_log: Where uploads and deletes are recorded (key name, document, time).
        cors_origins: Origins browsers may call the API from; none sends no CORS headers.
        limits: The longest query, prompt and chat, the deepest JSON body, and how many requests of each
            route class run at once before more are answered 503 (default ``RequestLimits()``).

    Raises:
        ConfigError: ``uploads`` is not one of the store's sources, or a limit is not positive.
    """
    accepts = getattr(store, "accepts_uploads", None)  # a MigratingStore fans uploads out
    if (
        uploads is not None
        and not any(feed.source is uploads for feed in store.feeds)
        and not (accepts is not None and accepts(uploads))
    ):
        raise ConfigError(
            f"uploads source {uploads.name!r} is not a source of the store, so uploaded documents would "
            "never be indexed; build the store with it, e.g. DocumentStore([FolderSource(...), uploads])"
        )
    if max_k < 1 or max_request_bytes < 1:
        raise ConfigError(
            f"max_k and max_request_bytes must be positive, got {max_k} and {max_request_bytes}"
        )
    metrics = ServerMetrics(store)
    keys = KeyRing.of(api_key, api_keys)
    refusals = Counter(
        "ragflow_auth_refusals",
        "Requests refused for their API key: no_key, unknown_key, wrong_role, rate_limited, out_of_scope",
        ["reason"],
        registry=metrics.registry,
    )
    state = ServerState(store, Answerer(store, llm, adaptive=adaptive), uploads, metrics, max_k)
    state.keys, state.audit_log = keys, audit_log
    state.limits = limits = limits or RequestLimits()
    state.refused = lambda reason: refusals.labels(reason).inc()
    store.on_update(state.on_epoch)
    cors = (
        [
            Middleware(
                CORSMiddleware,
                allow_origins=list(cors_origins),
                allow_methods=["GET", "POST", "DELETE"],
                allow_headers=["Authorization", "X-API-Key", "Content-Type"],
            )
        ]
        if cors_origins
        else []
    )
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
            *cors,  # before the keys: a browser's preflight carries none
            Middleware(HealthCheck, engine_failure=lambda: store.engine.failure),
            Middleware(
                Authenticate,
                keys=keys,
                failures=AuthFailures(max_auth_failures, auth_failure_window),
                refused=state.refused,
            ),
            Middleware(ShedLoad, shedder=LoadShedder(limits.in_flight(), metrics.registry)),
            Middleware(LimitBodySize, limit=max_request_bytes),
            Middleware(JsonDepthGuard, limit=limits.max_json_depth),
        ],
    )
    app.state.ragflow = state
    install_error_handlers(app)
    add_routes(app, with_uploads=uploads is not None)
    add_web_routes(app)  # the page at / (docs/web.md)
    app.state.mcp = McpEndpoint()  # MCP tools at /mcp (docs/mcp.md)
    app.add_route(MCP_PATH, app.state.mcp.app, methods=["POST"], include_in_schema=False)
    app.openapi = lambda: build_openapi(app, bool(keys), max_k)  # type: ignore[method-assign]
    return app


def serve(
    app: FastAPI,
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    tls_cert: str | os.PathLike[str] | None = None,
    tls_key: str | os.PathLike[str] | None = None,
    access_log: bool = False,
) -> None:
    """Serve ``app`` until SIGINT/SIGTERM, then finish the requests in flight and stop the store.

    Starts the store if it is not running yet. Returns normally after a signal. With ``tls_cert`` and
    ``tls_key`` (PEM files) it serves HTTPS. ``access_log`` logs a line per request (uvicorn's access
    log): off by default, since formatting and writing it cost about a third of a short request's CPU
    outside the model (``/metrics`` counts every request by route and status instead).

    Raises:
        ConfigError: only one of ``tls_cert`` and ``tls_key`` is given, or one cannot be read.
    """
    state: ServerState = app.state.ragflow
    server = http_server(app, host, port, tls_cert=tls_cert, tls_key=tls_key, access_log=access_log)
    state.owns_store = True
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


def http_server(
    app: FastAPI,
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    tls_cert: str | os.PathLike[str] | None = None,
    tls_key: str | os.PathLike[str] | None = None,
    access_log: bool = False,
) -> uvicorn.Server:
    """The uvicorn server ``serve`` runs (``run()`` until ``should_exit``), its health checks answered by
    a ``HealthListener`` over plain HTTP (see ``ProbeServer``)."""
    certfile, keyfile = tls_files(tls_cert, tls_key)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        timeout_graceful_shutdown=10,
        ssl_certfile=certfile,
        ssl_keyfile=keyfile,
        access_log=access_log,
    )
    return ProbeServer(config, app.state.ragflow)


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    state: ServerState = app.state.ragflow
    if state.owns_store and not _started(state.store):
        state.store.start()
    try:
        async with app.state.mcp.running():  # /mcp answers while the app runs
            yield
    finally:
        if state.owns_store:
            log.info("stopping the document store")
            await run_in_threadpool(state.store.stop)


def _started(store: DocumentStore) -> bool:
    # DocumentStore has no public "running" flag yet; it sets _started_at in start() and run_static().
    return getattr(store, "_started_at", None) is not None


def tls_files(
    cert: str | os.PathLike[str] | None, key: str | os.PathLike[str] | None
) -> tuple[str | None, str | None]:
    """The certificate and key files to serve HTTPS with (``(None, None)``: plain HTTP), checked readable
    now so that a wrong path fails before the model loads."""
    if cert is None and key is None:
        return None, None
    if cert is None or key is None:
        raise ConfigError("HTTPS needs both a certificate and its private key (--tls-cert and --tls-key)")
    for what, path in (("certificate", cert), ("private key", key)):
        try:
            with open(path, "rb"):
                pass
        except OSError as exc:
            raise ConfigError(f"cannot read the TLS {what} {os.fspath(path)}: {exc.strerror}") from None
    return os.fspath(cert), os.fspath(key)
