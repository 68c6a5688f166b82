"""The optional reranking stage: a cross-encoder (sentence-transformers' ``CrossEncoder``) loaded from a
local folder, scoring (query, passage) pairs. Never downloads: a model that is not on disk is an error."""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..documents import Hit
from ..errors import ConfigError

__all__ = ["NO_RERANKER", "CrossEncoderReranker"]

NO_RERANKER = (
    "reranking was asked for but no cross-encoder is configured: set retrieval.rerank_model (a local folder "
    "holding a sentence-transformers cross-encoder) or pass reranker=CrossEncoderReranker(path) to the store"
)


class CrossEncoderReranker:
    """Orders hits by a cross-encoder's score of (query, text), best first; equal scores by chunk id.

    Args:
        model_path: a local folder with a sentence-transformers cross-encoder (never a hub name).
        batch_size: pairs per forward pass.

    The model is loaded on first use (importing sentence-transformers takes seconds). A reranked hit's
    ``dist`` is ``1 - sigmoid(score)``.
    """

    def __init__(self, model_path: str | Path, batch_size: int = 16) -> None:
        self.model_path = Path(model_path)
        if not self.model_path.is_dir():
            raise ConfigError(
                f"rerank model {str(model_path)!r} is not a folder on this machine; ragflow never downloads "
                "one: give the path of a sentence-transformers cross-encoder"
            )
        self.batch_size = batch_size
        self._model: Any = None
        self._loading = threading.Lock()

    @property
    def model_id(self) -> str:
        return self.model_path.name

    def _loaded(self) -> Any:
        with self._loading:
            if self._model is None:
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                from sentence_transformers import CrossEncoder

                self._model = CrossEncoder(str(self.model_path), device="cpu")
            return self._model

    def rerank(self, query: str, hits: Sequence[Hit]) -> list[Hit]:
        if not hits:
            return []
        scores = self._loaded().predict([(query, h.text) for h in hits], batch_size=self.batch_size)
        order = sorted(range(len(hits)), key=lambda n: (-float(scores[n]), hits[n].id))
        return [_with_dist(hits[n], 1.0 - 1.0 / (1.0 + math.exp(-float(scores[n])))) for n in order]


def _with_dist(hit: Hit, dist: float) -> Hit:
    return Hit(hit.id, hit.text, hit.metadata, dist)
