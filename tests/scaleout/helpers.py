"""What the scale-out tests share: the chunks a from-scratch build of some documents holds, the chunks a
shared pgvector table holds, and waiting for one to become the other."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from ragflow.parsers import DefaultParser
from ragflow.pipeline import document_chunks
from ragflow.sources import ChangeKind, DocumentChange
from ragflow.splitter import TokenSplitter
from tests.fakes.hashing_embedder import HashingEmbedder

Chunks = set[tuple[str, int, str]]
"""``(doc_id, chunk id, text)`` of every chunk."""


def from_scratch(topic: str, documents: Mapping[str, bytes]) -> Chunks:
    """The chunks of ``documents`` (key -> bytes, sent raw to ``topic``) as one fresh build makes them."""
    parser, splitter = DefaultParser(), TokenSplitter(max_tokens=HashingEmbedder().max_tokens)
    chunks: Chunks = set()
    for key, data in documents.items():
        doc_id = f"kafka://{topic}/{key}"
        change = DocumentChange(doc_id, ChangeKind.UPSERT, data, {"path": doc_id}, None)
        _, _, pieces = document_chunks(change, "kafka", parser, splitter)
        chunks |= {(doc_id, key_, chunk.text) for key_, chunk in pieces}
    return chunks


def stored(dsn: str, table: str) -> tuple[Chunks, int]:
    """The chunks a shared table holds, and how many rows (a duplicate would make them differ)."""
    import psycopg

    with psycopg.connect(dsn) as conn:
        rows = conn.execute(f'SELECT doc_id, id, text FROM "{table}"').fetchall()
    return {(d, int(i), t) for d, i, t in rows}, len(rows)


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def random_document(rng: random.Random, name: str) -> bytes:
    """A document of 20 to 400 random words, one to a few chunks."""
    words = " ".join(f"{name}{rng.randrange(10_000)}" for _ in range(rng.randrange(20, 400)))
    return f"{name}\n\n{words}\n".encode()


def churn(folder: Path, rng: random.Random, names: Sequence[str], changes: int) -> None:
    """``changes`` random changes to ``folder``: a present document deleted (30%), else one of ``names``
    created or rewritten."""
    for _ in range(changes):
        path = folder / rng.choice(names)
        if path.exists() and rng.random() < 0.3:
            path.unlink()
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(random_document(rng, path.stem))
