"""FaissIndex keeps the VectorIndex contract, in each of its configurations: exact search in one block,
exact search across small blocks (growth, relocation and compaction inside every test), HNSW graphs built
in the background on small blocks, the automatic switch from exact to graphs at a small size (crossed
inside the tests), and compact 8-bit and float16 codes re-ranked with full-precision vectors."""

from __future__ import annotations

from typing import ClassVar

from ragflow.documents import VectorIndex
from ragflow.indexers.faiss import FaissIndex
from tests.indexers.contract import VectorIndexContract


class TestFlatFaissIndex(VectorIndexContract):
    def make_index(self, dim: int) -> VectorIndex:
        return FaissIndex(dim, kind="flat")


class TestFlatFaissIndexInSmallBlocks(VectorIndexContract):
    def make_index(self, dim: int) -> VectorIndex:
        return FaissIndex(dim, kind="flat", block_size=64)


class ClosingContract(VectorIndexContract):
    def dispose(self, index: VectorIndex) -> None:
        assert isinstance(index, FaissIndex)
        index.close()


class TestHnswFaissIndex(ClosingContract):
    exact: ClassVar[bool] = False

    def make_index(self, dim: int) -> VectorIndex:
        return FaissIndex(dim, kind="hnsw", block_size=64)


class TestAutoFaissIndex(ClosingContract):
    exact: ClassVar[bool] = False  # exact below 100 chunks, graphs on full blocks from there

    def make_index(self, dim: int) -> VectorIndex:
        return FaissIndex(dim, kind="auto", hnsw_threshold=100, block_size=64)


class TestCompactFaissIndex(ClosingContract):
    exact: ClassVar[bool] = False  # candidates come from 8-bit codes, then are re-ranked exactly

    def make_index(self, dim: int) -> VectorIndex:
        return FaissIndex(dim, kind="auto", hnsw_threshold=100, vectors="sq8", block_size=64)


class TestCompactHnswFaissIndex(ClosingContract):
    exact: ClassVar[bool] = False

    def make_index(self, dim: int) -> VectorIndex:
        return FaissIndex(dim, kind="hnsw", vectors="float16", block_size=64)
