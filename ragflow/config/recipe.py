"""A configuration as a generation's recipe (``ragflow.store.migrating.StoreRecipe``): the sections that
decide what the index holds (parser, splitter, embedder) are saved with each generation, so that the
generation can be served with them after the configuration changed, while its replacement is built."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .sections import EmbedderConfig, ParserConfig, SplitterConfig

if TYPE_CHECKING:
    from ..documents import DocumentSource, Embedder
    from ..engine import UdfCache
    from ..persistence import SavedState, StateIdentity
    from ..store import DocumentStore
    from .schema import RagflowConfig

__all__ = ["ConfigRecipe", "recipe_settings"]

_SECRET_OPTIONS = frozenset({"api_key"})
"""Embedder options never written to a recipe: the configuration in use supplies them again."""


def recipe_settings(config: RagflowConfig) -> dict[str, Any]:
    """What a generation built with ``config`` saves: its parser, splitter and embedder sections (the
    embedder's secrets left out)."""
    data = config.to_dict()
    embedder = {k: v for k, v in data["embedder"].items() if k not in _SECRET_OPTIONS}
    return {"parser": data["parser"], "splitter": data["splitter"], "embedder": embedder}


class ConfigRecipe:
    """``config``'s store, with ``sources()`` making each generation's own source instances."""

    def __init__(
        self,
        config: RagflowConfig,
        sources: Callable[[], list[DocumentSource]],
        embedder: Embedder | None = None,
    ) -> None:
        self.config = config
        self.sources = sources
        self._embedder = embedder

    @property
    def settings(self) -> dict[str, Any]:
        return recipe_settings(self.config)

    def embedder(self) -> Embedder:
        if self._embedder is None:
            self._embedder = self.config.build_embedder()
        return self._embedder

    def identity(self) -> StateIdentity:
        from ..persistence import StateIdentity
        from ..store.parts import StoreParts

        embedder = self.embedder()
        parts = StoreParts(
            self.config.build_parser(),
            self.config.build_splitter(embedder),
            embedder,
            embedder,
            None,  # type: ignore[arg-type]
        )
        return StateIdentity(embedder.model_id, embedder.dim, parts.parser_id)

    def with_settings(self, settings: Mapping[str, Any]) -> ConfigRecipe:
        embedder_data = dict(settings["embedder"])
        kind = embedder_data.pop("kind")
        current = self.config.embedder
        if kind == current.kind:  # the secrets left out of the recipe come from the configuration
            embedder_data.update((k, v) for k, v in current.options.items() if k in _SECRET_OPTIONS)
        section = EmbedderConfig(kind=kind, options=embedder_data)
        older = self.config.model_copy(
            update={
                "parser": ParserConfig.model_validate(settings["parser"]),
                "splitter": SplitterConfig.model_validate(settings["splitter"]),
                "embedder": section,
            }
        )
        # the same model serves both generations (a splitter change): one copy of it, not two
        shared = self._embedder if section == current else None
        return ConfigRecipe(older, self.sources, shared)

    def build(self, state_dir: Path, cache: UdfCache, seed: SavedState | None) -> DocumentStore:
        from ..store import DocumentStore

        embedder = self.embedder()
        config = self.config
        return DocumentStore(
            self.sources(),
            parser=config.build_parser(),
            splitter=config.build_splitter(embedder),
            embedder=embedder,
            index=config.build_index(embedder.dim),
            state_dir=state_dir,
            cache=cache,
            checkpoint_interval=config.persistence.checkpoint_interval,
            on_incompatible_state="refuse",
            seed=seed,
            **config.retrieval_options(),
        )
