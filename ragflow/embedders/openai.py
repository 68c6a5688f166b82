"""Embed text with an OpenAI-compatible embeddings API (OpenAI itself, or vLLM, Ollama, llama.cpp...),
retrying transient failures with exponential backoff."""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from ragflow.errors import ConfigError, EmbedError

if TYPE_CHECKING:
    import openai

__all__ = ["OpenAIEmbedder"]

logger = logging.getLogger(__name__)

_OPENAI_BASE_URL = "https://api.openai.com/v1"
# Known dimensions, so that an index can be created before the first request.
_KNOWN_DIMS = {"text-embedding-3-small": 1536, "text-embedding-3-large": 3072, "text-embedding-ada-002": 1536}
# Status codes worth retrying: timeout, conflict, rate limit and server errors (as the openai client does).
_RETRYABLE_STATUS = frozenset({408, 409, 429})


class OpenAIEmbedder:
    """Embeddings from ``POST {base_url}/embeddings``, in batches, with retries.

    Connection errors, timeouts, 408/409/429 and 5xx answers are retried up to ``max_retries`` times,
    waiting ``backoff_base * 2**attempt`` seconds (with jitter, at most ``backoff_max``, at least what
    a ``Retry-After`` header asks); other errors fail at once. Failures raise ``EmbedError`` naming the
    model, the server and the reason. Vectors are L2-normalised here, whatever the server returns.

    Args:
        model: the model name the server knows, e.g. ``text-embedding-3-small``.
        base_url: the API root (``http://host:port/v1``); default OpenAI's (or ``OPENAI_BASE_URL``).
        api_key: default ``OPENAI_API_KEY``; may be omitted for a local server given by ``base_url``.
        batch_size: texts per request.
        max_retries: retries after the first attempt of a request.
        timeout: seconds per request.
        dim: the expected vector size; learnt from the first response if not given (and not known).
        max_tokens: cl100k tokens a chunk may hold (8191 for OpenAI's embedding models).

    Example:
        >>> embedder = OpenAIEmbedder("text-embedding-3-small")  # doctest: +SKIP
        >>> embedder.embed(["hello"]).shape  # doctest: +SKIP
        (1, 1536)
    """

    def __init__(
        self,
        model: str,
        base_url: str | None = None,
        api_key: str | None = None,
        batch_size: int = 64,
        max_retries: int = 5,
        timeout: float = 30,
        dim: int | None = None,
        max_tokens: int = 8191,
        *,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
    ) -> None:
        import openai

        if batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, got {batch_size}")
        if max_retries < 0:
            raise ConfigError(f"max_retries must be 0 or more, got {max_retries}")
        if dim is not None and dim < 1:
            raise ConfigError(f"dim must be positive, got {dim}")
        if max_tokens < 1:
            raise ConfigError(f"max_tokens must be positive, got {max_tokens}")
        api_key = api_key or os.environ.get("OPENAI_API_KEY")
        base_url = base_url or os.environ.get("OPENAI_BASE_URL")
        if not api_key:
            if base_url is None:
                raise ConfigError("the OpenAI embedder needs an API key: pass api_key or set OPENAI_API_KEY")
            # Local OpenAI-compatible servers ignore the key, but the client insists on one.
            api_key = "unused"
        self.model = model
        self.batch_size = batch_size
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        # The client's own retries are off: ours log each failure and end in an EmbedError that names
        # the server and the last reason, which is what a per-document error record needs.
        self._client = openai.OpenAI(api_key=api_key, base_url=base_url, timeout=timeout, max_retries=0)
        self._openai = openai
        self.base_url = str(self._client.base_url).rstrip("/")
        self._dim_given = dim is not None
        if dim is None and self.base_url == _OPENAI_BASE_URL:
            dim = _KNOWN_DIMS.get(model)
        self._dim = dim
        self._dim_lock = threading.Lock()
        self._max_tokens = max_tokens

    @property
    def model_id(self) -> str:
        """The model name, plus the server unless it is OpenAI's: one name on two servers may be two
        different models, whose vectors must never share a cache."""
        return self.model if self.base_url == _OPENAI_BASE_URL else f"{self.model}@{self.base_url}"

    @property
    def dim(self) -> int:
        """The vector size; if not given or known, asked of the server with a one-word request."""
        if self._dim is None:
            self.embed(["dimension"])
        assert self._dim is not None
        return self._dim

    @property
    def max_tokens(self) -> int:
        return self._max_tokens

    def close(self) -> None:
        """Close the HTTP connections."""
        self._client.close()

    def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """L2-normalised float32 vectors, one row per text, ``batch_size`` texts per request."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        texts = list(texts)
        batches = [
            self._embed_batch(texts[i : i + self.batch_size]) for i in range(0, len(texts), self.batch_size)
        ]
        return np.ascontiguousarray(np.vstack(batches))

    def _embed_batch(self, texts: list[str]) -> npt.NDArray[np.float32]:
        # The API refuses empty strings; a lone space embeds "nothing" just as well.
        inputs = [text or " " for text in texts]
        response = self._request(inputs)
        data = sorted(response.data, key=lambda item: item.index)
        if len(data) != len(inputs):
            raise self._error(f"asked for {len(inputs)} embeddings, got {len(data)}")
        try:
            vectors = np.asarray([item.embedding for item in data], dtype=np.float32)
        except (TypeError, ValueError) as exc:
            raise self._error(f"the response holds malformed vectors: {exc}") from exc
        if vectors.ndim != 2 or vectors.shape[1] == 0:
            raise self._error(f"the response holds vectors of shape {vectors.shape}")
        self._check_dim(vectors.shape[1])
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        bad = np.flatnonzero(~np.isfinite(norms[:, 0]) | (norms[:, 0] == 0))
        if bad.size:
            raise self._error(f"the server returned a zero or non-finite vector for input #{int(bad[0])}")
        return vectors / norms

    def _check_dim(self, dim: int) -> None:
        with self._dim_lock:
            if self._dim is None:
                self._dim = dim
            elif dim != self._dim:
                learnt = "configured" if self._dim_given else "earlier responses had"
                raise self._error(f"the server returned vectors of dimension {dim}, but {learnt} {self._dim}")

    def _request(self, inputs: list[str]) -> openai.types.CreateEmbeddingResponse:
        openai = self._openai
        attempts = self.max_retries + 1
        for attempt in range(attempts):
            try:
                return self._client.embeddings.create(model=self.model, input=inputs)
            except openai.APIConnectionError as exc:  # includes timeouts
                reason, retry_after = _describe(exc), None
            except openai.APIStatusError as exc:
                reason = f"HTTP {exc.status_code}: {_describe(exc)}"
                if exc.status_code < 500 and exc.status_code not in _RETRYABLE_STATUS:
                    raise self._error(reason) from exc
                retry_after = _retry_after(exc)
            if attempt + 1 < attempts:
                delay = min(self.backoff_max, self.backoff_base * 2**attempt) * random.uniform(0.5, 1.0)
                delay = min(self.backoff_max, max(delay, retry_after or 0.0))
                logger.warning(
                    "%s: attempt %d/%d failed (%s); retrying in %.2f s",
                    self.model_id,
                    attempt + 1,
                    attempts,
                    reason,
                    delay,
                )
                time.sleep(delay)
        raise self._error(f"gave up after {attempts} attempts: {reason}")

    def _error(self, reason: str) -> EmbedError:
        return EmbedError(f"embedding model {self.model!r} at {self.base_url}: {reason}")


def _describe(exc: openai.APIError) -> str:
    cause = exc.__cause__
    # A connection error's own message is just "Connection error."; the cause says which.
    if cause is not None and str(cause) and str(cause) not in exc.message:
        return f"{exc.message} ({type(cause).__name__}: {cause})"
    return exc.message


def _retry_after(exc: openai.APIStatusError) -> float | None:
    value = exc.response.headers.get("retry-after")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
