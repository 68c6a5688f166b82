"""The whole configuration, ``RagflowConfig``: made from YAML text, a file or plain data (always through
the validator), written back out, and built into the parts of a ``DocumentStore``."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from pydantic import Field, PrivateAttr, ValidationError

from ..errors import ConfigError
from .factories import build_plugin
from .problems import InvalidConfigError, Origin, first_message, kind_of
from .sections import (
    EmbedderConfig,
    IndexConfig,
    LLMConfig,
    ParserConfig,
    PersistenceConfig,
    PluginConfig,
    RetrievalConfig,
    Section,
    ServerConfig,
    SourceConfig,
    SplitterConfig,
)
from .validation import Validator
from .yaml_reader import YamlReader

if TYPE_CHECKING:
    from ..answer import LLMSettings
    from ..documents import DocumentSource, Embedder, Parser, Splitter, VectorIndex
    from ..store import DocumentStore
    from ..store.migrating import MigratingStore

__all__ = ["RagflowConfig", "load_config", "parse_config"]


class RagflowConfig(Section):
    """A whole configuration. Build one with ``load_config``, ``parse_config``, ``from_dict`` or
    ``for_folder``: they validate plugin options, which constructing the model directly does not."""

    sources: list[SourceConfig] = Field(default_factory=list)
    parser: ParserConfig = Field(default_factory=ParserConfig)
    splitter: SplitterConfig = Field(default_factory=SplitterConfig)
    embedder: EmbedderConfig = Field(default_factory=EmbedderConfig)
    index: IndexConfig = Field(default_factory=IndexConfig)
    llm: LLMConfig | None = None
    server: ServerConfig = Field(default_factory=ServerConfig)
    persistence: PersistenceConfig = Field(default_factory=PersistenceConfig)
    retrieval: RetrievalConfig = Field(default_factory=RetrievalConfig)

    _origin: Origin = PrivateAttr(default_factory=Origin)

    def __eq__(self, other: object) -> bool:
        # Where a configuration was read from (private, for error messages) is not part of its value.
        return isinstance(other, RagflowConfig) and self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]

    # -- making one ----------------------------------------------------------------------------------

    @classmethod
    def from_dict(
        cls, data: Mapping[str, Any], *, base_dir: str | os.PathLike[str] | None = None
    ) -> RagflowConfig:
        """Validate plain data shaped like the YAML file; relative paths are taken from ``base_dir``
        (default: the current directory)."""
        origin = Origin(base_dir=Path(base_dir) if base_dir is not None else Path.cwd())
        return _validated(origin, dict(data))

    @classmethod
    def for_folder(cls, path: str | os.PathLike[str]) -> RagflowConfig:
        """The defaults over one folder: what ``ragflow serve PATH`` uses when no file is given."""
        if not Path(path).is_dir():
            raise ConfigError(f"{path} is not a folder: pass the folder to index, or --config FILE")
        return cls.from_dict({"sources": [{"kind": "folder", "root": str(path)}]})

    def with_overrides(
        self,
        *,
        host: str | None = None,
        port: int | None = None,
        state_dir: str | os.PathLike[str] | None = None,
    ) -> RagflowConfig:
        """A copy with command-line overrides applied (``None`` keeps the configured value)."""
        server = self.server.model_dump(exclude_unset=False)
        if host is not None:
            server["host"] = host
        if port is not None:
            server["port"] = port
        persistence = self.persistence.model_dump()
        if state_dir is not None:
            persistence["state_dir"] = str(Path(state_dir).expanduser().resolve())
        try:
            update = {
                "server": ServerConfig.model_validate(server),
                "persistence": PersistenceConfig.model_validate(persistence),
            }
        except ValidationError as exc:
            raise ConfigError(f"invalid command-line option: {first_message(exc)}") from None
        return self.model_copy(update=update)

    # -- writing it out -----------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Plain data in the file's shape (plugin options next to ``kind``); ``from_dict`` reads it back."""

        def plugin(section: PluginConfig) -> dict[str, Any]:
            return {"kind": section.kind, **section.options}

        data: dict[str, Any] = {
            "sources": [plugin(source) for source in self.sources],
            "parser": self.parser.model_dump(),
            "splitter": self.splitter.model_dump(),
            "embedder": plugin(self.embedder),
            "index": plugin(self.index),
        }
        if self.llm is not None:
            data["llm"] = self.llm.model_dump()
        server = self.server.model_dump()
        server["api_keys"] = [_without_secret(key) for key in server["api_keys"]]
        data["server"] = server
        data["persistence"] = self.persistence.model_dump()
        return data

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True)

    # -- building the parts --------------------------------------------------------------------------

    def build_sources(self) -> list[DocumentSource]:
        """One source per ``sources`` entry, constructed with its options."""
        return [build_plugin(self._origin, ("sources", i), "source", s) for i, s in enumerate(self.sources)]

    def build_parser(self) -> Parser:
        from ..parsers import DefaultParser, ParseLimits

        section = self.parser
        caps = ("max_unpacked_bytes", "max_empty_rows", "max_attachment_bytes", "max_seconds")
        limits = ParseLimits(
            **{cap: getattr(section, cap) for cap in caps if getattr(section, cap) is not None}
        )
        return DefaultParser(limits=limits, pdf_engine=section.pdf_engine, ocr=section.ocr)

    def build_embedder(self) -> Embedder:
        embedder: Embedder = build_plugin(self._origin, ("embedder",), "embedder", self.embedder)
        return embedder

    def build_splitter(self, embedder: Embedder) -> Splitter:
        from ..splitter import TokenSplitter

        section = self.splitter
        try:
            return TokenSplitter.for_embedder(embedder, section.max_tokens, section.overlap, section.encoding)
        except ConfigError as exc:
            raise self._origin.error(("splitter",), str(exc)) from None

    def build_index(self, dim: int) -> VectorIndex:
        index: VectorIndex = build_plugin(self._origin, ("index",), "index", self.index, dim=dim)
        return index

    def build_store(
        self, *, sources: Sequence[DocumentSource] | None = None, embedder: Embedder | None = None
    ) -> DocumentStore:
        """The ``DocumentStore`` this configuration describes (not started). ``sources`` replaces
        ``build_sources()`` (the server passes those plus its upload source); ``embedder`` replaces the
        configured one."""
        from ..engine import DiskCache
        from ..persistence import CACHE_FILE, StateError
        from ..store import DocumentStore
        from ..store.generations import active_state_dir, write_recipe
        from .recipe import recipe_settings

        sources = self.build_sources() if sources is None else list(sources)
        if not sources:
            raise self._origin.error(("sources",), "no sources: list at least one (e.g. kind: folder)")
        if embedder is None:
            embedder = self.build_embedder()
        on_incompatible = self.persistence.on_incompatible_state or "refuse"
        if on_incompatible == "migrate":
            raise self._origin.error(
                ("persistence", "on_incompatible_state"),
                "'migrate' is what 'ragflow serve' does (it keeps serving while the new index is built); "
                "to index once, use 'refuse' or 'rebuild'",
            )
        root = Path(self.persistence.state_dir) if self.persistence.state_dir is not None else None
        state_dir = active_state_dir(root) if root is not None else None  # a migration may have moved it
        try:
            store = DocumentStore(
                sources,
                parser=self.build_parser(),
                splitter=self.build_splitter(embedder),
                embedder=embedder,
                index=self.build_index(embedder.dim),
                state_dir=state_dir,
                cache=DiskCache(root / CACHE_FILE) if root is not None else None,
                checkpoint_interval=self.persistence.checkpoint_interval,
                on_incompatible_state=on_incompatible,
                **self.retrieval_options(),
            )
        except (InvalidConfigError, StateError):
            raise  # a StateError is about the state directory, which its message names
        except ConfigError as exc:
            raise self._origin.error(("sources",), str(exc)) from None
        if state_dir is not None:
            # what a later 'ragflow serve' with other settings serves while it migrates
            write_recipe(state_dir, recipe_settings(self))
        return store

    def build_generations(self, sources: Callable[[], list[DocumentSource]]) -> MigratingStore:
        """The ``MigratingStore`` of ``ragflow serve`` (not started): the configured store over the
        state directory's generations, migrating to these settings if the active generation has others.
        ``sources`` makes each generation's own source instances."""
        from ..store.migrating import MigratingStore
        from ..store.migration_gate import MigrationGate
        from .recipe import ConfigRecipe

        if self.persistence.state_dir is None:
            raise self._origin.error(("persistence", "state_dir"), "generations need a state directory")
        settings = self.persistence.migration_gate
        gate = None
        if settings is not None:
            try:
                gate = MigrationGate(**settings.model_dump())
            except (ConfigError, OSError) as exc:
                raise self._origin.error(("persistence", "migration_gate", "eval_set"), str(exc)) from None
        return MigratingStore(
            self.persistence.state_dir,
            ConfigRecipe(self, sources),
            keep_previous=self.persistence.keep_previous_generation,
            gate=gate,
        )

    def retrieval_options(self) -> dict[str, Any]:
        """The ``DocumentStore`` arguments of the ``retrieval`` section."""
        from ..retrieval import CrossEncoderReranker, RetrievalSettings

        r = self.retrieval
        try:
            reranker = (
                CrossEncoderReranker(self._origin.base_dir / Path(r.rerank_model).expanduser())
                if r.rerank_model
                else None
            )
            settings = RetrievalSettings(
                r.search_mode,
                r.rrf_k,
                r.vector_weight,
                r.lexical_weight,
                r.fusion_depth,
                r.rerank,
                r.rerank_k,
            )
        except ConfigError as exc:
            raise self._origin.error(("retrieval",), str(exc)) from None
        return {"lexical": r.lexical_index, "retrieval": settings, "reranker": reranker}

    def llm_settings(self) -> LLMSettings | None:
        """The answering model's settings, or ``None`` without an ``llm`` section or model name."""
        llm = self.llm
        if llm is None or llm.model is None:
            return None
        try:
            from ..answer import LLMSettings
        except ImportError as exc:
            message = f"answering is not available in this installation ({exc})"
            raise self._origin.error(("llm",), message) from None
        try:
            return LLMSettings(
                llm.base_url, llm.api_key, llm.model, timeout=llm.timeout, max_retries=llm.max_retries
            )
        except ConfigError as exc:
            raise self._origin.error(("llm",), str(exc)) from None


def load_config(path: str | os.PathLike[str], *, environ: Mapping[str, str] | None = None) -> RagflowConfig:
    """Read and validate a YAML configuration file; relative paths in it are relative to the file."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"configuration file {file} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the configuration file {file}: {exc}") from None
    return parse_config(text, file=str(file), base_dir=file.resolve().parent, environ=environ)


def parse_config(
    text: str,
    *,
    file: str | None = None,
    base_dir: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> RagflowConfig:
    """Validate configuration text. ``${NAME}`` and ``${NAME:-default}`` are replaced from ``environ``
    (default ``os.environ``); ``file`` names the text in error messages."""
    origin = Origin(file, {}, Path(base_dir) if base_dir is not None else Path.cwd(), set())
    reader = YamlReader(origin, os.environ if environ is None else environ)
    data = reader.read(text)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise origin.error((), f"the configuration must be a mapping of sections, got {kind_of(data)}")
    return _validated(origin, data)


def _without_secret(api_key: dict[str, Any]) -> dict[str, Any]:
    """A named key as ``to_dict`` writes it: a secret given as ``key`` becomes its ``key_sha256``, so that
    what is written out holds no secret (and reads back: a secret written in a file is refused)."""
    secret = api_key.get("key")
    if secret in (None, ""):
        return api_key
    return {**api_key, "key": None, "key_sha256": hashlib.sha256(str(secret).encode()).hexdigest()}


def _validated(origin: Origin, data: dict[str, Any]) -> RagflowConfig:
    config = RagflowConfig.model_validate(Validator(origin).sections(data))
    config._origin = origin
    return config
