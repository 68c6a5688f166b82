"""``ragflow`` as a child process of the scale-out tests: the real command line (``feed``, ``worker``,
``serve --index pgvector``), with the fast hashing embedder in place of the local model.

    python -m tests.scaleout.child worker --config worker.yaml
"""

from __future__ import annotations

import sys

from ragflow.cli._main import main
from ragflow.config import RagflowConfig
from tests.fakes.hashing_embedder import HashingEmbedder


def _hashing_embedder(config: RagflowConfig) -> HashingEmbedder:
    return HashingEmbedder()


if __name__ == "__main__":
    RagflowConfig.build_embedder = _hashing_embedder  # type: ignore[method-assign,assignment]
    sys.exit(main(sys.argv[1:]))
