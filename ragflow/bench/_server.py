"""A server under test that the benchmark starts itself (``--server-cmd``): its command with the run's
folder and port filled in, start-up and restart timing, and its memory and CPU read from ``/proc``."""

from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from ragflow.errors import ConfigError, RagflowError

from ._probe import Probe

CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


class ServerStartError(RagflowError):
    """The server under test exited or did not answer in time."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _tree(root: int) -> list[int]:
    """``root`` and every process descended from it."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def usage(root: int) -> tuple[int, float]:
    """Resident memory (bytes) and CPU time (seconds, user + system) of ``root`` and its descendants."""
    rss, cpu = 0, 0.0
    for pid in _tree(root):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        cpu += (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
        rss += int(fields[21]) * PAGE_SIZE
    return rss, cpu


@dataclass
class Sample:
    at: float
    """Seconds since the run began."""
    rss: int
    cpu: float


@dataclass
class ServerProcess:
    """``command`` (a shell-style string with ``{folder}``, ``{port}``, ``{state}`` and the source's
    placeholders) run as the server under test, sampled every ``interval`` seconds while it lives."""

    command: str
    folder: Path
    state: Path
    origin: float
    interval: float = 0.5
    port: int = field(default_factory=free_port)
    samples: list[Sample] = field(default_factory=list)
    log: Path | None = None
    extra: dict[str, str] = field(default_factory=dict)
    """More placeholders: the source's (``{bucket}``, ``{topic}``, ...)."""
    _process: subprocess.Popen[bytes] | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _cpu_before: float = 0.0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def placeholders(self) -> dict[str, str]:
        return {"folder": str(self.folder), "port": str(self.port), "state": str(self.state), **self.extra}

    def argv(self) -> list[str]:
        try:
            return [part.format(**self.placeholders()) for part in shlex.split(self.command)]
        except (KeyError, IndexError, ValueError) as exc:
            raise ConfigError(
                f"the server command {self.command!r} has a placeholder this run cannot fill ({exc}); "
                f"it may use {', '.join('{' + k + '}' for k in self.placeholders())}"
            ) from None

    def start(self, probe: Probe, timeout: float) -> tuple[float, float]:
        """Start the server; return the seconds until it answers HTTP and until it is ready."""
        out = self.log.open("ab") if self.log else subprocess.DEVNULL
        started = time.perf_counter()
        self._process = subprocess.Popen(
            self.argv(), stdout=out, stderr=subprocess.STDOUT, start_new_session=True, env=self.environment()
        )
        self._stop.clear()
        threading.Thread(target=self._sample, name="bench-server-sampler", daemon=True).start()
        answered: float | None = None
        while True:
            up, ready = probe.readiness()
            now = time.perf_counter() - started
            if up and answered is None:
                answered = now
            if ready:
                return answered if answered is not None else now, now
            if self._process.poll() is not None:
                raise ServerStartError(
                    f"the server command exited with code {self._process.returncode} before answering: "
                    f"{' '.join(self.argv())}" + (f" (its output is in {self.log})" if self.log else "")
                )
            if now > timeout:
                self.stop()
                raise ServerStartError(f"the server at {self.url} was not ready within {timeout:g} s")
            time.sleep(0.05)

    def environment(self) -> dict[str, str]:
        """The server's environment: this one plus ``RAGFLOW_BENCH_<NAME>`` for each placeholder, so a
        configuration file can refer to them (``${RAGFLOW_BENCH_PORT}``)."""
        return {**os.environ, **{f"RAGFLOW_BENCH_{k.upper()}": v for k, v in self.placeholders().items()}}

    def cpu_now(self) -> float:
        """The server's CPU seconds (its process tree, user + system) so far, read now."""
        process = self._process
        return self._cpu_before + (usage(process.pid)[1] if process is not None else 0.0)

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout`` seconds; the CPU it used so far is kept."""
        process, self._process = self._process, None
        if process is None:
            return
        if self.samples:
            self._cpu_before = self.samples[-1].cpu
        self._stop.set()
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    def _sample(self) -> None:
        process = self._process
        while process is not None and not self._stop.is_set() and process.poll() is None:
            rss, cpu = usage(process.pid)
            self.samples.append(Sample(time.perf_counter() - self.origin, rss, self._cpu_before + cpu))
            self._stop.wait(self.interval)
