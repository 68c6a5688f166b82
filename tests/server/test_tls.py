"""HTTPS: ``serve(..., tls_cert=, tls_key=)`` (what ``ragflow serve --tls-cert/--tls-key`` calls) answers a
real HTTPS request verified against a self-signed certificate made here with ``cryptography``."""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ragflow.cli import _serve
from ragflow.errors import ConfigError
from ragflow.server.app import tls_files
from tests.fakes import FakeOpenAIServer
from tests.server.test_serve import REPO, free_port

LOCAL = "127.0.0.1"
READER_KEY = "a-reader-key-from-a-file-0123"


def self_signed(folder: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


SERVER = """
import sys
from ragflow.connectors.folder import FolderSource
from ragflow.server import create_app, serve
from ragflow.store import DocumentStore
from tests.fakes.hashing_embedder import HashingEmbedder

store = DocumentStore(FolderSource(sys.argv[1], reconcile_interval=None), embedder=HashingEmbedder())
serve(create_app(store), "127.0.0.1", int(sys.argv[2]), tls_cert=sys.argv[3], tls_key=sys.argv[4])
"""


def test_serve_answers_https_with_the_given_certificate(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("The harbor lantern is lit at dusk.")
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(tmp_path / "docs"), str(port), str(cert), str(key)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"https://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, process.communicate()[1]
            try:
                if requests.get(url + "/readyz", verify=str(cert), timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline, "the HTTPS server never became ready"
            time.sleep(0.1)
        hits = requests.post(
            url + "/v1/retrieve", json={"query": "lantern", "k": 1}, verify=str(cert), timeout=10
        )
        assert hits.json()[0]["text"] == "The harbor lantern is lit at dusk."
        with pytest.raises(requests.exceptions.SSLError):
            requests.get(url + "/healthz", timeout=30)  # not trusted without the certificate
        with pytest.raises(requests.RequestException):  # no plain HTTP on that port
            requests.get(f"http://127.0.0.1:{port}/healthz", timeout=30)
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0


CONFIG = """
sources:
  - kind: folder
    root: ../docs
embedder:  # an OpenAI-compatible API served by this test: no model to load
  kind: openai
  model: fake-embed
  base_url: {base_url}
  api_key: ${{FAKE_OPENAI_KEY}}
  dim: 16
server:
  api_keys:
    - name: reader
      key_file: secrets/reader  # from the configuration's folder, not the working directory
      role: read
persistence:
  state_dir: null
"""


def test_ragflow_serve_over_https_answers_a_key_and_refuses_none(tmp_path: Path) -> None:
    """The real command end to end: ``ragflow serve --tls-cert --tls-key`` with a key file, over HTTPS."""
    cert, tls_key = self_signed(tmp_path)
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("The harbor lantern is lit at dusk.")
    (tmp_path / "conf" / "secrets").mkdir(parents=True)
    (tmp_path / "conf" / "secrets" / "reader").write_text(READER_KEY + "\n")
    port = free_port()
    with FakeOpenAIServer(dim=16) as embeddings:
        config = tmp_path / "conf" / "app.yaml"
        config.write_text(CONFIG.format(base_url=embeddings.base_url))
        command = ["serve", "--config", str(config), "--port", str(port)]
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "ragflow.cli",
                *command,
                "--tls-cert",
                str(cert),
                "--tls-key",
                str(tls_key),
            ],
            cwd=tmp_path / "docs",
            env={**os.environ, "PYTHONPATH": str(REPO), "FAKE_OPENAI_KEY": embeddings.api_key},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        url = f"https://127.0.0.1:{port}"
        try:
            wait_until_ready(url, process, cert)
            keyed = {"Authorization": f"Bearer {READER_KEY}"}
            query: dict[str, str | int] = {"query": "lantern", "k": 1}
            hits = requests.post(
                url + "/v1/retrieve", json=query, headers=keyed, verify=str(cert), timeout=10
            )
            assert hits.status_code == 200 and hits.json()[0]["text"] == "The harbor lantern is lit at dusk."
            refused = requests.post(url + "/v1/retrieve", json=query, verify=str(cert), timeout=10)
            assert refused.status_code == 401 and refused.headers["WWW-Authenticate"] == "Bearer"
            process.send_signal(signal.SIGTERM)
            _, stderr = process.communicate(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()
    assert process.returncode == 0, stderr
    assert f"serving {url}" in stderr and READER_KEY not in stderr


def wait_until_ready(url: str, process: subprocess.Popen[str], cert: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        assert process.poll() is None, process.communicate()[1]
        try:
            if requests.get(url + "/readyz", verify=str(cert), timeout=2).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        assert time.monotonic() < deadline, "the HTTPS server never became ready"
        time.sleep(0.1)


def test_tls_needs_both_files_and_readable_ones(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    assert tls_files(None, None) == (None, None)
    assert tls_files(cert, key) == (str(cert), str(key))
    with pytest.raises(ConfigError, match="both a certificate and its private key"):
        tls_files(cert, None)
    with pytest.raises(ConfigError, match="cannot read the TLS private key"):
        tls_files(cert, tmp_path / "missing.pem")


def test_ragflow_serve_takes_tls_options() -> None:
    parser = argparse.ArgumentParser()
    _serve.add_arguments(parser)
    args = parser.parse_args(["docs", "--tls-cert", "c.pem", "--tls-key", "k.pem"])
    assert (args.tls_cert, args.tls_key) == ("c.pem", "k.pem")
