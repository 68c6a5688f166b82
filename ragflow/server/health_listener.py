"""Health checks answered on a thread of their own: ``HealthListener`` accepts the connections of the
server's port, answers ``GET /healthz`` and ``GET /readyz`` itself while their answer is 200, and hands every
other connection to the event loop untouched, so that a probe never waits behind the loop's work (parsing
hundreds of clients' requests, running handlers) but only for the interpreter lock, a few milliseconds.

Only whole requests it recognises are consumed; a connection whose next request is anything else (another
path or method, a body, an ``Origin`` header, HTTP/1.0, a request split over packets, a failed engine's
503) goes to the loop with that request still unread, and the loop serves it and everything after."""

from __future__ import annotations

import contextlib
import logging
import selectors
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

__all__ = ["HealthListener", "Probe", "parse_probe", "probe_response"]

log = logging.getLogger("ragflow.server")

PROBE_PATHS = (b"/healthz", b"/readyz")
_HEAD_LIMIT = 8192
"""Bytes looked at for one request head; a longer head goes to the loop."""
_HAND_OFF_HEADERS = frozenset((b"transfer-encoding", b"origin", b"upgrade", b"expect"))
"""Headers that make a request the loop's (a body, CORS, a protocol switch)."""
_ACCEPTS_PER_WAKE = 64
_TOKEN = frozenset(b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


@dataclass(frozen=True, slots=True)
class Probe:
    """A complete health-check request at the start of a connection's unread bytes."""

    path: str
    """``/healthz`` or ``/readyz`` (without the query string)."""
    length: int
    """Bytes of the request (its head: a probe has no body)."""
    keep_alive: bool
    """False when the client sent ``Connection: close``."""


def parse_probe(data: bytes) -> Probe | None:
    """The health check ``data`` starts with, or ``None`` when it starts with anything else or with an
    incomplete request: the loop's HTTP parser then reads it, as it would have without this listener."""
    end = data.find(b"\r\n\r\n", 0, _HEAD_LIMIT)
    if end < 0:
        return None
    lines = data[:end].split(b"\r\n")
    method, _, rest = lines[0].partition(b" ")
    target, _, version = rest.partition(b" ")
    path = target.partition(b"?")[0]
    if method != b"GET" or version != b"HTTP/1.1" or path not in PROBE_PATHS:
        return None
    keep_alive = True
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon or not name or not set(name) <= _TOKEN:
            return None  # malformed or folded: the loop's parser answers 400
        name, value = name.lower(), value.strip().lower()
        if name in _HAND_OFF_HEADERS or (name == b"content-length" and value != b"0"):
            return None
        if name == b"connection" and b"close" in (token.strip() for token in value.split(b",")):
            keep_alive = False
    return Probe(path.decode(), end + 4, keep_alive)


def probe_response(body: bytes, headers: Sequence[tuple[bytes, bytes]], keep_alive: bool) -> bytes:
    """The 200 response to a probe, with the server's own headers (``date``, ``server``) first, as uvicorn
    writes them."""
    lines = [b"HTTP/1.1 200 OK"]
    lines += [name + b": " + value for name, value in headers]
    lines += [b"content-type: application/json", b"content-length: %d" % len(body)]
    if not keep_alive:
        lines.append(b"connection: close")
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


@dataclass(eq=False, slots=True)
class _Connection:
    sock: socket.socket
    since: float
    """When it was accepted or last answered (monotonic)."""
    answered: bool = False


class HealthListener:
    """Accepts on ``listeners`` in a thread of its own; answers probes whose ``answer(path)`` is a body
    (200) and calls ``record(path, seconds)`` for each; passes every other connection to ``adopt`` (which
    hands it to the event loop) with its next request unread. A connection idle for ``idle_timeout``
    seconds is closed if it only carried probes (uvicorn's keep-alive timeout) and handed to the loop if
    it has sent nothing yet. ``headers()`` gives the server's default response headers. Should the thread
    ever fail, it hands what it holds to ``adopt`` and calls ``on_failure()`` (the loop accepts again).

    ``listeners`` are duplicated: the caller keeps and closes its own sockets; ``stop`` closes this
    listener's copies and the connections it still holds."""

    def __init__(
        self,
        listeners: Sequence[socket.socket],
        *,
        answer: Callable[[str], bytes | None],
        record: Callable[[str, float], None],
        adopt: Callable[[socket.socket], object],
        headers: Callable[[], Sequence[tuple[bytes, bytes]]],
        on_failure: Callable[[], object] = lambda: None,
        idle_timeout: float = 5.0,
    ) -> None:
        self.answer, self.record, self.adopt, self.headers = answer, record, adopt, headers
        self.on_failure = on_failure
        self.idle_timeout = idle_timeout
        self._listeners = [socket.fromfd(s.fileno(), s.family, s.type, s.proto) for s in listeners]
        self._selector = selectors.DefaultSelector()
        self._wake_read, self._wake_write = socket.socketpair()
        self._stopping = False
        self._paused_until = 0.0
        self._thread = threading.Thread(target=self._run, name="ragflow-health", daemon=True)

    def start(self) -> None:
        for listener in self._listeners:
            listener.setblocking(False)
            self._selector.register(listener, selectors.EVENT_READ, None)
        self._selector.register(self._wake_read, selectors.EVENT_READ, None)
        self._thread.start()

    def stop(self) -> None:
        """Stop accepting, close the connections still held here, and wait for the thread."""
        self._stopping = True
        with contextlib.suppress(OSError):
            self._wake_write.send(b"x")
        self._thread.join(5)

    def _run(self) -> None:
        try:
            while not self._stopping:
                for key, _ in self._selector.select(timeout=0.5):
                    self._dispatch(key)
                self._expire(time.monotonic())
        except Exception:  # never seen: the loop accepts from now on, and gets what this thread held
            log.exception("the health-check listener stopped; the event loop accepts connections again")
            for key in list(self._selector.get_map().values()):
                if isinstance(key.data, _Connection):
                    self._hand_off(key.data)
            self.on_failure()
        finally:
            self._close()

    def _dispatch(self, key: selectors.SelectorKey) -> None:
        connection = key.data
        try:
            if isinstance(connection, _Connection):
                self._serve(connection)
            elif key.fileobj is not self._wake_read:
                self._accept(key.fileobj)  # type: ignore[arg-type]
        except Exception:  # a bug here must not stop the other connections: the loop gets this one
            log.exception("the health-check listener failed; the event loop serves the connection")
            if isinstance(connection, _Connection) and connection.sock in self._selector.get_map():
                self._hand_off(connection)

    def _accept(self, listener: socket.socket) -> None:
        for _ in range(_ACCEPTS_PER_WAKE):
            try:
                sock, _ = listener.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return
            except OSError as exc:  # out of file descriptors: stop accepting for a second, as asyncio does
                log.error("cannot accept a connection: %s; accepting again in 1 s", exc)
                self._pause_accepting()
                return
            send_at_once(sock)
            sock.setblocking(False)
            self._selector.register(sock, selectors.EVENT_READ, _Connection(sock, time.monotonic()))

    def _serve(self, connection: _Connection) -> None:
        sock = connection.sock
        try:
            data = sock.recv(_HEAD_LIMIT, socket.MSG_PEEK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._drop(connection)
            return
        if not data:  # the client closed it
            self._drop(connection)
            return
        while data:
            started = time.perf_counter()
            probe = parse_probe(data)
            body = self.answer(probe.path) if probe is not None else None
            if probe is None or body is None:
                self._hand_off(connection)
                return
            payload = probe_response(body, self.headers(), probe.keep_alive)
            try:
                consumed = sock.recv(probe.length)  # already there: it was just peeked
                sent = sock.send(payload) if len(consumed) == probe.length else 0
            except OSError:
                sent = 0
            self.record(probe.path, time.perf_counter() - started)
            if sent != len(payload) or not probe.keep_alive:
                self._drop(connection)
                return
            connection.since, connection.answered = time.monotonic(), True
            data = data[probe.length :]

    def _expire(self, now: float) -> None:
        if self._paused_until and now >= self._paused_until:
            self._paused_until = 0.0
            for listener in self._listeners:
                self._selector.register(listener, selectors.EVENT_READ, None)
        idle = [
            key.data
            for key in list(self._selector.get_map().values())
            if isinstance(key.data, _Connection) and now - key.data.since > self.idle_timeout
        ]
        for connection in idle:
            if connection.answered:
                self._drop(connection)
            else:  # never spoke: the loop holds it from now on, as it would have from the start
                self._hand_off(connection)

    def _pause_accepting(self) -> None:
        for listener in self._listeners:
            self._selector.unregister(listener)
        self._paused_until = time.monotonic() + 1.0

    def _hand_off(self, connection: _Connection) -> None:
        self._selector.unregister(connection.sock)
        try:
            self.adopt(connection.sock)
        except Exception:  # the loop is closing: nobody can serve it
            connection.sock.close()

    def _drop(self, connection: _Connection) -> None:
        self._selector.unregister(connection.sock)
        connection.sock.close()

    def _close(self) -> None:
        for key in list(self._selector.get_map().values()):
            if isinstance(key.data, _Connection):
                key.data.sock.close()
        self._selector.close()
        for sock in (*self._listeners, self._wake_read, self._wake_write):
            sock.close()


def send_at_once(sock: socket.socket) -> None:
    """Turn Nagle's algorithm off on an accepted TCP connection, as asyncio does for the connections it
    accepts itself (only where the socket says ``IPPROTO_TCP``; uvicorn's say 0): a response written in
    two parts, or pipelined answers, must not wait for the client's delayed ACK (~40 ms)."""
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
