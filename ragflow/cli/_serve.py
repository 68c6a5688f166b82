"""``ragflow serve``: index the configured sources, keep the index in sync with them and serve the REST
API, with a progress display for the first pass, until SIGTERM or Ctrl-C."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from ragflow import __version__
from ragflow.cli._client import DEFAULT_PORT
from ragflow.cli._config_options import add_config_arguments, config_from
from ragflow.cli._errors import EXIT_OK, CommandError
from ragflow.cli._index import describe_embedder
from ragflow.cli._output import configure_logging, say
from ragflow.cli._progress import ProgressBar
from ragflow.embedders import embedder_stats
from ragflow.errors import ConfigError

if TYPE_CHECKING:
    from ragflow.config import RagflowConfig
    from ragflow.documents import DocumentSource
    from ragflow.store import DocumentStore

log = logging.getLogger("ragflow.cli")


HELP = "index documents and serve the REST API, keeping the index live"
DESCRIPTION = (
    "Index the configured sources (a progress bar on stderr shows the first pass), keep the "
    "index in sync with them, and serve the REST API; documents can also be uploaded over it. "
    "SIGTERM or Ctrl-C stops it cleanly."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``serve``'s options."""
    add_config_arguments(parser)
    parser.add_argument("--host", help="address to listen on (default: server.host, 127.0.0.1)")
    parser.add_argument("--port", type=int, help=f"port to listen on (default: server.port, {DEFAULT_PORT})")
    parser.add_argument("--tls-cert", help="PEM certificate to serve HTTPS with (default: server.tls_cert)")
    parser.add_argument("--tls-key", help="PEM private key of --tls-cert (default: server.tls_key)")
    parser.add_argument(
        "--index",
        choices=["pgvector"],
        help="serve as a stateless query replica of the shared index the configuration's index section "
        "names (kind: pgvector), which 'ragflow worker' processes fill; its sources are not read",
    )
    parser.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="how much to log on stderr (default: info)",
    )


def run(args: argparse.Namespace) -> int:
    """Run ``ragflow serve`` until it is stopped and return its exit code."""
    configure_logging(args.log_level)
    config = config_from(args)
    try:
        from ragflow.server import create_app, serve
        from ragflow.server.app import tls_files
        from ragflow.server.audit import AuditLog
        from ragflow.server.auth import KeyRing
        from ragflow.server.limits import RequestLimits
    except ImportError as exc:
        raise CommandError(
            f"`ragflow serve` needs the REST server (ragflow.server), which this installation lacks ({exc})"
        ) from None
    host, port, server = config.server.host, config.server.port, config.server
    tls = tls_files(args.tls_cert or server.tls_cert, args.tls_key or server.tls_key)
    keys = KeyRing.from_config(server)  # key files are read now: a wrong path fails before the model loads
    _check_port_free(host, port)
    llm = config.llm_settings()
    sources: list[DocumentSource]
    if args.index is not None:
        store, sources, uploads = _replica_store(config, args.index), [], None
    elif _migrates(config):
        store, sources, uploads = _generations(config)
    else:
        sources = config.build_sources()
        uploads = _upload_source(config, sources)
        if uploads is not None and uploads not in sources:
            sources = [*sources, uploads]
        store = config.build_store(sources=sources)
    app = create_app(
        store,
        uploads=uploads,  # type: ignore[arg-type]  # an UploadSource, found by entry point
        api_keys=keys.keys,
        llm=llm,
        max_k=server.max_k,
        max_request_bytes=server.max_request_bytes,
        max_auth_failures=server.max_auth_failures,
        auth_failure_window=server.auth_failure_window,
        audit_log=AuditLog(server.audit_log, server.audit_log_max_bytes, server.audit_log_backups)
        if server.audit_log
        else None,
        cors_origins=server.cors_origins,
        limits=RequestLimits.of(server),
    )
    url = f"{'https' if tls[0] else 'http'}://{host}:{port}"
    what = f"indexing {', '.join(s.name for s in sources)}" if sources else f"replica of {args.index}"
    say(f"ragflow {__version__}: {what}")
    say(f"serving {url} (API reference at {url}/docs); stop with Ctrl-C or SIGTERM")
    say(f"web page: {url}/  MCP (streamable HTTP): {url}/mcp")
    previous = signal.signal(signal.SIGTERM, _interrupt)  # SIGTERM before the server runs: stop cleanly
    watch = _IndexingWatch(store, client_url=url)
    try:
        store.start()
        watch.start()
        serve(app, host, port, tls_cert=tls[0], tls_key=tls[1], access_log=server.access_log)
    except KeyboardInterrupt:
        pass
    except SystemExit as exc:  # uvicorn exits when it cannot start
        if exc.code not in (None, 0):
            raise CommandError(f"the server could not start on {host}:{port} (see the log above)") from None
    finally:
        signal.signal(signal.SIGTERM, previous)
        watch.stop()
        _stop_store(store)
    if watch.failure is not None:
        raise CommandError(f"the indexing engine stopped: {type(watch.failure).__name__}: {watch.failure}")
    say("stopped")
    return EXIT_OK


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _check_port_free(host: str, port: int) -> None:
    """Fail before the model loads, not after, when the port is taken."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ConfigError(f"cannot listen on host {host!r}: {exc.strerror}") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
        try:
            probe.bind(address)
        except OSError as exc:
            raise CommandError(
                f"cannot listen on {host}:{port}: {exc.strerror}; is another server running there? "
                "Pass another --port (or set server.port)"
            ) from None


def _upload_source(config: RagflowConfig, sources: Sequence[DocumentSource]) -> DocumentSource | None:
    """The source uploads go into: a configured ``kind: upload`` source, else a new one named ``upload``
    (kept under the state directory), or ``None`` when no upload source is installed."""
    from ragflow.plugins import load_connector

    try:
        factory = load_connector("upload")
    except ConfigError:
        log.warning(
            "uploads over REST are off: no source is registered as 'upload' in the 'ragflow.connectors' "
            "entry points (reinstall ragflow: pip install -e .)"
        )
        return None
    for source in sources:
        if isinstance(source, factory):
            return source
    state_dir = config.persistence.state_dir
    upload: DocumentSource = factory(
        name="upload", directory=Path(state_dir) / "uploads" if state_dir is not None else None
    )
    return upload


def _migrates(config: RagflowConfig) -> bool:
    """Whether ``serve`` runs generations: with a state directory, unless ``on_incompatible_state`` says
    ``refuse`` or ``rebuild`` (``migrate`` is ``serve``'s default)."""
    mode = config.persistence.on_incompatible_state or "migrate"
    return config.persistence.state_dir is not None and mode == "migrate"


def _generations(config: RagflowConfig) -> tuple[DocumentStore, list[DocumentSource], object | None]:
    """The ``MigratingStore`` over the state directory's generations, the active generation's sources,
    and where uploads go (every running generation's upload source)."""
    from ragflow.store.migrating import UploadFanout

    def sources() -> list[DocumentSource]:
        made = config.build_sources()
        uploads = _upload_source(config, made)
        if uploads is not None and uploads not in made:
            made = [*made, uploads]
        return made

    store = config.build_generations(sources)
    feeds = store.active.feeds
    uploads = next((feed.source for feed in feeds if _is_upload(feed.source)), None)
    fanout = UploadFanout(store, uploads.name) if uploads is not None else None
    return store, [feed.source for feed in feeds], fanout  # type: ignore[return-value]


def _is_upload(source: DocumentSource) -> bool:
    from ragflow.plugins import load_connector

    try:
        return isinstance(source, load_connector("upload"))
    except ConfigError:
        return False


def _replica_store(config: RagflowConfig, kind: str) -> DocumentStore:
    """A query replica over the configured shared index (``ReplicaStore``), which must be ``kind``, with
    the ``retrieval:`` section's search defaults and reranker, as the embedded store has them."""
    from ragflow.store.replica import ReplicaStore

    if config.index.kind != kind:
        raise ConfigError(
            f"--index {kind} serves the shared index of the configuration's index section, which is "
            f"{config.index.kind!r}: set index: {{kind: {kind}, dsn: ..., table: ...}}"
        )
    embedder = config.build_embedder()
    return ReplicaStore(config.build_index(embedder.dim), embedder=embedder, **config.retrieval_options())


def _stop_store(store: DocumentStore) -> None:
    try:
        store.stop(timeout=10)
    except Exception:  # the engine's own failure, already reported by the watch
        log.debug("the store stopped with an error", exc_info=True)


class _IndexingWatch:
    """Shows initial-indexing progress on stderr, says when the index is ready, and stops the server
    (SIGTERM to this process, which the server turns into a graceful shutdown) if the engine fails."""

    def __init__(self, store: DocumentStore, client_url: str) -> None:
        self.store = store
        self.client_url = client_url
        self.failure: BaseException | None = None
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ragflow-cli-watch", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        if self._thread.ident is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        from ragflow.store.query_warmup import query_warmup

        started = time.monotonic()
        warmup = query_warmup(self.store)  # the server's readiness waits on the same one
        with ProgressBar(self.store) as bar:
            while not self._stopped.is_set() and not self.store.wait_until_fresh(timeout=0.5):
                if self._failed():
                    bar.close(final=False)
                    break
        while self.failure is None and not self._stopped.is_set() and not warmup.wait(timeout=0.5):
            self._failed()
        if warmup.error is not None:
            say(f"queries will fail: the query embedder did not load: {warmup.error}")
        if self.failure is None and not self._stopped.is_set():
            self._announce_ready(time.monotonic() - started)
            while not self._stopped.wait(1.0) and not self._failed():
                pass
        if self.failure is not None:
            self._shut_down()

    def _failed(self) -> bool:
        self.failure = self.store.engine.failure
        return self.failure is not None

    def _announce_ready(self, seconds: float) -> None:
        stats = self.store.statistics()
        errors = self.store.errors()
        say(
            f"ready: {stats['file_count']} documents, {self.store.index.count()} chunks, "
            f"{len(errors)} errors, in {seconds:.1f} s"
        )
        embedding = embedder_stats(self.store.embedder)
        if embedding.get("device"):
            say(f"embedding: {describe_embedder(embedding)}; query model loaded")
        for error in errors[:10]:
            say(f"  error in {error.doc_id} ({error.stage}): {error.message}")
        if len(errors) > 10:
            say(f"  ... and {len(errors) - 10} more: ragflow status --url {self.client_url}")
        say(f'try: ragflow query "your question" --url {self.client_url}')

    def _shut_down(self) -> None:
        say(f"error: the indexing engine stopped ({self.failure}); shutting the server down")
        while not self._stopped.is_set():
            os.kill(os.getpid(), signal.SIGTERM)
            self._stopped.wait(5.0)  # again, in case the server was not yet listening for it
