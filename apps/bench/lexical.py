"""Lexical engines compared at a size: ragflow's ``LexicalIndex``, SQLite FTS5, tantivy and bm25s.

    python -m apps.bench.lexical [--chunks 100000] [--engines ragflow fts5 tantivy bm25s] [--manual DIR]

Chunks are ~150-word windows of the PostgreSQL 15 manual (Debian's ``postgresql-doc-15``), repeated under
new ids until ``--chunks``; every engine indexes the same ``lexical_tokens`` terms. Measured in one run:
the bulk load, a one-document edit (10 chunks deleted and 10 inserted, then visible to a search; median of
20) and a query (the evaluation questions, top 10; p50 and p95). tantivy and bm25s are optional imports
(``pip install tantivy bm25s``); bm25s has no incremental update, so its edit is a rebuild. Prints Markdown.
"""

from __future__ import annotations

import argparse
import os
import platform
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Protocol

import numpy as np

from apps.bench.retrieval_quality import MANUAL, load_questions, parse_pages
from ragflow.documents import VectorRecord
from ragflow.retrieval.lexical import LexicalIndex
from ragflow.retrieval.tokens import lexical_tokens

WORDS_PER_CHUNK = 150
EDIT_CHUNKS = 10


def corpus(manual: Path, total: int) -> list[str]:
    pages = sorted(manual.glob("*.html"))
    texts: list[str] = []
    for _, text in parse_pages(pages):
        words = text.split()
        texts.extend(" ".join(words[i : i + WORDS_PER_CHUNK]) for i in range(0, len(words), WORDS_PER_CHUNK))
    return [texts[i % len(texts)] for i in range(total)]


class Engine(Protocol):
    name: str

    def load(self, texts: list[str]) -> None: ...
    def edit(self, ids: list[int], texts: list[str]) -> None: ...
    def query(self, text: str) -> list[int]: ...


class Postings:
    name = "ragflow LexicalIndex (postings in memory; terms saved in SQLite, WAL)"

    def __init__(self, folder: Path) -> None:
        self.index = LexicalIndex(folder / "lexical.sqlite")
        self.metadata = {"path": "manual.html"}

    def _records(self, ids: list[int], texts: list[str]) -> list[VectorRecord]:
        empty = np.zeros(1, np.float32)
        return [VectorRecord(i, empty, t, self.metadata, {}) for i, t in zip(ids, texts, strict=True)]

    def load(self, texts: list[str]) -> None:
        self.index.apply(self._records(list(range(len(texts))), texts), [])

    def edit(self, ids: list[int], texts: list[str]) -> None:
        self.index.apply(self._records(ids, texts), ids)

    def query(self, text: str) -> list[int]:
        return [hit.id for hit in self.index.search(text, 10)]


class Fts5:
    name = "SQLite FTS5 bm25() (file in WAL mode, any term of the query)"

    def __init__(self, folder: Path) -> None:
        self.db = sqlite3.connect(folder / "fts5.sqlite", isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        tokenizer = "porter unicode61 tokenchars '._:-'"
        self.db.execute(f'CREATE VIRTUAL TABLE fts USING fts5(terms, tokenize="{tokenizer}")')

    def _write(self, ids: list[int], texts: list[str]) -> None:
        self.db.execute("BEGIN")
        self.db.executemany("DELETE FROM fts WHERE rowid = ?", [(i,) for i in ids])
        rows = [(i, " ".join(lexical_tokens(t))) for i, t in zip(ids, texts, strict=True)]
        self.db.executemany("INSERT INTO fts (rowid, terms) VALUES (?, ?)", rows)
        self.db.execute("COMMIT")

    def load(self, texts: list[str]) -> None:
        self._write(list(range(len(texts))), texts)

    def edit(self, ids: list[int], texts: list[str]) -> None:
        self._write(ids, texts)

    def query(self, text: str) -> list[int]:
        match = " OR ".join(f'"{t}"' for t in dict.fromkeys(lexical_tokens(text)))
        if not match:
            return []
        sql = "SELECT rowid FROM fts WHERE fts MATCH ? ORDER BY bm25(fts) LIMIT 10"
        return [row[0] for row in self.db.execute(sql, (match,))]


class Tantivy:
    name = "tantivy (in RAM, commit + reload per edit)"

    def __init__(self) -> None:
        import tantivy

        builder = tantivy.SchemaBuilder()
        builder.add_integer_field("id", stored=True, indexed=True)
        builder.add_text_field("terms", stored=False, tokenizer_name="en_stem")
        self.index = tantivy.Index(builder.build())
        self.writer = self.index.writer()

    def load(self, texts: list[str]) -> None:
        import tantivy

        for i, text in enumerate(texts):
            self.writer.add_document(tantivy.Document(id=i, terms=" ".join(lexical_tokens(text))))
        self.writer.commit()
        self.index.reload()

    def edit(self, ids: list[int], texts: list[str]) -> None:
        import tantivy

        for i, text in zip(ids, texts, strict=True):
            self.writer.delete_documents("id", i)
            self.writer.add_document(tantivy.Document(id=i, terms=" ".join(lexical_tokens(text))))
        self.writer.commit()
        self.index.reload()

    def query(self, text: str) -> list[int]:
        terms = " ".join(f'"{t}"' for t in dict.fromkeys(lexical_tokens(text)))
        if not terms:
            return []
        searcher = self.index.searcher()
        found = searcher.search(self.index.parse_query(terms, ["terms"]), 10)
        return [searcher.doc(address)["id"][0] for _, address in found.hits]


class Bm25s:
    name = "bm25s (sparse matrix, rebuilt per edit)"

    def load(self, texts: list[str]) -> None:
        self.tokens = [lexical_tokens(t) for t in texts]
        self._build()

    def _build(self) -> None:
        import bm25s

        self.retriever = bm25s.BM25()
        self.retriever.index(self.tokens, show_progress=False)

    def edit(self, ids: list[int], texts: list[str]) -> None:
        for i, text in zip(ids, texts, strict=True):
            self.tokens[i] = lexical_tokens(text)
        self._build()

    def query(self, text: str) -> list[int]:
        terms = [t for t in dict.fromkeys(lexical_tokens(text)) if t in self.retriever.vocab_dict]
        if not terms:
            return []
        ids, _ = self.retriever.retrieve([terms], k=10, show_progress=False, n_threads=1)
        return [int(i) for i in ids[0]]


def timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return (time.perf_counter() - started) * 1000


def measure(engine: Engine, texts: list[str], questions: list[str]) -> str:
    load_s = timed(partial(engine.load, texts)) / 1000
    edits = []
    for n in range(20):
        ids = [(n * 997 + j) % len(texts) for j in range(EDIT_CHUNKS)]
        changed = [f"{texts[i]} edited{n}" for i in ids]
        edits.append(timed(partial(engine.edit, ids, changed)))
        if n == 0 and ids[0] not in engine.query(f"edited{n}"):
            raise SystemExit(f"{engine.name}: an edited chunk is not found by its new word")
        if len(texts) > 20_000 and isinstance(engine, Bm25s) and n == 2:
            break  # a rebuild per edit: three are enough to know
    for question in questions[:10]:  # warm caches, as a serving index is warm
        engine.query(question)
    queries = sorted(timed(partial(engine.query, question)) for question in questions)
    return (
        f"| {engine.name} | {len(texts):,} | {load_s:.1f} | {statistics.median(edits):.1f} "
        f"| {queries[len(queries) // 2]:.1f} | {queries[int(len(queries) * 0.95)]:.1f} |"
    )


def make_engine(name: str, folder: Path) -> Engine:
    if name == "ragflow":
        return Postings(folder)
    if name == "fts5":
        return Fts5(folder)
    return Tantivy() if name == "tantivy" else Bm25s()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chunks", type=int, nargs="+", default=[100_000])
    parser.add_argument("--engines", nargs="+", default=["ragflow", "fts5", "tantivy", "bm25s"])
    parser.add_argument("--manual", type=Path, default=MANUAL)
    args = parser.parse_args(argv)
    questions = [q.text for q in load_questions()]
    base = corpus(args.manual, max(args.chunks))
    print(
        f"- {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {platform.platform()}, "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start; {len(questions)} queries"
    )
    print()
    print(
        "| engine | chunks | bulk load s | one-document edit ms (10 chunks) | query p50 ms | query p95 ms |"
    )
    print("|---|--:|--:|--:|--:|--:|")
    for size in args.chunks:
        for name in args.engines:
            with tempfile.TemporaryDirectory() as folder:
                print(measure(make_engine(name, Path(folder)), base[:size], questions), flush=True)


if __name__ == "__main__":
    main()
