"""``ragflow bench load``: N clients for a duration against a server, with a mix of retrievals, answers and
uploads while the folder it indexes changes; throughput, p50/p95/p99 per operation, errors, requests shed
(503), ``/healthz`` latency meanwhile, and the server's memory and open files. ``--burst`` drops that many
small files into the folder at once during the run and follows their indexing; ``--soak`` checks that memory
after warm-up grows at most 10% and open files do not grow."""

from __future__ import annotations

import http.client
import json
import math
import multiprocessing
import os
import random
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._probe import Probe
from ._server import ServerProcess, _tree
from ._stats import percentile

__all__ = ["LoadOptions", "LoadResult", "load_table", "run_load"]

WORDS = (
    "harbor lantern keeper reef falcon canyon summit tundra meadow river bridge comet orbit planet quarry "
    "marble revenue index query vector stream engine document folder change epoch search filter answer "
    "model server client request response latency copper violet spring dawn dusk ships path ninety"
).split()
OPERATIONS = ("retrieve", "answer", "upload")
DEFAULT_SERVER_CMD = "ragflow serve {folder} --port {port} --state-dir {state}"


@dataclass(frozen=True, slots=True)
class LoadOptions:
    """One load run. ``server_cmd`` is started with ``{folder}``, ``{port}``, ``{state}`` filled in."""

    server_cmd: str = DEFAULT_SERVER_CMD
    clients: int = 16
    seconds: float = 60.0
    docs: int = 24
    """Documents written before the server starts (~24 chunks of the local model)."""
    mix: tuple[tuple[str, float], ...] = (("retrieve", 1.0),)
    edit_interval: float = 0.5
    """Seconds between edits of the folder during the run (0: none)."""
    burst: int = 0
    """Small files written at once, a few seconds into the run (0: none)."""
    soak: bool = False
    """Also check memory growth after warm-up and open files (meant for runs of 30 min)."""
    warmup: float = 3.0
    """Seconds of load before measuring starts."""
    k: int = 3
    api_key: str | None = None
    label: str = ""
    seed: int = 0
    rate: float = 0.0
    """Requests per second of all clients together, each client starting one every ``clients / rate``
    seconds (an open load: what a given traffic costs indexing); 0: each sends its next request as soon as
    the last is answered (a closed load: as much as the server answers)."""
    server_log: Path | None = None
    start_timeout: float = 300.0


@dataclass
class LoadResult:
    """What a run measured; seconds throughout."""

    label: str
    clients: int
    seconds: float
    latencies: dict[str, list[float]] = field(default_factory=dict)
    """Per operation, the latency of every request answered 2xx during the measurement."""
    errors: dict[str, int] = field(default_factory=dict)
    """Answers other than 2xx and 503, and failed connections, per status (``conn`` for the latter)."""
    shed: int = 0
    shed_latencies: list[float] = field(default_factory=list)
    """How long each 503 took to come back."""
    retry_after: set[str] = field(default_factory=set)
    healthz: list[float] = field(default_factory=list)
    rss: list[tuple[float, int]] = field(default_factory=list)
    fds: list[tuple[float, int]] = field(default_factory=list)
    converged: float | None = None
    """Seconds after the last edit until a retrieval found it (``None``: never, within 60 s)."""
    burst_indexed: float | None = None
    """Seconds from writing the burst until every file of it was indexed (``None``: not within the run)."""
    burst_rss_peak: int | None = None
    burst_done: int = 0
    """Files of the burst indexed when the run ended (or when all were)."""
    cpu: float = 0.0
    """The server's CPU seconds (its process tree, user + system) from its start to the run's end."""
    cpu_measured: float | None = None
    """The server's CPU seconds during the measured seconds alone (what the requests, the edits and the
    indexing cost it: on a shared machine, a fairer cost than wall-clock latency)."""
    bench_cpu: float | None = None
    """The benchmark's own CPU seconds (clients, probes) during the measured seconds."""
    load: tuple[float, float] | None = None
    batching: dict[str, float] = field(default_factory=dict)
    """During the measured seconds, from the server's ``/metrics`` (where it has them): ``passes`` (forward
    passes that embedded queries), ``queries`` (queries embedded) and ``yields`` (indexing batches that
    waited for queries)."""
    """The 1-minute load average when measuring began and ended (this run's own processes included)."""

    @property
    def ok(self) -> int:
        return sum(len(v) for v in self.latencies.values())

    @property
    def throughput(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0

    def summary(self) -> dict[str, Any]:
        """The numbers a table shows, in milliseconds and MiB."""
        ops = {
            op: {
                q: round(percentile(v, p) * 1000, 1) for q, p in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99))
            }
            | {"count": len(v)}
            for op, v in self.latencies.items()
        }
        after = [rss for at, rss in self.rss if at >= 0]
        return {
            "label": self.label,
            "clients": self.clients,
            "ok_per_s": round(self.throughput, 1),
            "ops": ops,
            "errors": dict(self.errors),
            "shed": self.shed,
            "retry_after": sorted(self.retry_after),
            "shed_p99_ms": round(percentile(self.shed_latencies, 0.99) * 1000, 1) if self.shed else None,
            "healthz_p99_ms": round(percentile(self.healthz, 0.99) * 1000, 1) if self.healthz else None,
            "healthz_max_ms": round(max(self.healthz) * 1000, 1) if self.healthz else None,
            "rss_start_mib": round(after[0] / 2**20) if after else None,
            "rss_peak_mib": round(max(after) / 2**20) if after else None,
            "rss_end_mib": round(after[-1] / 2**20) if after else None,
            "fds_start": self.fds[0][1] if self.fds else None,
            "fds_end": self.fds[-1][1] if self.fds else None,
            "converged_s": None if self.converged is None else round(self.converged, 2),
            "burst_indexed_s": None if self.burst_indexed is None else round(self.burst_indexed, 1),
            "burst_done": self.burst_done,
            "burst_rss_peak_mib": None if self.burst_rss_peak is None else round(self.burst_rss_peak / 2**20),
            "server_cpu_s": round(self.cpu, 1),
            "server_cpu_measured_s": None if self.cpu_measured is None else round(self.cpu_measured, 2),
            "server_cpu_ms_per_ok": (
                round(self.cpu_measured / self.ok * 1000, 2)
                if self.cpu_measured is not None and self.ok
                else None
            ),
            "bench_cpu_measured_s": None if self.bench_cpu is None else round(self.bench_cpu, 2),
            "load_average": None if self.load is None else [round(x, 1) for x in self.load],
            "query_passes": self.batching.get("passes"),
            "queries_per_pass": (
                round(self.batching["queries"] / self.batching["passes"], 1)
                if self.batching.get("passes")
                else None
            ),
            "indexing_yields": self.batching.get("yields"),
        }

    def timeline(self, every: float = 60.0) -> list[dict[str, float]]:
        """The server's memory (MiB) and open files about every ``every`` seconds of the run, from the
        1-second samples (what a soak's verdict is drawn from, to see whether and when memory settles)."""
        rows: list[dict[str, float]] = []
        files = dict(self.fds)
        for at, rss in self.rss:
            if at >= 0 and (not rows or at - rows[-1]["at_s"] >= every):
                rows.append({"at_s": round(at, 1), "rss_mib": round(rss / 2**20, 1), "fds": files.get(at, 0)})
        return rows

    def soak_verdict(self) -> tuple[bool, str]:
        """Whether memory after warm-up (the first fifth of the run) grew at most 10% and open files did
        not grow, with the numbers."""
        settled = [rss for at, rss in self.rss if at >= self.seconds / 5]
        files = [n for at, n in self.fds if at >= self.seconds / 5]
        if len(settled) < 2 or len(files) < 2:
            return False, "too few samples after warm-up"
        growth = settled[-1] / settled[0] - 1
        fd_growth = files[-1] - files[0]
        ok = growth <= 0.10 and fd_growth <= 0
        return ok, f"RSS after warm-up {growth:+.1%} (bound +10%), open files {fd_growth:+d} (bound 0)"


class _Client:
    """One keep-alive HTTP connection to the server."""

    def __init__(self, port: int, api_key: str | None) -> None:
        self.port = port
        self.headers = {"Content-Type": "application/json", **({"X-API-Key": api_key} if api_key else {})}
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, dict[str, str], bytes]:
        """One request; once more on a new connection if the kept-alive one was closed by the server
        (uvicorn closes idle ones after 5 s), then the error is raised."""
        data = json.dumps(body).encode() if body is not None else None
        for attempt in (1, 2):
            try:
                self.connection.request(method, path, data, self.headers)
                response = self.connection.getresponse()
                return response.status, dict(response.getheaders()), response.read()
            except (OSError, http.client.HTTPException):
                self.connection.close()
                self.connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")


def _query(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 8)))


def _document(rng: random.Random, words: int) -> str:
    return "\n\n".join(
        " ".join(rng.choice(WORDS) for _ in range(words // 4)).capitalize() + "." for _ in range(4)
    )


class _Run:
    def __init__(self, options: LoadOptions, server: ServerProcess, folder: Path) -> None:
        self.options = options
        self.server = server
        self.folder = folder
        self.result = LoadResult(
            options.label or f"{options.clients} clients", options.clients, options.seconds
        )
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.measuring_from = math.inf
        self.measuring_to = math.inf
        self.last_edit: str | None = None

    def record(self, op: str, started: float, status: int, headers: dict[str, str]) -> None:
        now = time.perf_counter()
        if not self.measuring_from <= started < self.measuring_to:
            return
        with self.lock:
            if 200 <= status < 300:
                self.result.latencies.setdefault(op, []).append(now - started)
            elif status == 503:
                self.result.shed += 1
                self.result.shed_latencies.append(now - started)
                self.result.retry_after.add(headers.get("retry-after", headers.get("Retry-After", "")))
            else:
                key = str(status) if status else "conn"
                self.result.errors[key] = self.result.errors.get(key, 0) + 1

    def client(self, number: int) -> None:
        rng = random.Random(self.options.seed * 1000 + number)
        ops, weights = zip(*self.options.mix, strict=True)
        client = _Client(self.server.port, self.options.api_key)
        uploads = 0
        interval = self.options.clients / self.options.rate if self.options.rate > 0 else 0.0
        next_at = time.perf_counter() + rng.uniform(0, interval)
        while not self.stop.is_set():
            if interval:
                if self.stop.wait(max(0.0, next_at - time.perf_counter())):
                    break
                next_at = max(next_at + interval, time.perf_counter() - interval)
            op = rng.choices(ops, weights)[0]
            if op == "retrieve":
                call = ("POST", "/v1/retrieve", {"query": _query(rng), "k": self.options.k})
            elif op == "answer":
                call = ("POST", "/v2/answer", {"prompt": _query(rng) + "?"})
            else:
                uploads += 1
                name = f"load-{number}-{uploads % 8}.md"
                call = ("POST", "/v1/documents", {"name": name, "content": _document(rng, 60)})
            started = time.perf_counter()
            try:
                status, headers, _ = client.request(*call)
            except (OSError, http.client.HTTPException):
                status, headers = 0, {}
            self.record(op, started, status, headers)
            if status == 503:  # as a polite client does
                self.stop.wait(_retry_after(headers))

    def health(self) -> None:
        """``/healthz`` every 0.1 s from a process of its own: the clients' threads here would delay it."""
        context = multiprocessing.get_context("spawn")
        receiver, sender = context.Pipe(duplex=False)
        stop = context.Event()
        prober = context.Process(target=_probe_health, args=(self.server.port, stop, sender), daemon=True)
        prober.start()
        self.stop.wait()
        stop.set()
        samples: list[tuple[float, float]] = receiver.recv() if receiver.poll(30) else []
        prober.join(10)
        self.result.healthz = [t for at, t in samples if self.measuring_from <= at < self.measuring_to]

    def editor(self) -> None:
        rng = random.Random(self.options.seed)
        edits = 0
        while not self.stop.wait(self.options.edit_interval):
            edits += 1
            marker = f"zq{edits}x{rng.randint(0, 10**6)}"
            (self.folder / f"edited-{edits % 4}.md").write_text(
                _document(rng, 60) + f"\n\nmarker {marker}.\n"
            )
            self.last_edit = marker

    def sampler(self, origin: float) -> None:
        root = self.server._process
        while root is not None and not self.stop.wait(1.0):
            at = time.perf_counter() - origin
            rss = sum(_rss(pid) for pid in _tree(root.pid))
            fds = sum(_open_files(pid) for pid in _tree(root.pid))
            with self.lock:
                self.result.rss.append((at, rss))
                self.result.fds.append((at, fds))

    def burst(self, origin: float) -> None:
        if not self.options.burst or self.stop.wait(min(5.0, self.options.seconds / 4)):
            return
        rng = random.Random(self.options.seed + 1)
        probe = _Client(self.server.port, self.options.api_key)
        before = _file_count(probe)
        target = self.folder / "burst"
        target.mkdir()
        written = time.perf_counter()
        for i in range(self.options.burst):
            (target / f"note-{i:05d}.txt").write_text(_document(rng, 24))
        say(f"burst: wrote {self.options.burst:,} files in {time.perf_counter() - written:.1f} s")
        peak = 0
        while not self.stop.wait(2.0):
            count = _file_count(probe)
            peak = max([peak] + [rss for at, rss in self.result.rss if at >= written - origin])
            done = count - before
            self.result.burst_done = done
            say(f"burst: {done:,}/{self.options.burst:,} indexed, server RSS peak {peak / 2**20:.0f} MiB")
            if done >= self.options.burst:
                self.result.burst_indexed = time.perf_counter() - written
                break
        self.result.burst_rss_peak = peak or None


def run_load(options: LoadOptions) -> LoadResult:
    """Start the server over a fresh folder, load it, and measure (see the module docstring)."""
    with tempfile.TemporaryDirectory(prefix="ragflow-load-") as tmp:
        folder, state = Path(tmp) / "docs", Path(tmp) / "state"
        folder.mkdir()
        rng = random.Random(options.seed)
        for i in range(options.docs):
            (folder / f"doc-{i:03d}.md").write_text(_document(rng, 80))
        origin = time.perf_counter()
        server = ServerProcess(options.server_cmd, folder, state, origin, log=options.server_log)
        probe = Probe(server.url, api_key=options.api_key)
        say(f"starting: {' '.join(server.argv())}")
        server.start(probe, options.start_timeout)
        try:
            return _drive(options, server, folder)
        finally:
            server.stop()


def _drive(options: LoadOptions, server: ServerProcess, folder: Path) -> LoadResult:
    run = _Run(options, server, folder)
    origin = time.perf_counter()
    workers: list[Callable[[], None]] = [run.health, lambda: run.sampler(origin), lambda: run.burst(origin)]
    if options.edit_interval > 0:
        workers.append(run.editor)
    workers += [lambda n=n: run.client(n) for n in range(options.clients)]  # type: ignore[misc]
    with _threads(workers, run.stop):
        time.sleep(options.warmup)
        server_cpu, bench_cpu, load = server.cpu_now(), time.process_time(), os.getloadavg()[0]
        batching = _batching(server.port, options.api_key)
        run.measuring_from = time.perf_counter()
        say(f"measuring {options.seconds:g} s with {options.clients} clients")
        time.sleep(options.seconds)
        run.measuring_to = time.perf_counter()
        result = run.result
        result.cpu_measured = server.cpu_now() - server_cpu
        result.bench_cpu = time.process_time() - bench_cpu
        result.load = (load, os.getloadavg()[0])
        after = _batching(server.port, options.api_key)
        result.batching = {name: after[name] - batching[name] for name in after if name in batching}
    if server.samples:
        result.cpu = server.samples[-1].cpu
    if run.last_edit is not None:
        result.converged = _converged(server.port, options.api_key, run.last_edit)
    return result


@contextmanager
def _threads(targets: list[Callable[[], None]], stop: threading.Event) -> Iterator[None]:
    threads = [threading.Thread(target=t, daemon=True) for t in targets]
    for thread in threads:
        thread.start()
    try:
        yield
    finally:
        stop.set()
        for thread in threads:
            thread.join(90)


def _probe_health(port: int, stop: Any, results: Any) -> None:
    """In a child process: GET /healthz every 0.1 s until ``stop``; send ``[(sent_at, seconds)]``."""
    client = _Client(port, None)
    samples = []
    while not stop.wait(0.1):
        started = time.perf_counter()
        try:
            client.request("GET", "/healthz")
        except (OSError, http.client.HTTPException):
            continue
        samples.append((started, time.perf_counter() - started))
    results.send(samples)


def _retry_after(headers: dict[str, str]) -> float:
    value = headers.get("retry-after", headers.get("Retry-After", "1"))
    try:
        return min(max(float(value), 0.0), 10.0)
    except ValueError:
        return 1.0


def _converged(port: int, api_key: str | None, marker: str, timeout: float = 60.0) -> float | None:
    """Seconds until a retrieval of ``marker`` returns the chunk that holds it."""
    client = _Client(port, api_key)
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        status, _, body = client.request("POST", "/v1/retrieve", {"query": f"marker {marker}", "k": 5})
        if status == 200 and any(marker in hit["text"] for hit in json.loads(body)):
            return time.perf_counter() - started
        time.sleep(0.1)
    return None


_BATCHING_METRICS = {
    "ragflow_query_embed_passes": "passes",
    "ragflow_queries_embedded": "queries",
    "ragflow_indexing_yields": "yields",
}


def _batching(port: int, api_key: str | None) -> dict[str, float]:
    """The server's query-batching counters from ``/metrics`` (empty where it has none, or refuses)."""
    try:
        status, _, body = _Client(port, api_key).request("GET", "/metrics")
    except (OSError, http.client.HTTPException):
        return {}
    found: dict[str, float] = {}
    if status == 200:
        for line in body.decode(errors="replace").splitlines():
            name, _, value = line.partition(" ")
            if name in _BATCHING_METRICS:
                found[_BATCHING_METRICS[name]] = float(value)
    return found


def _file_count(client: _Client) -> int:
    status, _, body = client.request("GET", "/v1/statistics")
    return int(json.loads(body)["file_count"]) if status == 200 else 0


def _rss(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _open_files(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def load_table(results: list[LoadResult]) -> str:
    """A Markdown table of ``results``, one row per run."""
    lines = [
        "| run | clients | ok/s | server CPU ms/ok | queries/pass | retrieve p50/p95/p99 ms "
        "| other ops p50/p99 ms | errors | shed (503) | 503 p99 ms | /healthz p99/max ms "
        "| RSS start/peak/end MiB | open files | converged s | load |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for result in results:
        s = result.summary()
        retrieve = s["ops"].get("retrieve")
        percentiles = f"{retrieve['p50']}/{retrieve['p95']}/{retrieve['p99']}" if retrieve else "-"
        others = ", ".join(
            f"{op} {v['p50']}/{v['p99']} ({v['count']})" for op, v in s["ops"].items() if op != "retrieve"
        )
        load = s["load_average"]
        lines.append(
            f"| {s['label']} | {s['clients']} | {s['ok_per_s']} | {s['server_cpu_ms_per_ok'] or '-'} "
            f"| {s['queries_per_pass'] or '-'} "
            f"| {percentiles} "
            f"| {others or '-'} | {sum(s['errors'].values())} {s['errors'] or ''} | {s['shed']} "
            f"| {s['shed_p99_ms'] or '-'} | {s['healthz_p99_ms']}/{s['healthz_max_ms']} "
            f"| {s['rss_start_mib']}/{s['rss_peak_mib']}/{s['rss_end_mib']} "
            f"| {s['fds_start']}->{s['fds_end']} | {s['converged_s']} "
            f"| {f'{load[0]}-{load[1]}' if load else '-'} |"
        )
    for result in results:
        s = result.summary()
        if s["burst_done"]:
            took = (
                f"in {s['burst_indexed_s']} s" if s["burst_indexed_s"] is not None else "when the run ended"
            )
            lines.append(
                f"\n{s['label']}: burst of {s['burst_done']:,} files indexed {took}, "
                f"server RSS peak {s['burst_rss_peak_mib']} MiB"
            )
    return "\n".join(lines)
