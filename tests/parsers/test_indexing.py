"""The formats through a real DocumentStore over a real folder: every passage retrievable with where it
is, an edited slide or sheet re-embedding only its own chunks, and bad files reported under their own
names while the others are indexed."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ragflow.connectors.folder import FolderSource
from ragflow.documents import Hit
from ragflow.parsers import DefaultParser, ParseLimits
from ragflow.store import DocumentStore
from tests.fakes.hashing_embedder import HashingEmbedder
from tests.parsers.builders import (
    encrypted,
    make_docx,
    make_eml,
    make_epub,
    make_ipynb,
    make_pptx,
    make_xlsx,
    million_empty_rows,
    zip_bomb,
)
from tests.test_store import eventually

SLIDES = [
    {"title": "Harbor", "body": ["The lantern keeper lights the harbor lamp at dusk"]},
    {"title": "Reef", "body": ["Copper reef charts were redrawn in April"], "notes": "Ask the pilots"},
    {"title": "Budget", "body": ["Glass lenses cost nine hundred crowns"]},
]
SHEETS = {
    "Ships": [["Ship", "Captain"], ["Marlin", "Okafor"], ["Heron", "Lindqvist"]],
    "Tides": [["Day", "High water"], ["Monday", "06:40"], ["Tuesday", "07:25"]],
}
GOOD: dict[str, Callable[[], bytes]] = {
    "team/report.docx": lambda: make_docx(
        [("h1", "Report"), ("h2", "Costs"), ("p", "Beacon maintenance doubled the quarry budget.")]
    ),
    "team/deck.pptx": lambda: make_pptx(SLIDES),
    "team/fleet.xlsx": lambda: make_xlsx(SHEETS),
    "team/mail.eml": lambda: make_eml("Falcon sighting", "A peregrine falcon nests on the north tower."),
    "team/tides.ipynb": lambda: make_ipynb([("markdown", "Spring tides flood the meadow causeway.", None)]),
    "team/sea.epub": lambda: make_epub([("Storms", "Autumn gales close the violet strait.")]),
    "team/geo.py": lambda: b"def comet_orbit(years):\n    return years % 90\n",
}


def write(root: Path, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[DocumentStore]:
    write(tmp_path, {name: build() for name, build in GOOD.items()})
    with DocumentStore(FolderSource(tmp_path, reconcile_interval=None), embedder=HashingEmbedder()) as store:
        assert store.wait_until_fresh(30)
        yield store


def best(store: DocumentStore, query: str) -> Hit:
    return store.retrieve(query, k=1)[0]


def test_each_passage_is_retrievable_with_where_it_is(store: DocumentStore) -> None:
    assert store.errors() == []
    expectations: list[tuple[str, str, dict[str, object]]] = [
        ("beacon maintenance quarry budget", "team/report.docx", {"section": "Report > Costs"}),
        ("copper reef charts redrawn", "team/deck.pptx", {"slide": 2, "slide_title": "Reef"}),
        ("Heron Lindqvist captain", "team/fleet.xlsx", {"sheet": "Ships", "rows": "2-3"}),
        ("Tuesday high water", "team/fleet.xlsx", {"sheet": "Tides"}),
        ("peregrine falcon tower", "team/mail.eml", {"subject": "Falcon sighting"}),
        ("spring tides meadow causeway", "team/tides.ipynb", {"cell": 1}),
        ("autumn gales violet strait", "team/sea.epub", {"chapter": "Storms"}),
        ("comet orbit years", "team/geo.py", {"symbol": "comet_orbit", "lines": "1-2"}),
    ]
    for query, path, fields in expectations:
        hit = best(store, query)
        assert hit.metadata["path"].endswith(path), (query, hit)
        assert {k: hit.metadata.get(k) for k in fields} == fields, (query, hit.metadata)


def test_editing_one_slide_re_embeds_only_that_slide(store: DocumentStore, tmp_path: Path) -> None:
    embedder = store.embedder
    assert isinstance(embedder, HashingEmbedder)
    before = len(embedder.embedded)
    edited = [SLIDES[0], {**SLIDES[1], "body": ["Silver shoals were charted in May"]}, SLIDES[2]]
    (tmp_path / "team/deck.pptx").write_bytes(make_pptx(edited))
    assert eventually(lambda: "Silver shoals" in best(store, "silver shoals charted").text)
    assert store.wait_until_fresh(30)
    queries = {"silver shoals charted"}
    assert [text for text in embedder.embedded[before:] if text not in queries] == [
        "Reef\n\nSilver shoals were charted in May\n\nNotes: Ask the pilots"
    ]
    hits = store.retrieve("copper reef charts redrawn april", k=10)
    assert not any("Copper reef" in hit.text for hit in hits), "the old slide text is gone"


def test_editing_one_sheet_re_embeds_only_that_sheet(store: DocumentStore, tmp_path: Path) -> None:
    embedder = store.embedder
    assert isinstance(embedder, HashingEmbedder)
    before = len(embedder.embedded)
    edited = {**SHEETS, "Tides": [["Day", "High water"], ["Monday", "06:40"], ["Friday", "11:05"]]}
    (tmp_path / "team/fleet.xlsx").write_bytes(make_xlsx(edited))
    assert eventually(lambda: "Friday" in best(store, "Friday high water").text)
    assert store.wait_until_fresh(30)
    embedded = [text for text in embedder.embedded[before:] if text != "Friday high water"]
    assert embedded == ["Day: Monday; High water: 06:40\nDay: Friday; High water: 11:05"]
    assert not any("Tuesday" in hit.text for hit in store.retrieve("Tuesday high water", k=10))


def test_bad_files_get_their_own_specific_errors_and_the_rest_is_indexed(tmp_path: Path) -> None:
    report = GOOD["team/report.docx"]()
    bad = {
        "bad/truncated.docx": report[: len(report) // 2],
        "bad/secret.docx": encrypted(report),
        "bad/bomb.docx": zip_bomb(12 << 20),
        "bad/empty-rows.xlsx": million_empty_rows(make_xlsx({"Log": [["A", "B"], ["", ""]]}), count=50_000),
        "bad/huge-attachment.eml": make_eml(
            "Backup", "Database dump attached.", attachments=[("dump.sql", b"-- x\n" * 600_000, "text/plain")]
        ),
        "bad/broken.ipynb": b'{"cells": [ {"cell_type": ',
    }
    write(tmp_path, {**{name: build() for name, build in GOOD.items()}, **bad})
    parser = DefaultParser(limits=ParseLimits(max_unpacked_bytes=8 << 20, max_attachment_bytes=1 << 20))
    store = DocumentStore(
        FolderSource(tmp_path, reconcile_interval=None), parser=parser, embedder=HashingEmbedder()
    )
    store.run_static()
    errors = {Path(error.doc_id).name: error.message for error in store.errors()}
    assert sorted(errors) == sorted(Path(name).name for name in bad)
    expected = {
        "truncated.docx": "truncated or corrupt Office file (not a complete zip archive",
        "secret.docx": "the Office file is password-protected (encrypted); remove the password",
        "bomb.docx": "the Word document would unpack to 12,582,920 bytes",
        "empty-rows.xlsx": "sheet 'Log' of ",
        "huge-attachment.eml": "attachment 'dump.sql' of ",
        "broken.ipynb": "not a Jupyter notebook: invalid JSON at line 1",
    }
    for name, fragment in expected.items():
        assert fragment in errors[name], (name, errors[name])
        assert name in errors[name], f"the error names the file: {errors[name]}"
    assert "raise ParseLimits(max_attachment_bytes=...)" in errors["huge-attachment.eml"]
    indexed = {Path(d.doc_id).name for d in store.documents() if d.chunks > 0}
    assert {Path(name).name for name in GOOD} <= indexed
    assert "huge-attachment.eml" in indexed, "the message itself is indexed without its attachment"
    assert best(store, "database dump attached backup").metadata["path"].endswith("huge-attachment.eml")


def test_a_restart_restores_locations_and_chunk_ids_without_embedding_again(tmp_path: Path) -> None:
    docs, state = tmp_path / "docs", tmp_path / "state"
    write(docs, {"team/deck.pptx": make_pptx(SLIDES), "team/fleet.xlsx": make_xlsx(SHEETS)})

    def contents(store: DocumentStore) -> list[tuple[int, str, Any, Any]]:
        hits = store.index.search(np.zeros(store.embedder.dim, dtype=np.float32), store.index.count())
        return sorted((h.id, h.text, h.metadata.get("slide"), h.metadata.get("rows")) for h in hits)

    with DocumentStore(
        FolderSource(docs, reconcile_interval=None), embedder=HashingEmbedder(), state_dir=state
    ) as first:
        assert first.wait_until_fresh(30)
        before = contents(first)
    embedder = HashingEmbedder()
    with DocumentStore(
        FolderSource(docs, reconcile_interval=None), embedder=embedder, state_dir=state
    ) as second:
        assert second.wait_until_fresh(30)
        assert embedder.embedded == []
        assert contents(second) == before
        assert best(second, "copper reef charts").metadata["slide_title"] == "Reef"


class RefusingEmbedder(HashingEmbedder):
    """Fails on any batch holding a text with ``word``, as a model or an embeddings API may."""

    def __init__(self, word: str) -> None:
        super().__init__()
        self.word = word

    def embed(self, texts: Any) -> Any:
        if any(self.word in text for text in texts):
            raise RuntimeError(f"cannot embed a text with {self.word!r}")
        return super().embed(texts)


def test_a_chunk_that_cannot_be_embedded_is_the_error_of_its_slide(tmp_path: Path) -> None:
    write(tmp_path, {"deck.pptx": make_pptx(SLIDES)})
    source = FolderSource(tmp_path, reconcile_interval=None)
    with DocumentStore(source, embedder=RefusingEmbedder("Copper")) as store:
        assert store.wait_until_fresh(30)
        assert eventually(lambda: bool(store.errors()))
        (error,) = store.errors()
        # the chunk's id comes from its slide, not a page: its error must still find its document
        assert error.doc_id == "deck.pptx", error
        assert "slide 2" in error.message and "cannot embed" in error.message, error.message


def test_a_document_read_in_part_is_indexed_and_says_what_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.parsers.builders import make_pdf_with_scan
    from tests.parsers.test_pdf import SCAN

    monkeypatch.setattr("ragflow.parsers._pdf.ocr_available", lambda: False)
    write(tmp_path, {"manual.pdf": make_pdf_with_scan(["Typed page about the granite quay", SCAN])})
    with DocumentStore(FolderSource(tmp_path, reconcile_interval=None), embedder=HashingEmbedder()) as store:
        assert store.wait_until_fresh(30)
        (status,) = store.documents()
        assert (status.status, status.chunks > 0) == ("INDEXED", True), status
        assert (
            status.error
            == f"page 2 of {tmp_path / 'manual.pdf'} has no text layer; install ragflow[ocr] to read it"
        )
        assert store.statistics()["file_count"] == 1
        assert [e.doc_id for e in store.errors()] == ["manual.pdf"]
        assert best(store, "granite quay").metadata["path"].endswith("manual.pdf")
