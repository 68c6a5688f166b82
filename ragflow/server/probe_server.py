"""uvicorn's server with the health checks on a thread of their own: ``ProbeServer`` lets a
``HealthListener`` accept the port's connections, so ``GET /healthz`` and ``GET /readyz`` are answered while
the event loop is busy or blocked, and everything else is served by the loop as before."""

from __future__ import annotations

import asyncio
import logging
import socket

import uvicorn

from .health_listener import HealthListener, send_at_once
from .state import ServerState

__all__ = ["ProbeServer"]

log = logging.getLogger("ragflow.server")

HEALTHY = b'{"status":"ok"}'
READY = b'{"status":"ready"}'


class ProbeServer(uvicorn.Server):
    """``uvicorn.Server`` whose listening sockets are accepted on by a ``HealthListener`` once it has
    started. Over HTTPS, or on an event loop that does not accept through a selector (uvloop), the loop
    keeps accepting and the ``HealthCheck`` middleware answers ``/healthz`` first in the loop instead."""

    def __init__(self, config: uvicorn.Config, state: ServerState) -> None:
        super().__init__(config)
        self.state = state
        self.health: HealthListener | None = None
        self._adopting: set[asyncio.Task[object]] = set()
        self._fallback: list[socket.socket] = []

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started and not self.should_exit:
            self.health = self._take_listeners(asyncio.get_running_loop())

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        if self.health is not None:
            self.health.stop()
        loop = asyncio.get_running_loop()
        for own in self._fallback:
            loop.remove_reader(own.fileno())
            own.close()
        await super().shutdown(sockets=sockets)

    def _take_listeners(self, loop: asyncio.AbstractEventLoop) -> HealthListener | None:
        if self.config.ssl is not None or not isinstance(loop, asyncio.SelectorEventLoop):
            return None
        listeners = [s for server in self.servers for s in server.sockets]
        if not listeners:
            return None
        try:
            health = HealthListener(
                listeners,
                answer=self._answer,
                record=lambda path, seconds: self.state.metrics.record_request("GET", path, 200, seconds),
                adopt=lambda sock: loop.call_soon_threadsafe(self._adopt, loop, sock),
                headers=lambda: self.server_state.default_headers,
                on_failure=lambda: loop.call_soon_threadsafe(self._accept_in_loop, loop, listeners),
                idle_timeout=self.config.timeout_keep_alive,
            )
        except (OSError, ValueError) as exc:  # no copy of the sockets: the loop keeps accepting
            log.warning("health checks are answered by the event loop: %s", exc)
            return None
        for listener in listeners:  # the loop stops accepting on a socket once its reader is removed
            loop.remove_reader(listener.fileno())
        health.start()
        return health

    def _accept_in_loop(self, loop: asyncio.AbstractEventLoop, listeners: list[socket.socket]) -> None:
        """Accept on ``listeners`` in the loop again (the health listener failed)."""
        for listener in listeners:
            own = socket.fromfd(listener.fileno(), listener.family, listener.type, listener.proto)
            own.setblocking(False)
            self._fallback.append(own)
            loop.add_reader(own.fileno(), self._accept_ready, loop, own)

    def _accept_ready(self, loop: asyncio.AbstractEventLoop, listener: socket.socket) -> None:
        for _ in range(64):
            try:
                sock, _ = listener.accept()
            except OSError:  # nothing waiting, or out of descriptors: the next readiness retries
                return
            self._adopt(loop, sock)

    def _answer(self, path: str) -> bytes | None:
        """The body of a 200 to a probe of ``path``; ``None`` (the loop's route answers): a failed engine's
        or a not-yet-ready server's 503, whose text depends on the caller's key."""
        if path == "/healthz":
            return HEALTHY if self.state.store.engine.failure is None else None
        return READY if self.state.ready() else None

    def _adopt(self, loop: asyncio.AbstractEventLoop, sock: socket.socket) -> None:
        """In the loop: serve ``sock`` as if the loop had accepted it."""
        config = self.config

        def protocol() -> asyncio.Protocol:
            return config.http_protocol_class(  # type: ignore[call-arg]
                config=config, server_state=self.server_state, app_state=self.lifespan.state, _loop=loop
            )

        send_at_once(sock)  # also for the loop's own fallback accepts (the listener failed)
        task = loop.create_task(loop.connect_accepted_socket(protocol, sock))
        self._adopting.add(task)
        task.add_done_callback(lambda done: self._adopted(done, sock))

    def _adopted(self, task: asyncio.Task[object], sock: socket.socket) -> None:
        self._adopting.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.debug("a connection closed before it was served: %s", task.exception())
            sock.close()
