"""Every route × every caller (no key, a wrong key, a read, write and admin key, the single legacy key)
against a real server: 200 where the role table allows, 401 without a known key, 403 naming the role
needed. A route the table does not name fails here until someone gives it a role."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from starlette.routing import Route

from ragflow.server.auth import ApiKey, Role, key_digest
from ragflow.server.roles import OPEN, ROUTE_ROLES
from ragflow.server.state import OPEN_PATHS
from tests.server.conftest import Served, serving

SECRETS = {
    "reader": "read-secret-0123456789",
    "writer": "write-secret-0123456789",
    "admin": "admin-secret-0123456789",
}
LEGACY = "legacy-single-key-0123"
KEYS = [
    ApiKey("reader", Role.READ, key_digest(SECRETS["reader"])),
    ApiKey("writer", Role.WRITE, key_digest(SECRETS["writer"])),
    ApiKey("admin", Role.ADMIN, key_digest(SECRETS["admin"])),
]
CALLERS: dict[str, tuple[dict[str, str], Role | None]] = {
    "no key": ({}, None),
    "wrong key": ({"Authorization": "Bearer not-a-key-0123456789"}, None),
    "reader": ({"Authorization": f"Bearer {SECRETS['reader']}"}, Role.READ),
    "writer": ({"X-API-Key": SECRETS["writer"]}, Role.WRITE),
    "admin": ({"Authorization": f"Bearer {SECRETS['admin']}"}, Role.ADMIN),
    "legacy api_key": ({"X-API-Key": LEGACY}, Role.ADMIN),
}
INPUTS = ("/v1/inputs", "/v2/list_documents", "/v1/pw_list_documents")
QUESTION = {"prompt": "Who lights the lantern?", "k": 2}
# One request per route that the route answers 200 (or 201/202) when the caller may call it.
SAMPLES: dict[tuple[str, str], dict[str, Any]] = {
    ("GET", "/v1/retrieve"): {"params": {"query": "lantern", "k": 1}},
    ("POST", "/v1/retrieve"): {"json": {"query": "lantern", "k": 1}},
    ("GET", "/v1/statistics"): {},
    ("POST", "/v1/statistics"): {"json": {}},
    **{("GET", path): {} for path in ("/v1/inputs", "/v2/list_documents", "/v1/pw_list_documents")},
    **{
        ("POST", path): {"json": {}} for path in ("/v1/inputs", "/v2/list_documents", "/v1/pw_list_documents")
    },
    ("POST", "/v2/answer"): {"json": QUESTION},
    ("POST", "/v1/pw_ai_answer"): {"json": QUESTION},
    ("POST", "/v2/summarize"): {"json": {"text_list": ["The lantern is lit at dusk."]}},
    ("POST", "/v1/pw_ai_summary"): {"json": {"text_list": ["The lantern is lit at dusk."]}},
    ("POST", "/v1/chat/completions"): {"json": {"messages": [{"role": "user", "content": "lantern?"}]}},
    ("GET", "/v1/models"): {},
    ("GET", "/v1/errors"): {},
    ("GET", "/v1/sources"): {},
    ("GET", "/v1/migration"): {},
    # a store without generations has no migration to control: an allowed caller is told so (409)
    ("POST", "/v1/migration/abort"): {"allowed": 409},
    ("POST", "/v1/migration/rollback"): {"allowed": 409},
    ("POST", "/v1/migration/start"): {"allowed": 409},
    ("GET", "/_schema"): {},
    ("GET", "/openapi.json"): {},
    ("GET", "/docs"): {},
    ("GET", "/docs/oauth2-redirect"): {},
    ("GET", "/redoc"): {},
    ("POST", "/v1/documents"): {"json": {"name": "roles/new.md", "content": "# New"}},
    ("DELETE", "/v1/documents/{doc_id:path}"): {"path": "/v1/documents/roles/{caller}.md"},
    ("GET", "/metrics"): {},
    ("GET", "/healthz"): {},
    ("GET", "/readyz"): {},
    ("GET", "/"): {},
    ("GET", "/v1/status"): {},
    ("GET", "/v1/passage"): {"params": {"doc_id": "guides/lantern.md", "start": 0, "end": 97}},
    ("POST", "/mcp"): {"json": {"jsonrpc": "2.0", "id": 1, "method": "ping"}},
}


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    options: dict[str, Any] = {
        "api_key": LEGACY,
        "api_keys": KEYS,
        "max_auth_failures": 10_000,
    }  # 429s: see test_abuse
    with serving(tmp_path_factory.mktemp("docs"), **options) as served:
        yield served


def app_routes(served: Served) -> set[tuple[str, str]]:
    return {
        (method, route.path)
        for route in served.app.routes
        if isinstance(route, Route)
        for method in (route.methods or set()) - {"HEAD"}
    }


def test_every_route_has_a_role_and_every_role_a_route(guarded: Served) -> None:
    routes = app_routes(guarded)
    assert routes - set(ROUTE_ROLES) == set(), "give these routes a role in ragflow/server/roles.py"
    assert set(ROUTE_ROLES) - routes == set(), "these roles name no route"
    assert routes == set(SAMPLES), "give every route a sample request in this test"
    assert {path for (_, path), role in ROUTE_ROLES.items() if role is OPEN} == set(OPEN_PATHS)


@pytest.mark.parametrize("route", sorted(SAMPLES), ids=" ".join)
def test_each_caller_gets_what_the_role_table_says(guarded: Served, route: tuple[str, str]) -> None:
    method, template = route
    needed = ROUTE_ROLES[route]
    for caller, (headers, role) in CALLERS.items():
        sample = dict(SAMPLES[route])
        path = sample.pop("path", template).format(caller=caller.replace(" ", "-"))
        allowed = {200, 201, 202, sample.pop("allowed", 200)}
        if method == "DELETE":
            guarded.uploads.put(path.removeprefix("/v1/documents/"), b"# to delete")
        response = requests.request(method, guarded.url + path, headers=headers, timeout=30, **sample)
        if needed is OPEN or (role is not None and role >= needed):
            assert response.status_code in allowed, (caller, response.text)
        elif role is None:
            assert response.status_code == 401, caller
            assert response.headers["WWW-Authenticate"] == "Bearer"
            assert response.json()["error"]["type"] == "authentication_error"
        else:
            assert response.status_code == 403, caller
            error = response.json()["error"]
            assert error["type"] == "permission_error" and f"role {needed.label!r}" in error["message"]


def test_an_unknown_route_is_401_without_a_key_and_404_with_any(guarded: Served) -> None:
    assert requests.get(guarded.url + "/nope", timeout=10).status_code == 401
    for headers, _ in (CALLERS["reader"], CALLERS["admin"]):
        assert requests.get(guarded.url + "/nope", headers=headers, timeout=10).status_code == 404
    wrong_method = requests.delete(guarded.url + "/v1/retrieve", headers=CALLERS["reader"][0], timeout=10)
    assert wrong_method.status_code == 405


def test_refusals_are_counted_by_reason_and_logged_without_the_secret(
    guarded: Served, caplog: pytest.LogCaptureFixture
) -> None:
    def refusals() -> dict[str, float]:
        text = requests.get(guarded.url + "/metrics", headers=CALLERS["admin"][0], timeout=10).text
        counts = {}
        for line in text.splitlines():
            if line.startswith("ragflow_auth_refusals_total{"):
                reason = line.split('reason="')[1].split('"')[0]
                counts[reason] = float(line.rsplit(" ", 1)[1])
        return counts

    before = refusals()
    wrong = "wrong-secret-abcdefghijklmnop"
    with caplog.at_level(logging.INFO, logger="ragflow.server.auth"):
        requests.get(guarded.url + "/v1/statistics", headers={"X-API-Key": wrong}, timeout=10)
        requests.get(guarded.url + "/metrics", headers=CALLERS["reader"][0], timeout=10)
        requests.post(guarded.url + "/v1/documents", json={}, headers=CALLERS["reader"][0], timeout=10)
    after = refusals()
    assert after.get("unknown_key", 0) - before.get("unknown_key", 0) == 1
    assert after.get("wrong_role", 0) - before.get("wrong_role", 0) == 2
    logged = caplog.text
    assert "'reader' (role read) refused GET /metrics" in logged
    for secret in [wrong, *SECRETS.values()]:
        assert secret not in logged


def test_the_openapi_schema_declares_the_keys(guarded: Served) -> None:
    schema = requests.get(guarded.url + "/openapi.json", headers=CALLERS["reader"][0], timeout=10).json()
    assert "security" in schema["paths"]["/v1/retrieve"]["post"]
    assert "security" not in schema["paths"]["/healthz"]["get"]


def test_without_keys_the_server_stays_open(tmp_path: Path) -> None:
    with serving(tmp_path, {"a.md": "The lantern."}) as served:
        assert requests.get(served.url + "/metrics", timeout=10).status_code == 200
        assert requests.get(served.url + "/v1/statistics", timeout=10).json()["file_count"] == 1
