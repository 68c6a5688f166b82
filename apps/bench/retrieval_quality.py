"""Retrieval quality by chunk size: recall@1/5/10 and MRR@10 of the local model over the PostgreSQL 15 manual,
with the labelled questions of ``apps/eval_data/postgresql15_questions.jsonl``.

    python -m apps.bench.retrieval_quality [--sizes 96:0 128:0 ...] [--pages N] [--manual DIR]

Every page that answers a question is in the corpus, plus other pages of the manual (every n-th by name) up
to ``--pages`` pages, parsed by ragflow's own parser and cut by ``TokenSplitter`` at each (max_tokens,
overlap). A question is answered at k when one of the k best chunks (what ``/v1/retrieve`` with that k
returns) comes from one of its pages. Chunks longer than the model's window are counted with the model's own
tokenizer (they are embedded whole, as windows, by ``LocalEmbedder``). Prints Markdown.

The manual comes from Debian's ``postgresql-doc-15`` package (``apt-get install -y postgresql-doc-15``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np
import numpy.typing as npt

from ragflow.embedders.local import LocalEmbedder
from ragflow.parsers import DefaultParser
from ragflow.splitter import TokenSplitter

MANUAL = Path("/usr/share/doc/postgresql-doc-15/html")
QUESTIONS = Path(__file__).parents[1] / "eval_data" / "postgresql15_questions.jsonl"
DEFAULT_SIZES = ("96:0", "128:0", "128:32", "160:0", "192:0", "256:0")
CUTOFFS = (1, 5, 10)


@dataclass(frozen=True)
class Question:
    text: str
    pages: frozenset[str]


@dataclass(frozen=True)
class Scores:
    max_tokens: int
    overlap: int
    chunks: int
    mean_tokens: float
    over_window: int
    recall: dict[int, float]
    mrr10: float
    seconds: float


def load_questions(path: Path = QUESTIONS) -> list[Question]:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [Question(row["question"], frozenset(row["pages"])) for row in rows]


def corpus_pages(manual: Path, questions: list[Question], total: int) -> list[Path]:
    """The answer pages, then every n-th other page by name until ``total`` pages."""
    if not manual.is_dir():
        sys.exit(f"{manual} not found: install the manual with `apt-get install -y postgresql-doc-15`")
    answers = sorted({page for q in questions for page in q.pages})
    missing = [page for page in answers if not (manual / page).is_file()]
    if missing:
        sys.exit(f"pages named by questions are not in {manual}: {', '.join(missing)}")
    others = sorted(p.name for p in manual.glob("*.html") if p.name not in set(answers))
    wanted = max(0, total - len(answers))
    step = max(1, len(others) // wanted) if wanted else len(others) + 1
    return [manual / name for name in answers + others[::step][:wanted]]


def parse_pages(pages: list[Path]) -> list[tuple[str, str]]:
    parser = DefaultParser(entry_point_parsers=False)
    texts = []
    for page in pages:
        units = parser.parse(page.read_bytes(), {"path": page.name})
        texts.append((page.name, "\n\n".join(unit.text for unit in units)))
    return texts


def evaluate(
    embedder: LocalEmbedder,
    documents: list[tuple[str, str]],
    questions: list[Question],
    query_vectors: npt.NDArray[np.float32],
    max_tokens: int,
    overlap: int,
) -> Scores:
    # as the pipeline splits: every chunk cut to the model's window in its own word-pieces too
    splitter = TokenSplitter.for_embedder(embedder, max_tokens, overlap)
    owners: list[str] = []
    texts: list[str] = []
    tokens: list[int] = []
    for name, text in documents:
        for chunk in splitter.split(text):
            owners.append(name)
            texts.append(chunk.text)
            tokens.append(chunk.n_tokens)
    started = time.perf_counter()
    vectors = embedder.embed(texts)
    seconds = time.perf_counter() - started
    over = sum(count > embedder.max_input_tokens for count in embedder.count_word_pieces(texts))
    scores = query_vectors @ vectors.T
    top = np.argsort(-scores, axis=1)[:, : max(CUTOFFS)]
    ranks: list[int | None] = []
    for question, row in zip(questions, top, strict=True):
        hit = next((rank for rank, i in enumerate(row, 1) if owners[i] in question.pages), None)
        ranks.append(hit)
    recall = {k: sum(r is not None and r <= k for r in ranks) / len(ranks) for k in CUTOFFS}
    mrr = sum(1 / r for r in ranks if r is not None) / len(ranks)
    return Scores(max_tokens, overlap, len(texts), float(np.mean(tokens)), over, recall, mrr, seconds)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="+", default=list(DEFAULT_SIZES), help="max_tokens:overlap pairs")
    parser.add_argument("--pages", type=int, default=400, help="pages in the corpus (answer pages first)")
    parser.add_argument("--manual", type=Path, default=MANUAL)
    args = parser.parse_args(argv)
    questions = load_questions()
    pages = corpus_pages(args.manual, questions, args.pages)
    documents = parse_pages(pages)
    words = sum(len(text.split()) for _, text in documents)
    embedder = LocalEmbedder()
    embedder.load()
    query_vectors = embedder.embed([q.text for q in questions])
    print(
        f"- Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {platform.platform()}, "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start"
    )
    print(f"- Command: `python -m apps.bench.retrieval_quality {' '.join(argv or sys.argv[1:])}`".rstrip())
    print(
        f"- Corpus: {len(documents)} pages of the PostgreSQL 15 manual ({words:,} words), "
        f"{len(questions)} questions; model {embedder.model_id}, {embedder.plan.bulk} batches of "
        f"{embedder.plan.batch_size}"
    )
    print()
    print(
        "| max_tokens | overlap | chunks | mean tokens | chunks > 256 word-pieces | recall@1 | recall@5 "
        "| recall@10 | MRR@10 | embedding s |"
    )
    print("|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
    for size in args.sizes:
        max_tokens, _, overlap = size.partition(":")
        s = evaluate(embedder, documents, questions, query_vectors, int(max_tokens), int(overlap or 0))
        print(
            f"| {s.max_tokens} | {s.overlap} | {s.chunks:,} | {s.mean_tokens:.0f} | {s.over_window} "
            f"({s.over_window / s.chunks:.1%}) | {s.recall[1]:.3f} | {s.recall[5]:.3f} | {s.recall[10]:.3f} "
            f"| {s.mrr10:.3f} | {s.seconds:.0f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
