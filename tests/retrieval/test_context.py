from __future__ import annotations

from ragflow.documents import Hit
from ragflow.pipeline import ChunkPiece
from ragflow.retrieval.context import with_context

TEXT = "alpha beta gamma delta epsilon zeta"
# overlapping chunks of one unit (the splitter's overlap), then a chunk of page 2
PIECES = (
    ChunkPiece("alpha beta", 0, 10, 0, 2, 1),
    ChunkPiece("beta gamma delta", 6, 22, 1, 3, 1),
    ChunkPiece("delta epsilon", 17, 30, 2, 2, 1),
    ChunkPiece("zeta", 0, 4, 0, 1, 2),
)


def hit_of(piece: ChunkPiece) -> Hit:
    meta = {"doc_id": "d", "start": piece.start, "end": piece.end, "chunk_ordinal": piece.ordinal}
    return Hit(1, piece.text, {**meta, "page_number": piece.page_number}, 0.25)


def test_neighbours_are_merged_by_offsets_with_the_overlap_once() -> None:
    [hit] = with_context([hit_of(PIECES[1])], 1, lambda doc_id: PIECES)
    assert hit.text == TEXT[:30] and hit.dist == 0.25
    assert (hit.metadata["start"], hit.metadata["end"]) == (0, 30)
    assert (hit.metadata["hit_start"], hit.metadata["hit_end"], hit.metadata["context_chunks"]) == (6, 22, 3)


def test_context_stays_within_the_hits_page() -> None:
    [hit] = with_context([hit_of(PIECES[2])], 2, lambda doc_id: PIECES)
    assert hit.text == TEXT[:30] and "zeta" not in hit.text


def test_a_hit_whose_document_changed_is_returned_as_it_is() -> None:
    original = hit_of(PIECES[1])
    assert with_context([original], 1, lambda doc_id: ()) == [original]
    assert with_context([original], 0, lambda doc_id: PIECES) == [original]
