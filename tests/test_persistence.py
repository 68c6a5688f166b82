"""Persistence and recovery: a store restarted over its state directory restores its index at once and
processes only what changed while it was stopped; kills at any moment (also mid-checkpoint) converge to a
from-scratch build; incompatible, damaged and full states are handled without serving a wrong index."""

from __future__ import annotations

import json
import logging
import os
import queue
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import pytest

from ragflow.connectors.folder import FolderSource
from ragflow.connectors.upload import UploadSource
from ragflow.documents import ChangeKind, DocumentChange, EmitChanges
from ragflow.engine import DiskCache, FrozenDict
from ragflow.errors import ConfigError
from ragflow.persistence import (
    STATE_FILE,
    CheckpointBatch,
    Checkpointer,
    IncompatibleStateError,
    SavedDocument,
    StateFile,
    StateIdentity,
    describe_state,
    open_state,
)
from ragflow.pipeline import DocRow, ParsedDoc, ParseOutcome, _slices
from ragflow.splitter import TokenSplitter
from ragflow.store import DocumentStore
from tests.fakes.hashing_embedder import HashingEmbedder
from tests.test_store import LONG_MODE, eventually, from_scratch, index_contents, paragraph, random_step

REPO = Path(__file__).resolve().parent.parent


def write_docs(folder: Path, count: int, seed: int = 0, paragraphs: int = 3) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    for i in range(count):
        (folder / f"doc{i:04d}.md").write_text("\n\n".join(paragraph(rng) for _ in range(paragraphs)))


def open_store(
    folder: Path, state: Path, embedder: HashingEmbedder | None = None, **options: Any
) -> DocumentStore:
    return DocumentStore(
        FolderSource(folder, reconcile_interval=None),
        embedder=embedder if embedder is not None else HashingEmbedder(),
        state_dir=state,
        **options,
    )


def index_once(folder: Path, state: Path, **options: Any) -> DocumentStore:
    store = open_store(folder, state, **options)
    store.start()
    assert store.wait_until_fresh(60)
    store.stop()
    return store


# -- restart without repeated work ---------------------------------------------------------------------------


def test_restart_over_an_unchanged_folder_embeds_and_parses_nothing(tmp_path: Path) -> None:
    docs, state = tmp_path / "docs", tmp_path / "state"
    write_docs(docs, 1000, paragraphs=1)
    first = index_once(docs, state)
    chunks = first.index.count()
    assert chunks >= 1000

    embedder = HashingEmbedder()
    epochs: list[int] = []
    store = open_store(docs, state, embedder)
    store.on_update(lambda report: epochs.append(report.input_changes))
    assert store.index.count() == chunks, "the index is restored before the sources start"
    with store:
        assert store.wait_until_fresh(60)
        assert embedder.embedded == []
        assert store.pipeline.parsed.node.stats()["computed"] == 0  # type: ignore[attr-defined]
        assert sum(epochs) == 0, "no document change went through the pipeline"
        assert index_contents(store) == index_contents(first)
        assert len(store.documents()) == 1000
        assert all(d.status == "INDEXED" and d.indexed_at is not None for d in store.documents())


def test_only_the_chunks_changed_while_stopped_are_embedded(tmp_path: Path) -> None:
    docs, state = tmp_path / "docs", tmp_path / "state"
    write_docs(docs, 1000, paragraphs=1)
    before = {text for *_, text in index_contents(index_once(docs, state))}
    rng = random.Random(99)
    for name in ("doc0001.md", "doc0500.md", "doc0999.md"):
        (docs / name).write_text((docs / name).read_text() + "\n\n" + paragraph(rng, 30))
    (docs / "doc0002.md").rename(docs / "renamed.md")
    (docs / "doc0003.md").unlink()

    embedder = HashingEmbedder()
    store = index_once(docs, state, embedder=embedder)
    after = {text for *_, text in index_contents(store)}
    assert sorted(embedder.embedded) == sorted(after - before)
    assert 3 <= len(embedder.embedded) <= 6
    assert store.pipeline.parsed.node.stats()["computed"] == 3  # type: ignore[attr-defined]
    assert index_contents(store) == from_scratch(docs)


def test_a_directory_renamed_while_stopped_is_neither_parsed_nor_embedded_again(tmp_path: Path) -> None:
    docs, state = tmp_path / "docs", tmp_path / "state"
    write_docs(docs / "old", 100, paragraphs=1)
    before = index_once(docs, state)
    (docs / "old").rename(docs / "new")
    embedder = HashingEmbedder()
    store = index_once(docs, state, embedder=embedder, max_epoch_documents=10)
    assert embedder.embedded == []
    assert store.pipeline.parsed.node.stats()["computed"] == 0  # type: ignore[attr-defined]
    assert index_contents(store) == from_scratch(docs)
    assert len(index_contents(store)) == len(index_contents(before))


def test_a_lower_size_cap_after_a_restart_applies_to_unchanged_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # files written just now are re-read anyway (their fingerprint is "racy"): make them trusted
    monkeypatch.setattr("ragflow.connectors.folder.read._RACY_WINDOW_NS", 0)
    docs, state = tmp_path / "docs", tmp_path / "state"
    write_docs(docs, 1)
    (docs / "big.md").write_text("word " * 400)
    index_once(docs, state)
    store = DocumentStore(
        FolderSource(docs, reconcile_interval=None, max_file_size=1000),
        embedder=HashingEmbedder(),
        state_dir=state,
    )
    store.run_static()
    statuses = {d.doc_id: d for d in store.documents()}
    assert statuses["big.md"].status == "ERROR" and "over the cap" in (statuses["big.md"].error or "")
    assert "big.md" not in {c[0] for c in index_contents(store)}


def test_a_store_that_released_its_state_directory_cannot_run_again(tmp_path: Path) -> None:
    write_docs(tmp_path / "docs", 2)
    store = open_store(tmp_path / "docs", tmp_path / "state")
    store.run_static()
    with pytest.raises(ConfigError, match="released its state directory"):
        store.start()
    open_store(tmp_path / "docs", tmp_path / "state").stop()  # the directory is free for a new store


def test_documents_whose_vectors_are_missing_are_indexed_again(tmp_path: Path) -> None:
    docs, state = tmp_path / "docs", tmp_path / "state"
    write_docs(docs, 20)
    index_once(docs, state)
    with sqlite3.connect(state / "embeddings.sqlite") as db:  # lose some vectors, as a power cut could
        db.execute("DELETE FROM results WHERE rowid % 3 = 0")
    db.close()
    with sqlite3.connect(state / "embeddings.sqlite") as db:
        (left,) = db.execute("SELECT COUNT(*) FROM results").fetchone()
    db.close()
    embedder = HashingEmbedder()
    store = index_once(docs, state, embedder=embedder)
    assert len(embedder.embedded) == len({c[-1] for c in index_contents(store)}) - left, "only the lost ones"
    assert store.pipeline.parsed.node.stats()["computed"] == 0, "from the saved parse"  # type: ignore[attr-defined]
    assert index_contents(store) == from_scratch(docs)


def test_a_damaged_vector_in_the_cache_is_computed_again_not_served(tmp_path: Path, caplog: Any) -> None:
    docs, state = tmp_path / "docs", tmp_path / "state"
    write_docs(docs, 5)
    index_once(docs, state)
    with sqlite3.connect(state / "embeddings.sqlite") as db:  # flip one byte inside one stored vector
        key, value = db.execute("SELECT key, value FROM results LIMIT 1").fetchone()
        flipped = bytearray(value)
        flipped[-40] ^= 0xFF
        db.execute("UPDATE results SET value = ? WHERE key = ?", (bytes(flipped), key))
    db.close()
    embedder = HashingEmbedder()
    with caplog.at_level(logging.WARNING, "ragflow.engine.cache"):
        store = index_once(docs, state, embedder=embedder)
    assert len(embedder.embedded) == 1, "the damaged vector alone is computed again"
    assert index_contents(store) == from_scratch(docs)
    assert "failed their checksum" in caplog.text
    with sqlite3.connect(state / "embeddings.sqlite") as db:
        assert db.execute("SELECT COUNT(*) FROM results WHERE value = ?", (bytes(flipped),)).fetchone() == (
            0,
        )
    db.close()


def test_an_unreadable_embedding_cache_is_set_aside_and_rebuilt(tmp_path: Path, caplog: Any) -> None:
    docs, state = tmp_path / "docs", tmp_path / "state"
    write_docs(docs, 5)
    index_once(docs, state)
    for companion in state.glob("embeddings.sqlite*"):
        companion.unlink()
    (state / "embeddings.sqlite").write_bytes(b"garbage, not an SQLite file" * 200)
    embedder = HashingEmbedder()
    with caplog.at_level(logging.ERROR, "ragflow.engine.cache"):
        store = index_once(docs, state, embedder=embedder)
    assert index_contents(store) == from_scratch(docs)
    assert embedder.embedded, "the vectors are computed again"
    assert "cannot be read" in caplog.text and len(list(state.glob("embeddings.sqlite.corrupt-*"))) == 1
    again = HashingEmbedder()
    index_once(docs, state, embedder=again)
    assert again.embedded == [], "the new cache is used from then on"


def test_a_damaged_page_in_the_cache_is_salvaged_once_not_paid_for_at_every_start(
    tmp_path: Path, caplog: Any
) -> None:
    docs, state = tmp_path / "docs", tmp_path / "state"
    write_docs(docs, 150)
    first = HashingEmbedder()
    index_once(docs, state, embedder=first)
    path = state / "embeddings.sqlite"
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    pages = path.stat().st_size // 4096
    with path.open("r+b") as f:  # one page in the middle of the file overwritten with garbage
        f.seek(pages // 2 * 4096)
        f.write(random.Random(3).randbytes(4096))
    again = HashingEmbedder()
    with caplog.at_level(logging.ERROR, "ragflow.engine.cache"):
        store = index_once(docs, state, embedder=again)
    assert index_contents(store) == from_scratch(docs)
    assert "is damaged" in caplog.text and "kept the" in caplog.text
    assert (
        len([p for p in state.glob("embeddings.sqlite.corrupt-*") if not p.name.endswith(("-wal", "-shm"))])
        == 1
    )
    assert 0 < len(again.embedded) < len(first.embedded), "what could be read was salvaged"
    third = HashingEmbedder()
    index_once(docs, state, embedder=third)
    assert third.embedded == [], "the salvaged cache holds everything from then on"


def test_documents_of_a_source_no_longer_configured_are_not_restored(tmp_path: Path) -> None:
    state = tmp_path / "state"
    write_docs(tmp_path / "a", 3, seed=1)
    write_docs(tmp_path / "b", 4, seed=2)
    index_once(tmp_path / "a", state)
    only_b = index_once(tmp_path / "b", state)
    assert {c[0] for c in index_contents(only_b)} == {f"doc{i:04d}.md" for i in range(4)}
    assert index_contents(only_b) == from_scratch(tmp_path / "b")
    assert describe_state(state)["documents"] == 4


def test_a_second_store_cannot_open_a_state_directory_in_use(tmp_path: Path) -> None:
    write_docs(tmp_path / "docs", 2)
    with open_store(tmp_path / "docs", tmp_path / "state") as store:
        assert store.wait_until_fresh(30)
        with pytest.raises(ConfigError, match="in use by another DocumentStore"):
            open_store(tmp_path / "docs", tmp_path / "state")
    index_once(tmp_path / "docs", tmp_path / "state")  # released by stop()


# -- sources whose position is one cumulative value ---------------------------------------------------------


class LogSource:
    """A stream source in the manner of a Kafka topic: ``log`` is an append-only list of
    ``(doc_id, text | None)``; the position after entry ``i`` is ``i + 1``."""

    position_scope = "stream"

    def __init__(self, log: list[tuple[str, str | None]], name: str = "log") -> None:
        self.log = log
        self.name = name
        self.started_from: Any = "never started"

    def run(self, emit: EmitChanges, stop: threading.Event, mode: str, position: Any = None) -> None:
        self.started_from = position
        start = position or 0
        changes = []
        for offset, (doc_id, text) in enumerate(self.log[start:], start + 1):
            if text is None:
                changes.append(DocumentChange(doc_id, ChangeKind.DELETE, position=offset))
            else:
                metadata = {"path": f"{doc_id}.txt"}
                changes.append(DocumentChange(doc_id, ChangeKind.UPSERT, text.encode(), metadata, offset))
        if changes:
            emit(changes)
        emit([], snapshot_done=True)


def test_a_stream_source_resumes_from_its_last_checkpointed_position(tmp_path: Path) -> None:
    rng = random.Random(4)
    log = [(f"d{i}", paragraph(rng)) for i in range(5)] + [("d1", None)]
    state = tmp_path / "state"
    first = LogSource(log)
    store = DocumentStore(first, embedder=HashingEmbedder(), state_dir=state)
    store.run_static()
    assert first.started_from is None
    expected = index_contents(store)
    assert {c[0] for c in expected} == {"d0", "d2", "d3", "d4"}

    log.extend([("d5", paragraph(rng)), ("d0", None)])
    embedder, second = HashingEmbedder(), LogSource(log)
    store = DocumentStore(second, embedder=embedder, state_dir=state)
    store.run_static()
    assert second.started_from == 6
    assert {c[0] for c in index_contents(store)} == {"d2", "d3", "d4", "d5"}
    assert embedder.embedded == [log[6][1]]
    assert describe_state(state)["sources"]["log"]["position"] == "8"


def test_uploaded_documents_are_restored_and_only_later_uploads_are_embedded(tmp_path: Path) -> None:
    uploads, state = tmp_path / "uploads", tmp_path / "state"
    rng = random.Random(8)
    source = UploadSource(directory=uploads)
    source.put("a.md", paragraph(rng).encode())
    source.put("b.md", paragraph(rng).encode())
    store = DocumentStore(source, embedder=HashingEmbedder(), state_dir=state)
    with store:
        assert store.wait_until_fresh(30)
        source.put("c.md", paragraph(rng).encode())
        source.delete("a.md")
        assert eventually(lambda: {c[0] for c in index_contents(store)} == {"upload://b.md", "upload://c.md"})
    expected = index_contents(store)
    assert describe_state(state)["sources"]["upload"]["scope"] == "stream"

    embedder, again = HashingEmbedder(), UploadSource(directory=uploads)
    store = DocumentStore(again, embedder=embedder, state_dir=state)
    with store:
        assert store.wait_until_fresh(30)
        assert index_contents(store) == expected and embedder.embedded == []
        d = again.put("d.md", b"A new upload after the restart.")
        assert eventually(lambda: d.doc_id in {c[0] for c in index_contents(store)})
        assert embedder.embedded == ["A new upload after the restart."]


CRASH_AFTER_FIRST_CHECKPOINT = """
import os, random, sys, time
from ragflow.connectors.upload import UploadSource
from ragflow.store import DocumentStore
from tests.fakes.hashing_embedder import HashingEmbedder
from tests.test_store import paragraph

uploads, state = sys.argv[1], sys.argv[2]
source = UploadSource(directory=uploads)
rng = random.Random(1)
for i in range(30):
    source.put(f"doc{i:02d}.md", paragraph(rng).encode())
store = DocumentStore(source, embedder=HashingEmbedder(), state_dir=state, max_epoch_documents=10)

def crash(report):
    store._checkpointer.flush()  # this epoch's checkpoint is on disk, then the process dies
    os._exit(0)

store.on_update(crash)
store.start()
time.sleep(30)
"""


def test_a_crash_within_a_stream_sources_first_listing_leaves_no_ghost(tmp_path: Path) -> None:
    uploads, state = tmp_path / "uploads", tmp_path / "state"
    script = tmp_path / "crash.py"
    script.write_text(CRASH_AFTER_FIRST_CHECKPOINT)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, str(script), str(uploads), str(state)], cwd=REPO, env=env, timeout=60
    )
    assert done.returncode == 0
    source = UploadSource(directory=uploads)
    source.delete("doc00.md")  # deleted while the store is down
    store = DocumentStore(source, embedder=HashingEmbedder(), state_dir=state, max_epoch_documents=10)
    with store:
        assert store.wait_until_fresh(30)
        assert sorted({c[0] for c in index_contents(store)}) == source.ids(), "no ghost of doc00.md"


def test_a_first_listing_is_cut_only_where_its_source_can_resume() -> None:
    def change(doc_id: str, position: Any) -> DocumentChange:
        return DocumentChange(doc_id, ChangeKind.UPSERT, b"x", {}, position)

    per_document = [change(f"d{i}", {"v": i}) for i in range(25)]
    assert [len(group) for group in _slices(per_document, 10)] == [10, 10, 5]
    stream = [change(f"d{i}", None) for i in range(24)] + [change("d24", {"all": 25})]
    assert [len(group) for group in _slices(stream, 10)] == [25]
    assert _slices([], 10) == [] and [len(g) for g in _slices(per_document, None)] == [25]


class PickyEmbedder(HashingEmbedder):
    """Refuses every batch holding a text with ``POISON`` in it."""

    def embed(self, texts: Any) -> Any:
        if any("POISON" in text for text in texts):
            raise ValueError("the embedder rejected this input")
        return super().embed(texts)


def test_a_chunk_the_embedder_refuses_does_not_make_a_stream_source_start_over(tmp_path: Path) -> None:
    rng = random.Random(6)
    log = [(f"d{i}", paragraph(rng)) for i in range(10)] + [("bad", "POISON that the embedder refuses")]
    state = tmp_path / "state"
    DocumentStore(LogSource(log), embedder=PickyEmbedder(), state_dir=state).run_static()
    for _ in range(2):  # every restart, not only the first
        source, embedder = LogSource(log), PickyEmbedder()
        store = DocumentStore(source, embedder=embedder, state_dir=state)
        store.run_static()
        assert source.started_from == len(log), "resumed from its position, not from the beginning"
        assert store.pipeline.parsed.node.stats()["computed"] == 0  # type: ignore[attr-defined]
        assert embedder.embedded == [], "only the refused chunk is tried again, and it fails again"
        (error,) = store.errors()
        assert error.doc_id == "bad" and "rejected this input" in error.message
        assert {c[0] for c in index_contents(store)} == {f"d{i}" for i in range(10)}


def test_a_resubmitted_document_deleted_while_stopped_stays_deleted(tmp_path: Path) -> None:
    rng = random.Random(7)
    log = [(f"d{i}", paragraph(rng)) for i in range(5)]
    state = tmp_path / "state"
    DocumentStore(LogSource(log), embedder=HashingEmbedder(), state_dir=state).run_static()
    with sqlite3.connect(state / "embeddings.sqlite") as db:  # every vector lost: all are resubmitted
        db.execute("DELETE FROM results")
    db.close()
    log.append(("d2", None))  # deleted while the store was stopped
    for _ in range(2):  # the restart that sees the delete, and the one after it
        store = DocumentStore(LogSource(log), embedder=HashingEmbedder(), state_dir=state)
        store.run_static()
        assert {c[0] for c in index_contents(store)} == {"d0", "d1", "d3", "d4"}
        assert describe_state(state)["documents"] == 4


# -- refusing incompatible states ----------------------------------------------------------------------------


def test_a_state_of_another_embedding_model_is_refused_with_what_differs(tmp_path: Path) -> None:
    write_docs(tmp_path / "docs", 2)
    index_once(tmp_path / "docs", tmp_path / "state")
    with pytest.raises(IncompatibleStateError) as caught:
        open_store(tmp_path / "docs", tmp_path / "state", HashingEmbedder(dim=32))
    message = str(caught.value)
    assert "embedding model 'test/hashing-64' (this store: 'test/hashing-32')" in message
    assert "embedding dimension '64' (this store: '32')" in message
    assert "--state-dir" in message and "on_incompatible_state='rebuild'" in message
    assert isinstance(caught.value, ConfigError)
    open_store(tmp_path / "docs", tmp_path / "state").stop()  # the refusal left the directory usable


def test_a_state_of_another_splitter_is_refused(tmp_path: Path) -> None:
    write_docs(tmp_path / "docs", 2)
    index_once(tmp_path / "docs", tmp_path / "state")
    with pytest.raises(IncompatibleStateError, match="parser/splitter"):
        open_store(tmp_path / "docs", tmp_path / "state", splitter=TokenSplitter(max_tokens=60))


class WordWindow:
    """A model window of 40 tokens, a word each (and 2 special ones)."""

    name, max_tokens = "fake word tokens", 40

    def count(self, texts: Sequence[str]) -> list[int]:
        return [2 + len(text.split()) for text in texts]

    def bound(self, text: str) -> int:
        return self.count([text])[0]


class WindowedHashingEmbedder(HashingEmbedder):
    """The same model as ``HashingEmbedder``, which now tells the splitter its input window."""

    def input_window(self) -> WordWindow:
        return WordWindow()


def test_a_state_split_without_the_models_window_is_refused_once_the_window_is_known(tmp_path: Path) -> None:
    # chunks cut to the model's window have other boundaries (and ids): an older state must not be
    # mixed with them, so the window is part of the parser/splitter identity
    write_docs(tmp_path / "docs", 2)
    before = index_once(tmp_path / "docs", tmp_path / "state")
    assert max(len(chunk[-1].split()) for chunk in index_contents(before)) > 38  # 40-word paragraphs
    with pytest.raises(IncompatibleStateError, match="parser/splitter"):
        open_store(tmp_path / "docs", tmp_path / "state", WindowedHashingEmbedder())
    embedder = WindowedHashingEmbedder()
    after = index_once(
        tmp_path / "docs", tmp_path / "state", embedder=embedder, on_incompatible_state="rebuild"
    )
    assert max(len(chunk[-1].split()) for chunk in index_contents(after)) <= 38
    assert index_once(tmp_path / "docs", tmp_path / "state", embedder=WindowedHashingEmbedder()).index.count()


def test_rebuild_discards_an_incompatible_state_and_indexes_again(tmp_path: Path, caplog: Any) -> None:
    docs, state = tmp_path / "docs", tmp_path / "state"
    write_docs(docs, 5)
    index_once(docs, state)
    embedder = HashingEmbedder(dim=32)
    with caplog.at_level(logging.WARNING, "ragflow.persistence"):
        store = index_once(docs, state, embedder=embedder, on_incompatible_state="rebuild")
    assert "discarding it as asked" in caplog.text
    assert len(embedder.embedded) == store.index.count() > 0
    assert index_contents(store) == from_scratch(docs)  # the same splitter: the same chunks
    assert describe_state(state)["model_id"] == "test/hashing-32"
    again = HashingEmbedder(dim=32)
    assert open_store(docs, state, again).index.count() == store.index.count()


def test_an_unknown_on_incompatible_state_value_is_a_config_error(tmp_path: Path) -> None:
    write_docs(tmp_path / "docs", 1)
    with pytest.raises(ConfigError, match="'refuse', 'rebuild' or 'migrate'"):
        open_store(tmp_path / "docs", tmp_path / "state", on_incompatible_state="ignore")


# -- damaged state files -------------------------------------------------------------------------------------


def truncate_half(path: Path) -> None:
    os.truncate(path, path.stat().st_size // 2)


def overwrite_header(path: Path) -> None:
    with path.open("r+b") as f:
        f.write(b"\x00garbage" * 8)


def flip_a_saved_text(path: Path) -> None:
    """Change one letter inside a saved chunk text: only the row checksum can notice."""
    data = bytearray(path.read_bytes())
    at = data.find(b"River")
    if at < 0:
        at = data.find(b"Stone")
    assert at > 0, "a known word should be stored in the state file"
    data[at] ^= 0x20
    path.write_bytes(bytes(data))


def overwrite_random_pages(path: Path) -> None:
    data = bytearray(path.read_bytes())
    rng = random.Random(len(data))
    for _ in range(4):
        at = rng.randrange(4096, len(data) - 64)
        data[at : at + 64] = bytes(rng.randrange(256) for _ in range(64))
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    "damage", [truncate_half, overwrite_header, flip_a_saved_text, overwrite_random_pages]
)
def test_a_damaged_state_file_is_set_aside_and_rebuilt_from_the_cache(
    tmp_path: Path, caplog: Any, damage: Any
) -> None:
    docs, state = tmp_path / "docs", tmp_path / "state"
    write_docs(docs, 40, paragraphs=4)
    index_once(docs, state)
    assert not (state / f"{STATE_FILE}-wal").exists(), "a clean stop folds the log into the file"
    damage(state / STATE_FILE)
    embedder = HashingEmbedder()
    with caplog.at_level(logging.ERROR, "ragflow.persistence"):
        store = index_once(docs, state, embedder=embedder)
    assert index_contents(store) == from_scratch(docs), "never a wrong index"
    assert embedder.embedded == [], "the embedding cache survives a damaged state file"
    if damage is not overwrite_random_pages:  # random bytes may land in free space, harmlessly
        assert f"the state file {state / STATE_FILE} is damaged" in caplog.text
        assert list(state.glob(f"{STATE_FILE}.corrupt-*"))
    assert describe_state(state)["documents"] == 40


# -- checkpoints: atomic, off the hot path, failures kept local --------------------------------------------


def saved_document(doc_id: str, text: str) -> SavedDocument:
    row = DocRow(doc_id, f"digest-{text}", FrozenDict(path=doc_id), source="s", position={"v": text})
    return SavedDocument(ParsedDoc(row, ParseOutcome()))


IDENTITY = StateIdentity("test/model", 8, "parse:test")


def test_an_embedding_cache_write_that_fails_leaves_the_cache_writable(tmp_path: Path) -> None:
    cache = DiskCache(tmp_path / "embeddings.sqlite")
    cache.put_many({b"a": 1})
    (pages,) = cache._db.execute("PRAGMA page_count").fetchone()
    cache._db.execute(f"PRAGMA max_page_count = {pages}")  # as if the disk were full
    with pytest.raises(sqlite3.OperationalError, match="full"):
        cache.put_many({bytes([i]) * 32: b"x" * 5000 for i in range(20)})
    cache._db.execute(f"PRAGMA max_page_count = {2**30}")
    cache.put_many({b"b": 2})
    assert cache.get_many([b"a", b"b"]) == {b"a": 1, b"b": 2}


def test_a_failure_in_the_middle_of_a_checkpoint_leaves_the_previous_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state, _ = open_state(tmp_path, IDENTITY)
    state.write(CheckpointBatch(1, {"a": saved_document("a", "1"), "b": saved_document("b", "1")}))

    def write_then_fail(self: StateFile, *args: Any) -> None:
        original(self, *args)  # the rows are written inside the transaction...
        raise OSError("injected failure")  # ...which then fails before its commit

    original = StateFile._write_rows
    monkeypatch.setattr(StateFile, "_write_rows", write_then_fail)
    batch = CheckpointBatch(2, {"a": None, "b": saved_document("b", "2"), "c": saved_document("c", "2")})
    with pytest.raises(OSError, match="injected"):
        state.write(batch)
    monkeypatch.undo()
    assert state.last_checkpoint is not None and state.last_checkpoint.epoch == 1
    state.close()

    state, saved = open_state(tmp_path, IDENTITY)
    assert {s.doc.row.doc_id: s.doc.row.position for s in saved.documents} == {
        "a": {"v": "1"},
        "b": {"v": "1"},
    }
    assert saved.last_checkpoint is not None and saved.last_checkpoint.epoch == 1
    state.write(batch)  # the same batch commits whole once the failure is gone
    state.close()
    _, saved = open_state(tmp_path, IDENTITY)
    assert {s.doc.row.doc_id: s.doc.row.position for s in saved.documents} == {
        "b": {"v": "2"},
        "c": {"v": "2"},
    }
    assert saved.last_checkpoint is not None and saved.last_checkpoint.documents == 2


def test_a_full_disk_keeps_the_previous_checkpoint_and_indexing_goes_on(tmp_path: Path, caplog: Any) -> None:
    docs, state = tmp_path / "docs", tmp_path / "state"
    write_docs(docs, 3)
    store = open_store(docs, state, checkpoint_interval=0.05)
    with store, caplog.at_level(logging.ERROR, "ragflow.persistence"):
        assert store.wait_until_fresh(30)
        assert eventually(lambda: describe_state(state)["documents"] == 3)
        db = store._checkpointer.state._db  # type: ignore[union-attr]
        assert db is not None
        (pages,) = db.execute("PRAGMA page_count").fetchone()
        db.execute(f"PRAGMA max_page_count = {pages}")  # SQLite now fails as on a full disk (SQLITE_FULL)
        rng = random.Random(1)
        (docs / "new.md").write_text("\n\n".join(paragraph(rng, 300) for _ in range(10)))
        assert eventually(lambda: "new.md" in {c[0] for c in index_contents(store)})
        assert eventually(lambda: "disk is full" in caplog.text)
        assert f"checkpoint to {state / STATE_FILE} failed" in caplog.text
        assert f"no space to write in {state}" in caplog.text
        assert describe_state(state)["documents"] == 3, "the previous checkpoint is kept"
        db.execute(f"PRAGMA max_page_count = {2**30}")  # space again: the retry succeeds
        assert eventually(lambda: describe_state(state)["documents"] == 4, timeout=10)
    restarted = open_store(docs, state)
    assert index_contents(restarted) == from_scratch(docs)
    restarted.stop()


def test_what_could_not_be_saved_before_a_checkpoint_is_saved_once_there_is_space(tmp_path: Path) -> None:
    """The embeddings a full disk kept in memory are saved at the next checkpoint round even when no
    document changed since, and at the latest when the store stops: space may come back between the
    failed save and the checkpoint it preceded (the race CI once lost)."""
    state, _ = open_state(tmp_path, IDENTITY)
    disk_full = [True]
    saves: list[bool] = []

    def save_unsaved() -> bool:
        saves.append(not disk_full[0])
        return not disk_full[0]

    checkpointer = Checkpointer(state, interval=3600, before_write=save_unsaved)
    checkpointer.add(CheckpointBatch(1, {"a": saved_document("a", "1")}))
    assert checkpointer.flush()  # the save failed, the checkpoint itself was written
    disk_full[0] = False  # space again, and nothing changed since
    checkpointer.close()
    assert saves == [False, True], "the stop retried the save though nothing was pending"
    _, saved = open_state(tmp_path, IDENTITY)
    assert [s.doc.row.doc_id for s in saved.documents] == ["a"]


def test_a_save_that_raises_keeps_the_checkpoint_pending(tmp_path: Path, caplog: Any) -> None:
    state, _ = open_state(tmp_path, IDENTITY)
    broken = [True]

    def save_unsaved() -> bool:
        if broken[0]:
            raise RuntimeError("injected")
        return True

    checkpointer = Checkpointer(state, interval=3600, before_write=save_unsaved)
    checkpointer.add(CheckpointBatch(1, {"a": saved_document("a", "1")}))
    with caplog.at_level(logging.ERROR, "ragflow.persistence"):
        assert not checkpointer.flush()
    assert "injected" in caplog.text and checkpointer.pending() == 1
    broken[0] = False
    assert checkpointer.flush() and checkpointer.pending() == 0
    checkpointer.close()


@pytest.fixture
def small_filesystem(tmp_path: Path) -> Iterator[Path]:
    """A 3 MiB tmpfs (needs root, as in CI); skipped where mounting is not allowed."""
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(path: Path) -> None:
    with path.open("wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass


def test_a_really_full_disk_is_reported_and_survived(
    small_filesystem: Path, tmp_path: Path, caplog: Any
) -> None:
    docs, state = tmp_path / "docs", small_filesystem / "state"
    write_docs(docs, 5)
    store = open_store(docs, state, checkpoint_interval=0.05)
    with store, caplog.at_level(logging.ERROR, "ragflow.persistence"):
        assert store.wait_until_fresh(30)
        assert eventually(lambda: describe_state(state)["documents"] == 5)
        fill(small_filesystem / "filler")
        rng = random.Random(2)
        for i in range(5):
            (docs / f"more{i}.md").write_text("\n\n".join(paragraph(rng, 200) for _ in range(20)))
        assert eventually(lambda: len({c[0] for c in index_contents(store)}) == 10), "indexing goes on"
        assert eventually(lambda: "no space to write" in caplog.text)
        assert describe_state(state)["documents"] == 5
        (small_filesystem / "filler").unlink()
        assert eventually(lambda: describe_state(state)["documents"] == 10, timeout=10)
    embedder = HashingEmbedder()
    restarted = open_store(docs, state, embedder)
    with restarted:
        assert restarted.wait_until_fresh(30)
        assert index_contents(restarted) == from_scratch(docs)
        assert embedder.embedded == [], "the vectors kept in memory were saved once there was space"


def test_queries_see_changes_before_their_checkpoint(tmp_path: Path) -> None:
    write_docs(tmp_path / "docs", 2)
    with open_store(tmp_path / "docs", tmp_path / "state", checkpoint_interval=3600) as store:
        assert store.wait_until_fresh(30)
        (tmp_path / "docs" / "late.md").write_text("A lantern by the harbor.")
        assert eventually(lambda: "late.md" in {c[0] for c in index_contents(store)})
        assert describe_state(tmp_path / "state")["documents"] == 0  # not yet durable: nothing waited for it
    assert describe_state(tmp_path / "state")["documents"] == 3  # stop() wrote the final checkpoint


# -- describe_state ------------------------------------------------------------------------------------------


def test_describe_state_reports_what_a_state_directory_holds(tmp_path: Path) -> None:
    assert describe_state(tmp_path / "none") | {"state_dir": None} == {
        "state_dir": None,
        "exists": False,
        "format_version": None,
        "model_id": None,
        "dim": None,
        "parser_id": None,
        "documents": 0,
        "chunks": 0,
        "sources": {},
        "last_checkpoint": None,
        "checkpoints": 0,
        "state_bytes": 0,
        "cache": {"entries": 0, "bytes": 0},
        "problem": None,
    }
    docs, state = tmp_path / "docs", tmp_path / "state"
    write_docs(docs, 6)
    (docs / "empty.txt").write_text("")
    store = open_store(docs, state)
    with store:
        assert store.wait_until_fresh(30)
        assert eventually(lambda: describe_state(state)["documents"] == 7)
        running = describe_state(state, check_integrity=True)  # read while the store writes
    chunks = store.index.count()
    status = describe_state(state)
    json.dumps(status)
    assert running["problem"] is None and running["documents"] == 7
    assert status["format_version"] == 1 and status["model_id"] == "test/hashing-64" and status["dim"] == 64
    assert status["documents"] == 7 and status["chunks"] == chunks
    source = store.feeds[0].name
    assert status["sources"] == {
        source: {"scope": "document", "documents": 7, "chunks": chunks, "positions": 7}
    }
    assert status["last_checkpoint"]["age_seconds"] < 60 and status["checkpoints"] >= 1
    assert status["cache"]["entries"] == chunks and status["cache"]["bytes"] > 0
    assert status["state_bytes"] > 0 and status["problem"] is None
    overwrite_header(state / STATE_FILE)
    assert "not a database" in describe_state(state)["problem"]


# -- kill -9 at any moment -----------------------------------------------------------------------------------


class Child:
    """``tests.crash_harness`` in a subprocess, its output lines queued as they come."""

    def __init__(self, folder: Path, state: Path, *options: str) -> None:
        env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
        command = [sys.executable, "-m", "tests.crash_harness", str(folder), str(state), *options]
        self.process = subprocess.Popen(
            command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.errors: list[str] = []
        self.skipped: list[str] = []  # stdout lines wait_for passed over
        threading.Thread(target=self._read, args=(self.process.stdout, self.lines.put), daemon=True).start()
        threading.Thread(
            target=self._read, args=(self.process.stderr, self.errors.append), daemon=True
        ).start()

    @staticmethod
    def _read(stream: IO[str] | None, put: Any) -> None:
        assert stream is not None
        for line in stream:
            put(line.rstrip("\n"))

    def wait_for(self, wanted: str, timeout: float = 75) -> str | None:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self.lines.get(timeout=min(left, 0.5))
            except queue.Empty:
                if self.process.poll() is not None and self.lines.empty():
                    return None
                continue
            if line.startswith(wanted):
                return line
            self.skipped.append(line)
        return None

    def drain(self) -> None:
        while not self.lines.empty():
            self.lines.get_nowait()

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def problem(self) -> str:
        output = "\n".join(self.skipped[-5:])
        return f"exit code {self.process.poll()}, stdout:\n{output}\nstderr:\n" + "\n".join(self.errors[-60:])


def crash_round(root: Path, state: Path, rng: random.Random, history: list[str]) -> str:
    """Start the child, change the folder, kill it at a moment chosen by ``rng``; returns the moment."""
    moment = rng.choice(["starting", "live", "live", "mid-checkpoint", "mid-checkpoint"])
    interval = rng.choice(["0.002", "0.02", "0.2"])
    options = ["--interval", interval]
    if moment == "mid-checkpoint":
        options += ["--slow-checkpoint", "0.1"]
    child = Child(root, state, *options)
    try:
        if moment == "starting":  # while importing, restoring, or indexing what changed while stopped
            time.sleep(rng.uniform(0.2, 1.5))
        else:
            assert child.wait_for("ready") is not None, child.problem()
            for _ in range(rng.randint(1, 4)):
                history.append(random_step(root, rng))
                time.sleep(rng.uniform(0, 0.15))
            if moment == "mid-checkpoint":
                # a checkpoint that starts after this last step (if the step changed no document, none
                # comes: then it is a live kill)
                child.drain()
                history.append(random_step(root, rng))
                child.wait_for("checkpoint-begin", timeout=3)
                assert child.process.poll() is None, child.problem()
            else:
                time.sleep(rng.uniform(0, 0.3))
    finally:
        child.kill()
    return moment


def dump(root: Path, state: Path) -> dict[str, Any]:
    child = Child(root, state, "--dump")
    line = child.wait_for("{", timeout=120)
    assert line is not None, child.problem()
    child.process.wait(30)
    result: dict[str, Any] = json.loads(line)
    return result


@pytest.mark.parametrize("seed", range(60 if LONG_MODE else 4))
def test_kill_at_any_moment_then_restart_converges_to_a_from_scratch_build(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    root, state = tmp_path / "docs", tmp_path / "state"
    root.mkdir()
    history: list[str] = []
    for _ in range(8):
        history.append(random_step(root, rng))
    moments = []
    for _ in range(rng.randint(2, 4)):
        moments.append(crash_round(root, state, rng, history))
        for _ in range(rng.randint(0, 3)):  # changes made while it is down
            history.append(random_step(root, rng))
    result = dump(root, state)
    expected = [list(chunk) for chunk in from_scratch(root)]
    contents = result["contents"]
    assert result["count"] == len(contents), "the index holds a chunk the contents listing does not"
    assert len({json.dumps(c) for c in contents}) == len(contents), "duplicate chunks"
    assert contents == expected, (
        f"kills at {moments} after {history}:\n"
        f"missing: {[c for c in expected if c not in contents][:5]}\n"
        f"ghosts: {[c for c in contents if c not in expected][:5]}"
    )


def from_scratch_with_uploads(root: Path, uploads: Path) -> list[tuple[Any, ...]]:
    store = DocumentStore(
        [FolderSource(root, reconcile_interval=None), UploadSource(directory=uploads)],
        embedder=HashingEmbedder(),
    )
    store.run_static()
    return index_contents(store)


@pytest.mark.parametrize("seed", range(20 if LONG_MODE else 2))
def test_kill_among_uploads_then_restart_converges(tmp_path: Path, seed: int) -> None:
    rng = random.Random(1000 + seed)
    root, state, uploads = tmp_path / "docs", tmp_path / "state", tmp_path / "uploads"
    root.mkdir()
    for _ in range(4):
        random_step(root, rng)
    for round_ in range(rng.randint(2, 4)):
        options = ["--interval", rng.choice(["0.002", "0.05"]), "--uploads", str(uploads)]
        options += ["--max-epoch-documents", "3"]  # first listings in several slices
        child = Child(root, state, *options, "--upload-seed", str(seed * 10 + round_))
        try:
            if rng.random() < 0.4:  # while restoring or taking in its first listing
                time.sleep(rng.uniform(0.2, 1.2))
            else:
                assert child.wait_for("ready") is not None, child.problem()
                time.sleep(rng.uniform(0.05, 0.8))
        finally:
            child.kill()
        random_step(root, rng)  # changes while it is down: the folder, and the uploads directory by hand
        offline = UploadSource(directory=uploads)
        for _ in range(rng.randint(0, 4)):
            name = f"u{rng.randrange(8)}.md"
            if rng.random() < 0.5:
                offline.delete(name)
            else:
                offline.put(name, paragraph(rng).encode())
    UploadSource(directory=uploads).put("last.md", b"An upload made while it was down.")
    child = Child(root, state, "--uploads", str(uploads), "--dump")
    line = child.wait_for("{", timeout=120)
    assert line is not None, child.problem()
    child.process.wait(30)
    contents = json.loads(line)["contents"]
    expected = [list(chunk) for chunk in from_scratch_with_uploads(root, uploads)]
    assert len({json.dumps(c) for c in contents}) == len(contents), "duplicate chunks"
    assert contents == expected, (
        f"missing: {[c for c in expected if c not in contents][:5]}\n"
        f"ghosts: {[c for c in contents if c not in expected][:5]}"
    )
