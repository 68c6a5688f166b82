"""The asyncio face of ``DocumentStore`` (``async with``, ``aretrieve``, ``await_until_fresh``, ``updates()``,
``from_config``) over a real folder and the hashing embedder; the real model's event-loop test is in
``test_async_model.py``."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from ragflow.connectors.folder import FolderSource
from ragflow.connectors.upload import UploadSource
from ragflow.engine import EpochReport
from ragflow.errors import ConfigError
from ragflow.store import DocumentStore, StoreUpdate
from tests.fakes.hashing_embedder import HashingEmbedder


def folder_store(root: Path, **options: Any) -> DocumentStore:
    return DocumentStore(FolderSource(root, reconcile_interval=None), embedder=HashingEmbedder(), **options)


async def next_update(stream: Any, naming: str, timeout: float = 15) -> StoreUpdate:
    """The first update from ``stream`` that names document ``naming``."""
    deadline = time.monotonic() + timeout
    while True:
        update: StoreUpdate = await asyncio.wait_for(anext(stream), max(0.01, deadline - time.monotonic()))
        if naming in update.documents:
            return update


async def searchable(store: DocumentStore, text: str, timeout: float = 15) -> None:
    """Wait until ``text`` is the best hit for itself (an upload is queued in its source, where
    ``wait_until_fresh`` does not see it)."""
    deadline = time.monotonic() + timeout
    while (hits := await store.aretrieve(text, k=1)) == [] or hits[0].text != text:
        assert time.monotonic() < deadline, f"{text!r} not searchable after {timeout} s"
        await asyncio.sleep(0.005)


def test_async_with_indexes_and_aretrieve_finds_the_document(tmp_path: Path) -> None:
    (tmp_path / "falcon.md").write_text("The falcon nests high on the canyon wall.")
    (tmp_path / "maple.md").write_text("Maple syrup is boiled from the sap in early spring.")

    async def main() -> tuple[bool, list[str], dict[str, Any]]:
        async with folder_store(tmp_path) as store:
            fresh = await store.await_until_fresh(30)
            hits = await store.aretrieve("where does the falcon nest", k=1)
            filtered = await store.aretrieve("falcon", k=5, filepath_globpattern="**/maple.md")
            return fresh, [h.metadata["doc_id"] for h in hits + filtered], store.statistics()

    fresh, found, stats = asyncio.run(main())
    assert fresh
    assert found == ["falcon.md", "maple.md"]
    assert stats["file_count"] == 2


class BlockingQueries(HashingEmbedder):
    """Indexes at once; every query blocks its thread until ``release`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()
        self.query_threads: list[tuple[str, int]] = []

    def replica(self) -> HashingEmbedder:
        outer = self

        class Blocking(HashingEmbedder):
            def embed(self, texts: Any) -> Any:
                outer.query_threads.append((threading.current_thread().name, len(texts)))
                outer.release.wait(30)
                return super().embed(texts)

        return Blocking()


def test_a_blocked_query_does_not_block_the_loop(tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text("The lantern on the harbor wall.")
    embedder = BlockingQueries()

    async def main() -> tuple[int, list[tuple[str, int]]]:
        store = DocumentStore(FolderSource(tmp_path, reconcile_interval=None), embedder=embedder)
        async with store:
            assert await store.await_until_fresh(30)
            queries = [asyncio.ensure_future(store.aretrieve("lantern")) for _ in range(3)]
            ticks = 0
            for _ in range(20):  # the loop keeps running while three queries hold their threads
                await asyncio.sleep(0.005)
                ticks += 1
            assert not any(q.done() for q in queries)
            embedder.release.set()
            results = await asyncio.gather(*queries)
            assert all(r[0].metadata["doc_id"] == "a.md" for r in results)
            return ticks, embedder.query_threads

    ticks, threads = asyncio.run(main())
    assert ticks == 20
    # The three queries were embedded off the loop, on the store's own threads (concurrent queries may
    # share one forward pass on the query batcher's thread, issue 19), each exactly once.
    assert sum(count for _, count in threads) == 3, threads
    assert all(name.startswith(("ragflow-async", "ragflow-query-batcher")) for name, _ in threads), threads


def test_a_cancelled_aretrieve_leaves_the_store_usable(tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text("Copper wire and a silver window.")
    embedder = BlockingQueries()

    async def main() -> str:
        async with DocumentStore(FolderSource(tmp_path, reconcile_interval=None), embedder=embedder) as store:
            assert await store.await_until_fresh(30)
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(store.aretrieve("copper"), 0.05)
            embedder.release.set()
            hits = await store.aretrieve("copper")
            return str(hits[0].metadata["doc_id"])

    assert asyncio.run(main()) == "a.md"


def test_await_until_fresh_times_out_while_indexing_is_stuck(tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text("Stuck in the embedder.")
    release = threading.Event()

    class Stuck(HashingEmbedder):
        def embed(self, texts: Any) -> Any:
            release.wait(30)
            return super().embed(texts)

    async def main() -> tuple[bool, float, bool]:
        async with DocumentStore(FolderSource(tmp_path, reconcile_interval=None), embedder=Stuck()) as store:
            started = time.monotonic()
            stuck = await store.await_until_fresh(0.3)
            took = time.monotonic() - started
            release.set()
            return stuck, took, await store.await_until_fresh(30)

    stuck, took, fresh = asyncio.run(main())
    assert stuck is False and 0.25 <= took < 5
    assert fresh


def test_updates_name_the_edited_added_removed_and_broken_documents(tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text("River stone and lantern.")
    (tmp_path / "b.md").write_text("Maple copper signal.")

    async def main() -> list[StoreUpdate]:
        async with folder_store(tmp_path) as store:
            assert await store.await_until_fresh(30)
            stream = store.updates()
            (tmp_path / "a.md").write_text("River stone and a brand new lantern.")
            edited = await next_update(stream, "a.md")
            (tmp_path / "b.md").unlink()
            removed = await next_update(stream, "b.md")
            (tmp_path / "broken.pdf").write_bytes(b"%PDF-1.7 this is not a pdf")
            broken = await next_update(stream, "broken.pdf")
            return [edited, removed, broken]

    edited, removed, broken = asyncio.run(main())
    assert edited.indexed == ("a.md",) and edited.removed == () and edited.chunks_embedded >= 1
    assert edited.lag is not None and 0 <= edited.lag < 15
    assert edited.searchable_at <= time.time() and edited.errors == ()
    assert removed.removed == ("b.md",) and removed.lag is None
    assert [(e.doc_id, e.stage) for e in broken.errors] == [("broken.pdf", "parse")]


def test_a_consumer_that_stops_reading_gets_the_latest_update_and_the_count_it_skipped(
    tmp_path: Path,
) -> None:
    uploads = UploadSource()
    epochs: list[int] = []

    async def main() -> tuple[StoreUpdate, StoreUpdate]:
        store = DocumentStore(uploads, embedder=HashingEmbedder())
        store.on_update(lambda report: epochs.append(report.epoch) if report.output_changes else None)
        async with store:
            assert await store.await_until_fresh(30)
            stream = store.updates()
            for i in range(25):  # the consumer does not read while 25 epochs change documents
                text = f"version {i} of the notes"
                uploads.put("notes.md", text.encode())
                await searchable(store, text)
            latest = await asyncio.wait_for(anext(stream), 5)
            uploads.put("other.md", b"something else")
            following = await next_update(stream, "upload://other.md")
            return latest, following

    latest, following = asyncio.run(main())
    assert latest.indexed == ("upload://notes.md",)
    assert latest.missed == 24, f"epochs seen by on_update: {epochs}"
    assert following.missed == 0


def test_updates_end_when_the_store_stops(tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text("Quiet meadow.")

    async def main() -> list[StoreUpdate]:
        store = folder_store(tmp_path)
        async with store:
            assert await store.await_until_fresh(30)
            stream = store.updates()
        return [u async for u in stream]

    assert asyncio.run(asyncio.wait_for(main(), 30)) == []


def test_on_update_still_calls_back_for_sync_code(tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text("Ember and tundra.")
    reports: list[EpochReport] = []
    store = folder_store(tmp_path)
    store.on_update(reports.append)
    with store:
        assert store.wait_until_fresh(30)
    assert reports and all(isinstance(r, EpochReport) for r in reports)


def test_from_config_builds_the_configured_store(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text("Violet anchor comet.")
    config = tmp_path / "app.yaml"
    config.write_text("sources:\n  - kind: folder\n    root: docs\n    reconcile_interval: null\n")

    async def main() -> list[Any]:
        async with DocumentStore.from_config(config, embedder=HashingEmbedder()) as store:
            assert await store.await_until_fresh(30)
            return [h.metadata["path"] for h in await store.aretrieve("comet")]

    assert asyncio.run(main()) == [str(docs / "a.md")]


def test_from_config_names_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        DocumentStore.from_config(tmp_path / "nowhere.yaml")
