"""Reading requests: Pathway-style parameters (query string merged under a JSON body), uploads (multipart
or JSON) and chat conversations, with 400s that name what is wrong."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.datastructures import UploadFile
from starlette.requests import Request

from ragflow.answer import ChatTurn

from . import schemas as s
from .errors import ApiError, validation_message

__all__ = ["check_k", "conversation", "json_body", "parameters", "uploaded", "validate", "wait_seconds"]

MAX_WAIT_S = 60.0
"""The longest ``?wait=`` an upload or delete may ask for."""

_Model = TypeVar("_Model", bound=BaseModel)


async def json_body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"the request body is not valid JSON: {exc}") from exc
    except RecursionError:  # JsonDepthGuard answers first in the app; this covers any other caller
        raise ApiError(400, "the request body nests JSON too deeply") from None
    if not isinstance(body, dict):
        raise ApiError(400, f"the request body must be a JSON object, got a JSON {type(body).__name__}")
    return body


async def parameters(request: Request, model: type[_Model]) -> _Model:
    """The request's parameters: the query string, overridden by the JSON body's fields."""
    merged: dict[str, Any] = dict(request.query_params)
    merged.update(await json_body(request))
    return validate(model, merged)


def validate(model: type[_Model], data: Mapping[str, Any]) -> _Model:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        message, param = validation_message(exc)
        raise ApiError(400, message, param=param) from exc


def check_k(k: int | None, max_k: int) -> None:
    if k is not None and k > max_k:
        raise ApiError(400, f"k must be at most {max_k} (the server's max_k), got {k}", param="k")


def wait_seconds(request: Request) -> float:
    raw = request.query_params.get("wait", "0")
    try:
        wait = float(raw)
    except ValueError:
        raise ApiError(400, f"wait must be a number of seconds, got {raw!r}", param="wait") from None
    if not 0 <= wait <= MAX_WAIT_S:
        raise ApiError(400, f"wait must be between 0 and {MAX_WAIT_S:g} seconds, got {raw}", param="wait")
    return wait


async def uploaded(request: Request) -> tuple[str, bytes, dict[str, Any]]:
    """``(name, content, metadata)`` of an upload, from a multipart form or a JSON body."""
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        form = await request.form()
        file = form.get("file")
        if not isinstance(file, UploadFile):
            raise ApiError(400, "a multipart upload needs a 'file' part holding the document", param="file")
        name = form.get("name") or file.filename
        if not isinstance(name, str) or not name:
            raise ApiError(400, "the upload has no name: send a 'name' field or a filename", param="name")
        raw_metadata = form.get("metadata")
        metadata = _metadata_field(raw_metadata if isinstance(raw_metadata, str) else None)
        return name, await file.read(), metadata
    query = validate(s.UploadRequest, await json_body(request))
    if query.encoding == "base64":
        try:
            data = base64.b64decode(query.content, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ApiError(400, f"content is not valid base64: {exc}", param="content") from exc
    else:
        data = query.content.encode()
    return query.name, data, query.metadata or {}


def _metadata_field(raw: str | None) -> dict[str, Any]:
    if not raw:
        return {}
    try:
        metadata = json.loads(raw)
    except ValueError as exc:
        raise ApiError(400, f"the 'metadata' field is not valid JSON: {exc}", param="metadata") from exc
    except RecursionError:
        raise ApiError(400, "the 'metadata' field nests JSON too deeply", param="metadata") from None
    if not isinstance(metadata, dict):
        raise ApiError(400, "the 'metadata' field must be a JSON object", param="metadata")
    return metadata


def conversation(messages: Sequence[s.ChatMessage]) -> tuple[str, list[ChatTurn]]:
    """The question (the last user message) and the turns before it."""
    turns = [ChatTurn(_role(m.role), _text(m.content)) for m in messages]
    for i in range(len(turns) - 1, -1, -1):
        if turns[i].role == "user" and turns[i].content.strip():
            return turns[i].content, [t for t in turns[:i] if t.content]
    raise ApiError(400, "messages must hold a user message with text: that is the question", param="messages")


def _role(role: str) -> str:
    return (
        {"developer": "system"}.get(role, role)
        if role in ("system", "user", "assistant", "developer")
        else "user"
    )


def _text(content: str | list[dict[str, Any]] | None) -> str:
    if isinstance(content, str):
        return content
    parts = [p.get("text") for p in content or () if p.get("type") == "text"]
    return "\n".join(p for p in parts if isinstance(p, str))
