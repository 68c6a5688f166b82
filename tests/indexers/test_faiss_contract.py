"""FaissIndex keeps the VectorIndex contract, in each of its configurations: exact search in one block,
exact search across small blocks (growth, relocation and compaction inside every test), and HNSW graphs
built in the background on small blocks."""

from __future__ import annotations

from typing import ClassVar

from ragflow.documents import VectorIndex
from ragflow.indexers.faiss import FaissIndex
from tests.indexers.contract import VectorIndexContract


class TestFlatFaissIndex(VectorIndexContract):
    def make_index(self, dim: int) -> VectorIndex:
        return FaissIndex(dim)


class TestFlatFaissIndexInSmallBlocks(VectorIndexContract):
    def make_index(self, dim: int) -> VectorIndex:
        return FaissIndex(dim, block_size=64)


class TestHnswFaissIndex(VectorIndexContract):
    exact: ClassVar[bool] = False

    def make_index(self, dim: int) -> VectorIndex:
        return FaissIndex(dim, kind="hnsw", block_size=64)

    def dispose(self, index: VectorIndex) -> None:
        assert isinstance(index, FaissIndex)
        index.close()
