"""Vector indexes, installed as ``ragflow.indexers``; each registers under the ``ragflow.indexers`` entry
point group (see docs/indexes.md)."""
