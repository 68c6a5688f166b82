"""Scoped keys through a real server: a scoped key never receives a chunk, citation, path, document count or
error from outside its scope through any route, whatever filter it sends (hypothesis); a client filter
narrows a scope and cannot widen it; a scoped write key uploads and deletes only inside its scope, and every
upload and delete lands in the audit log."""

from __future__ import annotations

import json
import logging
import tempfile
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
    files: dict[str, str] = {}
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
    served: Served, h: dict[str, str], query: str, client_filter: str | None, glob: str | None
) -> dict[str, Any]:
    """What the key in headers ``h`` gets from every route that returns document content or metadata."""
    url = served.url
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
    got = everything(served, headers(name), query, client_filter, glob)
    assert_all_inside(served, SCOPES[name], got)


def assert_all_inside(served: Served, scope: Scope, got: dict[str, Any]) -> None:
    """Nothing in ``got`` (``everything``'s answers) comes from a document outside ``scope``."""
    metadata = {status.doc_id: status.metadata for status in served.store.documents()}
    paths_inside = {m["path"] for m in metadata.values() if scope.allows(m)}
    for hit in got.get("retrieve", []):
        assert scope.allows(hit["metadata"]), hit
    for entry in got.get("inputs", []):
        assert scope.allows(entry), entry
    for route in ("answer", "chat"):
        for citation in got.get(route, {}).get("citations", []):
            assert citation["path"] in paths_inside, (route, citation)
    for hit in got.get("answer", {}).get("context_docs", []):
        assert scope.allows(hit["metadata"])
    if "statistics" in got:
        indexed = [s for s in served.store.documents() if s.status == "INDEXED" and scope.allows(s.metadata)]
        assert got["statistics"]["file_count"] == len(indexed)
    for error in got.get("errors", []):
        assert error["doc_id"] in metadata and scope.allows(metadata[error["doc_id"]]), error


# Random deployments: documents in random folders, a team from their folder or, overriding it, from their
# name (so a folder and a team can disagree), and a random scoped key over them.
FOLDERS = ("teams/support", "teams/hr", "teams/sales", "teams/hr/archive", "shared", "shared/hr")
TAGGED = {"teams/{team}/**": {"team": "{team}"}, "**/x-{team}.*": {"team": "{team}"}}


@st.composite
def deployments(draw: st.DrawFn) -> dict[str, str]:
    entries = draw(
        st.lists(
            st.tuples(
                st.sampled_from(FOLDERS),
                st.sampled_from((None, *TEAMS)),
                st.lists(st.sampled_from(WORDS), min_size=3, max_size=6),
                st.booleans(),
            ),
            min_size=1,
            max_size=10,
        )
    )
    files: dict[str, str] = {}
    for i, (folder, tag, words, broken) in enumerate(entries):
        stem = f"x-{tag}" if tag is not None else f"doc{i}"
        name, text = (
            (f"{folder}/{stem}.pdf", "%PDF-1.4 broken")
            if broken
            else (f"{folder}/{stem}.md", " ".join(words))
        )
        files.setdefault(name, text)
    return files


RANDOM_SCOPES = st.one_of(
    st.builds(lambda t: Scope(f"**/teams/{t}/**", None), st.sampled_from(TEAMS)),
    st.builds(lambda f: Scope(f"**/{f}/**", None), st.sampled_from(("hr", "archive", "shared"))),
    st.builds(lambda t: Scope(None, f"team == '{t}'"), st.sampled_from(TEAMS)),
    st.builds(
        lambda t, u: Scope(None, f"team == '{t}' || team == '{u}'"),
        st.sampled_from(TEAMS),
        st.sampled_from(TEAMS),
    ),
    st.builds(
        lambda f, t: Scope(f"**/{f}/**", f"team == '{t}'"),
        st.sampled_from(("teams", "shared", "hr")),
        st.sampled_from(TEAMS),
    ),
)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    files=deployments(),
    scope=RANDOM_SCOPES,
    query=st.sampled_from(WORDS),
    client_filter=CLIENT_FILTERS,
    glob=GLOBS,
)
def test_random_documents_and_random_scoped_keys_never_leak(
    files: dict[str, str], scope: Scope, query: str, client_filter: str | None, glob: str | None
) -> None:
    key = ApiKey("random", Role.READ, key_digest(SECRETS["hr-meta"]), scope)
    with tempfile.TemporaryDirectory() as root:
        folder = {"metadata_from_paths": TAGGED}
        with serving(Path(root), files, folder_options=folder, api_keys=[key]) as served:
            got = everything(served, headers("hr-meta"), query, client_filter, glob)
            assert_all_inside(served, scope, got)
            if client_filter is None:  # every route answered, so the checks above saw something
                assert got.keys() == {"retrieve", "inputs", "answer", "chat", "statistics", "errors"}


def test_the_scope_is_not_empty_and_a_client_filter_narrows_it(scoped: tuple[Served, Path]) -> None:
    served, _ = scoped
    all_support = everything(served, headers("support-glob"), "lantern", None, None)
    assert {team_of(e["path"]) for e in all_support["inputs"]} == {"support"}
    assert all_support["statistics"]["file_count"] == 3
    assert {e["doc_id"] for e in all_support["errors"]} == {"teams/support/broken.pdf"}
    only_md = everything(served, headers("support-glob"), "lantern", None, "*.md")
    assert {e["path"].rsplit(".", 1)[1] for e in only_md["inputs"]} == {"md"}
    nothing = everything(served, headers("support-glob"), "lantern", "team == 'nobody'", None)
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


def test_refusals_outside_the_scope_are_counted_and_logged_without_the_secret(
    scoped: tuple[Served, Path], caplog: pytest.LogCaptureFixture
) -> None:
    served, _ = scoped

    def out_of_scope() -> float:
        text = requests.get(served.url + "/metrics", headers={"X-API-Key": ADMIN}, timeout=10).text
        line = next((x for x in text.splitlines() if 'reason="out_of_scope"' in x), " 0")
        return float(line.rsplit(" ", 1)[1])

    before = out_of_scope()
    h = headers("writer-support")
    with caplog.at_level(logging.INFO, logger="ragflow.server.auth"):
        outside = {"name": "teams/hr/refused.md", "content": "falcon"}
        assert (
            requests.post(served.url + "/v1/documents", json=outside, headers=h, timeout=30).status_code
            == 403
        )
        assert (
            requests.delete(served.url + "/v1/documents/teams/hr/q.md", headers=h, timeout=30).status_code
            == 404
        )
    assert out_of_scope() - before == 2
    assert (
        "key 'writer-support' refused POST /v1/documents from 127.0.0.1: 'upload://teams/hr/refused.md'"
        in caplog.text
    )
    assert "refused DELETE /v1/documents/teams/hr/q.md" in caplog.text
    assert not any(secret in caplog.text for secret in [*SECRETS.values(), ADMIN])
