"""The ``ragflow`` command: serve a live index over HTTP, build one once, and query or inspect a running
server.

    ragflow serve  [PATH | --config FILE] [--host HOST] [--port PORT] [--state-dir DIR]
    ragflow index  [PATH | --config FILE] [--state-dir DIR] [--json] [--strict]
    ragflow query  TEXT [--url URL] [--k K] [--filter EXPR] [--glob PATTERN] [--json]
    ragflow status [--url URL] [--json]
    ragflow status --state-dir DIR [--check] [--json]

Exit codes: 0 success, 1 the command failed while running, 2 bad usage or configuration, 3 no server at
the URL. ``query`` and ``status`` import nothing heavy, so they answer in a fraction of a second.

Errors (on top of ``ragflow.errors``)::

    RagflowError
    ├── ConfigError                 exit 2
    └── CommandError                exit 1: the command could not do its job
        └── ServerUnreachableError  exit 3: nothing answers at the server URL
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, TextIO

from ragflow import __version__
from ragflow.errors import ConfigError, RagflowError

if TYPE_CHECKING:
    from ragflow.config import RagflowConfig
    from ragflow.documents import DocumentSource, Embedder
    from ragflow.store import DocumentError, DocumentStore, Progress

__all__ = [
    "CommandError",
    "IndexSummary",
    "ServerUnreachableError",
    "build_parser",
    "index_documents",
    "main",
    "progress_line",
]

log = logging.getLogger("ragflow.cli")

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3

DEFAULT_PORT = 8000
"""``server.port``'s default; ``query`` and ``status`` use it without importing the config module."""
URL_ENV = "RAGFLOW_URL"
API_KEY_ENV = "RAGFLOW_API_KEY"
DEFAULT_URL = f"http://127.0.0.1:{DEFAULT_PORT}"


class CommandError(RagflowError):
    """A command could not do its job; the message says why and what to do."""

    exit_code = EXIT_FAILURE


class ServerUnreachableError(CommandError):
    """Nothing answers at the server URL."""

    exit_code = EXIT_UNREACHABLE


# -- the command line ----------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``ragflow`` and its subcommands."""
    parser = argparse.ArgumentParser(
        prog="ragflow",
        description="Keep a vector index of documents in sync with where they live, and serve retrieval.",
        epilog="Exit codes: 0 ok, 1 failed, 2 bad usage or configuration, 3 server not reachable.",
    )
    parser.add_argument("--version", action="version", version=f"ragflow {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser(
        "serve",
        help="index documents and serve the REST API, keeping the index live",
        description="Index the configured sources (a progress bar on stderr shows the first pass), keep the "
        "index in sync with them, and serve the REST API; documents can also be uploaded over it. "
        "SIGTERM or Ctrl-C stops it cleanly.",
    )
    _add_config_arguments(serve)
    serve.add_argument("--host", help="address to listen on (default: server.host, 127.0.0.1)")
    serve.add_argument("--port", type=int, help=f"port to listen on (default: server.port, {DEFAULT_PORT})")
    serve.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="how much to log on stderr (default: info)",
    )
    serve.set_defaults(handler=_serve)

    index = commands.add_parser(
        "index",
        help="index the sources once and print a summary",
        description="Read the sources' current contents, index them and exit with a summary (documents, "
        "chunks, errors, time, chunks/s). With a state directory, the result is saved there, so a later "
        "`ragflow index` or `ragflow serve` over it starts from this index and processes only what changed.",
    )
    _add_config_arguments(index)
    index.add_argument("--json", action="store_true", help="print the summary as JSON")
    index.add_argument("--strict", action="store_true", help="exit 1 if any document could not be indexed")
    index.set_defaults(handler=_index)

    query = commands.add_parser(
        "query",
        help="retrieve the chunks closest to a text from a running server",
        description="Ask a running server (POST /v1/retrieve) for the chunks closest to TEXT.",
    )
    query.add_argument("text", help="what to search for")
    _add_client_arguments(query)
    query.add_argument("--k", type=int, default=3, help="how many chunks (default: 3)")
    query.add_argument("--filter", help="JMESPath metadata filter, e.g. \"contains(path, 'guide')\"")
    query.add_argument("--glob", help="only files whose path matches this glob, e.g. '**/*.md'")
    query.add_argument("--json", action="store_true", help="print the server's JSON answer")
    query.set_defaults(handler=_query)

    status = commands.add_parser(
        "status",
        help="show a running server's readiness, statistics and errors, or what a state directory holds",
        description="Show a running server's readiness (/readyz), statistics (/v1/statistics) and the "
        "documents it could not index (/v1/errors). With --state-dir, show instead what a state directory "
        "holds (documents, chunks, source positions, last checkpoint, embedding cache), read from disk "
        "without a server and without changing it (safe while a server runs on it).",
    )
    _add_client_arguments(status)
    status.add_argument(
        "--state-dir", metavar="DIR", help="show what this state directory holds instead of asking a server"
    )
    status.add_argument(
        "--check", action="store_true", help="with --state-dir: also verify the whole state file (slower)"
    )
    status.add_argument("--json", action="store_true", help="print everything as one JSON object")
    status.set_defaults(handler=_status)
    return parser


def _add_config_arguments(parser: argparse.ArgumentParser) -> None:
    where = parser.add_mutually_exclusive_group()
    where.add_argument("path", nargs="?", help="a folder to index with the default settings (no config file)")
    where.add_argument(
        "--config", metavar="FILE", help="a YAML configuration file (see docs/configuration.md)"
    )
    parser.add_argument(
        "--state-dir",
        metavar="DIR",
        help="where state lives: indexed documents, source positions, embedding cache, uploads "
        "(default: persistence.state_dir, .ragflow)",
    )


def _add_client_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--url",
        default=os.environ.get(URL_ENV) or DEFAULT_URL,
        help=f"the server (default: ${URL_ENV} or {DEFAULT_URL})",
    )
    parser.add_argument(
        "--api-key",
        default=os.environ.get(API_KEY_ENV) or None,
        help=f"the server's API key, if it needs one (default: ${API_KEY_ENV})",
    )
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the server")


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``ragflow`` with ``argv`` (default ``sys.argv[1:]``) and return its exit code."""
    args = build_parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except ConfigError as exc:
        _say(f"error: {exc}")
        return EXIT_USAGE
    except CommandError as exc:
        _say(f"error: {exc}")
        return exc.exit_code
    except RagflowError as exc:
        _say(f"error: {exc}")
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return 130


def _say(message: str, stream: TextIO | None = None) -> None:
    print(message, file=stream or sys.stderr, flush=True)


def _configure_logging(ragflow_level: str) -> None:
    """Warnings from libraries, ``ragflow_level`` and up from ragflow's own loggers, on stderr."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("ragflow").setLevel(ragflow_level.upper())


def _load_config(args: argparse.Namespace) -> RagflowConfig:
    from ragflow.config import RagflowConfig, load_config

    if args.config:
        config = load_config(args.config)
    elif args.path:
        config = RagflowConfig.for_folder(args.path)
    else:
        raise ConfigError(
            f"nothing to index: pass a folder (ragflow {args.command} ./docs) or a configuration file "
            f"(ragflow {args.command} --config app.yaml)"
        )
    return config.with_overrides(
        host=getattr(args, "host", None), port=getattr(args, "port", None), state_dir=args.state_dir
    )


# -- serve ---------------------------------------------------------------------------------------------


def _serve(args: argparse.Namespace) -> int:
    _configure_logging(args.log_level)
    config = _load_config(args)
    try:
        from ragflow.server import create_app, serve
    except ImportError as exc:
        raise CommandError(
            f"`ragflow serve` needs the REST server (ragflow.server), which this installation lacks ({exc})"
        ) from None
    host, port = config.server.host, config.server.port
    _check_port_free(host, port)
    llm = config.llm_settings()
    sources = config.build_sources()
    uploads = _upload_source(config, sources)
    if uploads is not None and uploads not in sources:
        sources = [*sources, uploads]
    store = config.build_store(sources=sources)
    app = create_app(
        store,
        uploads=uploads,  # type: ignore[arg-type]  # an UploadSource, found by entry point
        api_key=config.server.api_key,
        llm=llm,
        max_k=config.server.max_k,
        max_request_bytes=config.server.max_request_bytes,
    )
    url = f"http://{host}:{port}"
    _say(f"ragflow {__version__}: indexing {', '.join(source.name for source in sources)}")
    _say(f"serving {url} (API reference at {url}/docs); stop with Ctrl-C or SIGTERM")
    previous = signal.signal(signal.SIGTERM, _interrupt)  # SIGTERM before the server runs: stop cleanly
    watch = _IndexingWatch(store, client_url=url)
    try:
        store.start()
        watch.start()
        serve(app, host, port)
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
    _say("stopped")
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
        started = time.monotonic()
        with ProgressBar(self.store) as bar:
            while not self._stopped.is_set() and not self.store.wait_until_fresh(timeout=0.5):
                if self._failed():
                    bar.close(final=False)
                    break
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
        _say(
            f"ready: {stats['file_count']} documents, {self.store.index.count()} chunks, "
            f"{len(errors)} errors, in {seconds:.1f} s"
        )
        for error in errors[:10]:
            _say(f"  error in {error.doc_id} ({error.stage}): {error.message}")
        if len(errors) > 10:
            _say(f"  ... and {len(errors) - 10} more: ragflow status --url {self.client_url}")
        _say(f'try: ragflow query "your question" --url {self.client_url}')

    def _shut_down(self) -> None:
        _say(f"error: the indexing engine stopped ({self.failure}); shutting the server down")
        while not self._stopped.is_set():
            os.kill(os.getpid(), signal.SIGTERM)
            self._stopped.wait(5.0)  # again, in case the server was not yet listening for it


# -- progress ------------------------------------------------------------------------------------------


def progress_line(p: Progress) -> str:
    """One line: a bar, documents and chunks done/seen, rate and ETA (``+`` while sources still list)."""
    more = "" if p.snapshot_complete else "+"
    # The chunks of an epoch are counted once it completes, so while the first epoch embeds, more chunks
    # are done than seen: the total is not known yet, and the bar follows the documents instead.
    chunks_known = p.chunks_seen >= p.chunks_embedded and p.chunks_seen > 0
    if chunks_known:
        fraction = p.chunks_embedded / p.chunks_seen
    else:
        fraction = p.documents_done / p.documents_seen if p.documents_seen else 0.0
    eta = f"{p.eta:4.0f}s" if chunks_known and p.eta is not None else "   ?"
    width = 24
    if p.snapshot_complete and p.chunks_seen == 0 == p.chunks_embedded:
        chunks_known, fraction, eta = True, 1.0, "   0s"  # nothing to embed (all restored or empty)
    chunks_total = f"{p.chunks_seen}{more}" if chunks_known else "?"
    restored = f"  ({p.documents_restored} restored)" if p.documents_restored else ""
    filled = int(width * min(fraction, 1.0))
    bar = "#" * filled + "-" * (width - filled)
    return (
        f"[{bar}] docs {p.documents_done}/{p.documents_seen}{more}{restored}  "
        f"chunks {p.chunks_embedded}/{chunks_total}  {p.chunk_rate:5.1f} chunks/s  ETA {eta}"
    )


class ProgressBar:
    """Redraws ``progress_line`` for a store on a stream (stderr) from a thread: in place on a terminal,
    every ``log_interval`` seconds otherwise (so that logs stay readable); a last line on ``close``."""

    def __init__(self, store: DocumentStore, stream: TextIO | None = None, log_interval: float = 5.0) -> None:
        self.store = store
        self.stream = stream or sys.stderr
        self.log_interval = log_interval
        self._interactive = self.stream.isatty()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ragflow-progress", daemon=True)

    def __enter__(self) -> ProgressBar:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self, final: bool = True) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        self._thread.join()
        if final:
            self._draw(end="\n")
        elif self._interactive:
            print(file=self.stream, flush=True)

    def _run(self) -> None:
        interval = 0.2 if self._interactive else self.log_interval
        while not self._closed.wait(interval):
            self._draw(end="" if self._interactive else "\n")

    def _draw(self, end: str) -> None:
        prefix = "\r" if self._interactive else ""
        print(prefix + progress_line(self.store.progress()), end=end, file=self.stream, flush=True)


# -- index ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IndexSummary:
    """What ``ragflow index`` did."""

    documents: int
    """Documents indexed (without error)."""
    chunks: int
    """Chunks in the index."""
    embedded: int
    """Chunk texts embedded by the model in this run."""
    cached: int
    """Chunk texts whose vectors came from the embedding cache."""
    errors: tuple[DocumentError, ...]
    seconds: float
    """Time spent indexing, loading the embedding model excluded."""
    load_seconds: float = 0.0
    """Time spent loading the embedding model."""
    processed: int | None = None
    """Chunks that went through the pipeline in this run (``None``: all of ``chunks``)."""
    restored_documents: int = 0
    """Documents loaded from the state directory's last checkpoint instead of being indexed again."""
    restored_chunks: int = 0

    @property
    def chunks_per_second(self) -> float:
        processed = self.chunks if self.processed is None else self.processed
        return processed / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "documents": self.documents,
            "chunks": self.chunks,
            "embedded": self.embedded,
            "cached": self.cached,
            "errors": [{"doc_id": e.doc_id, "stage": e.stage, "message": e.message} for e in self.errors],
            "seconds": round(self.seconds, 3),
            "load_seconds": round(self.load_seconds, 3),
            "chunks_per_second": round(self.chunks_per_second, 2),
            "processed": self.chunks if self.processed is None else self.processed,
            "restored_documents": self.restored_documents,
            "restored_chunks": self.restored_chunks,
        }

    def lines(self) -> Iterator[str]:
        yield f"documents  {self.documents}"
        yield f"chunks     {self.chunks} ({self.embedded} embedded, {self.cached} from the cache)"
        if self.restored_documents:
            yield (
                f"restored   {self.restored_documents} documents, {self.restored_chunks} chunks from the "
                "saved state (not indexed again)"
            )
        yield f"errors     {len(self.errors)}"
        for error in self.errors:
            yield f"  {error.doc_id} ({error.stage}): {error.message}"
        loading = f" (+ {self.load_seconds:.1f} s loading the embedding model)" if self.load_seconds else ""
        yield f"time       {self.seconds:.1f} s{loading}"
        if self.processed == 0:
            yield "rate       - (nothing changed since the saved state)"
        else:
            yield f"rate       {self.chunks_per_second:.1f} chunks/s"


def index_documents(
    config: RagflowConfig, *, embedder: Embedder | None = None, progress: TextIO | None = None
) -> IndexSummary:
    """Index the configured sources' current contents once (static mode) and summarise.

    ``embedder`` replaces the configured one (tests pass a fast fake); ``progress`` is a stream to draw
    a progress bar on.
    """
    store = config.build_store(embedder=embedder)
    load_seconds = _load_model(store.embedder)
    started = time.monotonic()
    bar = ProgressBar(store, progress) if progress is not None else contextlib.nullcontext()
    with bar:
        store.run_static()
    seconds = time.monotonic() - started
    stats = store.embedding_stats()
    done = store.progress()
    return IndexSummary(
        documents=int(store.statistics()["file_count"] or 0),
        chunks=store.index.count(),
        embedded=stats["computed"],
        cached=stats["cache_hits"],
        errors=tuple(store.errors()),
        seconds=seconds,
        load_seconds=load_seconds,
        processed=done.chunks_seen,
        restored_documents=done.documents_restored,
        restored_chunks=done.chunks_restored,
    )


def _load_model(embedder: Embedder) -> float:
    """Load a local model now, so that the indexing rate does not count the seconds it takes."""
    load = getattr(embedder, "load", None)
    if not callable(load):
        return 0.0
    started = time.monotonic()
    load()
    return time.monotonic() - started


def _index(args: argparse.Namespace) -> int:
    _configure_logging("warning")
    config = _load_config(args)
    summary = index_documents(config, progress=sys.stderr)
    if args.json:
        print(json.dumps(summary.to_dict(), indent=2))
    else:
        for line in summary.lines():
            print(line)
    if args.strict and summary.errors:
        _say(f"error: {len(summary.errors)} documents could not be indexed (--strict)")
        return EXIT_FAILURE
    return EXIT_OK


# -- the HTTP client for query and status --------------------------------------------------------------


class _Client:
    """JSON over HTTP to a ragflow server, with errors that say what to do."""

    def __init__(self, url: str, api_key: str | None, timeout: float) -> None:
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ConfigError(f"--url must be an http(s) URL such as {DEFAULT_URL}, got {url!r}")
        self.url = url.rstrip("/")
        self.api_key = api_key
        self.timeout = timeout
        # A proxy from the environment must not swallow requests to this machine.
        proxies: dict[str, str] | None = {} if _is_loopback(parsed.hostname) else None
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler(proxies))

    def get(self, path: str) -> Any:
        return self._send(path, None)

    def post(self, path: str, body: dict[str, Any]) -> Any:
        return self._send(path, json.dumps(body).encode())

    def status_of(self, path: str) -> tuple[int, Any]:
        """The HTTP status and JSON body of ``GET path``, whatever the status."""
        try:
            return 200, self._send(path, None)
        except _HttpError as exc:
            return exc.status, exc.body

    def _send(self, path: str, data: bytes | None) -> Any:
        request = urllib.request.Request(self.url + path, data=data, method="GET" if data is None else "POST")
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if self.api_key:
            request.add_header("Authorization", f"Bearer {self.api_key}")
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                payload = response.read()
        except urllib.error.HTTPError as exc:
            raise _HttpError(self.url + path, exc) from None
        except urllib.error.URLError as exc:
            raise self._unreachable(exc.reason) from None
        except (TimeoutError, ConnectionError) as exc:
            raise self._unreachable(exc) from None
        try:
            return json.loads(payload)
        except ValueError:
            raise CommandError(f"{self.url}{path} did not answer JSON: is it a ragflow server?") from None

    def _unreachable(self, reason: object) -> ServerUnreachableError:
        if isinstance(reason, TimeoutError | socket.timeout):
            reason = f"no answer within {self.timeout:g} s"
        return ServerUnreachableError(
            f"no ragflow server answers at {self.url} ({reason}). Start one with `ragflow serve PATH` "
            f"(or `ragflow serve --config app.yaml`), or point --url or ${URL_ENV} at a running server"
        )


class _HttpError(CommandError):
    """The server answered with an error status."""

    def __init__(self, url: str, error: urllib.error.HTTPError) -> None:
        self.status = error.code
        try:
            self.body: Any = json.loads(error.read())
        except (ValueError, OSError):
            self.body = None
        message = _error_message(self.body) or error.reason
        hint = ""
        if error.code in (401, 403):
            hint = f"; pass the server's API key with --api-key or ${API_KEY_ENV}"
        super().__init__(f"{url}: HTTP {error.code}: {message}{hint}")


def _error_message(body: Any) -> str | None:
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
        if body.get("detail"):
            return str(body["detail"])
    return None


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# -- query and status ----------------------------------------------------------------------------------


def _query(args: argparse.Namespace) -> int:
    if args.k < 1:
        raise ConfigError(f"--k must be at least 1, got {args.k}")
    client = _Client(args.url, args.api_key, args.timeout)
    body = {
        "query": args.text,
        "k": args.k,
        "metadata_filter": args.filter,
        "filepath_globpattern": args.glob,
    }
    hits = client.post("/v1/retrieve", body)
    if args.json:
        print(json.dumps(hits, indent=2, ensure_ascii=False))
        return EXIT_OK
    if not hits:
        print("no matching chunks")
    for rank, hit in enumerate(hits, 1):
        metadata = hit.get("metadata") or {}
        page = f" (page {metadata['page_number']})" if "page_number" in metadata else ""
        print(f"{rank}. {hit.get('dist', float('nan')):.3f}  {_display_path(metadata)}{page}")
        print(f"   {_snippet(str(hit.get('text', '')))}")
    return EXIT_OK


def _display_path(metadata: dict[str, Any]) -> str:
    path = str(metadata.get("path") or metadata.get("doc_id") or "?")
    with contextlib.suppress(ValueError):
        return str(Path(path).relative_to(Path.cwd()))
    return path


def _snippet(text: str, width: int = 200) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def _status(args: argparse.Namespace) -> int:
    if args.state_dir is not None:
        return _state_status(Path(args.state_dir), check=args.check, as_json=args.json)
    if args.check:
        raise ConfigError("--check verifies a state directory: use it with --state-dir DIR")
    client = _Client(args.url, args.api_key, args.timeout)
    code, readiness = client.status_of("/readyz")
    stats = client.get("/v1/statistics")
    errors = client.get("/v1/errors")
    ready = code == 200
    if args.json:
        report = {
            "url": client.url,
            "ready": ready,
            "readiness": readiness,
            "statistics": stats,
            "errors": errors,
        }
        print(json.dumps(report, indent=2, ensure_ascii=False))
        return EXIT_OK
    state = "ready" if ready else (_error_message(readiness) or f"not ready (HTTP {code})")
    print(f"server         {client.url}  {state}")
    print(f"documents      {stats.get('file_count')}")
    print(f"last modified  {_when(stats.get('last_modified'))}")
    print(f"last indexed   {_when(stats.get('last_indexed'))}")
    print(f"errors         {len(errors) if errors else 'none'}")
    for error in errors or []:
        print(f"  {error.get('doc_id', '?')} ({error.get('stage', '?')}): {error.get('message', '')}")
    return EXIT_OK


def _bytes_text(n: int | None) -> str:
    from ragflow.persistence import human_size

    return human_size(n) if n is not None else "unknown"


def _state_status(state_dir: Path, *, check: bool, as_json: bool) -> int:
    from ragflow.persistence import describe_state

    if state_dir.exists() and not state_dir.is_dir():
        raise ConfigError(f"--state-dir {state_dir} is not a directory")
    state = describe_state(state_dir, check_integrity=check)
    if as_json:
        print(json.dumps(state, indent=2, ensure_ascii=False))
    elif not state["exists"]:
        print(f"state dir      {state_dir}  (no saved state)")
        cache = state["cache"]
        if cache["entries"]:
            print(f"cache          {cache['entries']:,} embeddings, {_bytes_text(cache['bytes'])}")
    else:
        _print_state(state)
    if not state["exists"]:
        _say(
            f"no saved state in {state_dir}: `ragflow serve --state-dir {state_dir}` or `ragflow index "
            f"--state-dir {state_dir}` creates one"
        )
        return EXIT_FAILURE
    if state["problem"] is not None:
        _say(
            f"the state in {state_dir} cannot be read: {state['problem']}. The next start moves it aside and "
            "rebuilds the index from the sources and the embedding cache"
        )
        return EXIT_FAILURE
    return EXIT_OK


def _print_state(state: dict[str, Any]) -> None:
    print(f"state dir        {state['state_dir']}  (format {state['format_version']})")
    print(f"embedding model  {state['model_id']} ({state['dim']} dimensions)")
    print(f"parser/splitter  {state['parser_id']}")
    print(f"documents        {state['documents']:,}")
    print(f"chunks           {state['chunks']:,}")
    last = state["last_checkpoint"]
    if last is None:
        print("last checkpoint  none")
    else:
        print(f"last checkpoint  {_when(last['time'])}, epoch {last['epoch']} ({state['checkpoints']} kept)")
    print(f"state size       {_bytes_text(state['state_bytes'])}")
    cache = state["cache"]
    entries = f"{cache['entries']:,}" if cache["entries"] is not None else "unreadable"
    print(f"embedding cache  {entries} embeddings, {_bytes_text(cache['bytes'])}")
    print("sources" if state["sources"] else "sources          none saved")
    for name, source in sorted(state["sources"].items()):
        if source.get("scope") == "stream":
            where = f"position {source.get('position')}"
        else:
            where = f"{source.get('positions', 0):,} file positions"
        print(f"  {name:<14} {source['documents']:,} documents, {source['chunks']:,} chunks, {where}")


def _when(timestamp: Any) -> str:
    if not isinstance(timestamp, int | float):
        return "never"
    ago = max(0.0, time.time() - timestamp)
    if ago < 120:
        age = f"{ago:.0f} s ago"
    elif ago < 7200:
        age = f"{ago / 60:.0f} min ago"
    else:
        age = f"{ago / 3600:.1f} h ago"
    return f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(timestamp))} ({age})"


if __name__ == "__main__":
    sys.exit(main())
