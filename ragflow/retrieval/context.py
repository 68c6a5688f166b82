"""Context expansion (sentence-window retrieval): each hit returned with its neighbouring chunks of the
same unit (page, slide, section), merged by their character offsets."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ..documents import Hit
from ..pipeline import ChunkPiece

__all__ = ["with_context"]


def with_context(
    hits: Sequence[Hit], window: int, chunks_of: Callable[[str], Sequence[ChunkPiece]]
) -> list[Hit]:
    """Each hit with up to ``window`` chunks before and after it, from ``chunks_of(doc_id)`` (the
    document's chunks in order), merged into one text: overlapping chunks share their overlap once.
    The hit's ``start``/``end`` become the merged span; ``hit_start``/``hit_end`` keep its own, and
    ``context_chunks`` says how many chunks the text holds. A hit whose document changed since it was
    found (its chunk is no longer there) is returned as it is."""
    if window <= 0:
        return list(hits)
    return [_expanded(hit, window, chunks_of) for hit in hits]


def _expanded(hit: Hit, window: int, chunks_of: Callable[[str], Sequence[ChunkPiece]]) -> Hit:
    meta = hit.metadata
    doc_id = meta.get("doc_id")
    pieces = list(chunks_of(doc_id)) if isinstance(doc_id, str) else []
    at = next(
        (
            n
            for n, p in enumerate(pieces)
            if p.ordinal == meta.get("chunk_ordinal")
            and p.start == meta.get("start")
            and p.page_number == meta.get("page_number")
            and p.text == hit.text
        ),
        None,
    )
    if at is None:
        return hit
    unit = (pieces[at].page_number, pieces[at].location)
    same = [n for n in range(at - window, at + window + 1) if 0 <= n < len(pieces)]
    group = [pieces[n] for n in same if (pieces[n].page_number, pieces[n].location) == unit]
    group.sort(key=lambda p: p.start)
    text, end = group[0].text, group[0].end
    for piece in group[1:]:
        if piece.start < end:  # the splitter's overlap: keep it once
            text += piece.text[end - piece.start :]
        else:
            text += ("" if piece.start == end else " ") + piece.text
        end = max(end, piece.end)
    fields = {**meta, "start": group[0].start, "end": end, "hit_start": meta.get("start")}
    fields.update(hit_end=meta.get("end"), context_chunks=len(group))
    return Hit(hit.id, text, fields, hit.dist)
