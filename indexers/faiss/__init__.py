"""The embedded default vector index: cosine search on faiss, exact while small and on HNSW graphs once
large, with epoch-atomic applies, constant-cost deletes, metadata filters evaluated inside the search,
optional compact vectors, and graphs that survive a restart.

The modules, one job each: ``_blocks`` (block storage: rows, live bitmaps, views, snapshots), ``_groups``
(interned metadata), ``_transactions`` (one apply: validation, copy-on-write drafts, row placement,
revival of dormant rows, compaction, commit), ``_files`` (the saved file), ``_search`` (per-block top-k
paths, filters, merge), ``_graphs`` (HNSW graphs grown with the blocks), ``_compact`` (how graphs hold
vectors, full-precision rows on disk), ``_graph_files`` (graphs kept in a folder across restarts)
and ``_index`` (``FaissIndex``, composing them).
"""

from __future__ import annotations

from ._index import FaissIndex, IndexStats

__all__ = ["FaissIndex", "IndexStats"]
