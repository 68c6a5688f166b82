"""Tests for ragflow.embedders.openai against a real HTTP server speaking the OpenAI protocol, and for
the ``make_embedder`` factory."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from ragflow.embedders import LocalEmbedder, OpenAIEmbedder, make_embedder
from ragflow.errors import ConfigError, EmbedError
from tests.fakes import FakeOpenAIServer


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(dim=16) as running:
        yield running


def embedder_for(server: FakeOpenAIServer, **options: object) -> OpenAIEmbedder:
    settings: dict[str, object] = {"api_key": server.api_key, "backoff_base": 0.01, "timeout": 5} | options
    return OpenAIEmbedder("fake-embed", base_url=server.base_url, **settings)  # type: ignore[arg-type]


def unit(vector: np.ndarray) -> np.ndarray:
    return vector / np.linalg.norm(vector)


def test_vectors_are_the_servers_normalised_in_input_order(server: FakeOpenAIServer) -> None:
    texts = [f"text number {i}" for i in range(10)]
    vectors = embedder_for(server, batch_size=4).embed(texts)
    assert vectors.dtype == np.float32 and vectors.shape == (10, 16) and vectors.flags.c_contiguous
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1, rtol=1e-6)
    np.testing.assert_allclose(vectors, [unit(server.vector_for(t)) for t in texts], rtol=1e-5)
    assert [len(r.body["input"]) for r in server.requests_to("/v1/embeddings")] == [4, 4, 2]
    assert {r.body["model"] for r in server.requests} == {"fake-embed"}


def test_dim_is_learnt_from_the_first_response(server: FakeOpenAIServer) -> None:
    embedder = embedder_for(server)
    assert embedder.dim == 16
    assert len(server.requests) == 1, "dim asks the server once"
    assert embedder.embed(["a"]).shape == (1, 16)
    assert embedder.embed([]).shape == (0, 16)
    assert len(server.requests) == 2, "an empty input needs no request"


def test_a_configured_dim_that_the_server_contradicts_is_an_error(server: FakeOpenAIServer) -> None:
    embedder = embedder_for(server, dim=8)
    assert embedder.embed([]).shape == (0, 8)
    assert server.requests == []
    with pytest.raises(EmbedError, match="dimension 16, but configured 8"):
        embedder.embed(["a"])


def test_empty_strings_are_embedded_although_the_api_refuses_them(server: FakeOpenAIServer) -> None:
    vectors = embedder_for(server).embed(["", "word"])
    np.testing.assert_allclose(vectors[0], unit(server.vector_for(" ")), rtol=1e-5)


def test_identity_and_limits(server: FakeOpenAIServer) -> None:
    embedder = embedder_for(server)
    assert embedder.model_id == f"fake-embed@{server.base_url}"
    assert embedder.max_tokens == 8191
    official = OpenAIEmbedder("text-embedding-3-small", api_key="sk-never-used")
    assert official.model_id == "text-embedding-3-small"
    assert official.dim == 1536, "a known model's dim needs no request"


@pytest.mark.parametrize("status", [500, 502, 503, 429, 408])
def test_transient_failures_are_retried(server: FakeOpenAIServer, status: int) -> None:
    server.fail_next(2, status)
    vectors = embedder_for(server, max_retries=2).embed(["retry me"])
    np.testing.assert_allclose(vectors[0], unit(server.vector_for("retry me")), rtol=1e-5)
    assert len(server.requests) == 3


def test_a_dropped_connection_is_retried(server: FakeOpenAIServer) -> None:
    server.fail_next(1, status=None)
    assert embedder_for(server, max_retries=1).embed(["x"]).shape == (1, 16)
    assert len(server.requests) == 2


def test_retry_after_is_honoured(server: FakeOpenAIServer) -> None:
    server.fail_next(1, 429, retry_after=0.5)
    started = time.monotonic()
    embedder_for(server, max_retries=1).embed(["x"])
    assert time.monotonic() - started >= 0.5


def test_backoff_grows_exponentially(server: FakeOpenAIServer) -> None:
    server.fail_next(3, 503)
    started = time.monotonic()
    embedder_for(server, max_retries=3, backoff_base=0.1).embed(["x"])
    # Jitter keeps each wait within [half, all] of 0.1, 0.2 and 0.4 s.
    assert 0.35 <= time.monotonic() - started < 2


def test_giving_up_names_model_server_attempts_and_reason(server: FakeOpenAIServer) -> None:
    server.fail_next(10, 503, message="overloaded, try later")
    with pytest.raises(EmbedError) as error:
        embedder_for(server, max_retries=2).embed(["x"])
    message = str(error.value)
    assert f"'fake-embed' at {server.base_url}" in message
    assert (
        "gave up after 3 attempts" in message and "HTTP 503" in message and "overloaded, try later" in message
    )
    assert len(server.requests) == 3


@pytest.mark.parametrize(
    ("options", "status"),
    [({"api_key": "wrong"}, "HTTP 401"), ({"model": ""}, "HTTP 400")],
    ids=["auth", "bad"],
)
def test_client_errors_fail_at_once(
    server: FakeOpenAIServer, options: dict[str, object], status: str
) -> None:
    embedder = embedder_for(server, api_key=options.get("api_key", server.api_key))
    embedder.model = str(options.get("model", embedder.model))
    with pytest.raises(EmbedError, match=status):
        embedder.embed(["x"])
    assert len(server.requests) == 1


def test_an_unreachable_server_is_an_error_after_retries() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    embedder = OpenAIEmbedder(
        "fake-embed", base_url=f"http://127.0.0.1:{port}/v1", max_retries=2, backoff_base=0.01, dim=4
    )
    with pytest.raises(
        EmbedError, match=rf"127\.0\.0\.1:{port}/v1: gave up after 3 attempts: Connection error"
    ):
        embedder.embed(["x"])


def test_a_slow_server_times_out_and_is_an_error(server: FakeOpenAIServer) -> None:
    server.delay = 0.5
    with pytest.raises(EmbedError, match="gave up after 2 attempts: Request timed out"):
        embedder_for(server, timeout=0.1, max_retries=1).embed(["x"])


def test_no_api_key_for_openai_itself_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(ConfigError, match="needs an API key"):
        OpenAIEmbedder("text-embedding-3-small")


def test_a_local_server_needs_no_api_key(monkeypatch: pytest.MonkeyPatch, server: FakeOpenAIServer) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    server.api_key = "unused"
    assert OpenAIEmbedder("fake-embed", base_url=server.base_url).embed(["x"]).shape == (1, 16)


def test_the_fake_server_takes_new_routes_for_other_endpoints(server: FakeOpenAIServer) -> None:
    import openai

    def chat(body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        message = {"role": "assistant", "content": "pong"}
        choice = {"index": 0, "finish_reason": "stop", "message": message}
        return 200, {
            "id": "1",
            "object": "chat.completion",
            "created": 0,
            "model": body["model"],
            "choices": [choice],
        }

    server.add_route("POST", "/v1/chat/completions", chat)
    client = openai.OpenAI(base_url=server.base_url, api_key=server.api_key, max_retries=0)
    reply = client.chat.completions.create(model="fake-chat", messages=[{"role": "user", "content": "ping"}])
    assert reply.choices[0].message.content == "pong"


# -- make_embedder --------------------------------------------------------------------------------


def test_make_embedder_builds_each_kind(server: FakeOpenAIServer) -> None:
    local = make_embedder("local", batch_size=16)
    assert isinstance(local, LocalEmbedder) and local.batch_size == 16
    remote = make_embedder("openai", model="fake-embed", base_url=server.base_url, api_key=server.api_key)
    assert isinstance(remote, OpenAIEmbedder) and remote.embed(["x"]).shape == (1, 16)


def test_make_embedder_refuses_unknown_kinds_listing_the_allowed_ones() -> None:
    with pytest.raises(ConfigError, match=r"unknown embedder kind 'hf'; allowed kinds: local, openai"):
        make_embedder("hf")


def test_make_embedder_names_unknown_and_missing_options() -> None:
    with pytest.raises(ConfigError, match=r"unknown option\(s\) 'modle' for embedder kind 'openai'"):
        make_embedder("openai", modle="x")
    with pytest.raises(ConfigError, match=r"embedder kind 'openai' needs the option\(s\) 'model'"):
        make_embedder("openai")
