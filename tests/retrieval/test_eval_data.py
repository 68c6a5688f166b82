"""The labelled questions over the PostgreSQL 15 manual (apps/eval_data): every page they name is in
Debian's ``postgresql-doc-15`` (installed here when missing and apt can), and BM25 alone over the answer
pages finds most of them: a guard on the tokeniser against the real corpus."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from ragflow.documents import VectorRecord
from ragflow.parsers import DefaultParser
from ragflow.retrieval.evaluation import load_questions, score_mode
from ragflow.retrieval.lexical import LexicalIndex
from ragflow.splitter import TokenSplitter

MANUAL = Path("/usr/share/doc/postgresql-doc-15/html")
QUESTIONS = Path(__file__).parents[2] / "apps" / "eval_data" / "postgresql15_questions.jsonl"


@pytest.fixture(scope="module")
def manual() -> Path:
    if not MANUAL.is_dir() and os.geteuid() == 0 and shutil.which("apt-get"):
        for command in (
            ["apt-get", "update", "-qq"],
            ["apt-get", "install", "-y", "-qq", "postgresql-doc-15"],
        ):
            subprocess.run(command, check=False, capture_output=True, timeout=300)
    if not MANUAL.is_dir():
        pytest.skip(f"{MANUAL} is missing: apt-get install -y postgresql-doc-15")
    return MANUAL


def test_the_set_is_large_enough_and_every_page_exists(manual: Path) -> None:
    questions = load_questions(QUESTIONS)
    assert len(questions) >= 150 and len({q.query for q in questions}) == len(questions)
    missing = {page for q in questions for page in q.relevant if not (manual / page).is_file()}
    assert not missing


def test_bm25_over_the_answer_pages_finds_most_answers(manual: Path) -> None:
    questions = load_questions(QUESTIONS)
    parser, splitter = DefaultParser(entry_point_parsers=False), TokenSplitter(192, 0)
    index = LexicalIndex()
    records: list[VectorRecord] = []
    no_vector = np.zeros(1, np.float32)  # the lexical index reads only the text
    for page in sorted({p for q in questions for p in q.relevant}):
        metadata = {"path": str(manual / page)}
        for unit in parser.parse((manual / page).read_bytes(), metadata):
            for chunk in splitter.split(unit.text):
                records.append(VectorRecord(len(records), no_vector, chunk.text, metadata))
    index.apply(records, [])
    scores = score_mode("lexical", questions, lambda q: ([h.metadata for h in index.search(q, 10)], 0.0))
    assert scores.recall(10) >= 0.8, [m.question.query for m in scores.misses(10)]
