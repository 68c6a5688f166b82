"""The role each route needs, in one table: a route the table does not name needs ``admin`` (so a new
endpoint is closed until someone decides), and tests/server/test_roles.py fails for it."""

from __future__ import annotations

from collections.abc import Mapping

from starlette.routing import BaseRoute, Match
from starlette.types import Scope as AsgiScope

from .auth import Role

__all__ = ["OPEN", "ROUTE_ROLES", "required_role"]

OPEN = None
"""No key needed (health checks, which load balancers and orchestrators probe)."""

_READ_BOTH = ("GET", "POST")

ROUTE_ROLES: Mapping[tuple[str, str], Role | None] = {
    **{
        (method, path): Role.READ
        for path in (
            "/v1/retrieve",
            "/v1/statistics",
            "/v1/inputs",
            "/v2/list_documents",
            "/v1/pw_list_documents",
        )
        for method in _READ_BOTH
    },
    ("POST", "/v2/answer"): Role.READ,
    ("POST", "/v1/pw_ai_answer"): Role.READ,
    ("POST", "/v2/summarize"): Role.READ,
    ("POST", "/v1/pw_ai_summary"): Role.READ,
    ("POST", "/v1/chat/completions"): Role.READ,
    ("GET", "/v1/models"): Role.READ,
    ("GET", "/v1/errors"): Role.READ,  # a scoped key sees the errors of its scope's documents only
    # Source roots and per-source document counts span every team: operators only.
    ("GET", "/v1/sources"): Role.ADMIN,
    # A migration's details name state directories, and its control changes what everyone is served.
    ("GET", "/v1/migration"): Role.ADMIN,
    ("POST", "/v1/migration/abort"): Role.ADMIN,
    ("POST", "/v1/migration/rollback"): Role.ADMIN,
    ("POST", "/v1/migration/start"): Role.ADMIN,
    ("GET", "/_schema"): Role.READ,
    ("GET", "/openapi.json"): Role.READ,
    ("GET", "/docs"): Role.READ,
    ("GET", "/docs/oauth2-redirect"): Role.READ,
    ("GET", "/redoc"): Role.READ,
    ("POST", "/v1/documents"): Role.WRITE,
    ("DELETE", "/v1/documents/{doc_id:path}"): Role.WRITE,
    ("GET", "/metrics"): Role.ADMIN,
    ("GET", "/healthz"): OPEN,
    ("GET", "/readyz"): OPEN,
    # The web page holds no data (it asks for a key and calls the API with it); its endpoints and the
    # MCP tools answer within the key's scope, as the REST routes do.
    ("GET", "/"): OPEN,
    ("GET", "/v1/status"): Role.READ,
    ("GET", "/v1/passage"): Role.READ,
    ("POST", "/mcp"): Role.READ,
}
"""``(method, route path template) -> role`` (``OPEN``: no key). ``HEAD`` is looked up as ``GET``."""


def required_role(routes: list[BaseRoute], scope: AsgiScope) -> Role | None:
    """The role a request needs: its route's, ``admin`` for a route the table lacks, and ``read`` when no
    route matches (any valid key then gets the router's 404 or 405)."""
    method = "GET" if scope["method"] == "HEAD" else scope["method"]
    for route in routes:
        match, _ = route.matches(scope)
        if match is Match.FULL:
            return ROUTE_ROLES.get((method, getattr(route, "path", "")), Role.ADMIN)
    return Role.READ
