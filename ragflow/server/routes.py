"""The endpoints: Pathway's document and answering routes (with their aliases), the OpenAI-compatible
chat, uploads, errors, sources, health, readiness, metrics and Pathway's ``/_schema``."""

from __future__ import annotations

import base64
import json
import logging
import math
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Any

import yaml
from fastapi import FastAPI, Request
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response, StreamingResponse

from ragflow.answer import Answerer, Citation, LLMError
from ragflow.documents import DocumentChange, Hit
from ragflow.embedders import embedder_stats
from ragflow.sources import SourceSample
from ragflow.store import DocumentStore, SourceReport

from . import schemas as s
from .errors import ApiError, error_response
from .limits import check_length
from .metrics import CONTENT_TYPE_LATEST
from .openapi import json_body_doc, query_parameters_doc, upload_body_doc
from .parsing import check_k, conversation, json_body, parameters, uploaded, validate, wait_seconds
from .scopes import Scope, in_scope_ids
from .state import caller_of, state_of

__all__ = ["DEFAULT_MODEL", "add_routes"]

auth_log = logging.getLogger("ragflow.server.auth")

DEFAULT_MODEL = "ragflow"
"""The model name ``/v1/models`` lists; asking for it (or for none) uses the configured LLM's model."""


def add_routes(app: FastAPI, *, with_uploads: bool) -> None:
    """Register every endpoint on ``app``; the upload endpoints only ``with_uploads``."""
    error = {"model": s.ErrorResponse, "description": "What was wrong"}
    _both_methods(
        app,
        "/v1/retrieve",
        retrieve,
        s.RetrieveRequest,
        list[s.RetrievedChunk],
        "Retrieve the k closest chunks",
    )
    _both_methods(
        app, "/v1/statistics", statistics, s.StatisticsRequest, s.StatisticsResponse, "Index statistics"
    )
    for path in ("/v1/inputs", "/v2/list_documents", "/v1/pw_list_documents"):
        _both_methods(app, path, inputs, s.InputsRequest, list[dict[str, Any]], "List the documents")
    for path in ("/v2/answer", "/v1/pw_ai_answer"):
        app.add_api_route(
            path,
            answer,
            methods=["POST"],
            summary="Answer a question from the documents, with citations",
            openapi_extra=json_body_doc(s.AnswerRequest),
            responses={200: {"model": s.AnswerResponse}, 400: error, 502: error},
            operation_id=_operation_id("POST", path),
            tags=["answers"],
        )
    for path in ("/v2/summarize", "/v1/pw_ai_summary"):
        app.add_api_route(
            path,
            summarize,
            methods=["POST"],
            summary="Summarize texts (a JSON string)",
            openapi_extra=json_body_doc(s.SummarizeRequest),
            responses={200: {"model": str}, 400: error, 502: error},
            operation_id=_operation_id("POST", path),
            tags=["answers"],
        )
    app.add_api_route(
        "/v1/chat/completions",
        chat_completions,
        methods=["POST"],
        tags=["openai"],
        summary="OpenAI-compatible chat with the documents (stream: true for server-sent events)",
        openapi_extra=json_body_doc(s.ChatCompletionRequest),
        responses={400: error, 502: error},
    )
    app.add_api_route(
        "/v1/models", models, methods=["GET"], tags=["openai"], summary="Models for OpenAI clients"
    )
    app.add_api_route(
        "/healthz", healthz, methods=["GET"], tags=["operations"], summary="Liveness", responses={503: error}
    )
    app.add_api_route(
        "/readyz",
        readyz,
        methods=["GET"],
        tags=["operations"],
        summary="Readiness: the initial snapshot is searchable",
        responses={503: error},
    )
    app.add_api_route("/metrics", metrics, methods=["GET"], tags=["operations"], summary="Prometheus metrics")
    app.add_api_route(
        "/v1/errors",
        document_errors,
        methods=["GET"],
        tags=["documents"],
        summary="Documents that could not be indexed, and why",
        responses={200: {"model": list[s.DocumentErrorModel]}},
    )
    app.add_api_route(
        "/v1/sources",
        sources,
        methods=["GET"],
        tags=["operations"],
        summary="The sources: documents held, snapshot done, health and why",
        responses={200: {"model": list[s.SourceModel]}},
    )
    app.add_api_route(
        "/v1/migration",
        migration,
        methods=["GET"],
        tags=["operations"],
        summary="The migration to new index settings: state, progress, rate and ETA",
    )
    for action in ("abort", "rollback", "start"):
        app.add_api_route(
            f"/v1/migration/{action}",
            migration_action(action),
            methods=["POST"],
            tags=["operations"],
            summary=f"Migration control: {action}",
            responses={409: error},
            operation_id=f"migration_{action}",
        )
    app.add_api_route(
        "/_schema",
        pathway_schema,
        methods=["GET"],
        tags=["operations"],
        summary="The OpenAPI schema (format=json or yaml), as Pathway serves it",
    )
    if with_uploads:
        app.add_api_route(
            "/v1/documents",
            upload,
            methods=["POST"],
            tags=["documents"],
            status_code=201,
            summary="Upload a document (multipart 'file' part, or JSON); ?wait=SECONDS waits until indexed",
            openapi_extra=upload_body_doc(),
            responses={
                201: {"model": s.UploadResponse},
                202: {"model": s.UploadResponse},
                400: error,
                413: error,
            },
        )
        app.add_api_route(
            "/v1/documents/{doc_id:path}",
            delete_document,
            methods=["DELETE"],
            tags=["documents"],
            summary="Delete an uploaded document; ?wait=SECONDS waits until it is gone from the index",
            responses={404: error},
        )


def _both_methods(
    app: FastAPI, path: str, endpoint: Any, model: type[BaseModel], returns: Any, summary: str
) -> None:
    """Pathway's endpoints answer GET (parameters in the query string) and POST (a JSON body)."""
    error = {"model": s.ErrorResponse, "description": "What was wrong"}
    for method in ("GET", "POST"):
        extra = query_parameters_doc(model) if method == "GET" else json_body_doc(model)
        app.add_api_route(
            path,
            endpoint,
            methods=[method],
            summary=summary,
            openapi_extra=extra,
            tags=["documents"],
            responses={200: {"model": returns}, 400: error},
            operation_id=_operation_id(method, path),
        )


def _operation_id(method: str, path: str) -> str:
    return f"{method.lower()}_{path.strip('/').replace('/', '_')}"


async def retrieve(request: Request) -> Response:
    state = state_of(request)
    query = await parameters(request, s.RetrieveRequest)
    check_length(query.query, state.limits.max_query_chars, "query", "max_query_chars")
    if query.k > state.max_k:
        raise ApiError(400, f"k must be at most {state.max_k} (the server's max_k), got {query.k}", param="k")
    metadata_filter, glob = _narrowed(request, query.metadata_filter, query.filepath_globpattern)
    hits = await run_in_threadpool(
        lambda: state.store.retrieve(
            query.query,
            query.k,
            metadata_filter,
            glob,
            search_mode=query.search_mode,
            rerank=query.rerank,
            rerank_k=query.rerank_k,
            diversity=query.diversity,
            context_window=query.context_window or 0,
        )
    )
    return _json([_hit(hit) for hit in hits])


async def statistics(request: Request) -> Response:
    await parameters(request, s.StatisticsRequest)
    store, scope = state_of(request).store, _scope(request)
    counts = await run_in_threadpool(store.statistics, scope.expression if scope is not None else None)
    embedder = embedder_stats(store.embedder)  # beyond Pathway's fields, and only where there is one
    body: dict[str, Any] = {**counts, "embedder": embedder} if embedder else dict(counts)
    status = _migration_status(store)
    if status is not None and status["state"] != "none":
        body["migration"] = _migration_summary(status)
    return _json(body)


def _migration_status(store: Any) -> dict[str, Any] | None:
    """A ``MigratingStore``'s ``migration_status()`` (``None``: the store has no generations)."""
    status = getattr(store, "migration_status", None)
    return status() if callable(status) else None


_SUMMARY_KEYS = (
    "state",
    "documents_done",
    "documents_total",
    "chunks_done",
    "rate_documents_per_second",
    "eta_seconds",
    "swapped_at",
    "rollback_until",
)


def _migration_summary(status: dict[str, Any]) -> dict[str, Any]:
    """What ``/v1/statistics`` shows of a migration (no paths: any read key sees it)."""
    summary = {key: status[key] for key in _SUMMARY_KEYS if key in status}
    for side in ("from", "to"):
        if side in status:
            summary[side] = {k: status[side].get(k) for k in ("model_id", "dim", "parser_id")}
    if status.get("gate"):  # both scores, without the evaluation set's path
        summary["gate"] = {k: v for k, v in status["gate"].items() if k != "eval_set"}
    return summary


async def migration(request: Request) -> Response:
    status = _migration_status(state_of(request).store)
    if status is None:  # no generations: nothing ever migrates here
        status = {"state": "none", "active": None, "generations": False}
    return _json(status)


def migration_action(action: str) -> Callable[[Request], Awaitable[Response]]:
    """``POST /v1/migration/{abort,rollback,start}``: a ``MigratingStore`` method, 409 when it cannot."""

    async def act(request: Request) -> Response:
        from ragflow.store.migrating import MigrationAction

        store = state_of(request).store
        method = getattr(store, f"{action}_migration", None)
        if method is None:
            raise ApiError(
                409,
                "this server has no generations: 'ragflow serve' with a state directory migrates",
                "conflict",
            )
        body = await json_body(request)  # start: {"force": true} swaps even if the evaluation gate holds
        options = {"force": body["force"] is True} if action == "start" and "force" in body else {}
        try:
            return _json(await run_in_threadpool(method, **options))
        except MigrationAction as exc:
            raise ApiError(409, str(exc), "conflict") from None

    act.__name__ = f"migration_{action}"
    return act


async def inputs(request: Request) -> Response:
    query = await parameters(request, s.InputsRequest)
    store = state_of(request).store
    metadata_filter, glob = _narrowed(request, query.metadata_filter, query.filepath_globpattern)
    found = await run_in_threadpool(store.inputs, metadata_filter, glob, bool(query.return_status))
    return _json(found)


async def answer(request: Request) -> Response:
    state = state_of(request)
    query = await parameters(request, s.AnswerRequest)
    check_length(query.prompt, state.limits.max_prompt_chars, "prompt", "max_prompt_chars")
    check_k(query.k, state.max_k)
    metadata_filter, glob = _narrowed(request, query.filters, query.filepath_globpattern)
    result = await run_in_threadpool(
        lambda: state.answerer.answer(
            query.prompt,
            metadata_filter=metadata_filter,
            filepath_globpattern=glob,
            model=query.model,
            k=query.k,
        )
    )
    body: dict[str, Any] = {
        "response": result.text,
        "citations": [c.to_dict() for c in result.citations],
        "extractive": result.extractive,
    }
    if query.return_context_docs:
        body["context_docs"] = [_hit(hit) for hit in result.sources]
    return _json(body)


async def summarize(request: Request) -> Response:
    state = state_of(request)
    query = await parameters(request, s.SummarizeRequest)
    return _json(await run_in_threadpool(state.answerer.summarize, query.text_list, query.model))


async def chat_completions(request: Request) -> Response:
    state = state_of(request)
    query = validate(s.ChatCompletionRequest, await json_body(request))
    check_k(query.k, state.max_k)
    question, history = conversation(query.messages)
    chat = question + "".join(turn.content for turn in history)
    check_length(chat, state.limits.max_chat_chars, "messages", "max_chat_chars")
    llm = state.answerer.llm
    model = query.model if query.model and query.model != DEFAULT_MODEL else None
    shown_model = (model or llm.model) if llm is not None else f"{DEFAULT_MODEL}-extractive"
    metadata_filter, glob = _narrowed(request, query.metadata_filter, query.filepath_globpattern)
    options: dict[str, Any] = {
        "metadata_filter": metadata_filter,
        "filepath_globpattern": glob,
        "model": model,
        "k": query.k,
        "history": history,
    }
    completion_id, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
    if query.stream:
        hits, deltas = await run_in_threadpool(lambda: state.answerer.stream(question, **options))
        chunks = _chat_chunks(state.answerer, hits, deltas, completion_id, created, shown_model)
        return StreamingResponse(
            chunks, media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
        )
    result = await run_in_threadpool(lambda: state.answerer.answer(question, **options))
    return _json(
        {
            "id": completion_id,
            "object": "chat.completion",
            "created": created,
            "model": shown_model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": result.text},
                    "finish_reason": "stop",
                    "logprobs": None,
                }
            ],
            "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
            "citations": [c.to_dict() for c in result.citations],
        }
    )


async def models(request: Request) -> Response:
    llm = state_of(request).answerer.llm
    names = [DEFAULT_MODEL] + ([llm.model] if llm is not None else [])
    return _json(
        {
            "object": "list",
            "data": [{"id": n, "object": "model", "created": 0, "owned_by": "ragflow"} for n in names],
        }
    )


async def healthz(request: Request) -> Response:
    failure = state_of(request).store.engine.failure
    if failure is not None:
        if _sees_only_the_state(request):
            return error_response(503, f"the indexing engine stopped {_KEY_SHOWS}", "failed")
        return error_response(
            503, f"the indexing engine stopped: {type(failure).__name__}: {failure}", "failed"
        )
    return _json({"status": "ok"})


_KEY_SHOWS = "(a request with an API key that sees every document is told why)"


def _sees_only_the_state(request: Request) -> bool:
    """Whether ``request``, on a server with keys, came without a valid key or with a scoped one: such a
    caller of the open health checks learns the state, never the progress counts or an error's text,
    which span every document (a scoped key never gets a count from outside its scope)."""
    if not state_of(request).keys:
        return False
    key = caller_of(request)
    return key is None or key.scope is not None


async def readyz(request: Request) -> Response:
    state = state_of(request)
    if state.ready():  # never blocks: not in the thread pool, where it could queue behind requests
        return _json({"status": "ready"})
    if _sees_only_the_state(request):
        if state.store.engine.failure is not None or state.warmup.error is not None:
            return error_response(503, f"not ready: indexing failed {_KEY_SHOWS}", "failed")
        return error_response(
            503,
            "not ready yet (a request with an API key that sees every document is told how far)",
            "not_ready",
        )
    failure = state.store.engine.failure
    if failure is not None:
        return error_response(
            503, f"the indexing engine stopped: {type(failure).__name__}: {failure}", "failed"
        )
    warmup = state.warmup
    if warmup.error is not None:
        return error_response(503, f"the query embedder could not load: {warmup.error}", "failed")
    if state.store.wait_until_fresh(0):
        return error_response(503, "not ready: loading the query embedding model", "not_ready")
    progress = state.store.progress()
    eta = f", about {progress.eta:.0f} s left" if progress.eta is not None else ""
    snapshot = "" if progress.snapshot_complete else "; the sources are still listing their documents"
    message = (
        "not ready: initial indexing in progress, "
        f"{progress.documents_done}/{progress.documents_seen} documents and "
        f"{progress.chunks_embedded}/{progress.chunks_seen} chunks done{eta}{snapshot}"
    )
    return error_response(503, message, "not_ready")


async def metrics(request: Request) -> Response:
    state = state_of(request)
    ready = await run_in_threadpool(state.ready)
    text = await run_in_threadpool(state.metrics.render, ready)
    return Response(text, media_type=CONTENT_TYPE_LATEST)


async def document_errors(request: Request) -> Response:
    store, scope = state_of(request).store, _scope(request)
    found = await run_in_threadpool(store.errors)
    if scope is not None:
        shown = in_scope_ids(await run_in_threadpool(store.documents), scope)
        found = [e for e in found if e.doc_id in shown]
    return _json([{"doc_id": e.doc_id, "stage": e.stage, "message": e.message} for e in found])


async def sources(request: Request) -> Response:
    found = await run_in_threadpool(state_of(request).store.sources)
    return _json([_source(report) for report in found])


async def pathway_schema(request: Request) -> Response:
    schema = request.app.openapi()
    if request.query_params.get("format", "json").lower() == "yaml":
        return Response(yaml.safe_dump(schema, sort_keys=False), media_type="application/yaml")
    return _json(schema)


async def upload(request: Request) -> Response:
    state = state_of(request)
    assert state.uploads is not None
    wait = wait_seconds(request)
    name, data, metadata = await uploaded(request)
    uploads, doc_id = state.uploads, state.uploads.doc_id(name)
    scope = _scope(request)
    outside = scope is not None and not (
        scope.allows({**metadata, "path": doc_id, "doc_id": doc_id, "size": len(data)})
        and await run_in_threadpool(_replaceable, state.store, doc_id, scope)
    )
    if outside:
        _audit(request, "upload", doc_id, 403)
        _refuse_out_of_scope(request, doc_id)
        raise ApiError(
            403,
            f"{doc_id!r} (with the metadata sent) is outside the scope of this API key, or would replace a "
            "document outside it",
            "permission_error",
        )
    change = await run_in_threadpool(uploads.put, name, data, metadata)
    status = (
        await run_in_threadpool(state.wait_for, lambda: _indexed(state.store, change), wait) if wait else None
    )
    body = {
        "id": change.doc_id,
        "name": name,
        "path": change.metadata.get("path", change.doc_id),
        "size": len(data),
        "status": status[0] if status else "INGESTED",
        "error": status[1] if status else None,
    }
    _audit(request, "upload", change.doc_id, 201 if status else 202, size=len(data))
    return _json(body, 201 if status else 202)


async def delete_document(request: Request) -> Response:
    state = state_of(request)
    assert state.uploads is not None
    name = request.path_params["doc_id"]
    wait = wait_seconds(request)
    scope, doc_id = _scope(request), state.uploads.doc_id(name)
    if scope is not None and not await run_in_threadpool(_replaceable, state.store, doc_id, scope):
        _refuse_out_of_scope(request, doc_id)
        deleted = False  # answered as if absent: the key learns nothing of documents outside its scope
    else:
        deleted = await run_in_threadpool(state.uploads.delete, name)
    _audit(request, "delete", doc_id, 200 if deleted else 404)
    if not deleted:
        raise ApiError(
            404,
            f"no uploaded document {name!r}; only documents uploaded with POST /v1/documents can be deleted "
            "here (GET /v1/inputs lists every document)",
            "not_found_error",
        )
    gone = await run_in_threadpool(state.wait_for, lambda: _gone(state.store, doc_id), wait) if wait else None
    return _json({"id": doc_id, "deleted": True, "status": "DELETED" if gone else "DELETING"})


# -- keys and scopes ---------------------------------------------------------------------------------


def _scope(request: Request) -> Scope | None:
    key = caller_of(request)
    return key.scope if key is not None else None


def _narrowed(
    request: Request, metadata_filter: str | None, glob: str | None
) -> tuple[str | None, str | None]:
    """The request's filters, ANDed with its key's scope (a client's filter can narrow it, never widen)."""
    scope = _scope(request)
    return (metadata_filter, glob) if scope is None else scope.narrow(metadata_filter, glob)


def _replaceable(store: DocumentStore, doc_id: str, scope: Scope) -> bool:
    """Whether ``doc_id`` is absent or inside ``scope`` now (its name alone when it is not indexed yet)."""
    for status in store.documents():
        if status.doc_id == doc_id:
            return scope.allows(status.metadata)
    return scope.allows({"path": doc_id, "doc_id": doc_id})


def _refuse_out_of_scope(request: Request, doc_id: str) -> None:
    """Count a scoped key's upload or delete outside its scope in ``/metrics`` and log it as the other
    refusals are (the key's name, never its secret)."""
    state_of(request).refused("out_of_scope")
    key = caller_of(request)
    client = request.client.host if request.client else "unknown"
    auth_log.info(
        "auth: key %r refused %s %s from %s: %r is outside its scope",
        key.name if key is not None else None,
        request.method,
        request.url.path,
        client,
        doc_id,
    )


def _audit(request: Request, action: str, doc_id: str, status: int, **fields: Any) -> None:
    log = state_of(request).audit_log
    if log is not None:
        key = caller_of(request)
        client = request.client.host if request.client else None
        name = key.name if key is not None else None
        log.record(action, key=name, client=client, document=doc_id, status=status, **fields)


# -- responses --------------------------------------------------------------------------------------


def _json(payload: Any, status: int = 200) -> Response:
    body = json.dumps(payload, ensure_ascii=False, separators=(",", ":"), default=_fallback).encode()
    return Response(body, status, media_type="application/json")


def _fallback(value: Any) -> Any:
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, tuple | set | frozenset):
        return list(value)
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    return str(value)


def _hit(hit: Hit) -> dict[str, Any]:
    dist = float(hit.dist)
    return {"text": hit.text, "metadata": hit.metadata, "dist": dist if math.isfinite(dist) else None}


def _source(report: SourceReport) -> dict[str, Any]:
    def samples(found: tuple[SourceSample, ...]) -> list[dict[str, Any]]:
        return [{"name": x.name, "labels": dict(x.labels), "value": x.value} for x in found]

    return {
        "name": report.name,
        "kind": report.kind,
        "documents": report.documents,
        "snapshot_complete": report.snapshot_complete,
        "healthy": report.healthy,
        "reason": report.reason,
        "since": report.since,
        "counters": samples(report.counters),
        "gauges": samples(report.gauges),
    }


def _chat_chunks(
    answerer: Answerer, hits: list[Hit], deltas: Iterator[str], completion_id: str, created: int, model: str
) -> Iterator[bytes]:
    base = {"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": model}

    def event(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
        choice = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
        payload = {**base, "choices": [choice], **extra}
        return b"data: " + json.dumps(payload, ensure_ascii=False, default=_fallback).encode() + b"\n\n"

    yield event({"role": "assistant", "content": ""})
    text: list[str] = []
    try:
        for piece in deltas:
            text.append(piece)
            yield event({"content": piece})
    except LLMError as exc:
        # the status line is sent already: report the failure in-band, as OpenAI does
        error = {"error": {"message": str(exc), "type": "llm_error", "param": None, "code": None}}
        yield b"data: " + json.dumps(error).encode() + b"\n\n"
        return
    citations: tuple[Citation, ...] = answerer.citations("".join(text), hits)
    yield event({}, "stop", citations=[c.to_dict() for c in citations])
    yield b"data: [DONE]\n\n"


def _indexed(store: DocumentStore, change: DocumentChange) -> tuple[str, str | None] | None:
    """``(status, error)`` once the uploaded version ``change`` is indexed or failed, else ``None``."""
    version = change.metadata.get("seen_at_ns")
    for status in store.documents():
        if status.doc_id == change.doc_id and status.metadata.get("seen_at_ns") == version:
            return (status.status, status.error) if status.status != "INGESTED" else None
    return None


def _gone(store: DocumentStore, doc_id: str) -> bool | None:
    return True if all(status.doc_id != doc_id for status in store.documents()) else None
