"""A deterministic bag-of-words embedder for pipeline tests that count and compare chunks: fast, no
model, and it records every text it embeds. The real local model is tested in tests/embedders."""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt


class HashingEmbedder:
    """Hashes each word into one of ``dim`` buckets; texts sharing words get close vectors."""

    def __init__(self, dim: int = 64, max_tokens: int = 120) -> None:
        self._dim = dim
        self._max_tokens = max_tokens
        self.calls: list[list[str]] = []
        self._lock = threading.Lock()

    @property
    def model_id(self) -> str:
        return f"test/hashing-{self._dim}"

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def max_tokens(self) -> int:
        return self._max_tokens

    @property
    def embedded(self) -> list[str]:
        """Every text embedded so far, in order (queries included)."""
        with self._lock:
            return [text for batch in self.calls for text in batch]

    def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        with self._lock:
            self.calls.append(list(texts))
        out = np.zeros((len(texts), self._dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in re.findall(r"\w+", text.lower()):
                bucket = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=4).digest(), "big")
                out[row, bucket % self._dim] += 1.0
            norm = np.linalg.norm(out[row])
            out[row] = out[row] / norm if norm else 1.0 / np.sqrt(self._dim)
        return out
