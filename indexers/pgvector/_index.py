"""``PgvectorIndex``: the ``VectorIndex`` contract on PostgreSQL with pgvector, shared by any number of
processes. Each apply is one transaction; ``commit`` adds to it the documents an epoch replaced and the
source positions it covers, so that a crash never leaves half an epoch nor positions ahead of (or
behind) the chunks they produced."""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ragflow.documents import Hit, Metadata, VectorRecord
from ragflow.errors import IndexStoreError, StalePositionError
from ragflow.shared_index import DocumentEntry, PositionAdvance

from ._filters import SqlFilter, translate
from ._lexical import (
    EXACT_BELOW,
    TOKENIZER,
    CorpusStatistics,
    QueryPlan,
    lexemes,
    query_terms,
    score_parameters,
    score_sql,
    tsquery,
)
from ._schema import Tables

__all__ = ["PgvectorIndex"]

log = logging.getLogger("ragflow.indexers.pgvector")

_MAGIC = "ragflow-pgvector/1"
_ID_RANGE = range(-(2**63), 2**63)
_GROWTH = 4
"""How much a filtered search widens its candidates when too few of them pass the filter."""
_STATISTICS_TTL_S = 30.0
"""How long the lexical side's corpus statistics (from PostgreSQL's planner statistics) are reused."""
_TOKENISE_BATCH = 2_000


class PgvectorIndex:
    """Cosine search over chunks stored in PostgreSQL (pgvector, HNSW), with filters evaluated inside the
    search: translated to SQL over the metadata JSONB where possible, and, where not (or not exactly),
    checked on the candidates while the candidate count grows until ``k`` pass, ending in an exact scan,
    so fewer than ``k`` hits come back only when fewer than ``k`` chunks match.

    It also serves the lexical side of hybrid search itself (``lexical_search``, ``hybrid_search``:
    BM25 over PostgreSQL full-text search, see ``_lexical.py``): each chunk's words are written in its
    row by the same statement as its vector, so an epoch's words and vectors become visible together,
    and a hybrid search reads both sides in one snapshot.

    Args:
        dim: The vectors' dimension (the store passes its embedder's).
        dsn: The PostgreSQL connection string (``postgresql://user:password@host:5432/db``); the server
            needs the ``vector`` extension installed (``CREATE EXTENSION vector`` is run if missing).
        table: The chunks table; ``<table>_documents`` and ``<table>_positions`` go with it.
        hnsw_m: HNSW graph degree (pgvector's ``m``).
        ef_construction: HNSW build-time candidate list size.
        ef_search: HNSW query-time candidate list size (larger: better recall, slower).
        max_idle_connections: Connections kept open for later calls (one is opened per concurrent call).

    Example:
        >>> index = PgvectorIndex(dim=384, dsn="postgresql://ragflow@db/ragflow")  # doctest: +SKIP
    """

    def __init__(
        self,
        dim: int,
        dsn: str = "postgresql://postgres@localhost:5432/postgres",
        table: str = "ragflow_chunks",
        hnsw_m: int = 16,
        ef_construction: int = 64,
        ef_search: int = 100,
        max_idle_connections: int = 8,
    ) -> None:
        if dim < 1:
            raise IndexStoreError(f"dim must be positive, got {dim}")
        self.dim = dim
        self.dsn = dsn
        self.table = table
        self.tables = Tables.named(table)
        self.ef_search = ef_search
        self._pool = _Pool(dsn, ef_search, max_idle_connections)
        self._statistics_cache: tuple[float, CorpusStatistics | None] = (0.0, None)
        with self._pool.connection() as conn, _failing("create the tables of", table):
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
            self._pool.register(conn)
            with conn.transaction():
                # several workers starting at once must not race on CREATE TABLE
                conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"ragflow:{table}",))
                for statement in self.tables.create(dim, hnsw_m, ef_construction):
                    conn.execute(statement)
                if self._tokenizer(conn) != TOKENIZER:
                    self._tokenise(conn)
            stored = conn.execute(
                "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
                "WHERE attrelid = %s::regclass AND attname = 'embedding'",
                (self.tables.chunks,),
            ).fetchone()
        if stored is not None and stored[0] != f"vector({dim})":
            raise IndexStoreError(
                f"table {table!r} holds {stored[0]} embeddings, not vector({dim}): another embedding "
                "model wrote it; use another table (index option 'table') or drop this one"
            )

    # -- VectorIndex ----------------------------------------------------------------------------

    def apply(self, upserts: Iterable[VectorRecord], deletes: Iterable[int]) -> None:
        """Delete then upsert in one transaction (see ``ragflow.documents.VectorIndex``)."""
        self.commit(upserts, deletes)

    def commit(
        self,
        upserts: Iterable[VectorRecord],
        deletes: Iterable[int] = (),
        *,
        documents: Mapping[str, DocumentEntry | None] | None = None,
        positions: Sequence[PositionAdvance] = (),
    ) -> None:
        """``apply``, plus in the same transaction: each document of ``documents`` replaced (its chunks
        not among ``upserts`` deleted, its row written; ``None``: the document and its chunks removed),
        and each of ``positions`` moved forward.

        Raises:
            StalePositionError: a position was not at its ``expected`` offset; nothing was applied.
            IndexStoreError: a vector of the wrong dimension, or the database failed; nothing was applied.
        """
        rows = self._rows(upserts)
        deleted = sorted({int(i) for i in deletes if int(i) in _ID_RANGE} - rows.keys())
        documents = documents or {}
        kept = sorted(rows)
        chunks, docs = self.tables.chunks, self.tables.documents
        with self._pool.connection() as conn, _failing("apply to", self.table), conn.transaction():
            if positions:
                self._advance(conn, positions)
            if deleted:
                conn.execute(f"DELETE FROM {chunks} WHERE id = ANY(%s)", (deleted,))
            if documents:
                names = sorted(documents)
                conn.execute(
                    f"DELETE FROM {chunks} WHERE doc_id = ANY(%s) AND NOT (id = ANY(%s))", (names, kept)
                )
                gone = [d for d in names if documents[d] is None]
                if gone:
                    conn.execute(f"DELETE FROM {docs} WHERE doc_id = ANY(%s)", (gone,))
            if rows:
                with conn.cursor() as cursor:
                    cursor.executemany(
                        f"""INSERT INTO {chunks}
                            (id, doc_id, text, metadata, extra, embedding, lexemes, words)
                        VALUES (%s, %s, %s, %s::jsonb, %s::jsonb, %s, %s::tsvector, %s)
                        ON CONFLICT (id) DO UPDATE SET doc_id = EXCLUDED.doc_id,
                            text = EXCLUDED.text, metadata = EXCLUDED.metadata, extra = EXCLUDED.extra,
                            embedding = EXCLUDED.embedding, lexemes = EXCLUDED.lexemes, words = EXCLUDED.words
                        WHERE ({chunks}.doc_id, {chunks}.text, {chunks}.metadata, {chunks}.extra,
                            {chunks}.embedding) IS DISTINCT FROM (EXCLUDED.doc_id, EXCLUDED.text,
                            EXCLUDED.metadata, EXCLUDED.extra, EXCLUDED.embedding)""",
                        list(rows.values()),
                    )
            entries = [entry for entry in documents.values() if entry is not None]
            if entries:
                now = time.time()
                with conn.cursor() as cursor:
                    cursor.executemany(
                        f"""INSERT INTO {docs} (doc_id, metadata, chunks, error, indexed_at)
                        VALUES (%s, %s::jsonb, %s, %s, %s)
                        ON CONFLICT (doc_id) DO UPDATE SET metadata = EXCLUDED.metadata,
                            chunks = EXCLUDED.chunks, error = EXCLUDED.error,
                            indexed_at = EXCLUDED.indexed_at""",
                        [(e.doc_id, _json(e.metadata), e.chunks, _text(e.error), now) for e in entries],
                    )

    def search(
        self,
        vector: npt.NDArray[np.float32],
        k: int,
        filter: Callable[[Metadata], bool] | None = None,
    ) -> list[Hit]:
        """The ``k`` chunks nearest ``vector`` that ``filter`` accepts, by ascending cosine distance."""
        if k <= 0:
            return []
        query, where = self._unit(vector), _where(filter)
        with self._pool.connection() as conn, _failing("search", self.table):
            return self._nearest_hits(conn, query, where, filter, k)

    def lexical_search(
        self, query: str, k: int, filter: Callable[[Metadata], bool] | None = None
    ) -> list[Hit]:
        """The ``k`` best chunks for the words of ``query`` by BM25 that ``filter`` accepts (fewer only
        when fewer match), best first; a hit's ``dist`` is ``1 / (1 + score)``, as the embedded lexical
        index's. One snapshot of the table throughout."""
        terms = query_terms(query)
        if k <= 0 or not terms:
            return []
        where = _where(filter)
        with self._pool.connection() as conn, _failing("search", self.table), _snapshot(conn):
            return self._lexical_hits(conn, terms, where, filter, k)

    def hybrid_search(
        self,
        vector: npt.NDArray[np.float32],
        query: str,
        k: int,
        filter: Callable[[Metadata], bool] | None = None,
    ) -> tuple[list[Hit], list[Hit]]:
        """``search(vector, k, filter)`` and ``lexical_search(query, k, filter)`` as of one snapshot:
        an epoch committed meanwhile is in both or in neither."""
        if k <= 0:
            return [], []
        unit, where, terms = self._unit(vector), _where(filter), query_terms(query)
        with self._pool.connection() as conn, _failing("search", self.table), _snapshot(conn):
            by_vector = self._nearest_hits(conn, unit, where, filter, k)
            return by_vector, self._lexical_hits(conn, terms, where, filter, k) if terms else []

    def count(self) -> int:
        """The number of stored chunks."""
        with self._pool.connection() as conn, _failing("count", self.table):
            row = conn.execute(f"SELECT count(*) FROM {self.tables.chunks}").fetchone()
        return int(row[0]) if row else 0

    def save(self, path: str) -> None:
        """Write the chunks and documents to one file at ``path`` (atomically: a temporary file renamed)."""
        with self._pool.connection() as conn, _failing("save", self.table), conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            chunks = conn.execute(
                f"SELECT id, doc_id, text, metadata::text, extra::text, embedding FROM {self.tables.chunks}"
            ).fetchall()
            docs = conn.execute(
                f"SELECT doc_id, metadata::text, chunks, error, indexed_at FROM {self.tables.documents}"
            ).fetchall()
        vectors = np.stack([_array(r[5]) for r in chunks]) if chunks else np.zeros((0, self.dim))
        header = {"magic": _MAGIC, "dim": self.dim, "chunks": [r[:5] for r in chunks], "documents": docs}
        target = Path(path)
        temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        try:
            with open(temporary, "wb") as out:
                np.savez(
                    out,
                    header=np.frombuffer(json.dumps(header).encode(), np.uint8),
                    vectors=vectors.astype(np.float32),
                )
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, target)
        except OSError as exc:
            temporary.unlink(missing_ok=True)
            raise IndexStoreError(f"cannot save pgvector index {self.table!r} to {path}: {exc}") from exc

    def load(self, path: str) -> None:
        """Replace the chunks and documents with those saved at ``path``, in one transaction."""
        try:
            with np.load(path, allow_pickle=False) as saved:
                header = json.loads(bytes(saved["header"]).decode())
                vectors = np.asarray(saved["vectors"], np.float32)
        except (OSError, ValueError, KeyError) as exc:
            raise IndexStoreError(f"nothing loadable at {path}: {exc}") from exc
        if header.get("magic") != _MAGIC or header.get("dim") != self.dim:
            raise IndexStoreError(
                f"{path} is not a saved {self.dim}-d pgvector index "
                f"(magic {header.get('magic')!r}, dim {header.get('dim')!r})"
            )
        chunks, docs = self.tables.chunks, self.tables.documents
        with self._pool.connection() as conn, _failing("load into", self.table), conn.transaction():
            conn.execute(f"DELETE FROM {chunks}")
            conn.execute(f"DELETE FROM {docs}")
            with conn.cursor() as cursor:
                cursor.executemany(
                    f"INSERT INTO {chunks} (id, doc_id, text, metadata, extra, embedding, lexemes, words) "
                    "VALUES (%s, %s, %s, %s::jsonb, %s::jsonb, %s, %s::tsvector, %s)",
                    [
                        (*row, vector, *lexemes(row[2] or ""))
                        for row, vector in zip(header["chunks"], vectors, strict=True)
                    ],
                )
                cursor.executemany(
                    f"INSERT INTO {docs} (doc_id, metadata, chunks, error, indexed_at) "
                    "VALUES (%s, %s::jsonb, %s, %s, %s)",
                    [tuple(row) for row in header["documents"]],
                )

    # -- positions and documents, for workers and replicas ----------------------------------------

    def positions(self, group: str, topics: Sequence[str]) -> dict[tuple[str, int], int]:
        """``(topic, partition) -> next offset`` that the table's chunks include, for ``group``."""
        with self._pool.connection() as conn, _failing("read positions from", self.table):
            rows = conn.execute(
                f"SELECT topic, partition, next_offset FROM {self.tables.positions} "
                "WHERE consumer_group = %s AND topic = ANY(%s)",
                (group, list(topics)),
            ).fetchall()
        return {(topic, int(partition)): int(offset) for topic, partition, offset in rows}

    def stored_vectors(self, doc_ids: Sequence[str]) -> dict[str, npt.NDArray[np.float32]]:
        """``text -> vector`` of the chunks stored for ``doc_ids``: a worker re-indexing an edited
        document embeds only the chunks whose text is new, whichever worker embedded the others."""
        if not doc_ids:
            return {}
        with self._pool.connection() as conn, _failing("read vectors from", self.table):
            rows = conn.execute(
                f"SELECT text, embedding FROM {self.tables.chunks} WHERE doc_id = ANY(%s)", (list(doc_ids),)
            ).fetchall()
        return {text: _array(vector) for text, vector in rows}

    def document_rows(self, filter: Callable[[Metadata], bool] | None = None) -> list[dict[str, Any]]:
        """The documents as the last commits left them (``doc_id``, ``metadata``, ``chunks``, ``error``,
        ``indexed_at``) whose metadata ``filter`` accepts, sorted by id."""
        where = translate(filter) if filter is not None else SqlFilter("TRUE", (), True)
        with self._pool.connection() as conn, _failing("read documents from", self.table):
            rows = conn.execute(
                f"SELECT doc_id, metadata, chunks, error, indexed_at FROM {self.tables.documents} "
                f"WHERE {where.sql} ORDER BY doc_id",
                where.params,
            ).fetchall()
        keys = ("doc_id", "metadata", "chunks", "error", "indexed_at")
        return [dict(zip(keys, row, strict=True)) for row in rows if filter is None or filter(row[1])]

    def last_change(self) -> float | None:
        """When the last commit with positions was applied (Unix seconds), ``None`` before any."""
        with self._pool.connection() as conn, _failing("read positions from", self.table):
            row = conn.execute(
                f"SELECT extract(epoch FROM max(updated_at)) FROM {self.tables.positions}"
            ).fetchone()
        return float(row[0]) if row and row[0] is not None else None

    def drop(self) -> None:
        """Drop the index's tables and close its connections."""
        with self._pool.connection() as conn, _failing("drop", self.table):
            for statement in self.tables.drop():
                conn.execute(statement)
        self.close()

    def close(self) -> None:
        """Close the idle connections (a later call opens new ones)."""
        self._pool.close()

    # -- internals ------------------------------------------------------------------------------

    def _unit(self, vector: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        array = np.asarray(vector, np.float32).reshape(-1)
        if array.shape != (self.dim,):
            raise IndexStoreError(f"expected a vector of dimension {self.dim}, got shape {np.shape(vector)}")
        norm = float(np.linalg.norm(array))
        return array / norm if norm > 0 else array

    def _rows(self, upserts: Iterable[VectorRecord]) -> dict[int, tuple[Any, ...]]:
        """Validated rows by id (the last upsert of an id wins), before any database work."""
        rows: dict[int, tuple[Any, ...]] = {}
        for record in upserts:
            if record.id not in _ID_RANGE:
                raise IndexStoreError(f"chunk id {record.id} does not fit a signed 64-bit integer")
            vector = self._unit(record.vector)
            if not np.isfinite(vector).all():
                raise IndexStoreError(f"chunk {record.id} has a vector with NaN or infinite values")
            doc_id = record.metadata.get("doc_id")
            text = _text(record.text)
            rows.pop(record.id, None)
            rows[record.id] = (
                record.id,
                None if doc_id is None else str(doc_id),
                text,
                _json(record.metadata),
                _json(record.extra),
                vector,
                *lexemes(text or ""),
            )
        return rows

    def _advance(self, conn: Any, positions: Sequence[PositionAdvance]) -> None:
        """Move each position forward if it is still where the caller read it (the rows are locked
        until the transaction ends, so two processes never both advance one partition)."""
        table = self.tables.positions
        for p in positions:
            if p.expected is None:
                cursor = conn.execute(
                    f"INSERT INTO {table} (consumer_group, topic, partition, next_offset) "
                    "VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
                    (p.group, p.topic, p.partition, p.next_offset),
                )
            else:
                cursor = conn.execute(
                    f"UPDATE {table} SET next_offset = %s, updated_at = now() WHERE consumer_group = %s "
                    "AND topic = %s AND partition = %s AND next_offset = %s",
                    (p.next_offset, p.group, p.topic, p.partition, p.expected),
                )
            if cursor.rowcount != 1:
                raise StalePositionError(
                    f"{p.topic}[{p.partition}] of group {p.group!r} is no longer at offset {p.expected}: "
                    "another worker applied those messages"
                )

    def _nearest_hits(
        self,
        conn: Any,
        query: npt.NDArray[np.float32],
        where: SqlFilter,
        filter: Callable[[Metadata], bool] | None,
        k: int,
    ) -> list[Hit]:
        want = k if where.exact else max(_GROWTH * k, 40)
        for _ in range(3):
            rows = self._nearest(conn, query, where, want)
            hits = _accepted(rows, filter)
            if len(hits) >= k:
                return hits[:k]
            if len(rows) < want:  # the graph ran out of candidates: only a scan can say more
                break
            want *= _GROWTH
        return self._scan(conn, query, where, filter, k)

    def _nearest(
        self, conn: Any, query: npt.NDArray[np.float32], where: SqlFilter, limit: int
    ) -> list[tuple[Any, ...]]:
        """Up to ``limit`` rows passing ``where``, nearest first, through the HNSW index (its iterative
        scan goes on past ``ef_search`` candidates until ``limit`` rows pass or it runs out)."""
        return list(
            conn.execute(
                f"SELECT id, text, metadata, extra, embedding <=> %s AS dist FROM {self.tables.chunks} "
                f"WHERE {where.sql} ORDER BY embedding <=> %s LIMIT %s",
                (query, *where.params, query, limit),
            ).fetchall()
        )

    def _scan(
        self,
        conn: Any,
        query: npt.NDArray[np.float32],
        where: SqlFilter,
        filter: Callable[[Metadata], bool] | None,
        k: int,
    ) -> list[Hit]:
        """The exact top ``k``: every row passing ``where``, by distance (``+ 0`` keeps the planner off
        the approximate index), read in batches until ``k`` pass ``filter``."""
        hits: list[Hit] = []
        with conn.transaction(), conn.cursor(name="ragflow_scan") as cursor:
            cursor.execute(
                f"SELECT id, text, metadata, extra, embedding <=> %s AS dist FROM {self.tables.chunks} "
                f"WHERE {where.sql} ORDER BY (embedding <=> %s) + 0, id",
                (query, *where.params, query),
            )
            while len(hits) < k:
                rows = cursor.fetchmany(max(4 * k, 256))
                if not rows:
                    break
                hits += _accepted(rows, filter)
        return hits[:k]

    # -- the lexical side (see _lexical.py) ----------------------------------------------------------

    def _lexical_hits(
        self,
        conn: Any,
        terms: Sequence[str],
        where: SqlFilter,
        filter: Callable[[Metadata], bool] | None,
        k: int,
    ) -> list[Hit]:
        """The BM25 top ``k`` of ``terms``: a probe's chunks scored first, then those that can still beat
        its ``k``-th score (MaxScore, see ``_lexical.py``), within ``conn``'s snapshot."""
        statistics = self._corpus(conn)
        plan = self._query_plan(conn, terms, statistics)
        if not plan.terms:
            return []
        for probe in plan.probes():
            scored = self._scored(conn, plan, statistics, probe.tsquery(), where, filter, k)
            if len(scored) >= k:
                break
        theta = scored[-1][0] if len(scored) >= k else 0.0
        second = plan.second_pass(theta, probe)
        if second is not None:
            scored += self._scored(conn, plan, statistics, second, where, filter, k)
            scored.sort(key=lambda pair: (-pair[0], pair[1].id))
        return [hit for _, hit in scored[:k]]

    def _query_plan(self, conn: Any, terms: Sequence[str], statistics: CorpusStatistics) -> QueryPlan:
        """How ``terms`` are scored: each one's ``df`` from ``statistics`` where they give it, else
        counted in ``conn``'s snapshot."""
        df = statistics.known_df(terms)
        counted = [t for t in terms if t not in df]
        if counted:
            df.update(self._document_frequencies(conn, counted))
        return QueryPlan.make(terms, df, statistics)

    def _scored(
        self,
        conn: Any,
        plan: QueryPlan,
        statistics: CorpusStatistics,
        match: str,
        where: SqlFilter,
        filter: Callable[[Metadata], bool] | None,
        k: int,
    ) -> list[tuple[float, Hit]]:
        """The ``k`` best chunks matching ``match`` that ``filter`` accepts, with their BM25 scores; the
        limit grows while an inexact ``where`` lets through chunks the filter then rejects."""
        sql = score_sql(len(plan.terms), self.tables.chunks, where.sql)
        want = k if where.exact else max(_GROWTH * k, 40)
        while True:
            params = score_parameters(plan, statistics.average_words, match, where.params, want)
            rows = conn.execute(sql, params).fetchall()
            hits = [
                (float(score), Hit(int(id_), text, {**metadata, **extra}, 1.0 / (1.0 + float(score))))
                for id_, text, metadata, extra, score in rows
                if filter is None or filter(metadata)
            ]
            if len(hits) >= k or len(rows) < want:
                return hits[:k]
            want *= _GROWTH

    def _document_frequencies(self, conn: Any, terms: Sequence[str]) -> dict[str, int]:
        """How many chunks hold each of ``terms``, counted through the GIN index: one count per word (a
        bitmap scan whose rows need no test), not one scan of the chunks holding any of them with each
        word tested on every row (measured at 100k chunks: 1.6 -> 1.2 ms of PostgreSQL CPU, 2.0 -> 1.1
        ms per question)."""
        counts = ", ".join(
            f"(SELECT count(*) FROM {self.tables.chunks} WHERE lexemes @@ %s::tsquery)" for _ in terms
        )
        row = conn.execute(f"SELECT {counts}", [tsquery([t]) for t in terms]).fetchone()
        return dict(zip(terms, (int(n) for n in row), strict=True))

    def _corpus(self, conn: Any) -> CorpusStatistics:
        """N, the average length and the common words' ``df``: from PostgreSQL's planner statistics
        (reused for ``_STATISTICS_TTL_S``) for a large analysed table, else counted in ``conn``'s snapshot."""
        expires, cached = self._statistics_cache
        if cached is None or time.monotonic() >= expires:
            cached = self._planner_statistics(conn)
            self._statistics_cache = (time.monotonic() + _STATISTICS_TTL_S, cached)
        if cached.exact:
            row = conn.execute(f"SELECT count(*), avg(words) FROM {self.tables.chunks}").fetchone()
            return CorpusStatistics(float(row[0]), float(row[1] or 0.0), {}, True)
        return cached

    def _planner_statistics(self, conn: Any) -> CorpusStatistics:
        """What ``ANALYZE`` last found: the table's row count, the ``words`` column's mean (from its
        most common values and histogram) and the ``lexemes`` column's most common words with their
        frequencies; ``exact`` when the table is small or not analysed yet."""
        row = conn.execute(
            """SELECT c.reltuples, l.most_common_elems::text::text[], l.most_common_elem_freqs,
                   w.most_common_vals::text::float8[], w.most_common_freqs,
                   w.histogram_bounds::text::float8[], w.null_frac
            FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            LEFT JOIN pg_stats l ON l.schemaname = n.nspname AND l.tablename = c.relname
                AND l.attname = 'lexemes'
            LEFT JOIN pg_stats w ON w.schemaname = n.nspname AND w.tablename = c.relname
                AND w.attname = 'words'
            WHERE c.oid = %s::regclass""",
            (self.tables.chunks,),
        ).fetchone()
        exact = CorpusStatistics(0.0, 0.0, {}, True)
        if row is None:
            return exact
        chunks, elements, frequencies, values, value_frequencies, bounds, null_share = row
        average = _mean(values or [], value_frequencies or [], bounds or [], null_share or 0.0)
        if chunks < EXACT_BELOW or not elements or not frequencies or average is None:
            return exact
        # the frequencies end with their minimum, maximum and the share of empty vectors
        common = {word: f * chunks for word, f in zip(elements, frequencies[: len(elements)], strict=True)}
        return CorpusStatistics(float(chunks), average, common, False)

    def _tokenizer(self, conn: Any) -> str | None:
        """The tokenizer the ``lexemes`` column was written with (its comment), ``None`` if none."""
        row = conn.execute(
            "SELECT col_description(a.attrelid, a.attnum) FROM pg_attribute a "
            "WHERE a.attrelid = %s::regclass AND a.attname = 'lexemes' AND NOT a.attisdropped",
            (self.tables.chunks,),
        ).fetchone()
        return None if row is None else row[0]

    def _tokenise(self, conn: Any) -> None:
        """Give every stored chunk its words (a table of an earlier version, or written by another
        tokenizer), index them and record the tokenizer: within the caller's transaction, so a crash
        leaves the table as it was."""
        chunks = self.tables.chunks
        for statement in self.tables.add_words():
            conn.execute(statement)
        total = 0
        with conn.cursor(name="ragflow_tokenise") as cursor, conn.cursor() as writer:
            cursor.execute(f"SELECT id, text FROM {chunks}")
            while rows := cursor.fetchmany(_TOKENISE_BATCH):
                writer.executemany(
                    f"UPDATE {chunks} SET lexemes = %s::tsvector, words = %s WHERE id = %s",
                    [(*lexemes(text), id_) for id_, text in rows],
                )
                total += len(rows)
        conn.execute(self.tables.index_words())
        conn.execute(f"COMMENT ON COLUMN {chunks}.lexemes IS '{TOKENIZER}'")
        if total:
            log.info("pgvector: wrote the words of %d chunks of table %r (lexical search)", total, self.table)


def _where(filter: Callable[[Metadata], bool] | None) -> SqlFilter:
    return translate(filter) if filter is not None else SqlFilter("TRUE", (), True)


def _mean(
    values: Sequence[float], shares: Sequence[float], bounds: Sequence[float], nulls: float
) -> float | None:
    """A column's mean from its statistics: its most common values with their shares, and an
    equal-count histogram of the rest (each bucket taken at its middle); ``None`` without either."""
    common = sum(shares)
    if len(bounds) < 2:
        return sum(v * s for v, s in zip(values, shares, strict=True)) / common if common > 0 else None
    middles = [(a + b) / 2 for a, b in itertools.pairwise(bounds)]
    rest = max(1.0 - nulls - common, 0.0)
    total = sum(v * s for v, s in zip(values, shares, strict=True)) + rest * sum(middles) / len(middles)
    return total / (common + rest) if common + rest > 0 else None


@contextlib.contextmanager
def _snapshot(conn: Any) -> Iterator[None]:
    """One read-only snapshot for the statements of the block (one round trip to begin, one to end)."""
    conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
    try:
        yield
    except BaseException:
        with contextlib.suppress(Exception):
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _accepted(rows: Iterable[tuple[Any, ...]], filter: Callable[[Metadata], bool] | None) -> list[Hit]:
    """The rows ``filter`` accepts as hits, by ascending distance (ties by id)."""
    hits = [
        Hit(int(id_), text, {**metadata, **extra}, float(dist))
        for id_, text, metadata, extra, dist in rows
        if filter is None or filter(metadata)
    ]
    hits.sort(key=lambda hit: (hit.dist, hit.id))
    return hits


def _array(vector: Any) -> npt.NDArray[np.float32]:
    # pgvector's adapter reads vectors as numpy arrays, or as its Vector in some versions
    return np.asarray(vector.to_numpy() if hasattr(vector, "to_numpy") else vector, np.float32)


def _json(value: Any) -> str:
    # PostgreSQL's text and jsonb cannot hold NUL characters
    return json.dumps(value, default=_plain, ensure_ascii=False).replace("\\u0000", "\\ufffd")


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, set | frozenset):
        return sorted(value, key=str)
    if isinstance(value, np.generic):
        return value.item()
    return str(value)


def _text(value: str | None) -> str | None:
    return None if value is None else value.replace("\x00", "\ufffd")


@contextlib.contextmanager
def _failing(action: str, table: str) -> Iterator[None]:
    """Database errors as ``IndexStoreError`` naming what failed."""
    import psycopg

    try:
        yield
    except IndexStoreError:
        raise
    except psycopg.Error as exc:
        raise IndexStoreError(f"pgvector: cannot {action} table {table!r}: {exc}".strip()) from exc


_IDLE = 0  # psycopg.pq.TransactionStatus.IDLE (psycopg is imported lazily)


class _Pool:
    """Connections in autocommit mode (a transaction is explicit), one per concurrent call, the idle
    ones kept for the next calls; a broken one is dropped."""

    def __init__(self, dsn: str, ef_search: int, max_idle: int) -> None:
        self.dsn, self.ef_search, self.max_idle = dsn, ef_search, max_idle
        self._idle: list[Any] = []
        self._lock = threading.Lock()
        self._registered = False

    def register(self, conn: Any) -> None:
        """Teach ``conn`` the ``vector`` type (once the extension exists)."""
        from pgvector.psycopg import register_vector

        register_vector(conn)
        conn.execute(f"SET hnsw.ef_search = {int(self.ef_search)}")
        # go on past ef_search candidates while too few pass a filter (pgvector 0.8)
        conn.execute("SET hnsw.iterative_scan = strict_order")
        # psycopg prepares a statement after its 5th run, and PostgreSQL may then plan it once for any
        # parameters: a plan that knows neither the query vector nor the limit, which read every row's
        # vector (measured: 2 ms -> 29 ms at 3k chunks, 18 -> 26 ms at 100k); plan each run for its values
        conn.execute("SET plan_cache_mode = force_custom_plan")
        self._registered = True

    @contextlib.contextmanager
    def connection(self) -> Iterator[Any]:
        with self._lock:
            conn = self._idle.pop() if self._idle else None
        if conn is None:
            conn = self._connect()
        try:
            yield conn
        finally:
            with self._lock:
                idle = not conn.closed and conn.info.transaction_status == _IDLE
                if not idle or conn.broken or len(self._idle) >= self.max_idle:
                    conn.close()
                else:
                    self._idle.append(conn)

    def _connect(self) -> Any:
        import psycopg

        try:
            conn = psycopg.connect(self.dsn, autocommit=True, connect_timeout=10)
        except psycopg.Error as exc:
            raise IndexStoreError(f"pgvector: cannot connect to PostgreSQL: {exc}") from exc
        if self._registered:
            try:
                self.register(conn)
            except psycopg.Error as exc:
                conn.close()
                raise IndexStoreError(f"pgvector: cannot set up a connection: {exc}") from exc
        return conn

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
