"""The two endpoints only the web page needs, over HTTP: ``/v1/status`` (documents by state with errors,
recent freshness; progress and embedding counts only for a key that sees every document) and
``/v1/passage`` (a cited passage among its neighbours), each within the caller's key scope; and the page
itself, served without a key, with a policy that runs no script but its own."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from ragflow.server.auth import ApiKey, Role, key_digest
from ragflow.server.scopes import Scope
from tests.server.conftest import Served, serving

READER = "page-reader-secret-0123456789"
GUIDES = "page-guides-secret-0123456789"
KEYS = [
    ApiKey("reader", Role.READ, key_digest(READER)),
    ApiKey("guides", Role.READ, key_digest(GUIDES), Scope("**/guides/**", None)),
]
LONG = "\n\n".join(f"Paragraph {n} tells of harbor number {n} and its {n} lanterns. " * 12 for n in range(12))


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    files = {
        "guides/long.md": LONG,
        "guides/short.md": "The falcon nests on the canyon summit.",
        "notes/secret.txt": "The vault code is hidden under the meadow.",
        "notes/bad.pdf": "%PDF-1.4 not a pdf",
    }
    with serving(tmp_path_factory.mktemp("docs"), files, api_keys=KEYS) as served:
        yield served


def get(served: Served, path: str, key: str, **params: object) -> requests.Response:
    return requests.get(
        served.url + path, params=params, headers={"Authorization": f"Bearer {key}"}, timeout=10
    )


def test_status_counts_documents_by_state_with_errors_and_freshness(served: Served) -> None:
    status = get(served, "/v1/status", READER).json()
    assert status["ready"] and status["role"] == "read" and not status["scoped"]
    assert status["documents"] == {"indexed": 3, "pending": 0, "error": 1}
    (error,) = status["errors"]
    assert error["doc_id"] == "notes/bad.pdf" and "PDF" in error["message"]
    # a failed document's error became visible when it was processed: its freshness counts too
    recent = {r["doc_id"] for r in status["recent"]}
    assert recent == {"guides/long.md", "guides/short.md", "notes/secret.txt", "notes/bad.pdf"}
    assert all(0 <= r["lag"] < 30 and r["indexed_at"] >= r["seen_at"] for r in status["recent"])
    assert status["progress"]["documents_done"] == 4 and status["embedding"]["computed"] > 0
    assert status["uploads"] == "upload://"


def test_a_scoped_key_gets_no_count_from_outside_its_scope(served: Served) -> None:
    status = get(served, "/v1/status", GUIDES).json()
    assert status["scoped"] and status["documents"] == {"indexed": 2, "pending": 0, "error": 0}
    assert status["errors"] == [] and status["progress"] is None and status["embedding"] is None
    assert {r["doc_id"] for r in status["recent"]} == {"guides/long.md", "guides/short.md"}
    secret = served.store.chunks("notes/secret.txt")[0]
    outside = get(
        served, "/v1/passage", GUIDES, doc_id="notes/secret.txt", start=secret.start, end=secret.end
    )
    assert outside.status_code == 404 and "vault" not in outside.text
    inside = get(served, "/v1/passage", READER, doc_id="notes/secret.txt", start=secret.start, end=secret.end)
    assert inside.status_code == 200 and inside.json()["passage"] == secret.text


def test_a_passage_is_shown_among_its_neighbours(served: Served) -> None:
    chunks = served.store.chunks("guides/long.md")
    assert len(chunks) >= 3, "the test document should split into several chunks"
    middle = chunks[1]
    found = get(served, "/v1/passage", GUIDES, doc_id="guides/long.md", start=middle.start, end=middle.end)
    body = found.json()
    assert body["passage"] == middle.text and body["chunk"] == 1
    assert body["before"] == LONG[chunks[0].start : middle.start].strip()  # the chunk before, whole
    assert body["after"] == LONG[middle.end : chunks[2].end].strip()  # and the one after
    assert body["before"] and body["after"] and body["chunks_in_unit"] == len(chunks)
    stale = get(
        served, "/v1/passage", READER, doc_id="guides/long.md", start=middle.start + 1, end=middle.end
    )
    assert stale.status_code == 404 and "edited" in stale.json()["error"]["message"]
    missing = get(served, "/v1/passage", READER, doc_id="guides/long.md")
    assert missing.status_code == 400 and missing.json()["error"]["param"] == "start"
    bad = get(served, "/v1/passage", READER, doc_id="guides/long.md", start="x", end=3)
    assert bad.status_code == 400 and "integer" in bad.json()["error"]["message"]


def test_the_page_is_served_without_a_key_and_runs_only_its_own_script(served: Served) -> None:
    page = requests.get(served.url + "/", timeout=10)
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    policy = page.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "script-src 'sha256-" in policy and "unsafe" not in policy
    assert "<!--app." not in page.text and "<script>" in page.text
    assert requests.get(served.url + "/v1/status", timeout=10).status_code == 401
