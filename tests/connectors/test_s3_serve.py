"""``ragflow serve --config app.yaml`` with an S3 source (``kind: s3``) against SeaweedFS, end to end: the
real command becomes ready, a put object becomes retrievable, ``/v1/sources`` and ``ragflow status`` show
the source healthy, and the secret key appears nowhere, not even in the debug log."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.fakes import FakeOpenAIServer
from tests.servers.s3 import ACCESS_KEY, SECRET_KEY, SeaweedFS
from tests.test_cli import cli_environment, free_port

pytest.importorskip("boto3")

ADMIN_KEY = "an-admin-key-for-the-s3-serve-test"

CONFIG = """
sources:
  - kind: s3
    bucket: {bucket}
    prefix: handbook/
    endpoint_url: {endpoint}
    addressing_style: path
    region: us-east-1
    access_key_id: ${{S3_ACCESS_KEY}}
    secret_access_key: ${{S3_SECRET_KEY}}
    poll_interval: 0.2
embedder:  # an OpenAI-compatible API served by this test: no model to load
  kind: openai
  model: fake-embed
  base_url: {base_url}
  api_key: ${{FAKE_OPENAI_KEY}}
  dim: 16
server:
  api_keys:
    - name: operator
      key: ${{RAGFLOW_ADMIN_KEY}}
      role: admin
persistence:
  state_dir: state
"""


def test_ragflow_serve_with_an_s3_source_indexes_puts_reports_the_source_and_prints_no_secret(
    seaweedfs: SeaweedFS, tmp_path: Path
) -> None:
    bucket = seaweedfs.new_bucket()
    client = seaweedfs.client()
    client.put_object(Bucket=bucket, Key="handbook/harbor.md", Body=b"The harbor lantern is lit at dusk.")
    port = free_port()
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    log = tmp_path / "serve.log"  # a file, not a pipe: the debug log must not fill a pipe and block serve
    with FakeOpenAIServer(dim=16) as embeddings, log.open("w") as output:
        config = tmp_path / "app.yaml"
        config.write_text(
            CONFIG.format(bucket=bucket, endpoint=seaweedfs.endpoint, base_url=embeddings.base_url)
        )
        env = {
            **cli_environment(),
            "S3_ACCESS_KEY": ACCESS_KEY,
            "S3_SECRET_KEY": SECRET_KEY,
            "FAKE_OPENAI_KEY": embeddings.api_key,
            "RAGFLOW_ADMIN_KEY": ADMIN_KEY,
        }
        command = ["serve", "--config", str(config), "--port", str(port), "--log-level", "debug"]
        process = subprocess.Popen(
            [sys.executable, "-m", "ragflow.cli", *command],
            cwd=tmp_path,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            text=True,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            wait_until_ready(url, process, log)
            assert retrieved(url, admin, "lantern") == "The harbor lantern is lit at dusk."
            client.put_object(
                Bucket=bucket, Key="handbook/bread.md", Body=b"Knead the dough, then let it rise."
            )
            deadline = time.monotonic() + 30
            while retrieved(url, admin, "dough", path=f"s3://{bucket}/handbook/bread.md") is None:
                assert time.monotonic() < deadline, "the put object never became retrievable"
                time.sleep(0.1)
            assert requests.get(url + "/v1/sources", timeout=10).status_code == 401  # admin only
            sources = requests.get(url + "/v1/sources", headers=admin, timeout=10)
            assert sources.status_code == 200, sources.text
            (source,) = [s for s in sources.json() if s["kind"] == "s3"]  # serve adds an upload source
            assert (source["name"], source["kind"]) == (f"s3:{bucket}/handbook/", "s3")
            assert source["healthy"] is True and source["reason"] is None
            assert source["documents"] == 2 and source["snapshot_complete"] is True
            metrics = requests.get(url + "/metrics", headers=admin, timeout=10).text
            assert "ragflow_source_objects_listed_total" in metrics
            status = subprocess.run(
                [sys.executable, "-m", "ragflow.cli", "status", "--url", url],
                env={**env, "RAGFLOW_API_KEY": ADMIN_KEY},
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert status.returncode == 0, status.stderr
            assert f"  s3:{bucket}/handbook/ (s3): healthy, 2 documents" in status.stdout.splitlines()
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    served = log.read_text()
    assert process.returncode == 0, served[-3000:]
    assert f"serving {url}" in served
    for what, text in [
        ("the serve log (debug)", served),
        ("ragflow status", status.stdout + status.stderr),
        ("/v1/sources", sources.text),
        ("/metrics", metrics),
    ]:
        assert SECRET_KEY not in text, f"{what} shows the S3 secret key"
        assert ADMIN_KEY not in text, f"{what} shows the admin API key"


def retrieved(url: str, headers: dict[str, str], query: str, path: str | None = None) -> str | None:
    """The text of the best hit for ``query`` (only ``path``'s chunks when given), or ``None``."""
    body: dict[str, str | int] = {"query": query, "k": 1}
    if path is not None:
        body["metadata_filter"] = f"path == '{path}'"
    response = requests.post(url + "/v1/retrieve", json=body, headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    hits = response.json()
    return str(hits[0]["text"]) if hits else None


def wait_until_ready(url: str, process: subprocess.Popen[str], log: Path, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while True:
        assert process.poll() is None, log.read_text()[-3000:]
        try:
            if requests.get(url + "/readyz", timeout=2).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        assert time.monotonic() < deadline, f"ragflow serve was not ready within {timeout} s"
        time.sleep(0.1)
