"""The pydantic models of the configuration's sections (parser, splitter, embedder, index, LLM, server,
persistence, and each source): their keys, defaults and the checks pydantic makes on them."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic import field_validator as _field_validator
from pydantic import model_validator as _model_validator

from .problems import did_you_mean

__all__ = [
    "DEFAULT_KINDS",
    "MIN_KEY_LENGTH",
    "PLUGIN_SECTIONS",
    "SECTION_NAMES",
    "STATIC_SECTIONS",
    "ApiKeyConfig",
    "EmbedderConfig",
    "IndexConfig",
    "KeyScopeConfig",
    "LLMConfig",
    "MigrationGateConfig",
    "ParserConfig",
    "PersistenceConfig",
    "PluginConfig",
    "RetrievalConfig",
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
    """How documents become text. ``default`` reads the formats of docs/formats.md; the ``max_*`` caps are
    ``ParseLimits``' (``null``: its default)."""

    kind: Literal["default"] = "default"
    pdf_engine: Literal["pypdf", "pypdfium2"] = "pypdf"
    """``pypdfium2`` (the ``pdfium`` extra) is 10-19x faster on the R manuals, with the same words."""
    ocr: bool = True
    """Read scanned PDF pages and images by OCR when the ``ocr`` extra is installed."""
    max_unpacked_bytes: int | None = Field(default=None, ge=1)
    max_empty_rows: int | None = Field(default=None, ge=1)
    max_attachment_bytes: int | None = Field(default=None, ge=1)
    max_seconds: float | None = Field(default=None, gt=0)


class SplitterConfig(Section):
    """How text is cut into chunks (``TokenSplitter``)."""

    max_tokens: int | None = Field(default=None, ge=8)
    """Tokens per chunk; default: what the embedder takes (192 for the local model)."""
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


MIN_KEY_LENGTH = 16
"""The shortest secret a named API key may have (``secrets.token_urlsafe(32)`` makes a good one)."""
_KEY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_SHA256 = re.compile(r"[0-9a-fA-F]{64}")


class KeyScopeConfig(Section):
    """What a scoped key may see and change: documents whose path matches ``filepath_globpattern`` and
    whose metadata passes ``metadata_filter`` (both, when both are given), in the retrieve request's
    filter language."""

    filepath_globpattern: str | None = None
    metadata_filter: str | None = None

    @_model_validator(mode="after")
    def _valid_filters(self) -> KeyScopeConfig:
        from ..errors import FilterError
        from ..filters import compile_filter

        if not self.filepath_globpattern and not (self.metadata_filter or "").strip():
            raise ValueError("a scope needs filepath_globpattern or metadata_filter (or leave scope out)")
        try:
            compile_filter(self.metadata_filter, self.filepath_globpattern)
        except FilterError as exc:
            raise ValueError(str(exc)) from None
        return self


class ApiKeyConfig(Section):
    """One named API key: its secret (``key`` from ``${ENV}``, ``key_file``, or only its ``key_sha256``),
    its role (``read`` < ``write`` < ``admin``, each allowed what the one before is) and an optional scope.

    The secret is never echoed in an error message, and the server keeps only its SHA-256."""

    name: str
    """Names the key in logs, metrics and the audit log (never the secret)."""
    key: Any = Field(default=None, repr=False)
    """The secret, written as ``${ENV_NAME}``: a secret written in a YAML file is refused."""
    key_file: str | None = None
    """A file holding the secret (surrounding whitespace is ignored), e.g. a Docker or Kubernetes secret;
    read when the server starts; a relative path is taken from the configuration file's folder."""
    key_sha256: str | None = Field(default=None, repr=False)
    """The hex SHA-256 of the secret, for a server that should never hold the secret itself."""
    role: Literal["read", "write", "admin"] = "read"
    scope: KeyScopeConfig | None = None

    @_model_validator(mode="after")
    def _one_secret(self) -> ApiKeyConfig:
        # Messages here never include the secret: value_message only masks keys named like api_key.
        if not _KEY_NAME.fullmatch(self.name):
            raise ValueError(
                f"key name {self.name!r} must be 1-64 letters, digits, '_', '.' or '-' (it appears in logs)"
            )
        given = [k for k in ("key", "key_file", "key_sha256") if getattr(self, k) not in (None, "")]
        if len(given) != 1:
            raise ValueError(
                f"API key {self.name!r} needs exactly one of key (as ${{ENV_NAME}}), key_file or key_sha256, "
                f"got {', '.join(given) or 'none'}"
            )
        if self.key not in (None, "") and (not isinstance(self.key, str) or len(self.key) < MIN_KEY_LENGTH):
            raise ValueError(
                f"API key {self.name!r}: the secret must be text of at least {MIN_KEY_LENGTH} characters; "
                "make one with: python -c 'import secrets; print(secrets.token_urlsafe(32))'"
            )
        if self.key_sha256 is not None and not _SHA256.fullmatch(self.key_sha256):
            raise ValueError(f"API key {self.name!r}: key_sha256 must be 64 hex digits")
        if self.role == "admin" and self.scope is not None:
            raise ValueError(
                f"API key {self.name!r}: an admin key sees every document (metrics, errors), so it cannot "
                "have a scope; give it role read or write"
            )
        return self


class ServerConfig(Section):
    """The REST server."""

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    api_key: _Key = None
    """When set (and not empty), requests must carry it (``Authorization: Bearer <key>``): one admin key
    (named ``api_key``), next to any ``api_keys``. Written in the file rather than as ``${ENV_NAME}``, it
    is accepted with a warning (earlier versions allowed it)."""
    max_k: int = Field(default=100, ge=1)
    """The most chunks one retrieval may ask for."""
    max_request_bytes: int = Field(default=10_000_000, ge=1024)
    """The largest request body accepted (uploads included)."""
    max_query_chars: int = Field(default=10_000, ge=1)
    """The longest retrieval query; longer is a 400 (the local model reads ~1,000-2,000 characters)."""
    max_prompt_chars: int = Field(default=20_000, ge=1)
    """The longest ``/v2/answer`` prompt; longer is a 400."""
    max_chat_chars: int = Field(default=100_000, ge=1)
    """The most text the messages of one chat completion may hold together; more is a 400."""
    max_json_depth: int = Field(default=32, ge=1)
    """How deeply a JSON body may nest; deeper is a 400 before it is parsed."""
    max_inflight_queries: int = Field(default=24, ge=1)
    """Retrievals and other reads handled at once; more are answered 503 with ``Retry-After``."""
    max_inflight_answers: int = Field(default=4, ge=1)
    """Answers, summaries and chat completions handled at once; more are answered 503."""
    max_inflight_uploads: int = Field(default=8, ge=1)
    """Uploads and deletes handled at once; more are answered 503."""
    api_keys: list[ApiKeyConfig] = Field(default_factory=list)
    """Named keys with a role and an optional scope (docs/security.md)."""
    max_auth_failures: int = Field(default=10, ge=1)
    """Requests with a missing or wrong key one client may make within ``auth_failure_window`` seconds
    before its further bad-key requests are answered 429 (requests with a good key always pass)."""
    auth_failure_window: float = Field(default=60.0, gt=0)
    audit_log: str | None = None
    """A JSON-lines file recording every upload and delete (key name, document, time), rotated; like every
    path in the file, relative to the configuration file's folder."""
    audit_log_max_bytes: int = Field(default=10_000_000, ge=1024)
    audit_log_backups: int = Field(default=5, ge=1)
    tls_cert: str | None = None
    """PEM certificate (chain) to serve HTTPS with; ``ragflow serve --tls-cert`` overrides."""
    tls_key: str | None = None
    """Its PEM private key; ``ragflow serve --tls-key`` overrides."""
    cors_origins: list[str] = Field(default_factory=list)
    """Origins a browser page may call the API from; empty (default) sends no CORS headers."""
    access_log: bool = False
    """Log a line per request (method, path, status); off by default: it costs about a third of a short
    request's CPU outside the model, and ``/metrics`` counts every request by route and status."""

    @_model_validator(mode="after")
    def _distinct_keys(self) -> ServerConfig:
        names = [key.name for key in self.api_keys] + (["api_key"] if self.api_key else [])
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"API key names must be unique; repeated: {', '.join(repeated)}")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("HTTPS needs both tls_cert and tls_key (or neither)")
        return self


class MigrationGateConfig(Section):
    """The evaluation gate of a migration (docs/persistence.md): the swap waits while the new generation
    scores lower than the serving one on a labelled evaluation set."""

    eval_set: str
    """The question file (``ragflow eval``'s format, docs/retrieval.md); relative to the configuration
    file's folder."""
    metric: Literal["mrr@10", "ndcg@10", "recall@1", "recall@5", "recall@10"] = "mrr@10"
    """What is compared."""
    tolerance: float = Field(default=0.0, ge=0)
    """How much lower the new generation may score and still be swapped in (``0``: at least as well)."""
    search_mode: Literal["vector", "lexical", "hybrid"] | None = None
    """The mode the questions are asked in; ``null``: ``retrieval.search_mode``."""
    recheck_seconds: float = Field(default=60.0, ge=0)
    """While the gate holds: how often both generations are evaluated again once the documents changed."""


class PersistenceConfig(Section):
    """State that survives restarts (docs/persistence.md): the embedding cache, the indexed documents and
    each source's position, so a restart re-embeds nothing that did not change."""

    state_dir: str | None = ".ragflow"
    """Where state lives; ``null`` keeps everything in memory (a restart indexes everything again)."""
    checkpoint_interval: float = Field(default=1.0, gt=0)
    """Seconds between checkpoints: how much indexing a crash can cost (queries never wait for one)."""
    on_incompatible_state: Literal["refuse", "rebuild", "migrate"] | None = None
    """What to do with a state written for another embedding model, dimension, parser/splitter or format:
    ``migrate`` (``ragflow serve``'s default): keep serving it while the new index is built beside it,
    then swap in one step; ``refuse`` to start (saying what differs, the default of the other commands);
    or ``rebuild`` it in place (queries see a partial index meanwhile; cached embeddings are reused)."""
    keep_previous_generation: float = Field(default=600.0, ge=0)
    """Seconds the generation a migration replaced keeps running after the swap, for ``ragflow migrate
    rollback``; then it is stopped and deleted (``0``: at once)."""
    migration_gate: MigrationGateConfig | None = None
    """An evaluation set the new generation must score at least as well on before a migration swaps it in;
    ``null``: no gate (``ragflow serve`` only)."""


class RetrievalConfig(Section):
    """How retrieval ranks chunks when a request does not say (docs/retrieval.md)."""

    search_mode: Literal["vector", "lexical", "hybrid"] = "hybrid"
    """``hybrid`` (vector and BM25 rankings fused), ``vector`` or ``lexical`` (BM25)."""
    lexical_index: bool = True
    """Keep the BM25 index (memory: about the chunks' text again); ``false`` allows only ``vector``."""
    rrf_k: int = Field(default=60, ge=0)
    """The ``k`` of reciprocal-rank fusion: a hit at rank ``r`` adds ``weight / (rrf_k + r)``."""
    vector_weight: float = Field(default=1.0, ge=0)
    """The weight of the vector ranking in hybrid search."""
    lexical_weight: float = Field(default=1.0, ge=0)
    """The weight of the lexical ranking in hybrid search."""
    fusion_depth: int = Field(default=30, ge=1)
    """How many hits of each ranking a hybrid search fuses (at least the number it returns)."""
    rerank_model: str | None = None
    """A local folder holding a sentence-transformers cross-encoder (never downloaded); ``null``: none."""
    rerank: bool = False
    """Rerank every retrieval with ``rerank_model`` unless the request says otherwise."""
    rerank_k: int = Field(default=20, ge=1)
    """How many hits the cross-encoder scores."""

    @_model_validator(mode="after")
    def _rerank_needs_a_model(self) -> RetrievalConfig:
        if self.rerank and self.rerank_model is None:
            raise ValueError("rerank: true needs rerank_model (a local folder holding a cross-encoder)")
        if self.search_mode != "vector" and not self.lexical_index:
            raise ValueError(f"search_mode {self.search_mode!r} needs lexical_index: true")
        return self


# The top-level keys by how the validator checks them: against a fixed model, or as a plugin chosen by kind.
STATIC_SECTIONS: dict[str, type[Section]] = {
    "parser": ParserConfig,
    "splitter": SplitterConfig,
    "llm": LLMConfig,
    "server": ServerConfig,
    "persistence": PersistenceConfig,
    "retrieval": RetrievalConfig,
}
PLUGIN_SECTIONS: dict[str, type[PluginConfig]] = {
    "source": SourceConfig,
    "embedder": EmbedderConfig,
    "index": IndexConfig,
}
DEFAULT_KINDS: dict[str, str | None] = {"source": None, "embedder": "local", "index": "faiss"}
SECTION_NAMES = (
    "sources",
    "parser",
    "splitter",
    "embedder",
    "index",
    "llm",
    "server",
    "persistence",
    "retrieval",
)
