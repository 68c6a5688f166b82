"""Embedders turn chunk texts into L2-normalised vectors: ``LocalEmbedder`` (offline, the default) and
``OpenAIEmbedder`` (any OpenAI-compatible API), made by name with ``make_embedder``."""

from __future__ import annotations

import inspect
from typing import Any

from ragflow.documents import Embedder
from ragflow.embedders.local import LocalEmbedder
from ragflow.embedders.openai import OpenAIEmbedder
from ragflow.errors import ConfigError

__all__ = ["EMBEDDER_KINDS", "LocalEmbedder", "OpenAIEmbedder", "embedder_stats", "make_embedder"]

# Neither module imports its heavy library (sentence-transformers, openai) until an embedder is built.
EMBEDDER_KINDS: dict[str, type[LocalEmbedder] | type[OpenAIEmbedder]] = {
    "local": LocalEmbedder,
    "openai": OpenAIEmbedder,
}


def make_embedder(kind: str, **options: Any) -> Embedder:
    """Build the embedder ``kind`` (``"local"`` or ``"openai"``) with its constructor ``options``, as
    a configuration file names them.

    Example:
        >>> make_embedder("local", batch_size=16).model_id
        'sentence-transformers/all-MiniLM-L6-v2'
    """
    factory = EMBEDDER_KINDS.get(kind)
    if factory is None:
        raise ConfigError(
            f"unknown embedder kind {kind!r}; allowed kinds: {', '.join(sorted(EMBEDDER_KINDS))}"
        )
    parameters = inspect.signature(factory).parameters
    unknown = sorted(set(options) - set(parameters))
    if unknown:
        raise ConfigError(
            f"unknown option(s) {', '.join(map(repr, unknown))} for embedder kind {kind!r}; "
            f"allowed options: {', '.join(parameters)}"
        )
    missing = [
        name
        for name, parameter in parameters.items()
        if parameter.default is inspect.Parameter.empty and name not in options
    ]
    if missing:
        raise ConfigError(f"embedder kind {kind!r} needs the option(s) {', '.join(map(repr, missing))}")
    return factory(**options)


def embedder_stats(embedder: Embedder) -> dict[str, Any]:
    """How ``embedder`` runs and how fast it has gone: ``device``, ``precision`` (of a full batch),
    ``single_precision``, ``batch_size``, ``texts_embedded``, ``embed_seconds`` and ``texts_per_second``
    for an embedder with ``stats()`` (the local model), else ``{}``.

    Example:
        >>> embedder_stats(make_embedder("local"))["texts_embedded"]
        0
    """
    stats = getattr(embedder, "stats", None)
    if not callable(stats):
        return {}
    described: dict[str, Any] = stats().as_dict()
    return described
