"""Bad keys: after a client's limit of wrong keys it gets 429 with Retry-After, while requests with a good
key from the same address keep passing; a 1,000-request bad-key flood from another process leaves a
good client's latency within a generous bound (exact figures: docs/benchmarks.md,
``python -m apps.bench.bad_key_flood``)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import requests

from apps.bench.bad_key_flood import flood_while_measuring
from apps.bench.server import percentile
from ragflow.server.auth import ApiKey, AuthFailures, Role, key_digest
from tests.server.conftest import Served

GOOD = "good-key-for-abuse-tests-0123"
KEYS = [ApiKey("good", Role.READ, key_digest(GOOD))]


def test_repeated_bad_keys_get_429_with_retry_after_and_good_keys_still_pass(
    serve_app: Callable[..., Served],
) -> None:
    served = serve_app(api_keys=KEYS, max_auth_failures=3, auth_failure_window=1.0)
    bad = {"X-API-Key": "wrong-key-0123456789abcdef"}
    statuses = [
        requests.get(served.url + "/v1/statistics", headers=bad, timeout=10).status_code for _ in range(3)
    ]
    assert statuses == [401, 401, 401]
    refused = requests.get(served.url + "/v1/statistics", headers=bad, timeout=10)
    assert refused.status_code == 429 and refused.json()["error"]["type"] == "rate_limited"
    assert 1 <= int(refused.headers["Retry-After"]) <= 1
    assert requests.get(served.url + "/v1/statistics", timeout=10).status_code == 429  # no key is no better
    good = requests.get(served.url + "/v1/statistics", headers={"X-API-Key": GOOD}, timeout=10)
    assert good.status_code == 200
    assert requests.get(served.url + "/healthz", timeout=10).status_code == 200
    time.sleep(1.05)
    assert requests.get(served.url + "/v1/statistics", headers=bad, timeout=10).status_code == 401


def test_failures_are_counted_per_client_and_forgotten_after_the_window() -> None:
    failures = AuthFailures(limit=2, window=10.0, max_clients=2)
    assert failures.record("a", now=0.0) is False and failures.retry_after("a", now=1.0) is None
    assert failures.record("a", now=1.0) is True
    assert failures.retry_after("a", now=2.0) == 8.0
    assert failures.retry_after("b", now=2.0) is None
    assert failures.retry_after("a", now=10.5) is None  # the first failure left the window
    failures.record("b", now=11.0)
    failures.record("c", now=11.0)  # over max_clients: the least recent client is forgotten
    assert set(failures._failures) == {"b", "c"}


def test_a_bad_key_flood_does_not_slow_a_good_key_client(serve_app: Callable[..., Served]) -> None:
    served = serve_app(api_keys=KEYS)
    result = flood_while_measuring(served.url, GOOD, bad=1000, connections=4, good=150)
    assert result.bad_statuses.get(429, 0) >= 980 and sum(result.bad_statuses.values()) == 1000
    unloaded, loaded = percentile(result.unloaded_ms, 0.99), percentile(result.loaded_ms, 0.99)
    # The target is 2x (see docs/benchmarks.md); on 2 shared cores the bound is generous, but a server that
    # did real work per bad key (or let bad keys queue ahead of good ones) fails it.
    # (50 ms of hashing per bad key would put seconds of CPU ahead of the good client).
    assert loaded <= max(10 * unloaded, unloaded + 1000), (result.unloaded_ms, result.loaded_ms)
    assert statistics.median(result.loaded_ms) <= max(10 * statistics.median(result.unloaded_ms), 200)
