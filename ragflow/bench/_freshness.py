"""The freshness benchmark's driver: writes a workload at the source, and times, through the REST API
only, how long each change takes to show in the answers of the server under test.

Freshness of a change is measured from the return of its write to the first answer that shows the new
state (new text retrievable, old text and deleted documents gone). It is an upper bound; the last answer
that did not show it was asked at ``lower_s``, so the true value lies in between, and the gap is the
measurement's resolution."""

from __future__ import annotations

import os
import platform
import random
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ragflow import __version__
from ragflow.errors import ConfigError

from ._probe import Probe, ProbeError
from ._results import ChangeRecord, FreshnessResult
from ._server import ServerProcess
from ._targets import FolderTarget, KafkaTarget, S3Target, SourceTarget
from ._workload import ALL_KINDS, Change, ChangeKind, Document, Operation, Workload, read_corpus


@dataclass
class FreshnessOptions:
    """Everything a run needs; the CLI's options map one to one onto these fields."""

    url: str | None = None
    """Attach to a running server here (its source must be ``folder``, given as ``folder``)."""
    server_cmd: str | None = None
    """Or start the server under test with this command (``{folder}``, ``{port}``, ``{state}`` filled in)."""
    source: str = "folder"
    """Where the run writes: ``folder``, ``s3`` or ``kafka``."""
    folder: Path | None = None
    """The folder the server indexes; the run writes into its own subfolder of it (default: a temporary
    folder, with ``server_cmd`` only)."""
    s3_endpoint: str | None = None
    s3_bucket: str | None = None
    s3_prefix: str = ""
    kafka_bootstrap: str | None = None
    kafka_topic: str | None = None
    docs: int = 100
    changes: int = 20
    """Timed changes of each kind."""
    kinds: Sequence[ChangeKind] = ALL_KINDS
    burst: int = 100
    """Edits written at once after the single changes (0: no burst)."""
    restart: int = 0
    """With ``server_cmd``: stop the server, make this many edits, start it again (0: no restart test)."""
    seed: int = 0
    corpus: Path | None = None
    gap: tuple[float, float] = (0.2, 1.0)
    """Idle seconds before each single change, drawn uniformly."""
    poll_interval: float = 0.01
    """Least seconds between two polls of one change (polls never overlap)."""
    timeout: float = 60.0
    """Seconds a change may take before it is recorded as a timeout."""
    start_timeout: float = 600.0
    request_timeout: float = 30.0
    """Seconds a poll may wait for its answer; a later answer is a failed poll, counted as a miss."""
    k: int = 50
    api_key: str | None = None
    label: str | None = None
    server_log: Path | None = None
    progress: Callable[[str], None] = field(default=lambda message: None)


@dataclass
class _Pending:
    change: Change
    suffixes: list[str]
    returned: float
    write_s: float
    last_miss: float
    polls: int = 0
    seen: float | None = None


class FreshnessRun:
    """One run of the benchmark; ``run()`` returns its result."""

    def __init__(self, options: FreshnessOptions, target: SourceTarget | None = None) -> None:
        """``target``: where to write, if not a folder (tests give their own)."""
        if (options.url is None) == (options.server_cmd is None):
            raise ConfigError("give either url (a running server) or server_cmd (a command to start one)")
        self.options = options
        self.origin = time.perf_counter()
        self.wall_origin = time.time()
        self.rng = random.Random(options.seed + 1)
        self._tmp = tempfile.TemporaryDirectory(prefix="ragflow-bench-")
        folder = options.folder or Path(self._tmp.name) / "docs"
        folder.mkdir(parents=True, exist_ok=True)
        self.target: SourceTarget = target or make_target(options, folder, uuid.uuid4().hex[:8])
        self.server: ServerProcess | None = None
        url = options.url
        if options.server_cmd is not None:
            extra = {
                "bucket": options.s3_bucket or "",
                "endpoint": options.s3_endpoint or "",
                "topic": options.kafka_topic or "",
                "bootstrap": options.kafka_bootstrap or "",
            }
            self.server = ServerProcess(
                options.server_cmd,
                folder,
                Path(self._tmp.name) / "state",
                self.origin,
                log=options.server_log,
                extra=extra,
            )
            url = self.server.url
        assert url is not None
        self.probe = Probe(url, api_key=options.api_key, k=options.k, timeout=options.request_timeout)
        corpus_docs: list[Document] | None = None
        pool: list[str] = []
        if options.corpus is not None:
            corpus_docs, pool = read_corpus(options.corpus, options.docs)
        self.workload = Workload(options.seed, corpus_paragraphs=pool)
        self.corpus_docs = corpus_docs
        self.result = FreshnessResult(run=self._describe(url))

    def _describe(self, url: str) -> dict[str, Any]:
        o = self.options
        return {
            "label": o.label or ("server command" if o.server_cmd else url),
            "url": url,
            "server_cmd": o.server_cmd,
            "source": self.target.kind,
            "source_at": {
                "folder": str(o.folder) if o.folder else None,
                "s3": f"{o.s3_endpoint or 'AWS'} bucket {o.s3_bucket}" if o.source == "s3" else None,
                "kafka": f"{o.kafka_bootstrap} topic {o.kafka_topic}" if o.source == "kafka" else None,
            }.get(o.source),
            "docs": o.docs,
            "changes_per_kind": o.changes,
            "kinds": [str(k) for k in o.kinds],
            "burst": o.burst,
            "restart_edits": o.restart,
            "seed": o.seed,
            "corpus": str(o.corpus) if o.corpus else None,
            "gap_s": list(o.gap),
            "poll_interval_s": o.poll_interval,
            "k": o.k,
            "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(self.wall_origin)),
            "machine": platform.platform(),
            "cpus": os.cpu_count(),
            "load_average_start": list(os.getloadavg()),
            "python": platform.python_version(),
            "ragflow_bench": __version__,
        }

    def now(self) -> float:
        return time.perf_counter() - self.origin

    # -- the phases -------------------------------------------------------------------------------------

    def run(self) -> FreshnessResult:
        cpu = time.process_time()
        try:
            self._initial()
            self._idle_queries(5)
            self._singles()
            if self.options.burst:
                self._burst(self.options.burst)
            if self.options.restart and self.server is not None:
                self._restart(self.options.restart)
        finally:
            wall = self.now()
            self.result.driver = {
                "cpu_s": time.process_time() - cpu,
                "wall_s": wall,
                "requests": self.probe.requests,
                "server_busy_s": self.probe.busy,
                "failed_polls": self.probe.failed_polls,
            }
            if self.probe.last_failure:
                self.result.run["last_failed_poll"] = self.probe.last_failure
            self.result.run["load_average_end"] = list(os.getloadavg())
            self.result.queries["polling"] = list(self.probe.retrieve_seconds)
            self._finish()
        return self.result

    def _finish(self) -> None:
        if self.server is not None:
            self.server.stop()
            samples = self.server.samples
            if samples:
                self.result.server_process = {
                    "peak_rss_bytes": max(s.rss for s in samples),
                    "cpu_s": samples[-1].cpu,
                    "samples": [[round(s.at, 3), s.rss, round(s.cpu, 3)] for s in samples],
                }
        self.probe.close()
        self.target.close()
        self._tmp.cleanup()

    def _initial(self) -> None:
        docs = self.workload.initial(self.options.docs, self.corpus_docs)
        self.options.progress(f"writing {len(docs)} documents")
        base, chunks_before = 0, 0.0
        if self.server is None:
            base = int(self.probe.statistics().get("file_count") or 0)
            chunks_before = self.probe.metrics().get("ragflow_chunks", 0.0)
            started = self.now()
            self._write_all(docs)
        else:
            self._write_all(docs)
            started = self.now()
            answered, ready = self.server.start(self.probe, self.options.start_timeout)
            self.result.initial.update(startup_s=answered, ready_s=ready)
            self.options.progress(
                f"the server answered after {answered:.2f} s, was ready after {ready:.2f} s"
            )
        self._wait_count(base + len(docs), started + self.options.start_timeout)
        changes = [Change(ChangeKind.CREATE, d.name, (), (self.workload.visible_now(d),)) for d in docs]
        pending = self._wait_all(changes, started)
        seconds = max((p.seen or self.now()) for p in pending) - started if pending else 0.0
        # with a server started here, from its start: model loading included, as a user waits for it
        visible = sum(1 for p in pending if p.seen is not None)
        self.result.initial.update(
            documents=len(docs), visible=visible, seconds=seconds, docs_per_s=len(docs) / seconds
        )
        chunks = self.probe.metrics().get("ragflow_chunks")
        if chunks is not None:
            self.result.initial["chunks"] = chunks - chunks_before
            self.result.initial["chunks_per_s"] = (chunks - chunks_before) / seconds
        self.options.progress(f"initial indexing: {visible}/{len(docs)} documents visible in {seconds:.2f} s")

    def _write_all(self, docs: Sequence[Document]) -> None:
        for doc in docs:
            self.target.apply(Operation("put", doc.name, doc.text))

    def _wait_count(self, count: int, deadline: float) -> None:
        """Until ``/v1/statistics`` counts ``count`` documents: cheap (no query embedding), so waiting for
        a large first pass does not load the server with queries."""
        while self.now() < deadline:
            try:
                if int(self.probe.statistics().get("file_count") or 0) >= count:
                    return
            except OSError:
                pass
            time.sleep(0.1)

    def _idle_queries(self, count: int) -> None:
        idle = self.result.queries.setdefault("idle", [])
        for _ in range(count):
            query = " ".join(self.rng.sample(self.workload.marker(), 3))
            started = time.perf_counter()
            self.probe.json("POST", "/v1/retrieve", {"query": query, "k": 10})
            idle.append(time.perf_counter() - started)

    def _singles(self) -> None:
        plan = [kind for kind in self.options.kinds for _ in range(self.options.changes)]
        self.rng.shuffle(plan)
        for i, kind in enumerate(plan, 1):
            time.sleep(self.rng.uniform(*self.options.gap) / 2)
            self._idle_queries(1)
            time.sleep(self.rng.uniform(*self.options.gap) / 2)
            change = self.workload.change(kind)
            pending = self._write(change)
            self._poll(pending, pending.returned + self.options.timeout)
            record = self._record(pending, "single")
            if record.status == "visible":
                self._server_view(record, pending)
            self.result.records.append(record)
            if i % 10 == 0 or i == len(plan):
                self.options.progress(f"{i}/{len(plan)} changes timed")

    def _burst(self, size: int) -> None:
        count = min(size, len(self.workload.live))
        docs = [self.workload.live[n] for n in self.rng.sample(sorted(self.workload.live), count)]
        metrics = self.probe.metrics()
        embedding = _embed_seconds(self.probe)
        started = self.now()
        pending = [self._write(self.workload.change(ChangeKind.EDIT, doc)) for doc in docs]
        written = self.now()
        self._wait_all([p.change for p in pending], started, pending)
        last = max((p.seen or self.now()) for p in pending)
        burst: dict[str, Any] = {
            "kind": "edit",
            "size": count,
            "write_s": written - started,
            "seconds": last - written,
            "visible": sum(1 for p in pending if p.seen is not None),
        }
        after = self.probe.metrics()
        if "ragflow_chunks_embedded" in after:
            burst["chunks_embedded"] = after["ragflow_chunks_embedded"] - metrics.get(
                "ragflow_chunks_embedded", 0.0
            )
        embedded = _embed_seconds(self.probe)
        if embedding is not None and embedded is not None:
            # the server's own time inside its embedder over the burst: what "the time to embed them" is
            burst["embed_s"] = embedded - embedding
        self.result.bursts.append(burst)
        self.result.records.extend(self._record(p, "burst") for p in pending)
        self.options.progress(f"burst of {count} edits: the last visible {burst['seconds']:.2f} s after")

    def _restart(self, edits: int) -> None:
        assert self.server is not None
        self.server.stop()
        changes = [self.workload.change(ChangeKind.EDIT) for _ in range(edits)]
        pending = [self._write(c) for c in changes]
        started = self.now()
        answered, ready = self.server.start(self.probe, self.options.start_timeout)
        self._wait_all(changes, started, pending)
        last = max((p.seen or self.now()) for p in pending)
        self.result.restart = {
            "edits_while_down": edits,
            "answered_s": answered,
            "ready_s": ready,
            "caught_up_s": last - started,
            "visible": sum(1 for p in pending if p.seen is not None),
        }
        self.result.records.extend(self._record(p, "restart") for p in pending)
        self.options.progress(f"restart: ready after {ready:.2f} s, caught up after {last - started:.2f} s")

    # -- writing and polling ----------------------------------------------------------------------------

    def _write(self, change: Change) -> _Pending:
        started = self.now()
        for operation in change.operations:
            self.target.apply(operation)
        returned = self.now()
        suffixes = [self.target.path_suffix(e.name) for e in change.expectations]
        return _Pending(change, suffixes, returned, returned - started, returned)

    def _poll(self, pending: _Pending, deadline: float) -> None:
        """Poll one change until it shows or ``deadline`` passes, at least ``poll_interval`` apart."""
        while True:
            poll = self.probe.look(pending.change.expectations, pending.suffixes)
            pending.polls += 1
            if poll.met:
                pending.seen = poll.received - self.origin
                return
            pending.last_miss = poll.sent - self.origin
            if poll.received - self.origin > deadline:
                return
            time.sleep(max(0.0, self.options.poll_interval - (time.perf_counter() - poll.sent)))

    def _wait_all(
        self, changes: Sequence[Change], started: float, pending: list[_Pending] | None = None
    ) -> list[_Pending]:
        """Until every change shows: the last one written is polled alone until it shows (one query per
        poll, not one per change), then the rest are swept, again until each shows."""
        if pending is None:
            pending = [
                _Pending(c, [self.target.path_suffix(e.name) for e in c.expectations], started, 0.0, started)
                for c in changes
            ]
        deadline = self.now() + self.options.timeout + self.options.start_timeout
        if pending:
            self._poll(pending[-1], deadline)
        todo = [p for p in pending if p.seen is None]
        while todo and self.now() < deadline:
            for p in todo:
                poll = self.probe.look(p.change.expectations, p.suffixes)
                p.polls += 1
                if poll.met:
                    p.seen = poll.received - self.origin
                else:
                    p.last_miss = poll.sent - self.origin
            todo = [p for p in todo if p.seen is None]
            if todo:
                time.sleep(self.options.poll_interval)
        return pending

    def _record(self, pending: _Pending, phase: str) -> ChangeRecord:
        seen = pending.seen
        return ChangeRecord(
            kind=str(pending.change.kind),
            phase=phase,
            doc=pending.change.doc,
            at=pending.returned,
            write_s=pending.write_s,
            fresh_s=None if seen is None else seen - pending.returned,
            lower_s=max(0.0, pending.last_miss - pending.returned),
            polls=pending.polls,
            status="visible" if seen is not None else "timeout",
        )

    def _server_view(self, record: ChangeRecord, pending: _Pending) -> None:
        """The server's own timestamps for the change, where it publishes them (ragflow's ``/v1/inputs``:
        ``seen_at_ns``, and ``_indexed_at``/``_stages`` on servers that have them)."""
        present = [e for e in pending.change.expectations if not e.gone]
        if not present:
            return
        view = self.probe.document_view(self.target.path_suffix(present[0].name))
        if not view:
            return
        returned_wall = self.wall_origin + pending.returned
        stamps: dict[str, float] = {}
        if isinstance(view.get("seen_at_ns"), int):
            stamps["detected"] = view["seen_at_ns"] / 1e9
        stages = view.get("_stages")
        if isinstance(stages, dict):
            stamps.update({str(k): float(v) for k, v in stages.items() if isinstance(v, int | float)})
        if isinstance(view.get("_indexed_at"), int | float):
            stamps["indexed"] = float(view["_indexed_at"])
        record.server = {name: at - returned_wall for name, at in stamps.items()}


def make_target(options: FreshnessOptions, folder: Path, run_id: str) -> SourceTarget:
    """The source the options name, written under a name of its own (``freshness-<run_id>``)."""
    if options.source == "folder":
        if options.url is not None and options.folder is None:
            raise ConfigError("with url, give the folder the server indexes (folder)")
        return FolderTarget(folder, run_id)
    if options.source == "kafka":
        if not options.kafka_bootstrap or not options.kafka_topic:
            raise ConfigError(
                "the kafka source needs the broker (kafka_bootstrap) and the topic (kafka_topic)"
            )
        return KafkaTarget(options.kafka_bootstrap, options.kafka_topic, run_id)
    if options.source == "s3":
        if not options.s3_bucket:
            raise ConfigError("the s3 source needs the bucket (s3_bucket)")
        return S3Target(options.s3_endpoint, options.s3_bucket, options.s3_prefix, run_id)
    raise ConfigError(f"source must be folder, s3 or kafka, got {options.source!r}")


def run_freshness(options: FreshnessOptions) -> FreshnessResult:
    """Run the freshness benchmark with ``options`` and return what it measured."""
    return FreshnessRun(options).run()


def _embed_seconds(probe: Probe) -> float | None:
    """Seconds the server has spent embedding so far, from ``/v1/statistics`` (ragflow's ``embedder``
    entry); ``None`` from a server that does not say."""
    try:
        embedder = probe.statistics().get("embedder")
    except (ProbeError, OSError):
        return None
    seconds = embedder.get("embed_seconds") if isinstance(embedder, dict) else None
    return float(seconds) if isinstance(seconds, int | float) else None
