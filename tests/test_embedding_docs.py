"""docs/embedding.md runs as written: its YAML is a valid configuration, every Python example runs against
an ``app.yaml`` over a folder (embeddings from a local OpenAI-protocol server instead of the model), and the
FastAPI example is served by uvicorn on 127.0.0.1, answers a query and picks up an edit."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ragflow.config import parse_config
from tests.fakes.openai_server import FakeOpenAIServer

DOC = Path(__file__).resolve().parents[1] / "docs" / "embedding.md"
BLOCKS = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
FASTAPI = [b for b in BLOCKS if "FastAPI(" in b]
SCRIPTS = [b for b in BLOCKS if "FastAPI(" not in b]
KEYS_TEXT = "Rotate the API keys every ninety days with the key manager."


@pytest.fixture
def app_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A folder with ``docs/`` and an ``app.yaml`` like the page's, embedding through a local server."""
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "keys.md").write_text(f"# Keys\n\n{KEYS_TEXT}\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HAYSTACK_TELEMETRY_ENABLED", "False")
    with FakeOpenAIServer() as server:
        (tmp_path / "app.yaml").write_text(
            "sources:\n  - kind: folder\n    root: docs\n"
            f"embedder:\n  kind: openai\n  model: fake-embed\n  base_url: {server.base_url}\n"
            f"  api_key: {server.api_key}\n"
            "persistence:\n  state_dir: .ragflow\n"
        )
        yield tmp_path


def test_the_page_has_its_examples() -> None:
    assert len(FASTAPI) == 1 and len(SCRIPTS) >= 5


def test_the_yaml_on_the_page_is_a_valid_configuration(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    yaml_blocks = re.findall(r"```yaml\n(.*?)```", DOC.read_text(), flags=re.S)
    config = parse_config(yaml_blocks[0], base_dir=tmp_path)
    assert config.sources[0].kind == "folder" and config.persistence.state_dir is not None


@pytest.mark.parametrize("number", range(len(SCRIPTS)))
def test_each_example_runs_and_finds_the_document(
    number: int, app_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    exec(compile(SCRIPTS[number], f"docs/embedding.md example {number + 1}", "exec"), {"__name__": "example"})
    printed = capsys.readouterr().out
    assert "keys.md" in printed or "ninety days" in printed, printed


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_fastapi_example_serves_queries_and_follows_edits(app_dir: Path) -> None:
    (app_dir / "main.py").write_text(FASTAPI[0])
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(app_dir)}
    command = [sys.executable, "-m", "uvicorn", "main:app", "--host", "127.0.0.1", "--port", str(port)]
    server = subprocess.Popen(command, cwd=app_dir, env=env, stderr=subprocess.PIPE, text=True)
    try:
        url = f"http://127.0.0.1:{port}/search"
        hits = poll(lambda: httpx.get(url, params={"q": "rotate keys", "k": 1}, timeout=5).json(), KEYS_TEXT)
        assert hits[0]["path"] == str(app_dir / "docs" / "keys.md")
        (app_dir / "docs" / "keys.md").write_text("# Keys\n\nKeys now rotate every thirty days.\n")
        poll(lambda: httpx.get(url, params={"q": "rotate keys", "k": 1}, timeout=5).json(), "thirty days")
    finally:
        server.terminate()
        _, log = server.communicate(timeout=60)
    # uvicorn re-raises the SIGTERM it handled, after a clean shutdown
    assert server.returncode in (0, -15) and "Application shutdown complete" in log, log
    assert "searchable: keys.md" in log, log


def poll(fetch: object, expected: str, timeout: float = 60) -> list[dict[str, object]]:
    """``fetch()`` until its first hit's text holds ``expected`` (the server may still be starting)."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            last = fetch()  # type: ignore[operator]
            if isinstance(last, list) and last and expected in str(last[0]["text"]):
                return last
        except httpx.HTTPError as exc:
            last = exc
        time.sleep(0.1)
    raise AssertionError(f"no hit with {expected!r} after {timeout} s; last answer: {last!r}")
