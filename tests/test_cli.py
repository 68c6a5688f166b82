"""The ``ragflow`` command, run as a user runs it: a subprocess, with its exit codes and messages.

``index`` is tested in process with the fast hashing embedder for what it counts, and once as a subprocess
with the real local model; ``serve`` runs for real (model, REST server, SIGTERM). ``query`` and ``status``
talk to a small stub HTTP server, so their output and the requests they send can be checked exactly.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from ragflow.cli import EXIT_UNREACHABLE, ProgressBar, build_parser, index_documents, progress_line
from ragflow.cli._output import StderrHandler
from ragflow.config import RagflowConfig, load_config
from ragflow.parsers import DefaultParser
from ragflow.store import Progress
from tests.fakes.hashing_embedder import HashingEmbedder

REPO = Path(__file__).resolve().parents[1]
SAMPLE_DOCS = REPO / "apps/qa_server/sample_docs"


def ragflow(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ragflow.cli", *args],
        cwd=cwd,
        env=cli_environment(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def cli_environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RAGFLOW_URL", "RAGFLOW_API_KEY")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env["HF_HUB_OFFLINE"] = env["TRANSFORMERS_OFFLINE"] = "1"
    return env


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def write_docs(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "lighthouse.md").write_text(
        "# The lighthouse\n\nThe keeper climbs the spiral stairs every evening to light the lamp.\n"
    )
    (folder / "bread.txt").write_text("Knead the dough for ten minutes, then let it rise until doubled.\n")
    return folder


# -- index ---------------------------------------------------------------------------------------------


def test_index_counts_documents_chunks_and_errors(tmp_path: Path) -> None:
    docs = write_docs(tmp_path / "docs")
    (docs / "broken.pdf").write_bytes(b"%PDF-1.4 this is not really a PDF")
    config = RagflowConfig.for_folder(docs).with_overrides(state_dir=tmp_path / "state")
    summary = index_documents(config, embedder=HashingEmbedder())
    assert (summary.documents, summary.chunks, summary.embedded, summary.cached) == (2, 2, 2, 0)
    (error,) = summary.errors
    assert error.doc_id == "broken.pdf" and error.stage == "parse"
    assert summary.seconds > 0 and summary.chunks_per_second > 0
    lines = list(summary.lines())
    assert lines[0] == "documents  2" and lines[1] == "chunks     2 (2 embedded, 0 from the cache)"
    assert lines[2] == "errors     1" and lines[3].startswith("  broken.pdf (parse): ")
    assert json.loads(json.dumps(summary.to_dict()))["errors"][0]["doc_id"] == "broken.pdf"


def test_index_fills_the_cache_that_the_next_run_reuses(tmp_path: Path) -> None:
    config = RagflowConfig.for_folder(write_docs(tmp_path / "docs")).with_overrides(state_dir=tmp_path / "s")
    first = index_documents(config, embedder=HashingEmbedder())
    again = index_documents(config, embedder=HashingEmbedder())
    assert (first.embedded, first.cached) == (2, 0)
    assert (again.chunks, again.embedded, again.cached) == (2, 0, 2)
    assert (again.restored_documents, again.restored_chunks, again.processed) == (2, 2, 0)
    assert "restored   2 documents, 2 chunks from the saved state (not indexed again)" in list(again.lines())
    assert "rate       - (nothing changed since the saved state)" in list(again.lines())
    assert (first.restored_documents, first.processed) == (0, 2)


def test_status_of_a_state_directory_shows_what_it_holds(tmp_path: Path) -> None:
    config = RagflowConfig.for_folder(write_docs(tmp_path / "docs")).with_overrides(state_dir=tmp_path / "s")
    index_documents(config, embedder=HashingEmbedder())
    done = ragflow("status", "--state-dir", str(tmp_path / "s"), "--check", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "documents        2" in done.stdout and "chunks           2" in done.stdout
    assert HashingEmbedder().model_id in done.stdout
    assert "embedding cache  2 embeddings" in done.stdout
    assert "folder" in done.stdout and "2 file positions" in done.stdout
    (last,) = [line for line in done.stdout.splitlines() if line.startswith("last checkpoint")]
    assert "epoch" in last and "none" not in last
    as_json = json.loads(ragflow("status", "--state-dir", str(tmp_path / "s"), "--json", cwd=tmp_path).stdout)
    assert (as_json["documents"], as_json["chunks"], as_json["problem"]) == (2, 2, None)
    (source,) = as_json["sources"].values()
    assert (source["scope"], source["documents"], source["positions"]) == ("document", 2, 2)


def test_status_of_a_missing_or_damaged_state_directory_says_so(tmp_path: Path) -> None:
    missing = ragflow("status", "--state-dir", str(tmp_path / "nothing"), cwd=tmp_path)
    assert missing.returncode == 1 and "no saved state in" in missing.stderr
    assert "ragflow serve --state-dir" in missing.stderr
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "state.sqlite").write_bytes(b"this is not an SQLite file" * 100)
    damaged = ragflow("status", "--state-dir", str(tmp_path / "bad"), cwd=tmp_path)
    assert damaged.returncode == 1 and "cannot be read" in damaged.stderr, damaged.stderr
    assert "moves it aside and rebuilds" in damaged.stderr
    misused = ragflow("status", "--check", cwd=tmp_path)
    assert misused.returncode == 2 and "--check verifies a state directory" in misused.stderr


@pytest.mark.model
def test_index_command_with_the_real_model(tmp_path: Path) -> None:
    write_docs(tmp_path / "docs")
    done = ragflow("index", "docs", "--json", "--state-dir", "state", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert (summary["documents"], summary["chunks"], summary["errors"]) == (2, 2, [])
    assert summary["embedded"] == 2 and summary["chunks_per_second"] > 0
    assert "docs 2/2" in done.stderr  # the progress bar's last line
    assert (tmp_path / "state" / "embeddings.sqlite").is_file()


def test_a_bad_config_exits_2_naming_file_line_and_key(tmp_path: Path) -> None:
    (tmp_path / "app.yaml").write_text("sources:\n  - kind: folder\n    root: .\n    max_file_sise: 5\n")
    done = ragflow("index", "--config", "app.yaml", cwd=tmp_path)
    assert done.returncode == 2
    assert "error: app.yaml:4: sources[0].max_file_sise: unknown key" in done.stderr
    assert "Did you mean 'max_file_size'?" in done.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["index"], "nothing to index: pass a folder"),
        (["index", "missing"], "missing is not a folder"),
        (["serve", "--config", "missing.yaml"], "configuration file missing.yaml does not exist"),
        (["index", "--strict", "--json", "--config", "bad.yaml"], "unknown source 'sharepoint'"),
    ],
)
def test_usage_mistakes_exit_2_with_a_message(tmp_path: Path, args: list[str], message: str) -> None:
    (tmp_path / "bad.yaml").write_text("sources:\n  - kind: sharepoint\n")
    done = ragflow(*args, cwd=tmp_path)
    assert done.returncode == 2 and message in done.stderr, done.stderr


def test_index_strict_exits_1_on_document_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from ragflow import cli
    from ragflow.cli import _index

    monkeypatch.setattr(_index, "configure_logging", lambda level: None)  # leave this process's logging be
    docs = write_docs(tmp_path / "docs")
    (docs / "broken.pdf").write_bytes(b"%PDF-1.4 broken")
    real = _index.index_documents
    monkeypatch.setattr(
        _index, "index_documents", lambda config, **kw: real(config, embedder=HashingEmbedder())
    )
    state = str(tmp_path / "state")
    assert cli.main(["index", str(docs), "--state-dir", state]) == cli.EXIT_OK
    assert cli.main(["index", str(docs), "--state-dir", state, "--strict"]) == cli.EXIT_FAILURE
    assert "error: 1 documents could not be indexed (--strict)" in capsys.readouterr().err


# -- query and status against a stub server -------------------------------------------------------------


@dataclass
class StubServer:
    """Answers canned JSON per (method, path) and records every request."""

    routes: dict[tuple[str, str], tuple[int, Any]]
    requests: list[tuple[str, str, dict[str, str], Any]] = field(default_factory=list)
    url: str = ""


@pytest.fixture
def stub() -> Iterator[StubServer]:
    server = StubServer(routes={})

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self._answer(None)

        def do_POST(self) -> None:
            self._answer(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))

        def _answer(self, body: Any) -> None:
            server.requests.append((self.command, self.path, dict(self.headers), body))
            status, payload = server.routes.get((self.command, self.path), (404, {"detail": "no route"}))
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield server
    httpd.shutdown()
    httpd.server_close()


def test_query_sends_the_retrieve_request_and_prints_hits(stub: StubServer, tmp_path: Path) -> None:
    stub.routes[("POST", "/v1/retrieve")] = (
        200,
        [
            {
                "text": "The keeper climbs\n the  stairs.",
                "metadata": {"path": "/d/lighthouse.md"},
                "dist": 0.1234,
            },
            {"text": "Page text.", "metadata": {"path": "/d/manual.pdf", "page_number": 3}, "dist": 0.5},
        ],
    )
    done = ragflow(
        "query", "who climbs?", "--url", stub.url, "--k", "2", "--filter", "size > `1`", "--glob", "**/*.md",
        cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    method, path, _, body = stub.requests[0]
    assert (method, path) == ("POST", "/v1/retrieve")
    assert body == {
        "query": "who climbs?",
        "k": 2,
        "metadata_filter": "size > `1`",
        "filepath_globpattern": "**/*.md",
    }
    assert done.stdout.splitlines() == [
        "1. 0.123  /d/lighthouse.md",
        "   The keeper climbs the stairs.",
        "2. 0.500  /d/manual.pdf (page 3)",
        "   Page text.",
    ]


def test_query_json_and_no_hits(stub: StubServer, tmp_path: Path) -> None:
    stub.routes[("POST", "/v1/retrieve")] = (200, [])
    done = ragflow("query", "nothing", "--url", stub.url, "--json", cwd=tmp_path)
    assert done.returncode == 0 and json.loads(done.stdout) == []
    assert ragflow("query", "nothing", "--url", stub.url, cwd=tmp_path).stdout == "no matching chunks\n"


def test_status_shows_readiness_statistics_and_errors(stub: StubServer, tmp_path: Path) -> None:
    now = int(time.time())
    stub.routes[("GET", "/readyz")] = (200, {"status": "ready"})
    stub.routes[("GET", "/v1/statistics")] = (
        200,
        {"file_count": 7, "last_modified": now - 600, "last_indexed": now - 5},
    )
    stub.routes[("GET", "/v1/errors")] = (
        200,
        [{"doc_id": "broken.pdf", "stage": "parse", "message": "not a PDF"}],
    )
    done = ragflow("status", "--url", stub.url + "/", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == f"server         {stub.url}  ready"
    assert lines[1] == "documents      7"
    assert lines[2].endswith("(10 min ago)") and lines[3].endswith("s ago)")
    assert lines[4:] == ["errors         1", "  broken.pdf (parse): not a PDF"]
    assert [path for _, path, _, _ in stub.requests] == [
        "/readyz",
        "/v1/statistics",
        "/v1/errors",
        "/v1/sources",
    ]


def test_status_while_indexing_and_as_json(stub: StubServer, tmp_path: Path) -> None:
    not_ready = {"error": {"message": "not ready: initial indexing in progress", "type": "not_ready"}}
    stub.routes[("GET", "/readyz")] = (503, not_ready)
    stub.routes[("GET", "/v1/statistics")] = (
        200,
        {"file_count": 0, "last_modified": None, "last_indexed": None},
    )
    stub.routes[("GET", "/v1/errors")] = (200, [])
    done = ragflow("status", "--url", stub.url, cwd=tmp_path)
    assert done.returncode == 0
    assert "not ready: initial indexing in progress" in done.stdout.splitlines()[0]
    assert "last indexed   never" in done.stdout and "errors         none" in done.stdout
    report = json.loads(ragflow("status", "--url", stub.url, "--json", cwd=tmp_path).stdout)
    assert report["ready"] is False and report["statistics"]["file_count"] == 0


def test_status_shows_each_source_and_why_an_unhealthy_one_is(stub: StubServer, tmp_path: Path) -> None:
    now = time.time()
    stub.routes[("GET", "/readyz")] = (200, {"status": "ready"})
    stub.routes[("GET", "/v1/statistics")] = (
        200,
        {"file_count": 3, "last_modified": None, "last_indexed": None},
    )
    stub.routes[("GET", "/v1/errors")] = (200, [])
    reason = "bucket 'docs' does not exist; create it or fix 'bucket'"
    sources = [
        {"name": "notes", "kind": "folder", "documents": 1234, "snapshot_complete": True, "healthy": True,
         "reason": None, "since": now - 3600, "counters": [], "gauges": []},
        {"name": "archive", "kind": "s3", "documents": 2, "snapshot_complete": False, "healthy": False,
         "reason": reason, "since": now - 300, "counters": [], "gauges": []},
    ]  # fmt: skip
    stub.routes[("GET", "/v1/sources")] = (200, sources)
    done = ragflow("status", "--url", stub.url, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    at = lines.index("sources        2, 1 UNHEALTHY")
    assert lines[at + 1] == "  notes (folder): healthy, 1,234 documents"
    assert lines[at + 2].startswith("  archive (s3): UNHEALTHY since ")
    assert lines[at + 2].endswith("(5 min ago), 2 documents, still listing")
    assert lines[at + 3] == f"    {reason}"
    assert lines[at + 4] == "errors         none"
    report = json.loads(ragflow("status", "--url", stub.url, "--json", cwd=tmp_path).stdout)
    assert report["sources"] == sources

    stub.routes[("GET", "/v1/sources")] = (403, {"error": {"message": "this key may not read sources"}})
    assert (
        "sources        unknown: this key may not read sources"
        in ragflow("status", "--url", stub.url, cwd=tmp_path).stdout.splitlines()
    )


def test_the_api_key_is_sent_and_a_refusal_says_how_to_give_it(stub: StubServer, tmp_path: Path) -> None:
    refusal = {"error": {"message": "a valid API key is required", "type": "unauthorized"}, "detail": "x"}
    stub.routes[("POST", "/v1/retrieve")] = (401, refusal)
    done = ragflow("query", "q", "--url", stub.url, "--api-key", "k3y", cwd=tmp_path)
    assert done.returncode == 1
    assert stub.requests[0][2]["Authorization"] == "Bearer k3y"
    assert "HTTP 401: a valid API key is required" in done.stderr and "--api-key" in done.stderr


def test_an_unreachable_server_exits_3_naming_the_url_and_ragflow_serve(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    for command in (["query", "anything"], ["status"]):
        done = ragflow(*command, "--url", url, cwd=tmp_path)
        assert done.returncode == EXIT_UNREACHABLE
        assert f"no ragflow server answers at {url}" in done.stderr
        assert "ragflow serve" in done.stderr


def test_a_url_that_is_not_http_is_a_usage_error(tmp_path: Path) -> None:
    done = ragflow("status", "--url", "localhost:8000", cwd=tmp_path)
    assert done.returncode == 2 and "--url must be an http(s) URL" in done.stderr


# -- serve ---------------------------------------------------------------------------------------------


def test_serve_refuses_a_busy_port_before_loading_anything(tmp_path: Path) -> None:
    write_docs(tmp_path / "docs")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = ragflow("serve", "docs", "--port", str(port), cwd=tmp_path)
    assert done.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr and "--port" in done.stderr


def test_serve_without_the_rest_server_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from ragflow import cli
    from ragflow.cli import _serve

    monkeypatch.setattr(_serve, "configure_logging", lambda level: None)  # leave this process's logging be
    monkeypatch.setitem(sys.modules, "ragflow.server", None)  # as if the package were not installed
    assert cli.main(["serve", str(write_docs(tmp_path / "docs"))]) == cli.EXIT_FAILURE
    assert "`ragflow serve` needs the REST server (ragflow.server)" in capsys.readouterr().err


def wait_until_ready(url: str, process: subprocess.Popen[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"ragflow serve exited with {process.returncode}: {process.communicate()[1]}")
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.2)
    pytest.fail(f"ragflow serve was not ready within {timeout} s")


@pytest.mark.model
def test_serve_indexes_answers_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    pytest.importorskip("ragflow.server")
    write_docs(tmp_path / "docs")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        [sys.executable, "-m", "ragflow.cli", "serve", "docs", "--port", str(port), "--state-dir", "state"],
        cwd=tmp_path,
        env=cli_environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until_ready(url, process, timeout=120)
        query = ragflow(
            "query", "who lights the lamp at the top of the stairs?", "--url", url, "--k", "1", cwd=tmp_path
        )
        assert query.returncode == 0, query.stderr
        assert query.stdout.splitlines()[0].endswith("docs/lighthouse.md")
        status = ragflow("status", "--url", url, cwd=tmp_path)
        assert status.returncode == 0, status.stderr
        assert status.stdout.splitlines()[:2] == [f"server         {url}  ready", "documents      2"]
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, stderr
    assert "ready: 2 documents, 2 chunks, 0 errors" in stderr
    assert stderr.rstrip().endswith("stopped")


# -- pieces --------------------------------------------------------------------------------------------


def test_progress_line_before_and_after_the_chunk_total_is_known() -> None:
    early = progress_line(Progress(10, 4, 0, 8, 2.0, True))
    assert "docs 4/10" in early and "chunks 8/?" in early and "ETA    ?" in early
    assert early.startswith("[" + "#" * 9 + "-" * 15 + "]")  # the bar follows the documents meanwhile
    later = progress_line(Progress(10, 5, 40, 20, 2.0, False))
    assert "docs 5/10+" in later and "chunks 20/40+" in later and "10.0 chunks/s" in later
    assert "ETA    2s" in later
    restored = progress_line(Progress(10, 10, 0, 0, 0.5, True, documents_restored=10, chunks_restored=30))
    assert restored.startswith("[" + "#" * 24 + "]") and "(10 restored)" in restored
    assert "chunks 0/0" in restored and "ETA    0s" in restored


class StubProgress:
    """Stands in for a store: the progress display only reads ``progress()``."""

    def __init__(self, progress: Progress) -> None:
        self.current = progress

    def progress(self) -> Progress:
        return self.current


INDEXING = Progress(2, 1, 0, 3, 1.0, False)
DONE = Progress(2, 2, 3, 3, 1.5, True)


def test_progress_bar_off_a_terminal_prints_plain_lines_and_a_last_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE"):
        monkeypatch.delenv(name, raising=False)  # rich would take the stream for a terminal
    stream = io.StringIO()
    store = StubProgress(INDEXING)
    with ProgressBar(store, stream, log_interval=0.02):
        time.sleep(0.3)
        store.current = DONE
    lines = stream.getvalue().splitlines()
    assert len(lines) >= 3 and "\x1b" not in stream.getvalue()
    assert set(lines[:-1]) <= {progress_line(INDEXING), progress_line(DONE)}
    assert lines[0] == progress_line(INDEXING) and lines[-1] == progress_line(DONE)


def screen_lines(output: str) -> list[str]:
    """What a terminal shows of ``output``, redrawn line by line: no ANSI sequences, split at \\r and \\n."""
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", output)
    return [line.rstrip() for line in re.split(r"[\r\n]", plain) if line.strip()]


def test_progress_bar_on_a_terminal_is_live_and_logs_print_above_it() -> None:
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, force_interactive=True, width=80)
    logger = logging.getLogger("ragflow.test_progress")
    handler = StderrHandler()  # made before the bar, as `configure_logging` makes it
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logger.addHandler(handler)
    store = StubProgress(INDEXING)
    try:
        with ProgressBar(store, console=console):
            time.sleep(0.5)  # the bar redraws every 0.2 s
            logger.warning("a document could not be parsed")
            store.current = DONE
    finally:
        logger.removeHandler(handler)
    lines = screen_lines(screen.getvalue())
    logged = lines.index("WARNING ragflow.test_progress: a document could not be parsed")
    drawn = [line for line in lines if "━" in line]
    assert all(len(line) <= 80 for line in drawn) and "[#" not in screen.getvalue()
    assert any("docs 1/2+  chunks 3/?" in line for line in lines[:logged])
    after = lines[logged + 1 :]
    assert after and all("━" in line for line in after)  # redrawn under the log line
    assert "docs 2/2  chunks 3/3" in after[-1] and "ETA    0s" in after[-1]


def test_every_subcommand_has_help() -> None:
    parser = build_parser()
    for command in ("serve", "index", "query", "status"):
        with pytest.raises(SystemExit) as exited:
            parser.parse_args([command, "--help"])
        assert exited.value.code == 0


# -- the Q&A app and its sample documents --------------------------------------------------------------


def test_the_qa_app_is_ragflow_serve_over_its_config(monkeypatch: pytest.MonkeyPatch) -> None:
    import apps.qa_server.__main__ as app

    calls: list[list[str]] = []

    def ragflow_main(argv: list[str]) -> int:
        calls.append(argv)
        return 0

    monkeypatch.setattr(app, "ragflow_main", ragflow_main)
    assert app.main(["--port", "9001"]) == 0
    assert calls == [["serve", "--config", str(REPO / "apps/qa_server/app.yaml"), "--port", "9001"]]
    config = load_config(app.APP_CONFIG, environ={})
    assert Path(config.sources[0].options["root"]) == SAMPLE_DOCS == app.SAMPLE_DOCS


def test_the_sample_documents_are_small_real_parseable_and_accounted_for() -> None:
    files = sorted(p for p in SAMPLE_DOCS.rglob("*") if p.is_file())
    assert sum(p.stat().st_size for p in files) < 2_000_000
    suffixes = {p.suffix for p in files}
    assert {".txt", ".md", ".pdf", ".html", ".rst"} <= suffixes
    documents = [p for p in files if p.parent == SAMPLE_DOCS and p.name != "README.md"]
    readme = (SAMPLE_DOCS / "README.md").read_text()
    for document in documents:
        assert f"`{document.name}`" in readme, f"README.md does not name {document.name}"
        units = DefaultParser().parse(document.read_bytes(), {"path": str(document)})
        assert sum(len(unit.text) for unit in units) > 500, document.name
    licenses = {p.name for p in (SAMPLE_DOCS / "LICENSES").iterdir()}
    for license_file in licenses:
        assert f"LICENSES/{license_file}" in readme
    pdf_pages = DefaultParser().parse(
        (SAMPLE_DOCS / "reportlab-userguide-excerpt.pdf").read_bytes(), {"path": "x.pdf"}
    )
    assert len(pdf_pages) == 13 and pdf_pages[0].metadata["page_number"] == 1
