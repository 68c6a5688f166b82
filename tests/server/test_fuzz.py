"""Schema-driven fuzzing: schemathesis generates requests from ``/openapi.json`` (valid and invalid bodies,
query strings, uploads) for every operation; none may answer with a 5xx. Bounded to a few examples per
operation and generation mode, so the module runs in well under a minute.

The strategies are driven with hypothesis directly rather than through schemathesis' pytest plugin, whose
lazy fixture loading does not work with this pytest version."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable

from tests.server.conftest import Served, serving

schemathesis = pytest.importorskip("schemathesis")
from schemathesis.checks import not_a_server_error  # noqa: E402

EXAMPLES = 10
"""Examples per operation and generation mode (valid, then invalid, requests)."""
HEADERS = {"X-API-Key": "fuzz-key"}


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = Path(tmp_path_factory.mktemp("fuzz"))
    with serving(root, api_key=HEADERS["X-API-Key"], max_k=20, max_request_bytes=20_000) as served:
        yield served


def operations(served: Served) -> list[Any]:
    schema = schemathesis.openapi.from_url(served.url + "/openapi.json", headers=HEADERS)
    return [result.ok() for result in schema.get_all_operations()]


def fuzz(operation: Any, mode: Any) -> None:
    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def call(case: Any) -> None:
        case.call_and_validate(headers=HEADERS, checks=[not_a_server_error], timeout=10)

    call()


@pytest.mark.parametrize("mode", ["positive", "negative"])
def test_no_generated_request_makes_the_server_fail(fuzzed: Served, mode: str) -> None:
    found = operations(fuzzed)
    assert len(found) >= 23, [op.label for op in found]
    failures = []
    for operation in found:
        try:
            fuzz(operation, schemathesis.GenerationMode(mode))
        except Unsatisfiable:
            assert mode == "negative", operation.label  # no parameters: no invalid request to make
        except Exception as exc:  # collect every operation's failure, not just the first
            failures.append(f"{operation.label}: {exc}")
    assert not failures, "\n\n".join(failures)
    health = fuzzed.store.engine.failure
    assert health is None, f"the engine failed under fuzzing: {health}"
