"""The tables of one pgvector index, created on first use: the chunks (with an HNSW index on cosine
distance, and their words with a GIN index for the lexical side), the documents they came from (what
replicas answer ``/v1/statistics`` and ``/v1/inputs`` from) and the source positions each epoch was
applied with (per consumer group, topic and partition)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ragflow.errors import ConfigError

__all__ = ["Tables"]

_NAME = re.compile(r"[a-z_][a-z0-9_]{0,40}")


@dataclass(frozen=True, slots=True)
class Tables:
    """The quoted names of an index's tables, and the statements that create them."""

    chunks: str
    documents: str
    positions: str

    @classmethod
    def named(cls, table: str) -> Tables:
        """The tables of the index called ``table`` (``table``, ``table_documents``, ``table_positions``).

        Raises:
            ConfigError: ``table`` is not a lower-case SQL identifier of at most 41 characters.
        """
        if not _NAME.fullmatch(table):
            raise ConfigError(
                f"pgvector table must be a lower-case identifier (letters, digits, _; at most 41 "
                f"characters, not starting with a digit), got {table!r}"
            )
        return cls(f'"{table}"', f'"{table}_documents"', f'"{table}_positions"')

    def create(self, dim: int, hnsw_m: int, ef_construction: int) -> list[str]:
        """The statements that create the tables and their indexes where missing."""
        name = self.chunks.strip('"')
        return [
            f"""CREATE TABLE IF NOT EXISTS {self.chunks} (
                id bigint PRIMARY KEY,
                doc_id text,
                text text NOT NULL,
                metadata jsonb NOT NULL,
                extra jsonb NOT NULL,
                embedding vector({dim}) NOT NULL,
                lexemes tsvector,
                words integer)""",
            f'CREATE INDEX IF NOT EXISTS "{name}_doc_id" ON {self.chunks} (doc_id)',
            f'CREATE INDEX IF NOT EXISTS "{name}_hnsw" ON {self.chunks} USING hnsw (embedding '
            f"vector_cosine_ops) WITH (m = {int(hnsw_m)}, ef_construction = {int(ef_construction)})",
            f"""CREATE TABLE IF NOT EXISTS {self.documents} (
                doc_id text PRIMARY KEY,
                metadata jsonb NOT NULL,
                chunks integer NOT NULL,
                error text,
                indexed_at double precision NOT NULL)""",
            f"""CREATE TABLE IF NOT EXISTS {self.positions} (
                consumer_group text NOT NULL,
                topic text NOT NULL,
                partition integer NOT NULL,
                next_offset bigint NOT NULL,
                updated_at timestamptz NOT NULL DEFAULT now(),
                PRIMARY KEY (consumer_group, topic, partition))""",
        ]

    def add_words(self) -> list[str]:
        """The statements that give a table of an earlier version the lexical side's columns (no-ops on
        one that has them) and the row layout searches want, before its rows' words are written (by
        ``PgvectorIndex``, which rewrites every row, so the layout applies to all of them). A row keeps
        its vector and its words inline (``STORAGE MAIN``) up to ``toast_tuple_target`` = 4080 bytes, so
        that a 384-d vector, a chunk's words and a short text stay in one row and the text goes out of
        line first: a lexical search reads the words of every candidate chunk, and with both in the
        TOAST table each read was a second lookup (measured: twice the cost per row); a vector out of
        line made a sequential scan of a small table fetch every vector from there (18k buffers for 3k
        chunks) while PostgreSQL's planner, which does not count that, preferred it to the HNSW index
        (20 ms against 4 ms)."""
        return [
            f"ALTER TABLE {self.chunks} ADD COLUMN IF NOT EXISTS lexemes tsvector",
            f"ALTER TABLE {self.chunks} ADD COLUMN IF NOT EXISTS words integer",
            f"ALTER TABLE {self.chunks} ALTER COLUMN lexemes SET STORAGE MAIN, "
            "ALTER COLUMN embedding SET STORAGE MAIN",
            f"ALTER TABLE {self.chunks} SET (toast_tuple_target = 4080)",
        ]

    def index_words(self) -> str:
        """The statement that creates the GIN index on the chunks' words where missing."""
        name = self.chunks.strip('"')
        return f'CREATE INDEX IF NOT EXISTS "{name}_lexemes" ON {self.chunks} USING gin (lexemes)'

    def drop(self) -> list[str]:
        """The statements that drop the tables."""
        return [f"DROP TABLE IF EXISTS {t}" for t in (self.chunks, self.documents, self.positions)]
