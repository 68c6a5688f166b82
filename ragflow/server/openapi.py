"""The OpenAPI schema: the request bodies the server parses itself (and their query-string forms), 400
instead of FastAPI's 422, this server's ``max_k`` and, with an API key, the security schemes."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from . import schemas as s
from .state import OPEN_PATHS

__all__ = ["build_openapi", "json_body_doc", "query_parameters_doc", "upload_body_doc"]


def _schema_ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def json_body_doc(model: type[BaseModel]) -> dict[str, Any]:
    """``openapi_extra`` for an operation whose JSON body is ``model``."""
    content = {"application/json": {"schema": _schema_ref(model)}}
    required = any(f.is_required() for f in model.model_fields.values())
    return {"requestBody": {"required": required, "content": content}}


def upload_body_doc() -> dict[str, Any]:
    """``openapi_extra`` for the upload: a JSON ``UploadRequest`` or a multipart form with a file."""
    form = {
        "type": "object",
        "required": ["file"],
        "properties": {
            "file": {"type": "string", "format": "binary"},
            "name": {"type": "string", "description": "The document's name (default: the file name)"},
            "metadata": {"type": "string", "description": "A JSON object of extra metadata"},
        },
    }
    content = {
        "application/json": {"schema": _schema_ref(s.UploadRequest)},
        "multipart/form-data": {"schema": form},
    }
    return {"requestBody": {"required": True, "content": content}}


def query_parameters_doc(model: type[BaseModel]) -> dict[str, Any]:
    """``openapi_extra`` for a GET operation taking ``model``'s fields in the query string."""
    properties = model.model_json_schema()["properties"] if model.model_fields else {}
    parameters = []
    for name, info in model.model_fields.items():
        schema = dict(properties[name])
        variants = [v for v in schema.pop("anyOf", []) if v.get("type") != "null"]
        if variants:
            schema.update(variants[0])
        schema.pop("default", None)
        parameters.append(
            {
                "name": name,
                "in": "query",
                "required": info.is_required(),
                "description": info.description,
                "schema": schema,
            }
        )
    return {"parameters": parameters}


def _limit_k(schema: dict[str, Any], max_k: int) -> None:
    """Declare this server's ``max_k`` as the maximum of a ``k`` field's integer schema."""
    for variant in [schema, *schema.get("anyOf", ())]:
        if variant.get("type") == "integer":
            variant["maximum"] = max_k


def build_openapi(app: FastAPI, with_auth: bool, max_k: int) -> dict[str, Any]:
    """The app's OpenAPI schema (made once, then cached on the app)."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    components = schema.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    for model in s.REQUEST_MODELS:
        model_schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(model_schema.pop("$defs", {}))
        schemas[model.__name__] = model_schema
    schemas.setdefault(
        "ErrorResponse", s.ErrorResponse.model_json_schema(ref_template="#/components/schemas/{model}")
    )
    schemas.setdefault("ErrorDetail", s.ErrorDetail.model_json_schema())
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    error = {
        "description": "What was wrong",
        "content": {"application/json": {"schema": _schema_ref(s.ErrorResponse)}},
    }
    if with_auth:
        components["securitySchemes"] = {
            "bearer": {"type": "http", "scheme": "bearer"},
            "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
        }
    for model in (s.RetrieveRequest, s.AnswerRequest, s.ChatCompletionRequest):
        _limit_k(schemas[model.__name__]["properties"]["k"], max_k)
    for path, item in schema.get("paths", {}).items():
        for operation in item.values():
            for parameter in operation.get("parameters", ()):
                if parameter["name"] == "k":
                    _limit_k(parameter["schema"], max_k)
            responses = operation.setdefault("responses", {})
            responses.pop("422", None)
            if "requestBody" in operation or operation.get("parameters"):
                responses.setdefault("400", error)
                responses.setdefault("413", error)
            if with_auth and path not in OPEN_PATHS:
                operation["security"] = [{"bearer": []}, {"apiKey": []}]
                responses.setdefault("401", error)
    app.openapi_schema = schema
    return schema
