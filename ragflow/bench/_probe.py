"""The benchmark's window on the server under test: the public REST API only (``/v1/retrieve``,
``/v1/statistics``, ``/v1/inputs``, and ``/readyz`` and ``/metrics`` where the server has them), over one
keep-alive connection so a poll costs one small request and no connection set-up."""

from __future__ import annotations

import http.client
import json
import time
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ragflow.errors import RagflowError

from ._workload import Expectation


class ProbeError(RagflowError):
    """The server under test answered an error, or something that is not the Pathway-compatible API."""


@dataclass(frozen=True, slots=True)
class Poll:
    """One look at the server: whether every expectation held, and when the requests went out and the
    last answer came back (``time.perf_counter`` seconds)."""

    met: bool
    sent: float
    received: float


def quote_jmespath(text: str) -> str:
    """``text`` as a JMESPath JSON literal (`` `"..."` ``): Pathway's servers fail on a raw string literal
    (``'...'``) in a filter, and both read this form."""
    return "`" + json.dumps(text).replace("`", "\\`") + "`"


class Probe:
    """Requests to one server; ``requests`` and ``busy`` count what the polling cost it."""

    def __init__(self, url: str, *, api_key: str | None = None, timeout: float = 30.0, k: int = 50) -> None:
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme != "http" or not parsed.hostname:
            raise ProbeError(f"the server URL must be http://HOST:PORT, got {url!r}")
        self.url = url.rstrip("/")
        self._host, self._port = parsed.hostname, parsed.port or 80
        self._prefix = parsed.path.rstrip("/")
        self._headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self.timeout = timeout
        self.k = k
        self._conn: http.client.HTTPConnection | None = None
        self.requests = 0
        self.busy = 0.0
        self.retrieve_seconds: list[float] = []
        self.failed_polls = 0
        self.last_failure: str | None = None

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, bytes]:
        """One request; reconnects once if the kept-alive connection was closed."""
        data = json.dumps(body).encode() if body is not None else None
        for attempt in (0, 1):
            if self._conn is None:
                self._conn = http.client.HTTPConnection(self._host, self._port, timeout=self.timeout)
            started = time.perf_counter()
            try:
                self._conn.request(method, self._prefix + path, body=data, headers=self._headers)
                response = self._conn.getresponse()
                payload = response.read()
            except (ConnectionError, http.client.HTTPException, OSError):
                self.close()
                if attempt:
                    raise
                continue
            finally:
                self.requests += 1
                self.busy += time.perf_counter() - started
            return response.status, payload
        raise AssertionError("unreachable")

    def json(self, method: str, path: str, body: Any = None) -> Any:
        status, payload = self.request(method, path, body)
        if status != 200:
            raise ProbeError(f"{self.url}{path} answered HTTP {status}: {payload[:300]!r}")
        try:
            return json.loads(payload)
        except ValueError:
            raise ProbeError(f"{self.url}{path} did not answer JSON: {payload[:200]!r}") from None

    def chunks_of(
        self, query: str, path_suffixes: Sequence[str], k: int | None = None
    ) -> list[dict[str, Any]]:
        """The chunks ``/v1/retrieve`` returns for ``query`` among those of the documents whose ``path``
        ends with one of ``path_suffixes`` (a JMESPath ``ends_with`` filter, which Pathway's servers read
        too)."""
        body = {
            "query": query,
            "k": k or self.k,
            "metadata_filter": " || ".join(f"ends_with(path, {quote_jmespath(s)})" for s in path_suffixes),
        }
        started = time.perf_counter()
        hits = self.json("POST", "/v1/retrieve", body)
        self.retrieve_seconds.append(time.perf_counter() - started)
        if not isinstance(hits, list):
            raise ProbeError(f"{self.url}/v1/retrieve answered {str(hits)[:200]}, not a list of chunks")
        return hits

    def look(self, expectations: Sequence[Expectation], suffixes: Sequence[str]) -> Poll:
        """Whether every expectation holds now, from one retrieve over all the documents involved (a
        rename's two names are one request, so a slow server is not polled twice per look)."""
        sent = time.perf_counter()
        query = next((e.query for e in expectations if e.present), expectations[0].query)
        try:
            hits = self.chunks_of(query, suffixes)
        except (OSError, ProbeError) as exc:
            # a server too busy to answer in time (or failing) has not shown the change: a miss, counted
            self.failed_polls += 1
            self.last_failure = str(exc) or type(exc).__name__
            return Poll(False, sent, time.perf_counter())
        met = all(
            expectation.met_by(
                str(h.get("text", ""))
                for h in hits
                if str((h.get("metadata") or {}).get("path", "")).endswith(suffix)
            )
            for expectation, suffix in zip(expectations, suffixes, strict=True)
        )
        return Poll(met, sent, time.perf_counter())

    def statistics(self) -> dict[str, Any]:
        found = self.json("POST", "/v1/statistics", {})
        return found if isinstance(found, dict) else {}

    def readiness(self) -> tuple[bool, bool]:
        """Whether the server answers HTTP at all, and whether it is ready: ``/readyz`` says 200 or, on a
        server without it, ``/v1/statistics`` answers 200."""
        try:
            status, _ = self.request("GET", "/readyz")
            if status == 404:
                status, _ = self.request("POST", "/v1/statistics", {})
        except OSError:
            return False, False
        return True, status == 200

    def metrics(self) -> dict[str, float]:
        """The unlabelled samples of ``/metrics`` (empty where the server has none)."""
        try:
            status, payload = self.request("GET", "/metrics")
        except OSError:
            return {}
        if status != 200:
            return {}
        found: dict[str, float] = {}
        for line in payload.decode(errors="replace").splitlines():
            name, _, value = line.partition(" ")
            if line.startswith("#") or "{" in name or not value:
                continue
            try:
                found[name] = float(value.split()[0])
            except ValueError:
                continue
        return found

    def document_view(self, path_suffix: str) -> dict[str, Any] | None:
        """The server's own record of a document from ``/v1/inputs`` with ``return_status`` (ragflow's
        ``seen_at_ns``, ``_indexed_at`` and ``_stages`` when present), or ``None``."""
        body = {"metadata_filter": f"ends_with(path, {quote_jmespath(path_suffix)})", "return_status": True}
        try:
            found = self.json("POST", "/v1/inputs", body)
        except (ProbeError, OSError):
            return None
        return found[0] if isinstance(found, list) and found and isinstance(found[0], dict) else None
