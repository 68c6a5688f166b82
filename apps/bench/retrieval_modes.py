"""The corpus of ``ragflow eval`` over the PostgreSQL 15 manual: copies the pages that answer the labelled
questions of ``apps/eval_data/postgresql15_questions.jsonl``, plus every n-th other page up to ``--pages``
(the same pages as ``apps.bench.retrieval_quality``), into a folder, and prints the command that
evaluates every search mode over it.

    python -m apps.bench.retrieval_modes DIR [--pages 400] [--manual DIR]
    ragflow eval apps/eval_data/postgresql15_questions.jsonl DIR/pages --state-dir DIR/state

The manual comes from Debian's ``postgresql-doc-15`` package (``apt-get install -y postgresql-doc-15``).
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from apps.bench.retrieval_quality import MANUAL, QUESTIONS, corpus_pages, load_questions


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="the folder to write (pages/ is the corpus)")
    parser.add_argument("--pages", type=int, default=400, help="pages in the corpus (answer pages first)")
    parser.add_argument("--manual", type=Path, default=MANUAL)
    args = parser.parse_args(argv)
    pages = corpus_pages(args.manual, load_questions(), args.pages)
    folder = args.out / "pages"
    folder.mkdir(parents=True, exist_ok=True)
    for page in pages:
        shutil.copyfile(page, folder / page.name)
    print(f"{len(pages)} pages in {folder}; evaluate with:")
    print(
        f"  ragflow eval {QUESTIONS} {folder} --state-dir {args.out / 'state'} --modes vector lexical hybrid"
    )


if __name__ == "__main__":
    main()
