"""A ragflow server over one folder with the fast hashing embedder, for the benchmark's end-to-end tests
(the real model would make them slow): ``python -m tests.bench.hashing_server FOLDER PORT STATE``."""

from __future__ import annotations

import sys

import uvicorn

from ragflow.connectors.folder import FolderSource
from ragflow.server import create_app
from ragflow.store import DocumentStore
from tests.fakes.hashing_embedder import HashingEmbedder


def main(folder: str, port: str, state: str) -> None:
    store = DocumentStore(FolderSource(folder), embedder=HashingEmbedder(dim=64), state_dir=state)
    with store:  # uvicorn stops on SIGTERM, then the store stops and saves its state
        uvicorn.run(create_app(store), host="127.0.0.1", port=int(port), log_level="warning")


if __name__ == "__main__":
    main(*sys.argv[1:4])
