"""Serve live retrieval and question answering over the sample documents bundled in ``sample_docs/``
(text, Markdown, HTML and a PDF; sources and licenses in its README.md), configured by ``app.yaml``:

    python -m apps.qa_server [--host HOST] [--port PORT] [--state-dir DIR] [--log-level LEVEL]

This is ``ragflow serve --config apps/qa_server/app.yaml``: edit, add or delete files in ``sample_docs/``
while it runs and the next query sees the change. Set ``OPENAI_API_KEY`` (or ``RAGFLOW_LLM_BASE_URL`` for a
local OpenAI-compatible server) for generated answers; retrieval needs no network.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from ragflow.cli import main as ragflow_main

APP_CONFIG = Path(__file__).resolve().with_name("app.yaml")
SAMPLE_DOCS = APP_CONFIG.with_name("sample_docs")


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``ragflow serve`` with this app's configuration; ``argv`` adds serve options."""
    extra = list(sys.argv[1:] if argv is None else argv)
    return ragflow_main(["serve", "--config", str(APP_CONFIG), *extra])


if __name__ == "__main__":
    sys.exit(main())
