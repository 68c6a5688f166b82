"""How the REST API reports errors: always JSON ``{"error": {"message", "type", "param"}, "detail"}`` with a
message saying what was wrong, never a bare 500.

| status | type                   | when                                                        |
|--------|------------------------|-------------------------------------------------------------|
| 400    | invalid_request_error  | malformed JSON, a missing or wrong field, k too large        |
| 400    | invalid_filter         | a metadata filter or glob pattern that does not parse        |
| 401    | authentication_error   | missing or wrong API key                                     |
| 404    | not_found_error        | no such route or document                                    |
| 405    | method_not_allowed     | e.g. DELETE /v1/retrieve                                     |
| 413    | request_too_large      | a body over max_request_bytes                                |
| 502    | llm_error              | the LLM (or a hosted embedder) failed or timed out           |
| 503    | not_ready / failed     | readiness before the first snapshot is searchable            |
| 500    | server_error           | a bug: the message names the exception                       |
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.exceptions import HTTPException
from starlette.responses import Response

from ragflow.answer import LLMError
from ragflow.errors import ConfigError, EmbedError, FilterError, RagflowError

__all__ = ["ApiError", "error_response", "install_error_handlers", "validation_message"]

log = logging.getLogger("ragflow.server")


class ApiError(Exception):
    """An error to answer with ``status`` and a JSON error body."""

    def __init__(
        self,
        status: int,
        message: str,
        kind: str = "invalid_request_error",
        *,
        param: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.kind = kind
        self.param = param
        self.headers = dict(headers or {})


def error_body(message: str, kind: str, param: str | None = None) -> bytes:
    payload = {"error": {"message": message, "type": kind, "param": param}, "detail": message}
    return json.dumps(payload, ensure_ascii=False).encode()


def error_response(
    status: int,
    message: str,
    kind: str,
    param: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    return Response(error_body(message, kind, param), status, headers=headers, media_type="application/json")


def validation_message(error: ValidationError | RequestValidationError) -> tuple[str, str | None]:
    """A message naming each wrong field (``missing required field 'query'``) and the first field."""
    parts, first = [], None
    for item in error.errors():
        loc = [str(p) for p in item.get("loc", ())]
        if isinstance(error, RequestValidationError) and loc[:1] in (["body"], ["query"], ["path"]):
            loc = loc[1:]  # FastAPI's own parameters say where they come from first
        field = ".".join(loc) or "body"
        first = first or field
        if item.get("type") == "missing":
            parts.append(f"missing required field '{field}'")
        else:
            parts.append(f"field '{field}': {item.get('msg', 'invalid value')}")
    return "; ".join(parts) or "invalid request", first


_STATUS_KINDS = {404: "not_found_error", 405: "method_not_allowed", 413: "request_too_large"}


def install_error_handlers(app: FastAPI) -> None:
    """Answer every exception with a JSON error body and the right status."""

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> Response:
        return error_response(exc.status, exc.message, exc.kind, exc.param, exc.headers)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        if exc.status_code == 404 and exc.detail == "Not Found":
            message = f"no route {request.method} {request.url.path}; the API is described at /openapi.json"
        elif exc.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path}"
        else:
            message = str(exc.detail)
        kind = _STATUS_KINDS.get(exc.status_code, "invalid_request_error")
        return error_response(exc.status_code, message, kind, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> Response:
        message, param = validation_message(exc)
        return error_response(400, message, "invalid_request_error", param)

    @app.exception_handler(FilterError)
    async def invalid_filter(request: Request, exc: FilterError) -> Response:
        return error_response(400, str(exc), "invalid_filter")

    @app.exception_handler(ConfigError)
    async def invalid_value(request: Request, exc: ConfigError) -> Response:
        return error_response(400, str(exc), "invalid_request_error")

    @app.exception_handler(LLMError)
    async def llm_failed(request: Request, exc: LLMError) -> Response:
        log.warning("LLM failed: %s", exc)
        return error_response(502, str(exc), "llm_error")

    @app.exception_handler(EmbedError)
    async def embedder_failed(request: Request, exc: EmbedError) -> Response:
        log.warning("query embedding failed: %s", exc)
        return error_response(502, f"the embedder failed on the query: {exc}", "embedder_error")

    @app.exception_handler(RagflowError)
    async def ragflow_failed(request: Request, exc: RagflowError) -> Response:
        log.error("%s %s failed: %s", request.method, request.url.path, exc)
        return error_response(500, f"{type(exc).__name__}: {exc}", "server_error")

    @app.exception_handler(Exception)
    async def bug(request: Request, exc: Exception) -> Response:
        log.exception("%s %s failed", request.method, request.url.path)
        message = (
            f"internal error while handling {request.method} {request.url.path}: {type(exc).__name__}: {exc}"
        )
        return error_response(500, message, "server_error")
