"""ragflow: keep a vector index continuously in sync with documents in folders, S3 and Kafka."""

from __future__ import annotations

__all__: list[str] = []
__version__ = "0.1.0"
