"""``/v1/retrieve``'s retrieval fields over a real server: search_mode (default hybrid, so Pathway
clients that send none get it), rerank, diversity and context_window; a scoped key's scope applies
inside every mode."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from ragflow.server.auth import ApiKey, Role, key_digest
from ragflow.server.scopes import Scope
from tests.server.conftest import Served, serving

MODES = ("vector", "lexical", "hybrid")
NOTES_ONLY = "notes-only-secret-0123456789"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    key = ApiKey("notes", Role.READ, key_digest(NOTES_ONLY), Scope("**/notes/**", None))
    admin = ApiKey("admin", Role.ADMIN, key_digest("admin-secret-0123456789"))
    with serving(tmp_path_factory.mktemp("modes"), api_keys=[key, admin]) as running:
        yield running


def retrieve(served: Served, key: str = "admin-secret-0123456789", **body: Any) -> requests.Response:
    return requests.post(served.url + "/v1/retrieve", json=body, headers={"Authorization": f"Bearer {key}"})


def names(response: requests.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [Path(hit["metadata"]["path"]).name for hit in response.json()]


def test_every_mode_answers_and_the_default_is_hybrid(served: Served) -> None:
    for mode in MODES:
        assert names(retrieve(served, query="copper reef lantern", k=1, search_mode=mode)) == ["lantern.md"]
    default = retrieve(served, query="stone bridge river", k=3)
    assert default.json() == retrieve(served, query="stone bridge river", k=3, search_mode="hybrid").json()


def test_the_fields_also_come_as_query_parameters(served: Served) -> None:
    url = served.url + "/v1/retrieve?query=falcon%20canyon&k=1&search_mode=lexical&context_window=1"
    response = requests.get(url, headers={"Authorization": "Bearer admin-secret-0123456789"})
    assert names(response) == ["falcon.md"] and response.json()[0]["metadata"]["context_chunks"] == 1


def test_a_scoped_key_gets_only_its_scope_in_every_mode(served: Served) -> None:
    for mode in MODES:
        for options in ({}, {"diversity": 0.5}, {"context_window": 2}):
            got = names(
                retrieve(
                    served, NOTES_ONLY, query="lantern falcon meadow orbit", k=5, search_mode=mode, **options
                )
            )
            assert got and set(got) <= {"meadow.txt", "orbit.txt"}, (mode, options)


@pytest.mark.parametrize(
    ("body", "names_in_error"),
    [
        ({"search_mode": "fuzzy"}, "search_mode"),
        ({"diversity": 1.5}, "diversity"),
        ({"context_window": -1}, "context_window"),
        ({"rerank": True}, "cross-encoder"),
    ],
)
def test_a_bad_field_is_a_400_that_says_why(
    served: Served, body: dict[str, Any], names_in_error: str
) -> None:
    response = retrieve(served, query="lantern", k=2, **body)
    assert response.status_code == 400 and names_in_error in response.text
