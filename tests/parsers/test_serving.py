"""A team folder of Office files, a mailbox, a notebook and a broken file behind the real server: passages
retrieved with where they are, ``/v2/answer`` citing slide, sheet and section, and the broken file's
error in ``/v1/errors`` and ``ragflow status``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from ragflow.cli import main
from tests.parsers.builders import make_docx, make_eml, make_pptx, make_xlsx
from tests.parsers.test_indexing import write
from tests.server.conftest import Served, serving

FILES = {
    "team/plan.pptx": make_pptx(
        [
            {"title": "Harbor", "body": ["The lantern keeper lights the harbor lamp at dusk"]},
            {"title": "Reef", "body": ["Copper reef charts were redrawn in April"]},
        ]
    ),
    "team/fleet.xlsx": make_xlsx(
        {"Ships": [["Ship", "Captain"], ["Marlin", "Okafor"], ["Heron", "Lindqvist"]]}
    ),
    "team/report.docx": make_docx(
        [
            ("h1", "Report"),
            ("p", "Summary."),
            ("h2", "Costs"),
            ("p", "Beacon maintenance doubled the budget."),
        ]
    ),
    "team/survey.eml": make_eml(
        "Survey",
        "Results attached.",
        attachments=[
            ("findings.docx", make_docx([("h1", "Findings"), ("p", "The tundra thaw came early.")]), "a/b")
        ],
    ),
    "team/broken.ipynb": b"not json at all",
}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("team")
    write(root, FILES)
    with serving(root, files={}) as served:
        yield served


def post(served: Served, path: str, body: dict[str, Any]) -> Any:
    response = requests.post(served.url + path, json=body, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def test_retrieve_returns_passages_with_where_they_are(served: Served) -> None:
    [hit] = post(served, "/v1/retrieve", {"query": "copper reef charts redrawn", "k": 1})
    assert hit["metadata"]["path"].endswith("team/plan.pptx")
    assert (hit["metadata"]["slide"], hit["metadata"]["slide_title"]) == (2, "Reef")
    [row] = post(
        served, "/v1/retrieve", {"query": "Heron Lindqvist", "k": 1, "filepath_globpattern": "**/*.xlsx"}
    )
    assert row["text"] == "Ship: Marlin; Captain: Okafor\nShip: Heron; Captain: Lindqvist"


@pytest.mark.parametrize(
    ("prompt", "path", "location"),
    [
        ("Who lights the harbor lamp at dusk?", "team/plan.pptx", {"slide": 1, "slide_title": "Harbor"}),
        ("Who is the captain of the Heron?", "team/fleet.xlsx", {"sheet": "Ships", "rows": "2-3"}),
        ("What doubled the beacon maintenance budget?", "team/report.docx", {"section": "Report > Costs"}),
        (
            "When did the tundra thaw come?",
            "team/survey.eml",
            {"attachment": "findings.docx", "section": "Findings"},
        ),
    ],
)
def test_answers_cite_where_inside_the_file_the_passage_is(
    served: Served, prompt: str, path: str, location: dict[str, Any]
) -> None:
    body = post(served, "/v2/answer", {"prompt": prompt, "k": 1})
    [citation] = body["citations"]
    assert citation["path"].endswith(path)
    assert citation["location"] == location


def test_the_broken_file_is_in_v1_errors_and_ragflow_status(
    served: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    response = requests.get(served.url + "/v1/errors", timeout=30)
    [error] = response.json()
    assert Path(error["doc_id"]).name == "broken.ipynb"
    assert "broken.ipynb: not a Jupyter notebook: invalid JSON at line 1 column 1" in str(error)
    main(["status", "--url", served.url])
    output = capsys.readouterr().out
    assert "broken.ipynb" in output and "not a Jupyter notebook" in output
