"""Connections the health listener hands to the event loop send small writes at once (TCP_NODELAY): left
to Nagle's algorithm, a kept-alive client's every request after its first waited for a delayed ACK."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest
import requests

from ragflow.server.probe_server import ProbeServer
from tests.server.test_health_listener import blockable_server


def test_connections_handed_to_the_loop_have_nagle_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    adopted: list[socket.socket] = []
    original = ProbeServer._adopt

    def recording(self: ProbeServer, loop: asyncio.AbstractEventLoop, sock: socket.socket) -> None:
        original(self, loop, sock)
        adopted.append(sock)

    monkeypatch.setattr(ProbeServer, "_adopt", recording)
    with blockable_server(tmp_path) as served, requests.Session() as session:
        for _ in range(3):  # one kept-alive connection, requests the loop answers
            assert session.post(served.url + "/v1/statistics", json={}, timeout=10).status_code == 200
        assert adopted, "no connection went to the loop: the test proves nothing"
        assert all(s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) for s in adopted)
