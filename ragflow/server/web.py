"""The web page at ``/`` and the two endpoints only it needs (``/v1/status``, ``/v1/passage``).

The page is one static document (``page/index.html`` with ``page/app.css`` and ``page/app.js`` inlined
into it when first served): it holds no data, so it is served without a key, and it gets everything it
shows from the REST API with the key the person types in, so it can show nothing the API would not. It
writes every document-derived string with ``textContent``, never as HTML, and its Content-Security-Policy
allows no script but its own (by hash), so a document's ``<script>`` is text twice over.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
from importlib import resources
from typing import Any

from fastapi import FastAPI, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from .errors import ApiError
from .scoped import Caller
from .state import caller_of, state_of

__all__ = ["PAGE_PATH", "add_web_routes", "page"]

PAGE_PATH = "/"
"""Where the page is served (without a key: it holds no data)."""


def add_web_routes(app: FastAPI) -> None:
    """Register the page and its endpoints on ``app``."""
    app.add_api_route(
        PAGE_PATH, index, methods=["GET"], tags=["web"], summary="The web page", include_in_schema=False
    )
    app.add_api_route(
        "/v1/status",
        status,
        methods=["GET"],
        tags=["web"],
        summary="Indexing status for the caller: readiness, documents by state with errors, recent freshness",
    )
    app.add_api_route(
        "/v1/passage",
        passage_in_context,
        methods=["GET"],
        tags=["web"],
        summary="A cited passage among its neighbouring chunks (doc_id, start, end, page?)",
    )


@functools.cache
def page() -> tuple[bytes, str]:
    """The page's HTML with its style and script inlined, and its Content-Security-Policy."""
    folder = resources.files(__package__).joinpath("page")
    html, css, js = (folder.joinpath(name).read_text("utf-8") for name in ("index.html", "app.css", "app.js"))
    html = html.replace("<!--app.css-->", f"<style>{css}</style>").replace(
        "<!--app.js-->", f"<script>{js}</script>"
    )
    policy = "; ".join(
        (
            "default-src 'none'",
            f"script-src '{_sha256(js)}'",
            f"style-src '{_sha256(css)}'",
            "connect-src 'self'",
            "img-src 'self' data:",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        )
    )
    return html.encode(), policy


def _sha256(text: str) -> str:
    return "sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()


async def index(request: Request) -> Response:
    body, policy = page()
    headers = {
        "Content-Security-Policy": policy,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-cache",
    }
    return Response(body, media_type="text/html; charset=utf-8", headers=headers)


async def status(request: Request) -> Response:
    caller = Caller(state_of(request), caller_of(request))
    return _json(await run_in_threadpool(caller.overview))


async def passage_in_context(request: Request) -> Response:
    query = request.query_params
    doc_id = query.get("doc_id")
    if not doc_id:
        raise ApiError(400, "doc_id is required: the document the passage is in", param="doc_id")
    start, end = _int(query, "start"), _int(query, "end")
    if start is None or end is None:
        raise ApiError(400, "start and end are required: the passage's character span", param="start")
    page_number = _int(query, "page")
    caller = Caller(state_of(request), caller_of(request))
    found = await run_in_threadpool(caller.context, doc_id, start, end, page_number)
    if found is None:
        raise ApiError(
            404,
            f"no passage {start}:{end} in {doc_id!r}: the document is not indexed (or was edited since "
            "it was cited; ask again)",
            "not_found_error",
        )
    return _json(found)


def _int(query: Any, name: str) -> int | None:
    value = query.get(name)
    if value in (None, "", "null"):
        return None
    try:
        return int(value)
    except ValueError:
        raise ApiError(400, f"{name} must be an integer, got {value!r}", param=name) from None


def _json(payload: Any) -> Response:
    return Response(json.dumps(payload, ensure_ascii=False, default=str), media_type="application/json")
