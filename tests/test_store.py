"""DocumentStore over a real folder: convergence with a from-scratch build after random edits, no repeated
embedding, and per-document errors for bad files while the rest is indexed."""

from __future__ import annotations

import os
import random
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ragflow.connectors.folder import FolderSource
from ragflow.connectors.upload import UploadSource
from ragflow.errors import ConfigError
from ragflow.sources import ChangeKind, DocumentChange, EmitChanges
from ragflow.store import DocumentStore
from tests.fakes.hashing_embedder import HashingEmbedder

WORDS = (
    "river stone lantern orbit maple copper signal harbor meadow engine quiet silver window thunder garden "
    "pixel falcon marble canyon ember tundra violet anchor comet willow cedar prism summit"
).split()
LONG_MODE = bool(os.environ.get("RAGFLOW_LONG"))


def paragraph(rng: random.Random, words: int = 40) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words)).capitalize() + "."


def index_contents(store: DocumentStore) -> list[tuple[Any, ...]]:
    """Every chunk in the index as (doc_id, page, start, end, text), sorted: duplicates would show twice."""
    count = store.index.count()
    if count == 0:
        return []
    hits = store.index.search(np.zeros(store.embedder.dim, dtype=np.float32), count)
    assert len(hits) == count, "the index search did not return every live chunk"
    return sorted(
        (h.metadata["doc_id"], h.metadata.get("page_number"), h.metadata["start"], h.metadata["end"], h.text)
        for h in hits
    )


def from_scratch(folder: Path, **options: Any) -> list[tuple[Any, ...]]:
    store = DocumentStore(
        FolderSource(folder, reconcile_interval=None), embedder=HashingEmbedder(), **options
    )
    store.run_static()
    return index_contents(store)


def eventually(check: Callable[[], bool], timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return check()


def make_pdf(path: Path, pages: list[str]) -> None:
    from reportlab.lib.pagesizes import A4
    from reportlab.pdfgen import canvas

    pdf = canvas.Canvas(str(path), pagesize=A4)
    for text in pages:
        y = 800
        for start in range(0, len(text), 90):
            pdf.drawString(40, y, text[start : start + 90])
            y -= 14
        pdf.showPage()
    pdf.save()


def write_document(path: Path, rng: random.Random) -> None:
    paragraphs = [paragraph(rng, rng.randint(10, 60)) for _ in range(rng.randint(1, 6))]
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".pdf":
        make_pdf(path, paragraphs[:3])
    elif path.suffix == ".html":
        body = "".join(f"<p>{p}</p>" for p in paragraphs)
        path.write_text(
            f"<html><head><style>p {{}}</style><script>var x;</script></head><body>{body}</body></html>"
        )
    elif path.suffix == ".md":
        path.write_text("# Title\n\n" + "\n\n".join(paragraphs) + "\n")
    else:
        path.write_text("\n\n".join(paragraphs) + "\n")


def random_step(root: Path, rng: random.Random) -> str:
    files = sorted(p for p in root.rglob("*") if p.is_file())
    dirs = sorted(p for p in root.rglob("*") if p.is_dir())
    op = rng.choice(["create", "create", "edit", "append", "delete", "rename", "move_dir"])
    if op == "create" or not files:
        folder = rng.choice([root, *dirs]) if rng.random() < 0.7 else root / f"dir{rng.randint(0, 3)}"
        path = folder / f"doc{rng.randint(0, 10**6)}{rng.choice(['.txt', '.md', '.html', '.pdf'])}"
        write_document(path, rng)
        return f"create {path.relative_to(root)}"
    target = rng.choice(files)
    if op == "edit":
        write_document(target, rng)
    elif op == "append" and target.suffix in (".txt", ".md"):
        with target.open("a") as f:
            f.write("\n\n" + paragraph(rng) + "\n")
    elif op == "delete":
        target.unlink()
    elif op == "rename":
        target.rename(target.with_name(f"renamed{rng.randint(0, 10**6)}{target.suffix}"))
    elif op == "move_dir" and dirs:
        source = rng.choice(dirs)
        destination = root / f"moved{rng.randint(0, 10**6)}"
        shutil.move(str(source), str(destination))
        return f"move_dir {source.relative_to(root)} -> {destination.name}"
    return f"{op} {target.relative_to(root)}"


@pytest.mark.parametrize("seed", range(8 if LONG_MODE else 2))
def test_live_index_converges_to_a_from_scratch_build_after_random_changes(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    root = tmp_path / "docs"
    root.mkdir()
    for _ in range(4):
        random_step(root, rng)
    store = DocumentStore(FolderSource(root, reconcile_interval=None), embedder=HashingEmbedder())
    with store:
        assert store.wait_until_fresh(30)
        history: list[str] = []
        for _quiet_point in range(6 if LONG_MODE else 3):
            for _ in range(rng.randint(1, 4)):
                history.append(random_step(root, rng))
            expected = from_scratch(root)
            converged = eventually(lambda expected=expected: index_contents(store) == expected)
            assert converged, (
                f"after {history}: live index differs from a from-scratch build\n"
                f"missing: {sorted(set(expected) - set(index_contents(store)))[:5]}\n"
                f"ghosts: {sorted(set(index_contents(store)) - set(expected))[:5]}"
            )
            assert store.index.count() == len(expected)


def test_editing_one_paragraph_embeds_only_the_changed_chunks(tmp_path: Path) -> None:
    rng = random.Random(7)
    paragraphs = [paragraph(rng, 50) for _ in range(50)]
    doc = tmp_path / "long.md"
    doc.write_text("\n\n".join(paragraphs))
    embedder = HashingEmbedder()
    with DocumentStore(FolderSource(tmp_path, reconcile_interval=None), embedder=embedder) as store:
        assert store.wait_until_fresh(30)
        before = {text for *_, text in index_contents(store)}
        assert len(before) >= 25, "the document should make many chunks"
        embedded_before = len(embedder.embedded)
        paragraphs[25] = paragraph(rng, 50)
        doc.write_text("\n\n".join(paragraphs))
        assert eventually(lambda: paragraphs[25][:40] in " ".join(t for *_, t in index_contents(store)))
        after = {text for *_, text in index_contents(store)}
        newly_embedded = embedder.embedded[embedded_before:]
        assert sorted(newly_embedded) == sorted(after - before)
        assert 1 <= len(newly_embedded) <= 3


def test_renaming_or_moving_a_file_embeds_nothing(tmp_path: Path) -> None:
    rng = random.Random(3)
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "notes.md").write_text("\n\n".join(paragraph(rng) for _ in range(8)))
    embedder = HashingEmbedder()
    with DocumentStore(FolderSource(tmp_path, reconcile_interval=None), embedder=embedder) as store:
        assert store.wait_until_fresh(30)
        chunks = len(index_contents(store))
        embedded_before = len(embedder.embedded)
        (tmp_path / "a" / "notes.md").rename(tmp_path / "a" / "renamed.md")
        shutil.move(str(tmp_path / "a"), str(tmp_path / "b"))
        assert eventually(lambda: {c[0] for c in index_contents(store)} == {"b/renamed.md"})
        assert len(index_contents(store)) == chunks
        assert embedder.embedded[embedded_before:] == []


def test_identical_content_in_two_files_is_embedded_once(tmp_path: Path) -> None:
    rng = random.Random(5)
    text = "\n\n".join(paragraph(rng) for _ in range(6))
    (tmp_path / "one.txt").write_text(text)
    (tmp_path / "two.txt").write_text(text)
    embedder = HashingEmbedder()
    store = DocumentStore(FolderSource(tmp_path, reconcile_interval=None), embedder=embedder)
    store.run_static()
    contents = index_contents(store)
    assert {c[0] for c in contents} == {"one.txt", "two.txt"}
    assert len(contents) >= 4
    assert sorted(embedder.embedded) == sorted(text for doc, *_, text in contents if doc == "one.txt")
    assert store.embedding_stats()["computed"] == len(contents) // 2


def test_restart_over_the_same_state_dir_embeds_nothing_again(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    for i in range(5):
        rng = random.Random(i)
        (docs / f"{i}.md").write_text("\n\n".join(paragraph(rng) for _ in range(4)))
    first = HashingEmbedder()
    DocumentStore(FolderSource(docs), embedder=first, state_dir=tmp_path / "state").run_static()
    second = HashingEmbedder()
    store = DocumentStore(FolderSource(docs), embedder=second, state_dir=tmp_path / "state")
    store.run_static()
    assert first.embedded and second.embedded == []
    assert store.index.count() == len(first.embedded)


def test_bad_documents_get_clear_errors_and_the_rest_is_indexed(tmp_path: Path) -> None:
    (tmp_path / "good.md").write_text("# Good\n\nThe lantern lights the harbor at night.\n")
    (tmp_path / "corrupt.pdf").write_bytes(b"%PDF-1.7\n1 0 obj << /Type /Catalog >> garbage\n%%EOF")
    (tmp_path / "image.bin").write_bytes(bytes(range(256)) * 10)
    (tmp_path / "empty.txt").write_bytes(b"")
    (tmp_path / "huge.txt").write_text("meadow " * 2000)
    (tmp_path / "latin1.txt").write_bytes("caf\xe9 cr\xe8me".encode("latin-1"))
    embedder = HashingEmbedder()
    store = DocumentStore(FolderSource(tmp_path, max_file_size=4096), embedder=embedder)
    store.run_static()
    errors = {e.doc_id: e.message for e in store.errors()}
    assert set(errors) == {"corrupt.pdf", "image.bin", "empty.txt", "huge.txt", "latin1.txt"}
    assert "corrupt.pdf" in errors["corrupt.pdf"]
    assert "binary" in errors["image.bin"].lower()
    assert "no text" in errors["empty.txt"]
    assert "max_file_size" in errors["huge.txt"]
    assert "utf-8" in errors["latin1.txt"].lower()
    assert {c[0] for c in index_contents(store)} == {"good.md"}
    statuses = {d["path"].rsplit("/", 1)[-1]: d["_indexing_status"] for d in store.inputs(return_status=True)}
    assert statuses == {
        "good.md": "INDEXED",
        "corrupt.pdf": "ERROR",
        "image.bin": "ERROR",
        "empty.txt": "ERROR",
        "huge.txt": "ERROR",
        "latin1.txt": "ERROR",
    }
    assert store.statistics()["file_count"] == 1


def test_fixing_a_bad_document_clears_its_error(tmp_path: Path) -> None:
    bad = tmp_path / "notes.txt"
    bad.write_bytes(b"broken \xc3\x28 text")
    with DocumentStore(FolderSource(tmp_path, reconcile_interval=None), embedder=HashingEmbedder()) as store:
        assert store.wait_until_fresh(30)
        assert [e.doc_id for e in store.errors()] == ["notes.txt"]
        bad.write_text("Now it is fine text about the copper signal.")
        assert eventually(lambda: not store.errors() and len(index_contents(store)) == 1)


def test_retrieve_filters_inside_the_search_and_reports_freshness(tmp_path: Path) -> None:
    (tmp_path / "guides").mkdir()
    for i in range(6):
        (tmp_path / "guides" / f"g{i}.md").write_text(f"Guide {i}: the falcon crosses the canyon.")
        (tmp_path / f"note{i}.txt").write_text(f"Note {i}: the falcon crosses the canyon.")
    with DocumentStore(FolderSource(tmp_path, reconcile_interval=None), embedder=HashingEmbedder()) as store:
        assert store.wait_until_fresh(30)
        hits = store.retrieve("falcon canyon", k=4, filepath_globpattern="**/guides/*.md")
        assert len(hits) == 4 and all("/guides/" in h.metadata["path"] for h in hits)
        hits = store.retrieve("falcon canyon", k=3, metadata_filter="contains(path, `note`)")
        assert len(hits) == 3 and all("note" in h.metadata["path"] for h in hits)
        assert [h.dist for h in hits] == sorted(h.dist for h in hits)
        stats = store.statistics()
        assert stats["file_count"] == 12 and stats["last_indexed"] is not None
        docs = store.documents()
        assert all(d.indexed_at is not None and d.seen_at is not None for d in docs)
        assert all(d.indexed_at >= d.seen_at - 1 for d in docs if d.indexed_at and d.seen_at)


class GatedEmbedder(HashingEmbedder):
    """Embeds a text that says "slow" only once ``gate`` is set, holding up the epoch it is in."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.waiting = threading.Event()

    def embed(self, texts: Any) -> Any:
        if any("slow" in text for text in texts):
            self.waiting.set()
            self.gate.wait(30)
        return super().embed(texts)


def test_filtered_statistics_keep_counting_a_document_while_it_is_re_indexed(tmp_path: Path) -> None:
    for name in ("team/a.md", "team/b.md", "other/c.md"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(f"{name}: the first version.")
    embedder = GatedEmbedder()
    with DocumentStore(FolderSource(tmp_path, reconcile_interval=None), embedder=embedder) as store:
        assert store.wait_until_fresh(30)
        team = store.statistics(filepath_globpattern="**/team/**")
        assert (team["file_count"], store.statistics()["file_count"]) == (2, 3)
        (tmp_path / "other/c.md").write_text("A slow change holds up its epoch.")
        assert embedder.waiting.wait(15)
        (tmp_path / "team/a.md").write_text("team/a.md: the second version.")
        assert eventually(lambda: {d.doc_id: d.status for d in store.documents()}["team/a.md"] == "INGESTED")
        during = store.statistics(filepath_globpattern="**/team/**")
        assert (during["file_count"], store.statistics()["file_count"]) == (2, 3)  # a.md is still searchable
        assert during["last_indexed"] == team["last_indexed"]
        assert store.statistics("path == 'nowhere'") == {
            "file_count": 0,
            "last_modified": None,
            "last_indexed": None,
        }
        embedder.gate.set()
        assert eventually(
            lambda: store.wait_until_fresh(0) and all(d.status == "INDEXED" for d in store.documents())
        )
        after = store.statistics(filepath_globpattern="**/team/**")
        assert after["file_count"] == 2 and after["last_indexed"] is not None
        assert after["last_indexed"] >= (team["last_indexed"] or 0)


@pytest.mark.model
def test_the_real_model_finds_the_document_about_the_query(tmp_path: Path) -> None:
    (tmp_path / "cooking.md").write_text("# Bread\n\nKnead the dough, let it rise for an hour, then bake it.")
    (tmp_path / "astronomy.txt").write_text("Jupiter is the largest planet; its moons orbit it closely.")
    (tmp_path / "finance.html").write_text("<p>Interest rates rose, so mortgage payments went up.</p>")
    store = DocumentStore(FolderSource(tmp_path, reconcile_interval=None))
    store.run_static()
    hits = store.retrieve("how long should bread dough rise?", k=3)
    assert hits[0].metadata["doc_id"] == "cooking.md"
    assert hits[0].dist < hits[1].dist <= hits[2].dist
    assert store.embedder.model_id.endswith("all-MiniLM-L6-v2")


class BlockingEmbedder(HashingEmbedder):
    """Blocks every indexing batch until ``release`` is set; its replica (for queries) never blocks."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()
        self.blocked = threading.Event()

    def embed(self, texts: Any) -> Any:
        self.blocked.set()
        self.release.wait(30)
        return super().embed(texts)

    def replica(self) -> HashingEmbedder:
        return HashingEmbedder()


def test_a_query_does_not_wait_for_an_indexing_batch(tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text("The falcon nests high on the canyon wall.")
    embedder = BlockingEmbedder()
    store = DocumentStore(FolderSource(tmp_path, reconcile_interval=None), embedder=embedder)
    assert store.query_embedder is not embedder
    with store:
        assert embedder.blocked.wait(10), "indexing reached the embedder"
        answers: list[Any] = []
        query = threading.Thread(target=lambda: answers.append(store.retrieve("falcon", k=3)))
        query.start()
        query.join(10)
        assert answers == [[]], "the query was answered while the indexing batch is still embedding"
        assert "falcon" not in embedder.embedded
        embedder.release.set()
        assert store.wait_until_fresh(30)
        assert [h.metadata["path"] for h in store.retrieve("falcon", k=3)] == [str(tmp_path / "a.md")]


def test_a_query_embedder_of_another_model_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="same model as the embedder"):
        DocumentStore(
            FolderSource(tmp_path), embedder=HashingEmbedder(dim=64), query_embedder=HashingEmbedder(dim=32)
        )


@pytest.mark.model
def test_the_local_model_embeds_queries_on_a_replica(tmp_path: Path) -> None:
    from ragflow.embedders.local import LocalEmbedder

    store = DocumentStore(FolderSource(tmp_path, reconcile_interval=None))
    assert isinstance(store.query_embedder, LocalEmbedder) and store.query_embedder is not store.embedder
    assert store.query_embedder.model_id == store.embedder.model_id


def test_a_large_first_listing_becomes_searchable_in_slices(tmp_path: Path) -> None:
    rng = random.Random(5)
    for i in range(200):
        (tmp_path / f"doc{i:03d}.md").write_text(paragraph(rng))
    epochs: list[int] = []
    store = DocumentStore(
        FolderSource(tmp_path, reconcile_interval=None), embedder=HashingEmbedder(), max_epoch_documents=64
    )
    store.on_update(lambda report: epochs.append(report.input_changes))
    store.run_static()
    # an epoch holds at most 2 x 64 row changes (64 updates, each a retraction and an insertion)
    assert sum(epochs) == 200 and max(epochs) <= 128 and len([n for n in epochs if n]) >= 2
    assert store.statistics()["file_count"] == 200


class QuietSource:
    """One document, and no ``status``: a source that reports no health."""

    def __init__(self, name: str = "quiet") -> None:
        self.name = name

    def run(self, emit: EmitChanges, stop: threading.Event, mode: str, position: Any = None) -> None:
        emit([DocumentChange("q.txt", ChangeKind.UPSERT, b"A quiet meadow.", {"path": "q.txt"})], True)
        if mode == "streaming":
            stop.wait()


def test_sources_report_each_sources_kind_documents_snapshot_and_health(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text("The harbor lantern.")
    (docs / "b.md").write_text("The canyon falcon.")
    folder = FolderSource(docs, reconcile_interval=None)
    store = DocumentStore([folder, UploadSource(), QuietSource()], embedder=HashingEmbedder())
    assert [s.snapshot_complete for s in store.sources()] == [False, False, False]
    with store:
        assert store.wait_until_fresh(30)
        found = store.sources()
        assert [(s.name, s.kind, s.documents, s.snapshot_complete, s.healthy) for s in found] == [
            (folder.name, "folder", 2, True, True),
            ("upload", "upload", 0, True, True),
            ("quiet", "QuietSource", 1, True, True),
        ]
        assert found[0].since is not None and found[0].reason is None
        assert found[2].since is None and found[2].reason is None  # it reports no health
        folder.status.gauge("queued_events", 3)
        assert [(g.name, g.value) for g in store.sources()[0].gauges] == [("queued_events", 3.0)]
        shutil.rmtree(docs)
        assert eventually(lambda: not store.sources()[0].healthy and store.sources()[0].documents == 0)
        assert f"folder {os.path.realpath(docs)} is missing" in str(store.sources()[0].reason)
        docs.mkdir()
        assert eventually(lambda: store.sources()[0].healthy)
