"""``Answerer.aanswer`` and ``Answerer.astream``: the answers of ``answer`` and ``stream``, with the loop free
while the LLM is slow (a real HTTP server speaking the chat completions protocol)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from ragflow.answer import Answer, Answerer, LLMSettings
from ragflow.connectors.folder import FolderSource
from ragflow.store import DocumentStore
from tests.fakes.hashing_embedder import HashingEmbedder
from tests.fakes.llm_server import FakeLLMServer


def indexed_store(root: Path) -> DocumentStore:
    (root / "lantern.md").write_text("The harbor lantern is kept by Mara. It burns whale oil.")
    store = DocumentStore(FolderSource(root, reconcile_interval=None), embedder=HashingEmbedder())
    store.run_static()
    return store


async def ticking_while(work: asyncio.Future[Answer], every: float = 0.01) -> int:
    ticks = 0
    while not work.done():
        await asyncio.sleep(every)
        ticks += 1
    return ticks


def test_aanswer_answers_with_citations_while_the_loop_keeps_running(tmp_path: Path) -> None:
    store = indexed_store(tmp_path)
    with FakeLLMServer(delay=0.3) as llm:
        answerer = Answerer(store, LLMSettings(llm.base_url, llm.api_key, llm.model))

        async def main() -> tuple[Answer, int]:
            work = asyncio.ensure_future(answerer.aanswer("Who keeps the harbor lantern?", k=1))
            ticks = await ticking_while(work)
            return work.result(), ticks

        answer, ticks = asyncio.run(main())
    assert ticks >= 10, "the loop stalled while the LLM answered"
    assert answer.citations[0].path == str(tmp_path / "lantern.md")
    assert "Mara" in answer.text


def test_astream_yields_the_answer_piece_by_piece(tmp_path: Path) -> None:
    store = indexed_store(tmp_path)
    with FakeLLMServer() as llm:
        answerer = Answerer(store, LLMSettings(llm.base_url, llm.api_key, llm.model))

        async def main() -> tuple[list[str], list[str]]:
            hits, pieces = await answerer.astream("Who keeps the harbor lantern?", k=1)
            return [h.metadata["doc_id"] for h in hits], [piece async for piece in pieces]

        sources, pieces = asyncio.run(main())
    assert sources == ["lantern.md"]
    assert len(pieces) > 1 and "Mara" in "".join(pieces)


def test_aanswer_without_an_llm_is_extractive(tmp_path: Path) -> None:
    answer = asyncio.run(Answerer(indexed_store(tmp_path)).aanswer("Who keeps the harbor lantern?"))
    assert answer.extractive and "Mara" in answer.text
