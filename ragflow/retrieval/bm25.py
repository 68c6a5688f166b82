"""BM25's constants and idf, in one place for every lexical index (the embedded ``LexicalIndex`` and
pgvector's), so that they rank alike."""

from __future__ import annotations

import math

__all__ = ["K1", "B", "idf"]

K1, B = 1.2, 0.75  # BM25's usual constants (Robertson; Lucene's defaults)


def idf(chunks: float, holding: float) -> float:
    """The weight of a word held by ``holding`` (df) of ``chunks`` (N) chunks:
    ``ln(1 + (N - df + 0.5) / (df + 0.5))``.

    >>> round(idf(100, 1), 2)
    4.21
    """
    return math.log(1 + (chunks - holding + 0.5) / (holding + 0.5))
