"""The Pathway-compatible document endpoints over HTTP: retrieve, statistics, inputs (and aliases), errors,
health, readiness, metrics and the schema, with every way a request can be malformed."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
import requests
import yaml

from tests.server.conftest import Served


def post(served: Served, path: str, body: Any = None, **kwargs: Any) -> requests.Response:
    return requests.post(served.url + path, json=body, timeout=10, **kwargs)


def error_of(response: requests.Response) -> str:
    body = response.json()
    assert body["error"]["message"] == body["detail"]
    assert body["error"]["type"]
    return str(body["error"]["message"])


def test_retrieve_returns_the_k_closest_chunks_sorted_by_cosine_distance(served: Served) -> None:
    response = post(served, "/v1/retrieve", {"query": "harbor lantern keeper", "k": 3})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    hits = response.json()
    assert isinstance(hits, list) and len(hits) == 3
    assert set(hits[0]) == {"text", "metadata", "dist"}
    assert "harbor lantern" in hits[0]["text"]
    assert hits[0]["metadata"]["path"].endswith("guides/lantern.md")
    assert {"start", "end", "modified_at", "seen_at"} <= hits[0]["metadata"].keys()
    distances = [hit["dist"] for hit in hits]
    assert distances == sorted(distances) and all(0 <= d <= 2 for d in distances)


def test_retrieve_answers_get_with_the_query_string_and_tolerates_a_trailing_slash(served: Served) -> None:
    by_post = post(served, "/v1/retrieve", {"query": "falcon canyon", "k": 2}).json()
    by_get = requests.get(
        served.url + "/v1/retrieve/", params={"query": "falcon canyon", "k": "2"}, timeout=10
    )
    assert by_get.status_code == 200
    assert by_get.json() == by_post
    assert post(served, "/v1/retrieve/", {"query": "falcon canyon", "k": 2}).json() == by_post


def test_body_fields_override_the_query_string(served: Served) -> None:
    response = requests.post(
        served.url + "/v1/retrieve?k=5&query=meadow", json={"query": "comet orbit", "k": 1}, timeout=10
    )
    assert [hit["metadata"]["doc_id"] for hit in response.json()] == ["notes/orbit.txt"]
    merged = requests.post(served.url + "/v1/retrieve?k=1", json={"query": "comet orbit"}, timeout=10)
    assert merged.status_code == 200 and len(merged.json()) == 1


def test_explicit_nulls_mean_no_filter(served: Served) -> None:
    body = {"query": "river", "k": 5, "metadata_filter": None, "filepath_globpattern": None}
    response = post(served, "/v1/retrieve", body)
    assert response.status_code == 200 and len(response.json()) == 5
    inputs = post(
        served, "/v1/inputs", {"metadata_filter": None, "filepath_globpattern": None, "return_status": None}
    )
    assert inputs.status_code == 200 and len(inputs.json()) == len(served.store.documents())


@pytest.mark.parametrize(
    ("body", "field"),
    [({"k": 2}, "query"), ({"query": "x"}, "k"), ({"query": None, "k": 2}, "query"), ({}, "query")],
)
def test_a_missing_required_field_is_a_400_naming_it(
    served: Served, body: dict[str, Any], field: str
) -> None:
    response = post(served, "/v1/retrieve", body)
    assert response.status_code == 400
    assert f"'{field}'" in error_of(response)
    assert response.json()["error"]["param"] == field


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (b'{"query": "x", "k": "many"}', "'k'"),
        (b'{"query": ["x"], "k": 1}', "'query'"),
        (b'{"query": "x", "k": -1}', "'k'"),
    ],
)
def test_malformed_bodies_are_400s_saying_what_is_wrong(served: Served, raw: bytes, expected: str) -> None:
    response = requests.post(
        served.url + "/v1/retrieve", data=raw, headers={"Content-Type": "application/json"}, timeout=10
    )
    assert response.status_code == 400
    assert expected in error_of(response)


def test_k_above_max_k_is_a_400(served: Served) -> None:
    response = post(served, "/v1/retrieve", {"query": "x", "k": 101})
    assert response.status_code == 400
    assert "at most 100" in error_of(response) and response.json()["error"]["param"] == "k"
    assert post(served, "/v1/retrieve", {"query": "x", "k": 0}).json() == []


def test_filters_select_documents_inside_the_search(served: Served) -> None:
    hits = post(
        served, "/v1/retrieve", {"query": "the", "k": 10, "filepath_globpattern": "**/guides/*.md"}
    ).json()
    assert {hit["metadata"]["doc_id"] for hit in hits} == {"guides/lantern.md", "guides/falcon.md"}
    hits = post(
        served, "/v1/retrieve", {"query": "the", "k": 10, "metadata_filter": "contains(path, `notes`)"}
    ).json()
    assert {hit["metadata"]["doc_id"] for hit in hits} == {"notes/meadow.txt", "notes/orbit.txt"}
    hits = post(
        served,
        "/v1/retrieve",
        {
            "query": "the",
            "k": 10,
            "metadata_filter": "globmatch('**/*.txt', path)",
            "filepath_globpattern": "*orbit*",
        },
    ).json()
    assert [hit["metadata"]["doc_id"] for hit in hits] == ["notes/orbit.txt"]


@pytest.mark.parametrize(
    "pattern",
    [
        "x') || true || ('",
        "*.md', path) || globmatch('*",
        "` || `true",
        '*" || true || "',
        "**/*.nothing') || contains(path, '",
        "**') || globmatch('**",
    ],
)
def test_a_glob_pattern_cannot_inject_filter_syntax(served: Served, pattern: str) -> None:
    for path, extra in (("/v1/retrieve", {"query": "the", "k": 10}), ("/v1/inputs", {})):
        response = post(served, path, {**extra, "filepath_globpattern": pattern})
        if response.status_code == 400:  # not a valid glob: refused as such, naming it
            assert response.json()["error"]["type"] == "invalid_filter" and pattern in error_of(response)
        else:
            assert response.status_code == 200
            assert response.json() == [], f"{pattern!r} matched documents: it was spliced into the filter"


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({"metadata_filter": "path =="}, "path =="),
        ({"metadata_filter": "nope(path)"}, "nope"),
        ({"filepath_globpattern": "a/**b"}, "a/**b"),
        ({"filepath_globpattern": "[abc"}, "[abc"),
    ],
)
def test_an_invalid_filter_is_a_400_naming_the_expression(
    served: Served, body: dict[str, str], named: str
) -> None:
    for path, extra in (("/v1/retrieve", {"query": "x", "k": 1}), ("/v1/inputs", {})):
        response = post(served, path, {**extra, **body})
        assert response.status_code == 400, path
        assert response.json()["error"]["type"] == "invalid_filter"
        assert named in error_of(response)


def test_statistics_count_the_indexed_documents(served: Served) -> None:
    stats = post(served, "/v1/statistics", {}).json()
    assert set(stats) == {"file_count", "last_modified", "last_indexed"}
    assert stats["file_count"] == 5
    assert isinstance(stats["last_modified"], int) and isinstance(stats["last_indexed"], int)
    assert requests.get(served.url + "/v1/statistics", timeout=10).json() == stats


@pytest.mark.parametrize("path", ["/v1/inputs", "/v2/list_documents", "/v1/pw_list_documents"])
def test_inputs_and_its_aliases_list_document_metadata_with_status(served: Served, path: str) -> None:
    listed = post(served, path, {"return_status": True}).json()
    assert sorted(d["doc_id"] for d in listed) == sorted(
        ["guides/lantern.md", "guides/falcon.md", "notes/meadow.txt", "notes/orbit.txt", "reports/q1.html"]
    )
    assert all(d["_indexing_status"] == "INDEXED" for d in listed)
    plain = post(served, path, {"filepath_globpattern": "*.txt"}).json()
    assert sorted(d["doc_id"] for d in plain) == ["notes/meadow.txt", "notes/orbit.txt"]
    assert all("_indexing_status" not in d for d in plain)
    by_get = requests.get(
        served.url + path, params={"return_status": "true", "metadata_filter": "size > `90`"}
    )
    assert by_get.status_code == 200
    assert {d["doc_id"] for d in by_get.json()} == {"guides/lantern.md", "reports/q1.html"}


def test_documents_that_fail_show_in_errors_and_inputs(serve_app: Any) -> None:
    served = serve_app({"good.md": "Fine text about the harbor.", "empty.txt": ""})
    errors = requests.get(served.url + "/v1/errors", timeout=10).json()
    assert [e["doc_id"] for e in errors] == ["empty.txt"]
    assert set(errors[0]) == {"doc_id", "stage", "message"} and "no text" in errors[0]["message"]
    statuses = {d["doc_id"]: d for d in post(served, "/v1/inputs", {"return_status": True}).json()}
    assert statuses["good.md"]["_indexing_status"] == "INDEXED"
    assert statuses["empty.txt"]["_indexing_status"] == "ERROR"
    assert "no text" in statuses["empty.txt"]["_error"]


def test_health_readiness_and_metrics(served: Served) -> None:
    assert requests.get(served.url + "/healthz", timeout=10).json() == {"status": "ok"}
    assert requests.get(served.url + "/readyz", timeout=10).json() == {"status": "ready"}
    post(served, "/v1/retrieve", {"query": "x", "k": 1})
    text = requests.get(served.url + "/metrics", timeout=10).text
    samples = {
        line.split(" ")[0]: float(line.split(" ")[1]) for line in text.splitlines() if line and line[0] != "#"
    }
    assert samples['ragflow_documents{status="INDEXED"}'] == 5
    assert samples["ragflow_chunks"] == served.store.index.count() > 0
    assert samples["ragflow_ready"] == 1 and samples["ragflow_queued_changes"] == 0
    assert samples["ragflow_freshness_seconds_count"] >= 5
    assert samples["ragflow_chunks_embedded"] >= 5 and samples["ragflow_document_errors"] == 0
    assert samples['ragflow_http_requests_total{method="POST",route="/v1/retrieve",status="200"}'] >= 1
    assert "ragflow_epoch_duration_seconds_bucket" in text and "ragflow_embed_rate_chunks_per_second" in text


def test_readiness_waits_for_the_initial_snapshot(tmp_path: Any) -> None:
    from ragflow.connectors.folder import FolderSource
    from ragflow.server import create_app
    from ragflow.store import DocumentStore
    from tests.fakes.hashing_embedder import HashingEmbedder
    from tests.server.conftest import running

    (tmp_path / "a.md").write_text("Some words to index.")
    store = DocumentStore(FolderSource(tmp_path, reconcile_interval=None), embedder=HashingEmbedder())
    with running(create_app(store)) as url:
        response = requests.get(url + "/readyz", timeout=10)
        assert response.status_code == 503
        assert response.json()["error"]["type"] == "not_ready" and "initial indexing" in error_of(response)
        assert requests.get(url + "/healthz", timeout=10).status_code == 200
        store.start()
        try:
            assert store.wait_until_fresh(30)
            assert requests.get(url + "/readyz", timeout=10).status_code == 200
        finally:
            store.stop()


def test_the_openapi_schema_describes_every_endpoint(served: Served) -> None:
    schema = requests.get(served.url + "/openapi.json", timeout=10).json()
    paths = schema["paths"]
    for path in [
        "/v1/retrieve",
        "/v1/statistics",
        "/v1/inputs",
        "/v2/list_documents",
        "/v1/pw_list_documents",
    ]:
        assert {"get", "post"} <= paths[path].keys()
    for path in [
        "/v2/answer",
        "/v1/pw_ai_answer",
        "/v2/summarize",
        "/v1/pw_ai_summary",
        "/v1/chat/completions",
    ]:
        assert "post" in paths[path]
    assert "delete" in paths["/v1/documents/{doc_id}"] and "post" in paths["/v1/documents"]
    retrieve = paths["/v1/retrieve"]["post"]
    assert retrieve["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/RetrieveRequest"
    )
    assert set(schema["components"]["schemas"]["RetrieveRequest"]["required"]) == {"query", "k"}
    assert "400" in retrieve["responses"] and "422" not in retrieve["responses"]
    assert [p["name"] for p in paths["/v1/retrieve"]["get"]["parameters"]][:2] == ["query", "k"]
    pathway = requests.get(served.url + "/_schema", timeout=10)
    assert pathway.json() == schema
    as_yaml = requests.get(served.url + "/_schema", params={"format": "yaml"}, timeout=10)
    assert yaml.safe_load(as_yaml.text) == json.loads(json.dumps(schema))


def test_unknown_routes_and_methods_are_json_errors(served: Served) -> None:
    missing = requests.get(served.url + "/v1/nothing", timeout=10)
    assert missing.status_code == 404 and "/v1/nothing" in error_of(missing)
    wrong = requests.delete(served.url + "/v1/retrieve", timeout=10)
    assert wrong.status_code == 405 and "DELETE" in error_of(wrong)


def test_metrics_report_checkpoints_of_a_state_directory(tmp_path: Any) -> None:
    from ragflow.connectors.folder import FolderSource
    from ragflow.server import create_app
    from ragflow.store import DocumentStore
    from tests.fakes.hashing_embedder import HashingEmbedder
    from tests.server.conftest import running

    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("Some words to index.")
    store = DocumentStore(
        FolderSource(tmp_path / "docs", reconcile_interval=None),
        embedder=HashingEmbedder(),
        state_dir=tmp_path / "state",
        checkpoint_interval=0.05,
    )
    store.start()
    try:
        assert store.wait_until_fresh(30)
        with running(create_app(store)) as url:
            deadline = time.monotonic() + 10
            while True:
                text = requests.get(url + "/metrics", timeout=10).text
                samples = dict(line.rsplit(" ", 1) for line in text.splitlines() if line and line[0] != "#")
                if (
                    float(samples["ragflow_last_checkpoint_timestamp_seconds"]) > 0
                    or time.monotonic() > deadline
                ):
                    break
                time.sleep(0.05)
            assert (
                time.time() - 60 < float(samples["ragflow_last_checkpoint_timestamp_seconds"]) <= time.time()
            )
            assert float(samples["ragflow_checkpoint_failures"]) == 0
            assert float(samples["ragflow_checkpoint_pending_documents"]) == 0
        stats = store.persistence_stats()
        assert stats is not None and stats["checkpoints"] >= 1 and stats["failures"] == 0
    finally:
        store.stop()
