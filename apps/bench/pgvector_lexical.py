"""The pgvector index's lexical side against the embedded BM25 index and PostgreSQL's own rankings, on the
158 PostgreSQL-manual questions (docs/benchmarks.md, "Lexical side of the pgvector index").

    python -m apps.bench.retrieval_modes DIR          # the 400-page corpus, as for ragflow eval
    python -m apps.bench.pgvector_lexical DIR/pages [--k 10]

The pages are chunked by a store with every default but the embedder (a fast hashing one: only words are
compared here) into a pgvector table on a PostgreSQL 18 started for the run, then ``ANALYZE``d. Per
ranking: recall@1/5/10, MRR@10 and nDCG@10 as ``ragflow eval`` counts them, and the median time of one
search. The rankings: the embedded ``LexicalIndex`` over the same chunks; ``PgvectorIndex.lexical_search``
with its corpus statistics counted (exact, as below 2,000 chunks) and from PostgreSQL's planner statistics
(as above); and ``ts_rank_cd`` / ``ts_rank`` of the whole question over the same ``tsvector`` column with
several normalisations (PostgreSQL's usual full-text ranking, the one the issue suggested).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from apps.bench.retrieval_quality import QUESTIONS
from ragflow.connectors.folder import FolderSource
from ragflow.documents import Hit, VectorRecord
from ragflow.retrieval import LexicalIndex
from ragflow.retrieval.evaluation import load_questions, score_mode
from ragflow.store import DocumentStore
from tests.fakes.hashing_embedder import HashingEmbedder
from tests.servers.postgres import PostgresServer, shared_postgres


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pages", type=Path, help="the corpus folder (apps.bench.retrieval_modes DIR)")
    parser.add_argument("--k", type=int, default=10)
    args = parser.parse_args(argv)
    import psycopg

    from ragflow.indexers.pgvector import PgvectorIndex
    from ragflow.indexers.pgvector import _index as index_module
    from ragflow.indexers.pgvector._lexical import query_terms, tsquery

    questions = load_questions(QUESTIONS)
    dsn, table = shared_postgres().dsn, PostgresServer.table_name("lexq")
    index = PgvectorIndex(dim=64, dsn=dsn, table=table)
    try:
        started = time.perf_counter()
        DocumentStore(
            FolderSource(args.pages), embedder=HashingEmbedder(max_tokens=256), index=index
        ).run_static()
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'ANALYZE "{table}"')
            rows = conn.execute(f'SELECT id, text, metadata, extra FROM "{table}"').fetchall()
        print(
            f"- {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load average "
            f"{os.getloadavg()[0]:.1f}, {len(rows):,} chunks of {len(list(args.pages.iterdir()))} pages "
            f"({time.perf_counter() - started:.0f} s to chunk and load), {len(questions)} questions, "
            f"k={args.k}"
        )
        embedded = LexicalIndex()
        embedded.apply([VectorRecord(i, index._unit(_one(64)), t, m, e) for i, t, m, e in rows], [])
        rankings: dict[str, Callable[[str], list[Hit]]] = {
            "embedded LexicalIndex (BM25, in memory)": lambda q: embedded.search(q, args.k),
            "pgvector lexical_search, planner statistics (above 2,000 chunks)": lambda q: (
                index.lexical_search(q, args.k)
            ),
        }
        conn = psycopg.connect(dsn, autocommit=True)

        def whole_question(function: str, normalization: int) -> Callable[[str], list[Hit]]:
            sql = (
                f"SELECT id, text, metadata, extra, {function}(lexemes, %s::tsquery, {normalization}) AS s "
                f'FROM "{table}" WHERE lexemes @@ %s::tsquery ORDER BY s DESC, id LIMIT %s'
            )

            def search(query: str) -> list[Hit]:
                terms = query_terms(query)
                if not terms:
                    return []
                match = tsquery(terms)
                found = conn.execute(sql, (match, match, args.k)).fetchall()
                return [Hit(i, t, {**m, **e}, 1 / (1 + s)) for i, t, m, e, s in found]

            return search

        for normalization in (0, 1, 4, 32):
            rankings[f"ts_rank_cd(lexemes, question, {normalization})"] = whole_question(
                "ts_rank_cd", normalization
            )
        for normalization in (0, 1):
            rankings[f"ts_rank(lexemes, question, {normalization})"] = whole_question(
                "ts_rank", normalization
            )
        print()
        print("| ranking | recall@1 | recall@5 | recall@10 | MRR@10 | nDCG@10 | p50 ms |")
        print("|---|--:|--:|--:|--:|--:|--:|")
        for name, search in rankings.items():
            _row(name, questions, search)
        index_module.EXACT_BELOW = 10**12  # the statistics counted in each query's snapshot
        index._statistics_cache = (0.0, None)
        _row(
            "pgvector lexical_search, statistics counted (exact)",
            questions,
            lambda q: index.lexical_search(q, args.k),
        )
        conn.close()
    finally:
        index.drop()


def _one(dim: int) -> Any:
    import numpy as np

    return np.ones(dim, np.float32)


def _row(name: str, questions: Any, search: Callable[[str], list[Hit]]) -> None:
    def timed(query: str) -> tuple[list[Mapping[str, Any]], float]:
        started = time.perf_counter()
        hits = search(query)
        return [h.metadata for h in hits], time.perf_counter() - started

    for question in questions[:10]:
        search(question.query)  # warm
    scores = score_mode(name, questions, timed)
    p50 = 1000 * statistics.median(r.seconds for r in scores.results)
    print(
        f"| {name} | {scores.recall(1):.3f} | {scores.recall(5):.3f} | {scores.recall(10):.3f} | "
        f"{scores.mrr10:.3f} | {scores.ndcg10:.3f} | {p50:.1f} |",
        flush=True,
    )


if __name__ == "__main__":
    main()
