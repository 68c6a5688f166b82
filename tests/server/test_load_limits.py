"""What one request or one crowd may cost (issue 19), through a real server: text caps and the JSON depth
guard answer 400 on every route, past the in-flight bound of a route class requests get 503 with
``Retry-After`` (counted in ``/metrics``) and the server recovers, and the health checks answer while
every worker thread is busy."""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import requests

from ragflow.server.json_guard import json_depth
from ragflow.server.limits import RequestLimits
from ragflow.server.shedding import route_class
from tests.server.conftest import Served

KEY = "limits-key"
DEEP = b"[" * 100_000 + b"]" * 100_000
JSON = {"Content-Type": "application/json"}
POSTS = (
    "/v1/retrieve",
    "/v1/statistics",
    "/v1/inputs",
    "/v2/answer",
    "/v2/summarize",
    "/v1/chat/completions",
    "/v1/documents",
    "/mcp",
)


@pytest.mark.parametrize("api_key", [None, KEY])
def test_a_deeply_nested_body_is_a_400_on_every_route(
    serve_app: Callable[..., Served], api_key: str | None
) -> None:
    served = serve_app(api_key=api_key)
    headers = {**JSON, **({"X-API-Key": api_key} if api_key else {})}
    for path in POSTS:
        for body in (DEEP, b'{"query": ' + b'{"a": ' * 50_000 + b"1" + b"}" * 50_001):
            response = requests.post(served.url + path, data=body, headers=headers, timeout=30)
            assert response.status_code == 400, (path, response.status_code, response.text[:200])
            assert "server.max_json_depth" in response.json()["error"]["message"]
    # a multipart upload's metadata field is JSON too
    response = requests.post(
        served.url + "/v1/documents",
        files={"file": ("deep.txt", b"text")},
        data={"metadata": DEEP.decode()},
        headers={"X-API-Key": api_key} if api_key else {},
        timeout=30,
    )
    assert response.status_code == 400, response.text[:200]


def test_json_depth_skips_brackets_inside_strings() -> None:
    assert json_depth(b'{"a": "[[[[{{{{", "b": [[1]]}') == 3
    assert json_depth(b'["\\"[[[", [[]]]') == 3
    assert json_depth(b"") == 0
    assert json_depth(DEEP) == 100_000


def test_bodies_within_the_depth_limit_pass(serve_app: Callable[..., Served]) -> None:
    served = serve_app(limits=RequestLimits(max_json_depth=4))
    nested: dict[str, Any] = {"query": "lantern", "k": 1, "metadata_filter": None}
    assert requests.post(served.url + "/v1/retrieve", json=nested, timeout=10).status_code == 200
    deeper = {"text_list": [[[["x"]]]]}  # depth 5
    response = requests.post(served.url + "/v2/summarize", json=deeper, timeout=10)
    assert response.status_code == 400 and "at most 4" in response.json()["error"]["message"]


def test_text_caps_answer_400_naming_the_setting(serve_app: Callable[..., Served]) -> None:
    limits = RequestLimits(max_query_chars=100, max_prompt_chars=200, max_chat_chars=300)
    served = serve_app(limits=limits)
    cases: list[tuple[str, dict[str, Any], str, str]] = [
        ("/v1/retrieve", {"query": "x" * 101, "k": 1}, "query", "max_query_chars"),
        ("/v2/answer", {"prompt": "x" * 201}, "prompt", "max_prompt_chars"),
        (
            "/v1/chat/completions",
            {"messages": [{"role": "user", "content": "x" * 200}, {"role": "user", "content": "y" * 101}]},
            "messages",
            "max_chat_chars",
        ),
    ]
    for path, body, param, setting in cases:
        response = requests.post(served.url + path, json=body, timeout=10)
        assert response.status_code == 400, (path, response.text)
        error = response.json()["error"]
        assert error["param"] == param and f"server.{setting}" in error["message"], error
    # at the limit, all pass
    assert requests.post(served.url + "/v1/retrieve", json={"query": "x" * 100, "k": 1}, timeout=10).ok
    too_long = {"query": "y" * 101, "k": "1"}
    assert requests.get(served.url + "/v1/retrieve", params=too_long, timeout=10).status_code == 400
    assert requests.post(served.url + "/v2/answer", json={"prompt": "x" * 200}, timeout=10).ok


def test_the_default_query_cap_refuses_a_megabyte_query_at_once(served: Served) -> None:
    response = requests.post(served.url + "/v1/retrieve", json={"query": "x" * 1_000_000, "k": 1}, timeout=10)
    assert response.status_code == 400
    assert "10,000" in response.json()["error"]["message"]


def test_route_classes() -> None:
    assert route_class("POST", "/v1/retrieve") == "query"
    assert route_class("GET", "/v1/inputs") == "query"
    assert route_class("POST", "/mcp") == "query"
    assert route_class("POST", "/v2/answer") == route_class("POST", "/v1/chat/completions") == "answer"
    assert route_class("POST", "/v1/documents") == route_class("DELETE", "/v1/documents/a.md") == "upload"
    for path in ("/healthz", "/readyz", "/metrics", "/", "/openapi.json", "/v1/models"):
        assert route_class("GET", path) is None, path


@contextmanager
def held_retrievals(served: Served, count: int, inside: int) -> Iterator[threading.Semaphore]:
    """Send ``count`` retrievals at once, held inside the store until the block ends; yields once ``inside``
    of them are in, with the semaphore counting further entries. All must then answer 200."""
    release, entered = threading.Event(), threading.Semaphore(0)
    original = served.store.retrieve

    def held(*args: Any, **kwargs: Any) -> Any:
        entered.release()
        assert release.wait(60), "the test never released the retrievals"
        return original(*args, **kwargs)

    served.store.retrieve = held  # type: ignore[method-assign]
    body: dict[str, Any] = {"query": "lantern", "k": 1}
    try:
        with ThreadPoolExecutor(count) as pool:
            sent = [
                pool.submit(requests.post, served.url + "/v1/retrieve", json=body, timeout=90)
                for _ in range(count)
            ]
            for _ in range(inside):
                assert entered.acquire(timeout=20)
            try:
                yield entered
            finally:
                release.set()
            assert [f.result().status_code for f in sent] == [200] * count
    finally:
        release.set()
        served.store.retrieve = original  # type: ignore[method-assign]


def test_past_the_bound_requests_get_503_with_retry_after_and_the_server_recovers(
    serve_app: Callable[..., Served],
) -> None:
    served = serve_app(limits=RequestLimits(max_inflight_queries=2))
    body: dict[str, Any] = {"query": "lantern", "k": 1}
    with held_retrievals(served, 2, 2):
        shed = requests.post(served.url + "/v1/retrieve", json=body, timeout=10)
        assert shed.status_code == 503
        assert shed.headers["Retry-After"] == "1"
        assert "server.max_inflight_queries" in shed.json()["error"]["message"]
        # other classes and the health checks are not held by the queries
        assert requests.get(served.url + "/healthz", timeout=5).status_code == 200
        assert requests.get(served.url + "/readyz", timeout=5).status_code == 200
        upload = {"name": "during.md", "content": "uploaded while the queries were full"}
        assert requests.post(served.url + "/v1/documents", json=upload, timeout=10).ok
        metrics = requests.get(served.url + "/metrics", timeout=10).text
        assert 'ragflow_requests_shed_total{route_class="query"} 1.0' in metrics
        assert 'ragflow_requests_in_flight{route_class="query"} 2.0' in metrics
    recovered = requests.post(served.url + "/v1/retrieve", json=body, timeout=10)
    assert recovered.status_code == 200 and recovered.json()
    metrics = requests.get(served.url + "/metrics", timeout=10).text
    assert 'ragflow_requests_in_flight{route_class="query"} 0.0' in metrics


def test_health_checks_answer_while_every_worker_thread_is_busy(serve_app: Callable[..., Served]) -> None:
    # 48 retrievals held: more than the 40 threads of the server's pool, so requests that need a
    # thread would queue; the health checks must not need one
    served = serve_app(limits=RequestLimits(max_inflight_queries=48))
    with held_retrievals(served, 48, 40) as entered:
        assert not entered.acquire(timeout=0.5), "more retrievals ran than the pool has threads"
        assert requests.get(served.url + "/healthz", timeout=5).json() == {"status": "ok"}
        assert requests.get(served.url + "/readyz", timeout=5).json() == {"status": "ready"}


@pytest.mark.model
def test_a_megabyte_query_costs_about_a_short_one_and_does_not_hold_up_others(tmp_path: Path) -> None:
    from ragflow.connectors.folder import FolderSource
    from ragflow.embedders.local import LocalEmbedder
    from ragflow.server import create_app
    from ragflow.store import DocumentStore
    from tests.server.conftest import DOCS, running

    for name, text in DOCS.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    store = DocumentStore(FolderSource(tmp_path, reconcile_interval=None), embedder=LocalEmbedder())
    app = create_app(store, limits=RequestLimits(max_query_chars=2_000_000), max_request_bytes=3_000_000)
    with store, running(app) as url:
        assert store.wait_until_fresh(120)
        session = requests.Session()

        def timed(query: str) -> float:
            started = time.perf_counter()
            response = session.post(url + "/v1/retrieve", json={"query": query, "k": 2}, timeout=120)
            assert response.status_code == 200 and response.json(), response.text[:200]
            return time.perf_counter() - started

        short = statistics.median(timed("who lights the harbor lantern?") for _ in range(7))
        huge = "The keeper lights the harbor lantern at dusk. " * 22_000  # ~1 MB
        with ThreadPoolExecutor(1) as pool:
            running_huge = pool.submit(timed, huge)
            others = [timed("where does the falcon nest?") for _ in range(3)]
            took = running_huge.result()
    # before the cut, a query this long took 30-45 s of CPU and held every other query behind it; the
    # bounds below are loose because the machine is shared, not because the costs are close to them
    assert took < max(10 * short, 3.0), (took, short)
    assert max(others) < short + 3.0, (others, short)


def test_healthz_is_answered_before_the_router_while_the_engine_runs() -> None:
    import asyncio

    from ragflow.server.middleware import HealthCheck

    failure: list[BaseException] = []
    reached: list[str] = []

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        reached.append(scope["path"])
        await send({"type": "http.response.start", "status": 503, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    class _App:
        router = SimpleNamespace(routes=())

    check = HealthCheck(inner, engine_failure=lambda: failure[0] if failure else None)

    def get(path: str, method: str = "GET") -> tuple[int, bytes]:
        sent: list[dict[str, Any]] = []

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        scope = {"type": "http", "path": path, "method": method, "app": _App()}
        asyncio.run(check(scope, None, send))  # type: ignore[arg-type]
        return sent[0]["status"], sent[1]["body"]

    assert get("/healthz") == (200, b'{"status":"ok"}') and reached == []
    assert (
        get("/readyz")[0] == 503 and get("/healthz", "POST")[0] == 503 and reached == ["/readyz", "/healthz"]
    )
    failure.append(RuntimeError("stopped"))  # a stopped engine: the route answers, with why
    assert get("/healthz")[0] == 503 and reached[-1] == "/healthz"


def test_healthz_answered_early_is_still_counted_by_route(serve_app: Callable[..., Served]) -> None:
    served = serve_app(api_key=KEY)
    for _ in range(3):
        response = requests.get(served.url + "/healthz", timeout=10)
        assert response.status_code == 200 and response.json() == {"status": "ok"}
    metrics = requests.get(served.url + "/metrics", headers={"X-API-Key": KEY}, timeout=10).text
    counted = [line for line in metrics.splitlines() if 'route="/healthz"' in line and "_count" in line]
    assert counted and float(counted[0].rsplit(" ", 1)[1]) >= 3, counted


def test_the_role_of_a_path_is_remembered_only_for_routes_without_parameters(
    serve_app: Callable[..., Served],
) -> None:
    from ragflow.server.middleware import Authenticate

    served = serve_app(api_key=KEY)
    headers = {"X-API-Key": KEY}
    assert (
        requests.post(
            served.url + "/v1/retrieve", json={"query": "x", "k": 1}, headers=headers, timeout=10
        ).status_code
        == 200
    )
    for i in range(20):  # unknown paths and parametrised ones: looked up each time, never remembered
        assert requests.get(f"{served.url}/v1/nothing-{i}", headers=headers, timeout=10).status_code == 404
        requests.delete(f"{served.url}/v1/documents/gone-{i}.txt", headers=headers, timeout=10)
    layer: Any = served.app.middleware_stack
    while not isinstance(layer, Authenticate):
        layer = layer.app
    assert set(layer._roles) == {("POST", "/v1/retrieve")}, layer._roles
    # the remembered role is the one the route table gives
    assert requests.get(served.url + "/metrics", headers=headers, timeout=10).status_code == 200
    assert ("GET", "/metrics") in layer._roles
