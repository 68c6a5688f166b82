"""The YAML configuration of a ragflow deployment (sources, parser, splitter, embedder, index, LLM, server,
persistence), validated with errors that name the file, line and key, and built into a ``DocumentStore``.

Sources and indexes are found by name through entry points, and their options are checked against the
constructor of the class registered under that name, so a new source kind needs no change here.

Example:
    >>> config = parse_config("sources:\\n  - kind: folder\\n    root: docs\\n")
    >>> config.sources[0].kind, config.server.port
    ('folder', 8000)
"""

from __future__ import annotations

import difflib
import functools
import inspect
import os
import re
import typing
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import TYPE_CHECKING, Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    TypeAdapter,
    ValidationError,
    create_model,
)
from pydantic import field_validator as _field_validator

from .errors import ConfigError
from .plugins import available, load_connector, load_indexer

if TYPE_CHECKING:
    from .answer import LLMSettings
    from .documents import DocumentSource, Embedder, Parser, Splitter, VectorIndex
    from .store import DocumentStore

__all__ = [
    "ConfigProblem",
    "EmbedderConfig",
    "IndexConfig",
    "InvalidConfigError",
    "LLMConfig",
    "ParserConfig",
    "PersistenceConfig",
    "RagflowConfig",
    "ServerConfig",
    "SourceConfig",
    "SplitterConfig",
    "load_config",
    "parse_config",
]

Location = tuple[str | int, ...]
"""A key path in the configuration: ``("sources", 0, "root")`` is ``sources[0].root``."""

_SECRET_KEY = re.compile(r"api_key|password|secret", re.I)
_REFERENCE = re.compile(r"\$\$\{|\$\{(?:(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\})?")
_MERGE_TAG = "tag:yaml.org,2002:merge"
_RESERVED_KEYS = frozenset({"kind"})
"""Keys a plugin section uses itself; a constructor parameter of the same name is ``<plugin>_<name>``."""


# -- errors --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ConfigProblem:
    """One thing wrong in a configuration: where (file, line, key path) and what."""

    file: str | None
    line: int | None
    path: str
    message: str

    def __str__(self) -> str:
        where = self.file or "configuration"
        if self.line is not None:
            where = f"{where}:{self.line}"
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class InvalidConfigError(ConfigError):
    """A configuration with one or more problems; ``problems`` lists them in file order."""

    def __init__(self, problems: Sequence[ConfigProblem]) -> None:
        self.problems = sorted(problems, key=lambda p: (p.line or 0, p.path))
        if len(self.problems) == 1:
            text = str(self.problems[0])
        else:
            listed = "\n".join(f"  {problem}" for problem in self.problems)
            text = f"{len(self.problems)} problems in the configuration:\n{listed}"
        super().__init__(text)


def format_path(loc: Location) -> str:
    """``("sources", 0, "root")`` -> ``"sources[0].root"``."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


@dataclass(frozen=True, slots=True)
class _Origin:
    """Where a configuration came from, to point errors found after validation at the right line."""

    file: str | None = None
    lines: dict[Location, int] = field(default_factory=dict)
    base_dir: Path = field(default_factory=Path.cwd)

    def line(self, loc: Location) -> int | None:
        for end in range(len(loc), 0, -1):
            if loc[:end] in self.lines:
                return self.lines[loc[:end]]
        return None

    def problem(self, loc: Location, message: str) -> ConfigProblem:
        return ConfigProblem(self.file, self.line(loc), format_path(loc), message)

    def error(self, loc: Location, message: str) -> InvalidConfigError:
        return InvalidConfigError([self.problem(loc, message)])


# -- the schema ----------------------------------------------------------------------------------------


def _empty_as_none(value: str | None) -> str | None:
    return value or None


_Key = Annotated[str | None, AfterValidator(_empty_as_none)]
"""A text where empty means none, so that ``"${NAME:-}"`` turns a setting off."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ParserConfig(_Section):
    """How documents become text. ``default`` reads text, Markdown, HTML, PDF, JSON and CSV."""

    kind: Literal["default"] = "default"


class SplitterConfig(_Section):
    """How text is cut into chunks (``TokenSplitter``)."""

    max_tokens: int | None = Field(default=None, ge=8)
    """Tokens per chunk; default: what the embedder takes (128 for the local model)."""
    overlap: int = Field(default=0, ge=0)
    """Tokens of the previous chunk repeated at the start of the next; at most ``max_tokens // 2``."""
    encoding: str = "cl100k_base"
    """The tiktoken encoding that counts tokens."""

    @_field_validator("encoding")
    @classmethod
    def _known_encoding(cls, value: str) -> str:
        from .tokenizer import encoding_names

        names = encoding_names()
        if value not in names:
            raise ValueError(f"unknown encoding.{_did_you_mean(value, names)} Allowed: {', '.join(names)}")
        return value


class _PluginConfig(_Section):
    """A part chosen by ``kind``, with the options of the class registered under that name."""

    kind: str
    options: dict[str, Any] = Field(default_factory=dict)
    """Constructor options as the configuration names them (validated by ``RagflowConfig.from_dict``)."""


class SourceConfig(_PluginConfig):
    """One document source: ``kind`` is an entry point name in ``ragflow.connectors`` (``folder``...)."""


class EmbedderConfig(_PluginConfig):
    """The embedder: ``local`` (offline sentence-transformers model) or ``openai`` (any compatible API)."""

    kind: str = "local"


class IndexConfig(_PluginConfig):
    """The vector index: ``kind`` is an entry point name in ``ragflow.indexers`` (``faiss``...)."""

    kind: str = "faiss"


class LLMConfig(_Section):
    """The chat model that answers questions (``/v2/answer``): any OpenAI-compatible API."""

    model: _Key
    """The model name; empty turns the LLM off (answers are then extractive), so that
    ``model: ${RAGFLOW_LLM_MODEL:-}`` lets the environment decide."""
    base_url: str = "https://api.openai.com/v1"
    api_key: _Key = None
    """Empty means none (``"${OPENAI_API_KEY:-}"``): local OpenAI-compatible servers need no key."""
    timeout: float = Field(default=30, gt=0)
    max_retries: int = Field(default=2, ge=0)


class ServerConfig(_Section):
    """The REST server."""

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    api_key: _Key = None
    """When set (and not empty), requests must carry it (``Authorization: Bearer <key>``)."""
    max_k: int = Field(default=100, ge=1)
    """The most chunks one retrieval may ask for."""
    max_request_bytes: int = Field(default=10_000_000, ge=1024)
    """The largest request body accepted (uploads included)."""


class PersistenceConfig(_Section):
    """State that survives restarts (docs/persistence.md): the embedding cache, the indexed documents and
    each source's position, so a restart re-embeds nothing that did not change."""

    state_dir: str | None = ".ragflow"
    """Where state lives; ``null`` keeps everything in memory (a restart indexes everything again)."""
    checkpoint_interval: float = Field(default=1.0, gt=0)
    """Seconds between checkpoints: how much indexing a crash can cost (queries never wait for one)."""
    on_incompatible_state: Literal["refuse", "rebuild"] = "refuse"
    """What to do with a state written for another embedding model or splitter: ``refuse`` to start
    (saying what differs), or ``rebuild`` it (cached embeddings of this model are reused)."""


class RagflowConfig(_Section):
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

    _origin: _Origin = PrivateAttr(default_factory=_Origin)

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
        origin = _Origin(base_dir=Path(base_dir) if base_dir is not None else Path.cwd())
        return _Validator(origin).config(dict(data))

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
            raise ConfigError(f"invalid command-line option: {_first_message(exc)}") from None
        return self.model_copy(update=update)

    # -- writing it out -----------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Plain data in the file's shape (plugin options next to ``kind``); ``from_dict`` reads it back."""

        def plugin(section: _PluginConfig) -> dict[str, Any]:
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
        data["server"] = self.server.model_dump()
        data["persistence"] = self.persistence.model_dump()
        return data

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True)

    # -- building the parts --------------------------------------------------------------------------

    def build_sources(self) -> list[DocumentSource]:
        """One source per ``sources`` entry, constructed with its options."""
        built = []
        for i, source in enumerate(self.sources):
            factory = load_connector(source.kind)
            built.append(self._construct(("sources", i), factory, source.kind, source.options))
        return built

    def build_parser(self) -> Parser:
        from .parsers import DefaultParser

        return DefaultParser()

    def build_embedder(self) -> Embedder:
        from .embedders import EMBEDDER_KINDS

        factory = EMBEDDER_KINDS[self.embedder.kind]
        embedder: Embedder = self._construct(
            ("embedder",), factory, self.embedder.kind, self.embedder.options
        )
        return embedder

    def build_splitter(self, embedder: Embedder) -> Splitter:
        from .splitter import TokenSplitter

        section = self.splitter
        max_tokens = section.max_tokens if section.max_tokens is not None else embedder.max_tokens
        try:
            return TokenSplitter(max_tokens=max_tokens, overlap=section.overlap, encoding=section.encoding)
        except ConfigError as exc:
            raise self._origin.error(("splitter",), str(exc)) from None

    def build_index(self, dim: int) -> VectorIndex:
        factory = load_indexer(self.index.kind)
        index: VectorIndex = self._construct(
            ("index",), factory, self.index.kind, self.index.options, dim=dim
        )
        return index

    def build_store(
        self, *, sources: Sequence[DocumentSource] | None = None, embedder: Embedder | None = None
    ) -> DocumentStore:
        """The ``DocumentStore`` this configuration describes (not started). ``sources`` replaces
        ``build_sources()`` (the server passes those plus its upload source); ``embedder`` replaces the
        configured one."""
        from .persistence import StateError
        from .store import DocumentStore

        sources = self.build_sources() if sources is None else list(sources)
        if not sources:
            raise self._origin.error(("sources",), "no sources: list at least one (e.g. kind: folder)")
        if embedder is None:
            embedder = self.build_embedder()
        try:
            return DocumentStore(
                sources,
                parser=self.build_parser(),
                splitter=self.build_splitter(embedder),
                embedder=embedder,
                index=self.build_index(embedder.dim),
                state_dir=self.persistence.state_dir,
                checkpoint_interval=self.persistence.checkpoint_interval,
                on_incompatible_state=self.persistence.on_incompatible_state,
            )
        except (InvalidConfigError, StateError):
            raise  # a StateError is about the state directory, which its message names
        except ConfigError as exc:
            raise self._origin.error(("sources",), str(exc)) from None

    def llm_settings(self) -> LLMSettings | None:
        """The answering model's settings, or ``None`` without an ``llm`` section or model name."""
        llm = self.llm
        if llm is None or llm.model is None:
            return None
        try:
            from .answer import LLMSettings
        except ImportError as exc:
            message = f"answering is not available in this installation ({exc})"
            raise self._origin.error(("llm",), message) from None
        try:
            return LLMSettings(
                llm.base_url, llm.api_key, llm.model, timeout=llm.timeout, max_retries=llm.max_retries
            )
        except ConfigError as exc:
            raise self._origin.error(("llm",), str(exc)) from None

    def _construct(
        self, loc: Location, factory: Callable[..., Any], kind: str, options: Mapping[str, Any], **given: Any
    ) -> Any:
        signature = _plugin_signature(factory, kind, frozenset(given))
        try:
            return factory(**signature.arguments(options), **given)
        except ConfigError as exc:
            raise self._origin.error(loc, str(exc)) from None


# -- reading YAML --------------------------------------------------------------------------------------


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
    origin = _Origin(file, {}, Path(base_dir) if base_dir is not None else Path.cwd())
    reader = _YamlReader(origin, os.environ if environ is None else environ)
    data = reader.read(text)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise origin.error((), f"the configuration must be a mapping of sections, got {_kind_of(data)}")
    return _Validator(origin).config(data)


class _YamlReader:
    """Turns YAML text into plain data via the node tree, so that every key keeps its line, replacing
    ``${ENV}`` references inside scalar values (never in comments or keys)."""

    def __init__(self, origin: _Origin, environ: Mapping[str, str]) -> None:
        self.origin = origin
        self.lines = origin.lines
        self.environ = environ
        self.problems: list[ConfigProblem] = []
        self.loader = yaml.SafeLoader("")

    def read(self, text: str) -> Any:
        try:
            node = yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            line = mark.line + 1 if mark is not None else None
            reason = " ".join(str(getattr(exc, "problem", None) or exc).split())
            problem = ConfigProblem(self.origin.file, line, "", f"invalid YAML: {reason}")
            raise InvalidConfigError([problem]) from None
        data = None if node is None else self._value(node, ())
        if self.problems:
            raise InvalidConfigError(self.problems)
        return data

    def _value(self, node: yaml.Node, loc: Location) -> Any:
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, loc)
        if isinstance(node, yaml.SequenceNode):
            items = []
            for i, child in enumerate(node.value):
                self.lines[(*loc, i)] = child.start_mark.line + 1
                items.append(self._value(child, (*loc, i)))
            return items
        return self._scalar(node, loc)

    def _mapping(self, node: yaml.MappingNode, loc: Location) -> dict[str, Any]:
        result: dict[str, Any] = {}
        first_line: dict[str, int] = {}
        for key_node, value_node, merged in _entries(node):
            if not isinstance(key_node, yaml.ScalarNode):
                self._problem(key_node, loc, "a key must be a plain name, not a list or mapping")
                continue
            key = str(self.loader.construct_object(key_node))
            line = key_node.start_mark.line + 1
            if key in result:
                if merged:
                    continue  # a key given explicitly wins over one merged in with <<
                self._problem(key_node, (*loc, key), f"duplicate key (first given on line {first_line[key]})")
                continue
            first_line[key] = line
            self.lines[(*loc, key)] = line
            result[key] = self._value(value_node, (*loc, key))
        return result

    def _scalar(self, node: yaml.Node, loc: Location) -> Any:
        if "${" not in node.value:
            return self._construct(node, loc)
        text = self._interpolate(node.value, node, loc)
        if getattr(node, "style", None) is None and text == "":
            return None  # an unquoted reference to an empty value is YAML's empty value: null
        return text

    def _construct(self, node: yaml.Node, loc: Location) -> Any:
        try:
            return self.loader.construct_object(node, deep=True)
        except yaml.YAMLError as exc:
            self._problem(node, loc, f"invalid value: {getattr(exc, 'problem', None) or exc}")
            return None

    def _interpolate(self, value: str, node: yaml.Node, loc: Location) -> str:
        def replace(match: re.Match[str]) -> str:
            if match.group(0) == "$${":
                return "${"
            name, default = match.group("name"), match.group("default")
            if name is None:
                snippet = value[match.start() : match.start() + 20]
                self._problem(
                    node,
                    loc,
                    f"malformed reference {snippet!r}: write ${{NAME}} or ${{NAME:-default}} "
                    "(and $${ for a literal ${)",
                )
                return ""
            found = self.environ.get(name)
            if default is not None and not found:
                return default
            if found is None:
                self._problem(
                    node,
                    loc,
                    f"environment variable {name} is not set; "
                    f"set it, or give a default: ${{{name}:-default}}",
                )
                return ""
            return found

        return _REFERENCE.sub(replace, value)

    def _problem(self, node: yaml.Node, loc: Location, message: str) -> None:
        line = node.start_mark.line + 1
        self.problems.append(ConfigProblem(self.origin.file, line, format_path(loc), message))


def _entries(node: yaml.MappingNode) -> Iterator[tuple[yaml.Node, yaml.Node, bool]]:
    """A mapping's (key, value, merged) pairs: its own first, then those merged in with ``<<``."""
    merges = []
    for key_node, value_node in node.value:
        if key_node.tag == _MERGE_TAG:
            merges.append(value_node)
        else:
            yield key_node, value_node, False
    for merge in merges:
        sources = merge.value if isinstance(merge, yaml.SequenceNode) else [merge]
        for source in sources:
            if isinstance(source, yaml.MappingNode):
                for key_node, value_node, _ in _entries(source):
                    yield key_node, value_node, True


# -- validation ----------------------------------------------------------------------------------------


_STATIC_SECTIONS: dict[str, type[_Section]] = {
    "parser": ParserConfig,
    "splitter": SplitterConfig,
    "llm": LLMConfig,
    "server": ServerConfig,
    "persistence": PersistenceConfig,
}
_PLUGIN_MODELS: dict[str, type[_PluginConfig]] = {
    "source": SourceConfig,
    "embedder": EmbedderConfig,
    "index": IndexConfig,
}
_DEFAULT_KINDS: dict[str, str | None] = {"source": None, "embedder": "local", "index": "faiss"}
_SECTION_NAMES = ("sources", "parser", "splitter", "embedder", "index", "llm", "server", "persistence")


class _Validator:
    """Checks plain configuration data section by section, collecting every problem before raising."""

    def __init__(self, origin: _Origin) -> None:
        self.origin = origin
        self.problems: list[ConfigProblem] = []

    def config(self, data: dict[str, Any]) -> RagflowConfig:
        sections: dict[str, Any] = {}
        for key, value in data.items():
            if key.startswith("x-"):
                continue  # extension keys hold YAML anchors for reuse, as in Docker Compose files
            if key not in _SECTION_NAMES:
                self._unknown_key((key,), key, _SECTION_NAMES, "")
            elif key == "sources":
                sections[key] = self._sources(value)
            elif key in ("embedder", "index"):
                sections[key] = self._plugin((key,), value, key)
            elif value is not None or key == "llm":
                sections[key] = self._static((key,), _STATIC_SECTIONS[key], value)
        if self.problems:
            raise InvalidConfigError(self.problems)
        sections = {key: value for key, value in sections.items() if value is not None}
        persistence = sections.get("persistence")
        if persistence is not None and persistence.state_dir is not None:
            state_dir = str(self._resolve(persistence.state_dir))
            sections["persistence"] = persistence.model_copy(update={"state_dir": state_dir})
        elif persistence is None:
            sections["persistence"] = PersistenceConfig(state_dir=str(self._resolve(".ragflow")))
        config = RagflowConfig.model_validate(sections)
        config._origin = self.origin
        return config

    def _sources(self, value: Any) -> list[SourceConfig] | None:
        if value is None:
            return []
        if not isinstance(value, list):
            self._add(
                ("sources",), f"expected a list of sources ('- kind: folder' items), got {_kind_of(value)}"
            )
            return None
        built = [self._plugin(("sources", i), item, "source") for i, item in enumerate(value)]
        return [source for source in built if isinstance(source, SourceConfig)]

    def _plugin(self, loc: Location, value: Any, role: str) -> _PluginConfig | None:
        model = _PLUGIN_MODELS[role]
        if value is None:
            value = {}
        if not isinstance(value, dict):
            self._add(loc, f"expected a mapping with 'kind' and the {role}'s options, got {_kind_of(value)}")
            return None
        options = dict(value)
        kind = options.pop("kind", _DEFAULT_KINDS[role])
        if not isinstance(kind, str):
            known = ", ".join(_kinds(role))
            if "kind" in value:
                self._add(
                    (*loc, "kind"), f"expected the name of a {role} kind ({known}), got {value['kind']!r}"
                )
            else:
                self._add(loc, f"missing required key 'kind': the {role} type, one of {known}")
            return None
        factory = self._factory(loc, role, kind)
        if factory is None:
            return None
        signature = _plugin_signature(factory, kind, frozenset({"dim"}) if role == "index" else frozenset())
        try:
            checked = signature.model.model_validate(options).model_dump(exclude_unset=True)
        except ValidationError as exc:
            self._pydantic_problems(
                loc, value, exc, ("kind", *signature.model.model_fields), f"a {kind!r} {role}"
            )
            return None
        for key in signature.path_keys & checked.keys():
            if checked[key] is not None:
                checked[key] = str(self._resolve(checked[key]))
        return model(kind=kind, options=checked)

    def _factory(self, loc: Location, role: str, kind: str) -> Callable[..., Any] | None:
        kinds = _kinds(role)
        suggestion = _did_you_mean(kind, kinds)
        if kind not in kinds and (suggestion or role == "embedder"):
            # A typo: the plugin loader's advice to install a package named like it would mislead.
            self._add(
                (*loc, "kind"), f"unknown {role} kind {kind!r}.{suggestion} Known kinds: {', '.join(kinds)}"
            )
            return None
        try:
            if role == "embedder":
                from .embedders import EMBEDDER_KINDS

                return EMBEDDER_KINDS[kind]
            loader = load_connector if role == "source" else load_indexer
            factory: Callable[..., Any] = loader(kind)
            return factory
        except ConfigError as exc:
            self._add((*loc, "kind"), str(exc))
            return None

    def _static(self, loc: Location, model: type[_Section], value: Any) -> _Section | None:
        if value is None:
            return None
        try:
            return model.model_validate(value)
        except ValidationError as exc:
            self._pydantic_problems(loc, value, exc, tuple(model.model_fields), f"section {loc[0]!r}")
            return None

    def _pydantic_problems(
        self, loc: Location, data: Any, exc: ValidationError, allowed: Sequence[str], owner: str
    ) -> None:
        for error in exc.errors(include_url=False):
            path = _data_path(data, error["loc"])
            kind = error["type"]
            if kind == "extra_forbidden":
                key = str(path[-1])
                self._unknown_key((*loc, *path), key, allowed, f" for {owner}")
            elif kind == "missing":
                missing = error["loc"][len(path)]
                self._add((*loc, *path, missing), f"missing required key {missing!r} for {owner}")
            elif kind in ("model_type", "dict_type") and not path:
                self._add(loc, f"expected a mapping of keys, got {_kind_of(data)}")
            else:
                self._add((*loc, *path), _value_message(error, path))

    def _unknown_key(self, loc: Location, key: str, allowed: Sequence[str], owner: str) -> None:
        self._add(
            loc,
            f"unknown key {key!r}{owner}.{_did_you_mean(key, allowed)} Allowed keys: {', '.join(allowed)}",
        )

    def _add(self, loc: Location, message: str) -> None:
        self.problems.append(self.origin.problem(loc, message))

    def _resolve(self, path: str) -> Path:
        expanded = Path(path).expanduser()
        return expanded if expanded.is_absolute() else (self.origin.base_dir / expanded).resolve()


def _value_message(error: Mapping[str, Any], path: Location) -> str:
    kind, message = error["type"], str(error["msg"])
    message = message.removeprefix("Value error, ")
    if kind == "sequence_str":
        return "expected a list of strings, got a single string: write it as a list, e.g. ['*.md']"
    value = error.get("input")
    name = str(path[-1]) if path else ""
    if _SECRET_KEY.search(name) or isinstance(value, dict | list):
        return message
    return f"{message} (got {value!r})"


def _first_message(exc: ValidationError) -> str:
    error = exc.errors(include_url=False)[0]
    return f"{format_path(tuple(error['loc']))}: {_value_message(error, tuple(error['loc']))}"


def _data_path(data: Any, loc: Sequence[str | int]) -> Location:
    """The part of a pydantic error location that exists in the data (dropping union member tags)."""
    path: list[str | int] = []
    node = data
    for part in loc:
        in_mapping = isinstance(node, dict) and part in node
        in_list = isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
        if not (in_mapping or in_list):
            break
        node = node[part]
        path.append(part)
    return tuple(path)


def _did_you_mean(word: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" Did you mean {close[0]!r}?" if close else ""


def _kind_of(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return f"{type(value).__name__} {value!r}"


def _kinds(role: str) -> list[str]:
    if role == "embedder":
        from .embedders import EMBEDDER_KINDS

        return list(EMBEDDER_KINDS)
    return available("ragflow.connectors" if role == "source" else "ragflow.indexers")


# -- plugin signatures ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _PluginSignature:
    """How a plugin constructor's parameters appear as configuration keys."""

    model: type[BaseModel]
    """Validates the options; extra keys are refused."""
    parameters: Mapping[str, str]
    """Configuration key -> constructor parameter (they differ only for reserved names like ``kind``)."""
    path_keys: frozenset[str]
    """Keys holding file system paths, resolved against the configuration file's folder."""

    def arguments(self, options: Mapping[str, Any]) -> dict[str, Any]:
        return {self.parameters[key]: value for key, value in options.items()}


@functools.lru_cache(maxsize=64)
def _plugin_signature(factory: Callable[..., Any], kind: str, supplied: frozenset[str]) -> _PluginSignature:
    """Read ``factory``'s constructor: every parameter but ``self``, ``*args``, ``**kwargs`` and those the
    caller ``supplied`` becomes an option, typed by its annotation (``Any`` where pydantic cannot check
    it) and required when it has no default."""
    hints = _parameter_hints(factory)
    fields: dict[str, Any] = {}
    parameters: dict[str, str] = {}
    path_keys = set()
    for name, parameter in inspect.signature(factory).parameters.items():
        if name in supplied or parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        key = f"{kind}_{name}" if name in _RESERVED_KEYS else name
        hint = hints.get(name, Any)
        if _is_path_hint(hint):
            hint = str | None if type(None) in typing.get_args(hint) else str
            path_keys.add(key)
        default = ... if parameter.default is parameter.empty else parameter.default
        fields[key] = (hint, default)
        parameters[key] = name
    model = create_model(
        f"{getattr(factory, '__name__', kind)}Options",
        __config__=ConfigDict(extra="forbid", arbitrary_types_allowed=True),
        **fields,
    )
    return _PluginSignature(model, parameters, frozenset(path_keys))


def _parameter_hints(factory: Callable[..., Any]) -> dict[str, Any]:
    function = factory.__init__ if isinstance(factory, type) else factory  # type: ignore[misc]
    try:
        hints = typing.get_type_hints(function)
    except Exception:  # a name only imported for type checking: fall back to one hint at a time
        hints = {}
        namespace = getattr(function, "__globals__", {})
        for name, annotation in getattr(function, "__annotations__", {}).items():
            try:
                hints[name] = eval(annotation, namespace) if isinstance(annotation, str) else annotation
            except Exception:
                hints[name] = Any
    checkable = {}
    for name, hint in hints.items():
        try:
            TypeAdapter(hint, config=ConfigDict(arbitrary_types_allowed=True))
            checkable[name] = hint
        except Exception:
            checkable[name] = Any
    return checkable


def _is_path_hint(hint: Any) -> bool:
    for member in typing.get_args(hint) or (hint,):
        origin = typing.get_origin(member) or member
        if origin is os.PathLike or (isinstance(origin, type) and issubclass(origin, PurePath)):
            return True
    return False
