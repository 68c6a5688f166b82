"""The request and response bodies of the REST API, as pydantic models: they validate requests and
document the API in its OpenAPI schema. Field names follow Pathway's servers and OpenAI's chat API."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "REQUEST_MODELS",
    "AnswerRequest",
    "AnswerResponse",
    "ChatCompletionRequest",
    "ChatMessage",
    "CitationModel",
    "DocumentErrorModel",
    "ErrorDetail",
    "ErrorResponse",
    "InputsRequest",
    "RetrieveRequest",
    "RetrievedChunk",
    "SourceModel",
    "SourceSampleModel",
    "StatisticsRequest",
    "StatisticsResponse",
    "SummarizeRequest",
    "UploadRequest",
    "UploadResponse",
]

_FILTER = "JMESPath over the document's metadata, plus globmatch(pattern, path), e.g. contains(path, `docs`)"
_GLOB = "A glob on the document's path: * within a segment, ** across segments, e.g. **/*.md"


class RetrieveRequest(BaseModel):
    """``/v1/retrieve``: the ``k`` chunks closest to ``query``."""

    query: str = Field(description="The text to search for", examples=["How do I rotate the API key?"])
    k: int = Field(ge=0, description="How many chunks to return (at most the server's max_k)", examples=[3])
    metadata_filter: str | None = Field(None, description=_FILTER)
    filepath_globpattern: str | None = Field(None, description=_GLOB)
    search_mode: Literal["vector", "lexical", "hybrid"] | None = Field(
        None,
        description="vector (cosine), lexical (BM25) or hybrid (both, reciprocal-rank fused); "
        "default: the server's retrieval.search_mode (hybrid)",
    )
    rerank: bool | None = Field(
        None,
        description="Order the best rerank_k with the server's cross-encoder (400 when none is configured)",
    )
    rerank_k: int | None = Field(None, ge=1, le=200, description="How many hits the cross-encoder scores")
    diversity: float | None = Field(
        None, ge=0, le=1, description="0..1: trade relevance for variety (maximal marginal relevance)"
    )
    context_window: int | None = Field(
        None,
        ge=0,
        le=10,
        description="Return each hit with this many neighbouring chunks on each side, merged",
    )


class RetrievedChunk(BaseModel):
    """One search hit, best first; ``dist`` is smaller for a better hit: the cosine distance (1 - cosine
    similarity) in vector mode, 1 - the fused score over its best possible value in hybrid mode, 1 / (1 +
    BM25) in lexical mode, 1 - sigmoid(score) when reranked."""

    text: str
    metadata: dict[str, Any]
    dist: float


class StatisticsRequest(BaseModel):
    """``/v1/statistics`` takes no parameters (``{}``)."""

    model_config = ConfigDict(extra="allow")


class StatisticsResponse(BaseModel):
    file_count: int = Field(description="Documents indexed")
    last_modified: int | None = Field(description="Newest modified_at among them (Unix seconds)")
    last_indexed: int | None = Field(description="When the latest change became searchable (Unix seconds)")
    embedder: dict[str, Any] | None = Field(
        None,
        description="How the local model runs: device, precision (of a full batch), single_precision, "
        "batch_size, texts_embedded, embed_seconds, texts_per_second, compiled (the bfloat16 pass: compiled, "
        "compiling or uncompiled; null where none runs in bfloat16) (absent for remote embedders)",
    )
    migration: dict[str, Any] | None = Field(
        None,
        description="While a migration to new index settings runs or after it swapped (docs/persistence.md): "
        "state, documents_done, documents_total, chunks_done, rate_documents_per_second, eta_seconds, "
        "from and to (model_id, dim, parser_id); absent otherwise",
    )


class InputsRequest(BaseModel):
    """``/v1/inputs``: the documents, optionally filtered and with their indexing status."""

    metadata_filter: str | None = Field(None, description=_FILTER)
    filepath_globpattern: str | None = Field(None, description=_GLOB)
    return_status: bool | None = Field(
        None, description="Add _indexing_status (INDEXED, INGESTED or ERROR, with _error) to each document"
    )


class AnswerRequest(BaseModel):
    """``/v2/answer``: a question answered from the documents."""

    prompt: str = Field(description="The question", examples=["What does the harbor lantern do?"])
    filters: str | None = Field(None, description=_FILTER)
    model: str | None = Field(None, description="The LLM model to use instead of the server's default")
    return_context_docs: bool | None = Field(None, description="Also return the chunks given to the LLM")
    filepath_globpattern: str | None = Field(None, description=_GLOB)
    k: int | None = Field(None, ge=1, description="Sources to give the LLM (default: the server's)")


class CitationModel(BaseModel):
    """A source the answer cites, numbered as in the answer's [n] markers."""

    number: int
    doc_id: str | None
    path: str | None
    page: int | None
    start: int | None = Field(description="Character offset of the chunk in its parsed page or document")
    end: int | None
    text: str
    dist: float
    location: dict[str, Any] = Field(
        default_factory=dict,
        description="Where the passage is inside its document: page_number, slide and slide_title, sheet and "
        "rows, section, cell, chapter, attachment... (only the fields its format has)",
    )


class AnswerResponse(BaseModel):
    response: str
    citations: list[CitationModel]
    extractive: bool = Field(description="True when no LLM is configured and the answer quotes the sources")
    context_docs: list[RetrievedChunk] | None = None


class SummarizeRequest(BaseModel):
    """``/v2/summarize``: a summary of the given texts."""

    text_list: list[str]
    model: str | None = None


class ChatMessage(BaseModel):
    """An OpenAI chat message; ``content`` is text or a list of parts (only text parts are read)."""

    model_config = ConfigDict(extra="allow")

    role: str
    content: str | list[dict[str, Any]] | None = None


class ChatCompletionRequest(BaseModel):
    """OpenAI's chat completion request; the last user message is the question. ``metadata_filter``,
    ``filepath_globpattern`` and ``k`` are ragflow extensions (pass them in ``extra_body``)."""

    model_config = ConfigDict(extra="allow")

    messages: list[ChatMessage] = Field(min_length=1)
    model: str | None = None
    stream: bool | None = False
    metadata_filter: str | None = Field(None, description=_FILTER)
    filepath_globpattern: str | None = Field(None, description=_GLOB)
    k: int | None = Field(None, ge=1)


class UploadRequest(BaseModel):
    """``POST /v1/documents`` as JSON (a multipart form with a ``file`` part works too)."""

    name: str = Field(description="The document's name, a relative path such as reports/q1.md")
    content: str = Field(description="The content, as text or base64 (see encoding)")
    encoding: Literal["text", "base64"] = "text"
    metadata: dict[str, Any] | None = Field(None, description="Extra metadata, visible to filters")


class UploadResponse(BaseModel):
    id: str = Field(description="The document's id, for DELETE /v1/documents/{id}")
    name: str
    path: str
    size: int
    status: str = Field(description="INDEXED or ERROR once processed, INGESTED while queued")
    error: str | None = None


class DocumentErrorModel(BaseModel):
    doc_id: str
    stage: str
    message: str


class SourceSampleModel(BaseModel):
    """A counter or gauge of a source, as ``/metrics`` exports it (``ragflow_source_<name>[_total]``)."""

    name: str
    labels: dict[str, str]
    value: float


class SourceModel(BaseModel):
    """``/v1/sources``: one source of the store, what it holds and whether it can reach what it reads."""

    name: str
    kind: str = Field(description="Its kind in the configuration (folder, s3, kafka...), else its class name")
    documents: int = Field(description="Documents it holds now (indexed, queued or failed)")
    snapshot_complete: bool = Field(description="Its initial listing is all in")
    healthy: bool
    reason: str | None = Field(description="What is wrong and what to do, while unhealthy")
    since: float | None = Field(
        description="When it last became healthy or unhealthy (Unix seconds); null if it reports no health"
    )
    counters: list[SourceSampleModel]
    gauges: list[SourceSampleModel]


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None


class ErrorResponse(BaseModel):
    """Every error: ``error.message`` says what was wrong; ``detail`` repeats it for FastAPI clients."""

    error: ErrorDetail
    detail: str


REQUEST_MODELS: tuple[type[BaseModel], ...] = (
    RetrieveRequest,
    StatisticsRequest,
    InputsRequest,
    AnswerRequest,
    SummarizeRequest,
    ChatCompletionRequest,
    UploadRequest,
)
"""Bodies the server parses itself (query string merged in); their schemas are added to the OpenAPI doc."""
