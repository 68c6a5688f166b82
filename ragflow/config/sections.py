"""The pydantic models of the configuration's sections (parser, splitter, embedder, index, LLM, server,
persistence, and each source): their keys, defaults and the checks pydantic makes on them."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic import field_validator as _field_validator

from .problems import did_you_mean

__all__ = [
    "DEFAULT_KINDS",
    "PLUGIN_SECTIONS",
    "SECTION_NAMES",
    "STATIC_SECTIONS",
    "EmbedderConfig",
    "IndexConfig",
    "LLMConfig",
    "ParserConfig",
    "PersistenceConfig",
    "PluginConfig",
    "Section",
    "ServerConfig",
    "SourceConfig",
    "SplitterConfig",
]


def _empty_as_none(value: str | None) -> str | None:
    return value or None


_Key = Annotated[str | None, AfterValidator(_empty_as_none)]
"""A text where empty means none, so that ``"${NAME:-}"`` turns a setting off."""


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ParserConfig(Section):
    """How documents become text. ``default`` reads text, Markdown, HTML, PDF, JSON and CSV."""

    kind: Literal["default"] = "default"


class SplitterConfig(Section):
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
        from ..tokenizer import encoding_names

        names = encoding_names()
        if value not in names:
            raise ValueError(f"unknown encoding.{did_you_mean(value, names)} Allowed: {', '.join(names)}")
        return value


class PluginConfig(Section):
    """A part chosen by ``kind``, with the options of the class registered under that name."""

    kind: str
    options: dict[str, Any] = Field(default_factory=dict)
    """Constructor options as the configuration names them (validated by ``RagflowConfig.from_dict``)."""


class SourceConfig(PluginConfig):
    """One document source: ``kind`` is an entry point name in ``ragflow.connectors`` (``folder``...)."""


class EmbedderConfig(PluginConfig):
    """The embedder: ``local`` (offline sentence-transformers model) or ``openai`` (any compatible API)."""

    kind: str = "local"


class IndexConfig(PluginConfig):
    """The vector index: ``kind`` is an entry point name in ``ragflow.indexers`` (``faiss``...)."""

    kind: str = "faiss"


class LLMConfig(Section):
    """The chat model that answers questions (``/v2/answer``): any OpenAI-compatible API."""

    model: _Key
    """The model name; empty turns the LLM off (answers are then extractive), so that
    ``model: ${RAGFLOW_LLM_MODEL:-}`` lets the environment decide."""
    base_url: str = "https://api.openai.com/v1"
    api_key: _Key = None
    """Empty means none (``"${OPENAI_API_KEY:-}"``): local OpenAI-compatible servers need no key."""
    timeout: float = Field(default=30, gt=0)
    max_retries: int = Field(default=2, ge=0)


class ServerConfig(Section):
    """The REST server."""

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    api_key: _Key = None
    """When set (and not empty), requests must carry it (``Authorization: Bearer <key>``)."""
    max_k: int = Field(default=100, ge=1)
    """The most chunks one retrieval may ask for."""
    max_request_bytes: int = Field(default=10_000_000, ge=1024)
    """The largest request body accepted (uploads included)."""


class PersistenceConfig(Section):
    """State that survives restarts (docs/persistence.md): the embedding cache, the indexed documents and
    each source's position, so a restart re-embeds nothing that did not change."""

    state_dir: str | None = ".ragflow"
    """Where state lives; ``null`` keeps everything in memory (a restart indexes everything again)."""
    checkpoint_interval: float = Field(default=1.0, gt=0)
    """Seconds between checkpoints: how much indexing a crash can cost (queries never wait for one)."""
    on_incompatible_state: Literal["refuse", "rebuild"] = "refuse"
    """What to do with a state written for another embedding model or splitter: ``refuse`` to start
    (saying what differs), or ``rebuild`` it (cached embeddings of this model are reused)."""


# The top-level keys by how the validator checks them: against a fixed model, or as a plugin chosen by kind.
STATIC_SECTIONS: dict[str, type[Section]] = {
    "parser": ParserConfig,
    "splitter": SplitterConfig,
    "llm": LLMConfig,
    "server": ServerConfig,
    "persistence": PersistenceConfig,
}
PLUGIN_SECTIONS: dict[str, type[PluginConfig]] = {
    "source": SourceConfig,
    "embedder": EmbedderConfig,
    "index": IndexConfig,
}
DEFAULT_KINDS: dict[str, str | None] = {"source": None, "embedder": "local", "index": "faiss"}
SECTION_NAMES = ("sources", "parser", "splitter", "embedder", "index", "llm", "server", "persistence")
