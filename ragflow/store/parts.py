"""The parts a ``DocumentStore`` is built from, with the defaults for those it is not given: the parser for
text/Markdown/HTML/PDF/JSON/CSV, a token splitter sized to the embedder, the local embedding model, a
replica of it for queries and the ``faiss`` index."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..documents import Embedder, Parser, Splitter, VectorIndex
from ..errors import ConfigError
from ..plugins import load_indexer

__all__ = ["GRAPHS_DIR", "StoreParts", "keep_index_graphs"]

GRAPHS_DIR = "graphs"
"""In a state directory: the folder its store offers the index for graphs kept across restarts."""


@dataclass(frozen=True, slots=True)
class StoreParts:
    """What turns documents into searchable vectors, and what embeds queries."""

    parser: Parser
    splitter: Splitter
    embedder: Embedder
    query_embedder: Embedder
    index: VectorIndex

    @classmethod
    def resolve(
        cls,
        *,
        parser: Parser | None,
        splitter: Splitter | None,
        embedder: Embedder | None,
        query_embedder: Embedder | None,
        index: VectorIndex | None,
    ) -> StoreParts:
        """The given parts, with a default for each ``None``.

        Raises:
            ConfigError: ``query_embedder`` is another model than ``embedder``.
        """
        embedder = embedder if embedder is not None else _default_embedder()
        query_embedder = query_embedder if query_embedder is not None else _query_embedder(embedder)
        if (query_embedder.model_id, query_embedder.dim) != (embedder.model_id, embedder.dim):
            raise ConfigError(
                f"query_embedder {query_embedder.model_id!r} ({query_embedder.dim}-d) must be the "
                f"same model as the embedder {embedder.model_id!r} ({embedder.dim}-d): vectors of "
                "different models cannot be compared"
            )
        parser = parser if parser is not None else _default_parser()
        splitter = splitter if splitter is not None else _default_splitter(embedder)
        index = index if index is not None else load_indexer("faiss")(dim=embedder.dim)
        return cls(parser, splitter, embedder, query_embedder, index)

    @property
    def parser_id(self) -> str:
        """What the parse results depend on: the parser's class and the splitter's settings (a state
        directory and the parse cache are tied to it)."""
        splitter = self.splitter
        fields = {k: v for k, v in vars(splitter).items() if isinstance(v, int | str | float)}
        return f"parse:{type(self.parser).__qualname__}:{type(splitter).__qualname__}{sorted(fields.items())}"


def keep_index_graphs(index: VectorIndex, state_dir: Path, adopt: bool) -> None:
    """Offer ``index`` the ``graphs`` folder of ``state_dir`` for its graphs, if it keeps graphs
    (``keep_graphs_in``: the faiss index's, unless its configuration chose a folder or none): a restart
    then adopts them instead of rebuilding them. ``adopt``: the store restores saved chunks (else what
    the folder holds is stale)."""
    keep = getattr(index, "keep_graphs_in", None)
    if callable(keep):
        keep(state_dir / GRAPHS_DIR, adopt)


def _query_embedder(embedder: Embedder) -> Embedder:
    """What embeds queries: a replica of ``embedder`` when it offers one (``replica()``: the same model
    with its own lock, so a query does not wait for an indexing batch to finish), else ``embedder``."""
    replica = getattr(embedder, "replica", None)
    return replica() if callable(replica) else embedder


def _default_embedder() -> Embedder:
    from ..embedders.local import LocalEmbedder  # imports torch: only when no embedder is given

    return LocalEmbedder()


def _default_parser() -> Parser:
    from ..parsers import DefaultParser

    return DefaultParser()


def _default_splitter(embedder: Embedder) -> Splitter:
    from ..splitter import TokenSplitter

    return TokenSplitter.for_embedder(embedder)
