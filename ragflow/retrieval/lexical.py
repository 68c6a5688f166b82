"""The lexical (BM25) index of the chunks: an inverted index in memory (postings in growable arrays,
scored with numpy), with each chunk's terms saved in a SQLite file. ``SearchIndexes`` keeps it in step
with the vector index; on restart it is rebuilt from the file's terms, and only the chunks whose text
changed since (or that a failed write left out) are tokenised again.

Why not an engine (docs/benchmarks.md, "Lexical index", same run, 100k chunks): SQLite FTS5 scores every
row matching any term of a question (p50 81 ms); tantivy answers in 0.6 ms but a commit that makes an
edit visible costs 18 ms; bm25s answers in 3 ms but has no update (an edit is a 13 s rebuild). This index
answers in a few ms and applies a one-document edit in about a millisecond whatever the index's size.
"""

from __future__ import annotations

import hashlib
import logging
import sqlite3
import threading
from array import array
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ..documents import Hit, VectorRecord
from ..errors import IndexStoreError
from .bm25 import K1, B, idf
from .tokens import lexical_tokens

__all__ = ["LEXICAL_FILE", "LexicalIndex"]

log = logging.getLogger("ragflow.retrieval")

LEXICAL_FILE = "lexical.sqlite"
_FORMAT = "1"  # the file's layout and the tokenizer; a file of another format is rebuilt from the state

Metadata = Mapping[str, Any]


def _digest(text: str) -> int:
    """A 63-bit digest of a chunk's text: tells on restart whether the file's terms are still current."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big") >> 1


@dataclass(slots=True)
class _Slot:
    """A chunk in memory: its id, what a filter and a hit need, and its terms (for deletes and compaction)."""

    id: int
    text: str
    metadata: Metadata
    extra: Metadata
    term_ids: npt.NDArray[np.int32]
    counts: npt.NDArray[np.float32]


class _Postings:
    """The inverted index: per term, the slots holding it and how often. A deleted chunk's slot stays in
    the postings, masked, until a compaction renumbers the live slots."""

    def __init__(self) -> None:
        self.vocabulary: dict[str, int] = {}
        self.slots: list[array[int]] = []
        self.counts: list[array[float]] = []
        self.document_frequency: list[int] = []
        self.chunks: list[_Slot | None] = []
        self.lengths = array("f")
        self.ids = array("q")  # slot -> chunk id, for ordering equal scores without touching chunks
        self.slot_of: dict[int, int] = {}
        self.total_length = 0.0

    def add(self, record: VectorRecord, terms: Sequence[str]) -> None:
        slot = len(self.chunks)
        counted = Counter(terms)
        term_ids = np.empty(len(counted), np.int32)
        for n, (term, count) in enumerate(counted.items()):
            term_id = self.vocabulary.get(term)
            if term_id is None:
                term_id = self.vocabulary[term] = len(self.slots)
                self.slots.append(array("i"))
                self.counts.append(array("f"))
                self.document_frequency.append(0)
            self.slots[term_id].append(slot)
            self.counts[term_id].append(count)
            self.document_frequency[term_id] += 1
            term_ids[n] = term_id
        counts = np.fromiter(counted.values(), np.float32, len(counted))
        self.chunks.append(_Slot(record.id, record.text, record.metadata, record.extra, term_ids, counts))
        self.lengths.append(len(terms))
        self.total_length += len(terms)
        self.ids.append(record.id)
        self.slot_of[record.id] = slot

    def remove(self, record_id: int) -> None:
        slot = self.slot_of.pop(record_id, None)
        if slot is None:
            return
        chunk = self.chunks[slot]
        assert chunk is not None
        for term_id in chunk.term_ids.tolist():
            self.document_frequency[term_id] -= 1
        self.total_length -= self.lengths[slot]
        self.lengths[slot] = 0.0
        self.chunks[slot] = None

    def needs_compaction(self) -> bool:
        dead = len(self.chunks) - len(self.slot_of)
        return dead > max(1024, len(self.slot_of))

    def compacted(self) -> _Postings:
        """The same chunks with the deleted slots gone (vectorised: ~1 s at 100k chunks)."""
        fresh = _Postings()
        fresh.vocabulary = self.vocabulary
        live = [c for c in self.chunks if c is not None]
        fresh.chunks = list(live)
        fresh.slot_of = {c.id: n for n, c in enumerate(live)}
        fresh.lengths = array("f", (float(c.counts.sum()) for c in live))
        fresh.ids = array("q", (c.id for c in live))
        fresh.total_length = self.total_length
        fresh.document_frequency = self.document_frequency
        term_ids = np.concatenate([c.term_ids for c in live]) if live else np.empty(0, np.int32)
        counts = np.concatenate([c.counts for c in live]) if live else np.empty(0, np.float32)
        slots = np.repeat(np.arange(len(live), dtype=np.int32), [len(c.term_ids) for c in live])
        order = np.argsort(term_ids, kind="stable")
        bounds = np.searchsorted(term_ids[order], np.arange(len(self.slots) + 1))
        by_slot, by_count = slots[order], counts[order]
        for term_id in range(len(self.slots)):
            lo, hi = bounds[term_id], bounds[term_id + 1]
            fresh.slots.append(array("i", by_slot[lo:hi].tobytes()))
            fresh.counts.append(array("f", by_count[lo:hi].tobytes()))
        return fresh

    def scores(self, term_ids: list[int]) -> npt.NDArray[np.float64]:
        """BM25 of every slot for these terms (0 for a slot holding none, or deleted)."""
        live = len(self.slot_of)
        scores = np.zeros(len(self.chunks))
        if not live:
            return scores
        average = self.total_length / live
        lengths = np.frombuffer(self.lengths, np.float32)
        for term_id in term_ids:
            frequency = self.document_frequency[term_id]
            if frequency <= 0:
                continue
            weight = idf(live, frequency)
            slots = np.frombuffer(self.slots[term_id], np.int32)
            counts = np.frombuffer(self.counts[term_id], np.float32)
            norm = K1 * (1 - B + B * lengths[slots] / average)
            scores += np.bincount(slots, weight * counts * (K1 + 1) / (counts + norm), minlength=len(scores))
        scores[lengths == 0] = 0.0  # deleted slots (their postings stay until compaction)
        return scores


class LexicalIndex:
    """BM25 search over chunk texts, applied per epoch like a ``VectorIndex``.

    Args:
        path: the SQLite file of each chunk's terms (created if missing); ``None``: none.

    The file only spares a restart the tokenising: ``restore`` checks it against the checkpoint by each
    chunk's text digest, so a write that failed (a full disk) is logged and costs nothing but that
    work later. A hit's ``dist`` is ``1 / (1 + score)`` of its BM25 score: ascending like a vector
    hit's, but not a cosine distance.
    """

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else None
        self._lock = threading.RLock()
        self._postings = _Postings()
        self._db: sqlite3.Connection | None = None
        self._file_failing = False
        if path is None:
            return
        try:
            self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")  # the state's checkpoint is what must be durable
            self._create_tables(self._db)
        except sqlite3.Error as exc:
            raise IndexStoreError(f"cannot open the lexical index file {path}: {exc}") from exc

    @staticmethod
    def _create_tables(db: sqlite3.Connection) -> None:
        db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
        row = db.execute("SELECT value FROM meta WHERE key = 'format'").fetchone()
        if row is not None and row[0] != _FORMAT:
            db.execute("DROP TABLE IF EXISTS chunks")
        db.execute("CREATE TABLE IF NOT EXISTS chunks (id INTEGER PRIMARY KEY, digest INTEGER, terms TEXT)")
        db.execute("INSERT OR REPLACE INTO meta VALUES ('format', ?)", (_FORMAT,))

    # -- writing ----------------------------------------------------------------------------------

    def apply(self, upserts: Iterable[VectorRecord], deletes: Iterable[int]) -> None:
        """Delete then upsert (``VectorIndex.apply``'s rules), visible to searches all at once."""
        with self.applying(upserts, deletes):
            pass

    def applying(self, upserts: Iterable[VectorRecord], deletes: Iterable[int]) -> _Apply:
        """A context manager that tokenises the changes, holds searches back while its block runs, and
        makes the changes searchable on a clean exit (none of them if the block raises):
        ``SearchIndexes`` applies the vector index inside it."""
        records = {r.id: r for r in upserts}
        return _Apply(self, records, set(deletes), {i: lexical_tokens(r.text) for i, r in records.items()})

    def _publish(
        self, records: dict[int, VectorRecord], deletes: set[int], terms: dict[int, list[str]]
    ) -> None:
        postings = self._postings
        for i in deletes | records.keys():
            postings.remove(i)
        for i, r in records.items():
            postings.add(r, terms[i])
        if postings.needs_compaction():
            self._postings = postings.compacted()
        self._save(records, deletes - records.keys(), terms)

    def _save(self, records: dict[int, VectorRecord], deletes: set[int], terms: dict[int, list[str]]) -> None:
        """Write the changes to the file, or log why not (``restore`` makes up for a lost write)."""
        if self._db is None:
            return
        try:
            with self._db:
                self._db.execute("BEGIN")
                self._db.executemany("DELETE FROM chunks WHERE id = ?", [(i,) for i in deletes])
                self._db.executemany(
                    "INSERT OR REPLACE INTO chunks VALUES (?, ?, ?)",
                    [(i, _digest(r.text), " ".join(terms[i])) for i, r in records.items()],
                )
            if self._file_failing:
                log.info("the lexical index file %s is written again", self.path)
            self._file_failing = False
        except sqlite3.Error as exc:
            if not self._file_failing:
                log.warning(
                    "the lexical index file %s could not be written (%s); searches are not affected, a "
                    "restart tokenises the chunks it misses",
                    self.path,
                    exc,
                )
            self._file_failing = True

    def restore(self, records: Sequence[VectorRecord]) -> int:
        """Hold exactly ``records`` (a checkpoint's chunks), with the terms the file has for those whose
        text it holds unchanged; only the others are tokenised. Returns how many were tokenised."""
        with self._lock:
            stored: dict[int, tuple[int, str]] = {}
            if self._db is not None:
                found = self._db.execute("SELECT id, digest, terms FROM chunks")
                stored = {i: (digest, terms) for i, digest, terms in found}
            wanted = {r.id: r for r in records}
            terms: dict[int, list[str]] = {}
            changed: dict[int, VectorRecord] = {}
            for i, r in wanted.items():
                held = stored.get(i)
                if held is not None and held[0] == _digest(r.text):
                    terms[i] = held[1].split()
                else:
                    changed[i] = r
                    terms[i] = lexical_tokens(r.text)
            self._postings = _Postings()
            for i, r in wanted.items():
                self._postings.add(r, terms[i])
            self._save(changed, set(stored.keys() - wanted.keys()), terms)
            return len(changed)

    # -- reading ----------------------------------------------------------------------------------

    def search(self, query: str, k: int, filter: Callable[[Metadata], bool] | None = None) -> list[Hit]:
        """The ``k`` best chunks for ``query`` by BM25 among those whose metadata ``filter`` accepts (the
        filter is checked on the ranked matches until ``k`` pass: never fewer because of it)."""
        if k <= 0:
            return []
        words = dict.fromkeys(lexical_tokens(query))
        with self._lock:  # one epoch's postings throughout (an apply waits: it is short)
            postings = self._postings
            scores = postings.scores([postings.vocabulary[t] for t in words if t in postings.vocabulary])
            candidates = np.flatnonzero(scores)
            if filter is None and len(candidates) > k:  # the k best, and every chunk tied with the k-th
                kth = np.partition(scores[candidates], len(candidates) - k)[len(candidates) - k]
                candidates = candidates[scores[candidates] >= kth]
            # best first; equal scores by chunk id, so the order never depends on slots
            ids = np.frombuffer(postings.ids, np.int64)[candidates]
            order = candidates[np.lexsort((ids, -scores[candidates]))]
            hits: list[Hit] = []
            for slot in order.tolist():  # a filter is tested only as far as it takes to find k
                chunk = postings.chunks[slot]
                if chunk is not None and (filter is None or filter(chunk.metadata)):
                    metadata = {**chunk.metadata, **chunk.extra}
                    hits.append(Hit(chunk.id, chunk.text, metadata, 1.0 / (1.0 + float(scores[slot]))))
                    if len(hits) == k:
                        break
            return hits

    def count(self) -> int:
        return len(self._postings.slot_of)

    def ids(self) -> set[int]:
        """The ids of the chunks held (what tests compare with the vector index's)."""
        with self._lock:
            return set(self._postings.slot_of)

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()


class _Apply:
    """One epoch's change to a ``LexicalIndex``: searches wait while its block runs (the vector index's
    apply); published on a clean exit, dropped otherwise."""

    def __init__(
        self,
        index: LexicalIndex,
        records: dict[int, VectorRecord],
        deletes: set[int],
        terms: dict[int, list[str]],
    ) -> None:
        self.index, self.records, self.deletes, self.terms = index, records, deletes, terms

    def __enter__(self) -> None:
        self.index._lock.acquire()

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        try:
            if exc_type is None:
                self.index._publish(self.records, self.deletes, self.terms)
        finally:
            self.index._lock.release()
