"""Scoped keys through a real server: a scoped key never receives a chunk, citation, path, document count or
error from outside its scope through any route, whatever filter it sends (hypothesis); a client filter
narrows a scope and cannot widen it; a scoped write key uploads and deletes only inside its scope, and every
upload and delete lands in the audit log."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ragflow.server.audit import AuditLog
from ragflow.server.auth import ApiKey, Role, key_digest
from ragflow.server.scopes import Scope
from tests.server.conftest import Served, serving

# The routes do not AND the scope in yet: ragflow/server/routes.py was being changed by another engineer
# (GET /v1/sources) and is edited only after that lands. strict: this module fails once they do, so the
# markers are removed with the route change (issue 21).

TEAMS = ("support", "hr", "sales")
WORDS = ("lantern", "falcon", "meadow", "orbit", "quarry", "harbor", "copper", "violet")
ADMIN = "admin-key-for-scope-tests-0"
SCOPES = {
    "support-glob": Scope("**/teams/support/**", None),
    "hr-meta": Scope(None, "team == 'hr'"),
    "sales-both": Scope("*.md", "team == 'sales'"),
    "writer-support": Scope("**/teams/support/**", None),
}
SECRETS = {name: f"{name}-secret-0123456789" for name in SCOPES}
KEYS = [
    ApiKey(name, Role.WRITE if name.startswith("writer") else Role.READ, key_digest(SECRETS[name]), scope)
    for name, scope in SCOPES.items()
] + [ApiKey("admin", Role.ADMIN, key_digest(ADMIN))]


def corpus() -> dict[str, str]:
    """Documents in every team's folder (and one outside all), a broken one per team for /v1/errors."""
    files = {}
    for t, team in enumerate(TEAMS):
        for i in range(3):
            words = " ".join(WORDS[(t + i + j) % len(WORDS)] for j in range(6))
            files[f"teams/{team}/doc{i}.{'md' if i % 2 == 0 else 'txt'}"] = f"{team} {words}.\n"
        files[f"teams/{team}/broken.pdf"] = "%PDF-1.4 not really a pdf"
    files["shared/readme.md"] = "lantern falcon meadow for everyone.\n"
    return files


@pytest.fixture(scope="module")
def scoped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Served, Path]]:
    root = tmp_path_factory.mktemp("scoped")
    audit = root / "audit" / "audit.jsonl"
    (root / "docs").mkdir()
    log = AuditLog(audit, max_bytes=2048, backups=2)
    options: dict[str, Any] = {"api_keys": KEYS, "audit_log": log, "max_auth_failures": 10_000}
    folder = {"metadata_from_paths": {"teams/{team}/**": {"team": "{team}"}}}
    with serving(root / "docs", corpus(), folder_options=folder, **options) as served:
        yield served, audit
    log.close()


def headers(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {SECRETS[name]}"}


def team_of(path: str) -> str | None:
    parts = path.split("/")
    return parts[parts.index("teams") + 1] if "teams" in parts else None


def inside(name: str, metadata: dict[str, Any]) -> bool:
    return SCOPES[name].allows(metadata)


def everything(
    served: Served, name: str, query: str, client_filter: str | None, glob: str | None
) -> dict[str, Any]:
    """What key ``name`` gets from every route that returns document content or metadata."""
    h, url = headers(name), served.url
    filters = {"metadata_filter": client_filter, "filepath_globpattern": glob}
    answer = {
        "prompt": query,
        "filters": client_filter,
        "filepath_globpattern": glob,
        "return_context_docs": True,
    }
    chat = {"messages": [{"role": "user", "content": query}], **filters}
    got = {
        "retrieve": requests.post(url + "/v1/retrieve", json={"query": query, "k": 20, **filters}, headers=h),
        "inputs": requests.post(url + "/v1/inputs", json={**filters, "return_status": True}, headers=h),
        "answer": requests.post(url + "/v2/answer", json=answer, headers=h),
        "chat": requests.post(url + "/v1/chat/completions", json=chat, headers=h),
        "statistics": requests.get(url + "/v1/statistics", headers=h),
        "errors": requests.get(url + "/v1/errors", headers=h),
    }
    return {route: response.json() for route, response in got.items() if response.status_code == 200}


# Filters a client might send to reach outside its scope, and ordinary ones.
CLIENT_FILTERS = st.sampled_from(
    [
        None,
        "team == 'hr'",
        "team == 'support' || team == 'hr'",
        "`true`",
        "!(team == 'support')",
        "contains(path, 'teams')",
        "globmatch('**', path)",
        "team != 'nobody') || (`true`",
        "`true`) || (`true`",
    ]
)
GLOBS = st.sampled_from([None, "**", "*.md", "**/hr/**", "/**"])


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    name=st.sampled_from(sorted(SCOPES)),
    query=st.sampled_from(WORDS),
    client_filter=CLIENT_FILTERS,
    glob=GLOBS,
)
def test_a_scoped_key_never_receives_anything_from_outside_its_scope(
    scoped: tuple[Served, Path], name: str, query: str, client_filter: str | None, glob: str | None
) -> None:
    served, _ = scoped
    metadata = {status.doc_id: status.metadata for status in served.store.documents()}
    paths_inside = {m["path"] for m in metadata.values() if inside(name, m)}
    got = everything(served, name, query, client_filter, glob)
    for hit in got.get("retrieve", []):
        assert inside(name, hit["metadata"]), hit
    for entry in got.get("inputs", []):
        assert inside(name, entry), entry
    for route in ("answer", "chat"):
        for citation in got.get(route, {}).get("citations", []):
            assert citation["path"] in paths_inside, (route, citation)
    for hit in got.get("answer", {}).get("context_docs", []):
        assert inside(name, hit["metadata"])
    if "statistics" in got:
        indexed = [s for s in served.store.documents() if s.status == "INDEXED" and inside(name, s.metadata)]
        assert got["statistics"]["file_count"] == len(indexed)
    for error in got.get("errors", []):
        assert error["doc_id"] in metadata and inside(name, metadata[error["doc_id"]]), error


def test_the_scope_is_not_empty_and_a_client_filter_narrows_it(scoped: tuple[Served, Path]) -> None:
    served, _ = scoped
    all_support = everything(served, "support-glob", "lantern", None, None)
    assert {team_of(e["path"]) for e in all_support["inputs"]} == {"support"}
    assert all_support["statistics"]["file_count"] == 3
    assert {e["doc_id"] for e in all_support["errors"]} == {"teams/support/broken.pdf"}
    only_md = everything(served, "support-glob", "lantern", None, "*.md")
    assert {e["path"].rsplit(".", 1)[1] for e in only_md["inputs"]} == {"md"}
    nothing = everything(served, "support-glob", "lantern", "team == 'nobody'", None)
    assert nothing["inputs"] == [] and nothing["retrieve"] == []


def test_a_filter_that_tries_to_escape_its_parentheses_is_a_400(scoped: tuple[Served, Path]) -> None:
    served, _ = scoped
    body: dict[str, Any] = {"query": "lantern", "k": 5, "metadata_filter": "`true`) || (`true`"}
    response = requests.post(served.url + "/v1/retrieve", json=body, headers=headers("hr-meta"), timeout=10)
    assert response.status_code == 400 and response.json()["error"]["type"] == "invalid_filter"


def test_a_scoped_writer_uploads_and_deletes_only_inside_its_scope(scoped: tuple[Served, Path]) -> None:
    served, audit = scoped
    h, url = headers("writer-support"), served.url
    inside_doc = {"name": "teams/support/new.md", "content": "lantern new"}
    assert (
        requests.post(url + "/v1/documents?wait=10", json=inside_doc, headers=h, timeout=30).status_code
        == 201
    )
    outside_doc = {"name": "teams/hr/new.md", "content": "falcon new"}
    refused = requests.post(url + "/v1/documents", json=outside_doc, headers=h, timeout=30)
    assert refused.status_code == 403 and refused.json()["error"]["type"] == "permission_error"
    admin = {"X-API-Key": ADMIN}
    assert (
        requests.post(url + "/v1/documents?wait=10", json=outside_doc, headers=admin, timeout=30).status_code
        == 201
    )
    # replacing or deleting the other team's document is refused, and looks like an absent one
    assert requests.post(url + "/v1/documents", json=outside_doc, headers=h, timeout=30).status_code == 403
    assert requests.delete(url + "/v1/documents/teams/hr/new.md", headers=h, timeout=30).status_code == 404
    assert (
        requests.delete(url + "/v1/documents/teams/support/new.md", headers=h, timeout=30).status_code == 200
    )
    assert (
        requests.delete(url + "/v1/documents/teams/hr/new.md", headers=admin, timeout=30).status_code == 200
    )
    lines = [
        json.loads(line) for file in sorted(audit.parent.iterdir()) for line in file.read_text().splitlines()
    ]
    seen = {(e["action"], e["key"], e["document"], e["status"]) for e in lines}
    assert ("upload", "writer-support", "upload://teams/support/new.md", 201) in seen
    assert ("upload", "writer-support", "upload://teams/hr/new.md", 403) in seen
    assert ("delete", "writer-support", "upload://teams/hr/new.md", 404) in seen
    assert ("delete", "admin", "upload://teams/hr/new.md", 200) in seen
    assert all(set(e) >= {"time", "action", "key", "client", "document", "status"} for e in lines)
    assert not any(secret in audit.read_text() for secret in [*SECRETS.values(), ADMIN])
