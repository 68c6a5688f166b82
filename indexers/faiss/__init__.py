"""The embedded default vector index: exact (or HNSW) cosine search on faiss with epoch-atomic applies,
constant-cost deletes and metadata filters evaluated inside the search.

The modules, one job each: ``_blocks`` (block storage: rows, live bitmaps, views, snapshots), ``_groups``
(interned metadata), ``_transactions`` (one apply: validation, copy-on-write drafts, row placement,
compaction, commit), ``_files`` (the saved file), ``_search`` (per-block top-k paths, filters, merge),
``_graphs`` (HNSW graph building) and ``_index`` (``FaissIndex``, composing them).
"""

from __future__ import annotations

from ._index import FaissIndex, IndexStats

__all__ = ["FaissIndex", "IndexStats"]
