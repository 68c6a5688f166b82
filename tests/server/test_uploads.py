"""Uploading and deleting documents over REST (``ragflow.connectors.upload.UploadSource`` behind
``POST /v1/documents``), and the upload source on its own: snapshots, resuming and persistence."""

from __future__ import annotations

import base64
import json
import threading
from pathlib import Path
from typing import Any

import pytest
import requests

from ragflow.connectors.upload import UploadSource
from ragflow.documents import ChangeKind, DocumentChange
from ragflow.errors import ConfigError
from ragflow.server import create_app
from ragflow.store import DocumentStore
from tests.fakes.hashing_embedder import HashingEmbedder
from tests.server.conftest import Served


def retrieve(served: Served, query: str, k: int = 3, **filters: Any) -> list[dict[str, Any]]:
    response = requests.post(
        served.url + "/v1/retrieve", json={"query": query, "k": k, **filters}, timeout=10
    )
    assert response.status_code == 200, response.text
    hits: list[dict[str, Any]] = response.json()
    return hits


def test_upload_then_retrieve_then_delete(serve_app: Any) -> None:
    served = serve_app()
    response = requests.post(
        served.url + "/v1/documents?wait=10",
        json={
            "name": "team/zebra.md",
            "content": "The zebra eats quinoa at noon.",
            "metadata": {"team": "zoo"},
        },
        timeout=15,
    )
    assert response.status_code == 201, response.text
    uploaded = response.json()
    assert uploaded == {
        "id": "upload://team/zebra.md",
        "name": "team/zebra.md",
        "path": "upload://team/zebra.md",
        "size": 30,
        "status": "INDEXED",
        "error": None,
    }
    hits = retrieve(served, "zebra quinoa", k=1)
    assert hits[0]["text"] == "The zebra eats quinoa at noon."
    assert hits[0]["metadata"]["team"] == "zoo" and hits[0]["metadata"]["path"] == "upload://team/zebra.md"
    assert (
        retrieve(served, "zebra", k=10, metadata_filter="team == 'zoo'")[0]["metadata"]["doc_id"]
        == uploaded["id"]
    )
    assert [
        h["metadata"]["doc_id"] for h in retrieve(served, "zebra", k=10, filepath_globpattern="team/*.md")
    ] == [uploaded["id"]]
    deleted = requests.delete(served.url + "/v1/documents/team/zebra.md?wait=10", timeout=15)
    assert deleted.status_code == 200 and deleted.json() == {
        "id": "upload://team/zebra.md",
        "deleted": True,
        "status": "DELETED",
    }
    assert all("zebra" not in hit["text"] for hit in retrieve(served, "zebra quinoa", k=10))
    again = requests.delete(served.url + "/v1/documents/team/zebra.md", timeout=10)
    assert again.status_code == 404 and "team/zebra.md" in again.json()["error"]["message"]


def test_multipart_upload_replaces_a_document_and_delete_takes_its_id(serve_app: Any) -> None:
    served = serve_app()
    first = requests.post(
        served.url + "/v1/documents",
        params={"wait": "10"},
        files={"file": ("report.txt", b"The orchard yields pears.")},
        data={"metadata": json.dumps({"quarter": 3})},
        timeout=15,
    )
    assert first.status_code == 201 and first.json()["status"] == "INDEXED"
    second = requests.post(
        served.url + "/v1/documents?wait=10",
        files={"file": ("ignored.txt", b"The orchard yields plums now.")},
        data={"name": "report.txt"},
        timeout=15,
    )
    assert second.json()["id"] == first.json()["id"] == "upload://report.txt"
    hits = retrieve(served, "orchard", k=10, filepath_globpattern="*report.txt")
    assert [h["text"] for h in hits] == ["The orchard yields plums now."]
    assert "quarter" not in hits[0]["metadata"]
    encoded = requests.delete(served.url + "/v1/documents/upload%3A%2F%2Freport.txt?wait=10", timeout=15)
    assert encoded.status_code == 200 and encoded.json()["status"] == "DELETED"
    assert retrieve(served, "orchard", k=10, filepath_globpattern="*report.txt") == []


def test_base64_uploads_and_unparseable_documents(serve_app: Any) -> None:
    served = serve_app()
    pdf_like = base64.b64encode(b"%PDF-1.7\n garbage").decode()
    response = requests.post(
        served.url + "/v1/documents?wait=10",
        json={"name": "broken.pdf", "content": pdf_like, "encoding": "base64"},
        timeout=15,
    )
    assert response.status_code == 201
    assert response.json()["status"] == "ERROR" and "broken.pdf" in response.json()["error"]
    errors = requests.get(served.url + "/v1/errors", timeout=10).json()
    assert [e["doc_id"] for e in errors] == ["upload://broken.pdf"]
    queued = requests.post(
        served.url + "/v1/documents", json={"name": "later.md", "content": "Soon indexed."}
    )
    assert queued.status_code == 202 and queued.json()["status"] == "INGESTED"


@pytest.mark.parametrize(
    ("request_args", "expected"),
    [
        ({"json": {"name": "a.md"}}, "'content'"),
        ({"json": {"name": "a.md", "content": "!!", "encoding": "base64"}}, "base64"),
        ({"json": {"name": "../etc/passwd", "content": "x"}}, "invalid document name"),
        ({"json": {"name": "/abs.md", "content": "x"}}, "invalid document name"),
        ({"files": {"other": ("a.txt", b"x")}}, "'file' part"),
        ({"files": {"file": ("a.txt", b"x")}, "data": {"metadata": "[1]"}}, "JSON object"),
        ({"params": {"wait": "soon"}, "json": {"name": "a.md", "content": "x"}}, "wait"),
    ],
)
def test_bad_uploads_are_400s_saying_what_is_wrong(
    served: Served, request_args: dict[str, Any], expected: str
) -> None:
    response = requests.post(served.url + "/v1/documents", timeout=10, **request_args)
    assert response.status_code == 400
    assert expected in response.json()["error"]["message"]


def test_without_uploads_there_is_no_upload_endpoint(tmp_path: Path) -> None:
    uploads = UploadSource()
    store = DocumentStore(uploads, embedder=HashingEmbedder())
    app = create_app(store)
    assert not any(getattr(route, "path", "").startswith("/v1/documents") for route in app.routes)
    with pytest.raises(ConfigError, match="not a source of the store"):
        create_app(store, uploads=UploadSource(name="other"))


def run_source(source: UploadSource, position: Any = None) -> tuple[list[list[DocumentChange]], Any]:
    """Run ``source`` in static mode; the groups it emitted and the position of the last change."""
    groups: list[list[DocumentChange]] = []
    source.run(
        lambda changes, snapshot_done=False: groups.append(list(changes)),
        threading.Event(),
        "static",
        position,
    )
    last = [c for group in groups for c in group]
    return groups, (last[-1].position if last else None)


def test_the_upload_source_snapshots_what_was_put_and_streams_what_follows() -> None:
    source = UploadSource()
    source.put("a.md", b"alpha")
    groups: list[tuple[list[DocumentChange], bool]] = []
    stop = threading.Event()
    emitted = threading.Condition()

    def emit(changes: list[DocumentChange], snapshot_done: bool = False) -> None:
        with emitted:
            groups.append((list(changes), snapshot_done))
            emitted.notify_all()

    thread = threading.Thread(target=source.run, args=(emit, stop, "streaming"))
    thread.start()
    try:
        with emitted:
            assert emitted.wait_for(lambda: len(groups) == 1, 5)
        source.put("b.md", b"beta")
        assert source.delete("a.md") and not source.delete("a.md")
        with emitted:
            assert emitted.wait_for(lambda: sum(len(g) for g, _ in groups[1:]) == 2, 5)
    finally:
        stop.set()
        thread.join(5)
    snapshot, done = groups[0]
    assert done and [(c.doc_id, c.kind) for c in snapshot] == [("upload://a.md", ChangeKind.UPSERT)]
    live = [(c.doc_id, c.kind) for g, _ in groups[1:] for c in g]
    assert live == [("upload://b.md", ChangeKind.UPSERT), ("upload://a.md", ChangeKind.DELETE)]
    assert source.ids() == ["upload://b.md"]


def test_uploads_kept_in_a_directory_survive_a_restart_and_resume_from_a_position(tmp_path: Path) -> None:
    first = UploadSource(directory=tmp_path)
    first.put("keep.md", b"kept", {"owner": "ada"})
    first.put("drop.md", b"dropped")
    _, position = run_source(first)
    first.delete("drop.md")
    first.put("new.md", b"new")

    second = UploadSource(directory=tmp_path)
    assert second.ids() == ["upload://keep.md", "upload://new.md"]
    groups, _ = run_source(second)
    snapshot = {c.doc_id: c for c in groups[0]}
    assert (
        snapshot["upload://keep.md"].data == b"kept"
        and snapshot["upload://keep.md"].metadata["owner"] == "ada"
    )
    resumed, _ = run_source(UploadSource(directory=tmp_path), position)
    assert sorted((c.doc_id, c.kind.value) for c in resumed[0]) == [
        ("upload://drop.md", "delete"),
        ("upload://new.md", "upsert"),
    ]
