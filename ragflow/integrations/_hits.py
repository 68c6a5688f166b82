"""What every adapter makes of a ragflow ``Hit``: the metadata of the framework's document (ragflow's own,
the distance and a citation) and a similarity score."""

from __future__ import annotations

from typing import Any

from ..answer import Citation
from ..documents import Hit

__all__ = ["hit_metadata", "hit_score", "missing_framework"]


def hit_metadata(hit: Hit, rank: int) -> dict[str, Any]:
    """The metadata of the framework document made from ``hit``, the ``rank``-th result (from 1): ragflow's
    own (``doc_id``, ``path``, ``page_number``, ``start``/``end``, the parser's location fields...), ``dist``
    (cosine distance) and ``citation`` (``ragflow.answer.Citation`` as a dict, without the text that the
    document holds already).

    Example:
        >>> hit = Hit(7, "Mara keeps the lantern.", {"doc_id": "a.md", "path": "/d/a.md"}, 0.25)
        >>> meta = hit_metadata(hit, 1)
        >>> meta["dist"], meta["citation"]["path"], meta["citation"]["number"]
        (0.25, '/d/a.md', 1)
    """
    citation = Citation.of(rank, hit).to_dict()
    del citation["text"]
    return {**hit.metadata, "dist": hit.dist, "citation": citation}


def hit_score(hit: Hit) -> float:
    """The similarity frameworks sort by, larger is closer: cosine similarity, ``1 - dist``."""
    return 1.0 - float(hit.dist)


def missing_framework(module: str, package: str, extra: str) -> ImportError:
    """The error an adapter raises when its framework is not installed."""
    return ImportError(
        f"ragflow.integrations.{module} needs the {package} package: pip install 'ragflow[{extra}]'"
    )
