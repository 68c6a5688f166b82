"""CORS: no CORS headers unless ``cors_origins`` lists origins; then a listed origin's preflight is answered
without a key (browsers send none) and its requests still need one, and an unlisted origin gets nothing."""

from __future__ import annotations

from collections.abc import Callable

import requests

from tests.server.conftest import Served

KEY = "a-browser-key-0123456789"
PAGE = "https://app.example.com"
PREFLIGHT = {
    "Origin": PAGE,
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "authorization",
}


def test_without_origins_no_cors_headers_are_sent(serve_app: Callable[..., Served]) -> None:
    served = serve_app(api_key=KEY)
    answer = requests.get(
        served.url + "/v1/statistics", headers={"Origin": PAGE, "X-API-Key": KEY}, timeout=10
    )
    preflight = requests.options(served.url + "/v1/retrieve", headers=PREFLIGHT, timeout=10)
    assert answer.status_code == 200 and preflight.status_code != 200
    for response in (answer, preflight):
        assert not [h for h in response.headers if h.lower().startswith("access-control-")]


def test_a_listed_origin_gets_cors_headers_and_still_needs_a_key(serve_app: Callable[..., Served]) -> None:
    served = serve_app(api_key=KEY, cors_origins=[PAGE])
    preflight = requests.options(served.url + "/v1/retrieve", headers=PREFLIGHT, timeout=10)
    assert preflight.status_code == 200 and preflight.headers["Access-Control-Allow-Origin"] == PAGE
    assert "authorization" in preflight.headers["Access-Control-Allow-Headers"].lower()
    keyless = requests.post(
        served.url + "/v1/retrieve", json={"query": "x"}, headers={"Origin": PAGE}, timeout=10
    )
    assert keyless.status_code == 401 and keyless.headers["Access-Control-Allow-Origin"] == PAGE
    other = {**PREFLIGHT, "Origin": "https://elsewhere.example"}
    refused = requests.options(served.url + "/v1/retrieve", headers=other, timeout=10)
    assert "Access-Control-Allow-Origin" not in refused.headers
