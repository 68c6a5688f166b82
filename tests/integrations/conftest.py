"""One indexed store over three small documents for the framework adapters' tests (hashing embedder)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from ragflow.connectors.folder import FolderSource
from ragflow.store import DocumentStore
from tests.fakes.hashing_embedder import HashingEmbedder

os.environ.setdefault("HAYSTACK_TELEMETRY_ENABLED", "False")  # no network from tests

DOCUMENTS = {
    "lantern.md": "# Harbor\n\nThe harbor lantern is kept by Mara; it burns whale oil every night.",
    "guide/bread.md": "# Bread\n\nKnead the dough, let it rise for an hour, then bake it.",
    "guide/falcon.txt": "The falcon nests high on the canyon wall above the river.",
}


@pytest.fixture(scope="package")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DocumentStore]:
    root = tmp_path_factory.mktemp("adapters")
    for name, text in DOCUMENTS.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    store = DocumentStore(FolderSource(root, reconcile_interval=None), embedder=HashingEmbedder())
    store.run_static()
    store.root = root  # type: ignore[attr-defined]
    yield store


def root_of(store: DocumentStore) -> Path:
    root: Path = store.root  # type: ignore[attr-defined]
    return root
