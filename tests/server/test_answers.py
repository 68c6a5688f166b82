"""Answering over HTTP with a fake OpenAI-compatible LLM (a real HTTP server): numbered sources and
citations, adaptive retrieval, extractive answers without an LLM, LLM failures as 502s, and the
OpenAI-compatible chat endpoint driven by the real ``openai`` client, streaming and not."""

from __future__ import annotations

import re
import socket
from collections.abc import Callable, Iterator
from typing import Any

import openai
import pytest
import requests
from openai.types.chat import ChatCompletionMessageParam

from ragflow.answer import EXTRACTIVE_LABEL, NO_ANSWER, LLMSettings
from tests.fakes.llm_server import FakeLLMServer
from tests.server.conftest import Served


@pytest.fixture
def llm() -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as server:
        yield server


def settings(llm: FakeLLMServer, **overrides: Any) -> LLMSettings:
    options: dict[str, Any] = {"timeout": 5.0, "max_retries": 0, **overrides}
    return LLMSettings(llm.base_url, llm.api_key, llm.model, **options)


def ask(served: Served, body: dict[str, Any], path: str = "/v2/answer") -> requests.Response:
    return requests.post(served.url + path, json=body, timeout=30)


def sources_in(prompt: str) -> list[tuple[str, str]]:
    """``(number, path)`` of each source listed in a prompt."""
    return re.findall(r"^\[(\d+)\] (\S+)", prompt, re.MULTILINE)


def test_the_llm_gets_numbered_sources_and_the_answer_cites_them(
    serve_app: Callable[..., Served], llm: FakeLLMServer
) -> None:
    served = serve_app(llm=settings(llm))
    response = ask(served, {"prompt": "Who lights the harbor lantern?", "return_context_docs": True})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["response"] == (
        "According to the documents, # Lantern\n\nThe harbor lantern is lit at dusk by the keeper. [1]"
    ) or body["response"].endswith("[1]")
    assert body["extractive"] is False
    [citation] = body["citations"]
    assert citation["number"] == 1 and citation["path"].endswith("guides/lantern.md")
    assert (citation["start"], citation["page"]) == (0, None) and citation["end"] > 50
    assert citation["doc_id"] == "guides/lantern.md" and "harbor lantern" in citation["text"]
    assert body["context_docs"][0]["metadata"]["doc_id"] == "guides/lantern.md"
    [request] = llm.requests
    assert request["model"] == llm.model and request["messages"][0]["role"] == "system"
    prompt = request["messages"][-1]["content"]
    assert prompt.endswith("Question: Who lights the harbor lantern?")
    assert [n for n, _ in sources_in(prompt)] == [str(i) for i in range(1, 6)]


def test_filters_and_model_reach_the_llm(serve_app: Callable[..., Served], llm: FakeLLMServer) -> None:
    served = serve_app(llm=settings(llm))
    response = ask(
        served,
        {"prompt": "What floods?", "filters": "contains(path, `notes`)", "model": "bigger-model"},
        "/v1/pw_ai_answer",
    )
    assert response.status_code == 200 and "context_docs" not in response.json()
    [request] = llm.requests
    assert request["model"] == "bigger-model"
    assert all("/notes/" in path for _, path in sources_in(request["messages"][-1]["content"]))
    assert len(sources_in(request["messages"][-1]["content"])) == 2


def test_adaptive_answering_asks_with_more_sources_until_the_model_answers(
    serve_app: Callable[..., Served], llm: FakeLLMServer
) -> None:
    def needs_four_sources(messages: list[dict[str, Any]]) -> str:
        return "It is in the fourth source [4]." if "\n[4] " in messages[-1]["content"] else NO_ANSWER

    llm.reply = needs_four_sources
    served = serve_app(llm=settings(llm), adaptive=True)
    body = ask(served, {"prompt": "Where is the answer?"}).json()
    assert body["response"] == "It is in the fourth source [4]."
    assert [c["number"] for c in body["citations"]] == [4]
    assert [len(sources_in(r["messages"][-1]["content"])) for r in llm.requests] == [2, 4]
    llm.requests.clear()
    llm.reply = lambda messages: NO_ANSWER
    unanswered = ask(served, {"prompt": "Unknowable?"}).json()
    assert unanswered["response"] == NO_ANSWER and unanswered["citations"] == []
    assert [len(sources_in(r["messages"][-1]["content"])) for r in llm.requests] == [2, 4, 5]


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        ("fail", "answered HTTP 500: injected failure"),
        ("garbage", "not a chat completion"),
        ("hang", "did not answer within 0.5 s"),
        ("drop", "could not be reached"),
    ],
)
def test_llm_failures_are_502s_naming_the_llm(
    serve_app: Callable[..., Served], llm: FakeLLMServer, fault: str, expected: str
) -> None:
    served = serve_app(llm=settings(llm, timeout=0.5))
    if fault == "fail":
        llm.fail_next()
    elif fault == "garbage":
        llm.garbage_next()
    elif fault == "hang":
        llm.hang_next(seconds=2)
    else:
        llm.fail_next(status=None)
    response = ask(served, {"prompt": "Who lights the harbor lantern?"})
    assert response.status_code == 502
    error = response.json()["error"]
    assert error["type"] == "llm_error"
    assert llm.base_url in error["message"] and "'fake-llm'" in error["message"]
    assert expected in error["message"]
    assert ask(served, {"prompt": "Who lights the harbor lantern?"}).status_code == 200, "the next call works"


def test_an_unreachable_llm_is_a_502(serve_app: Callable[..., Served]) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    served = serve_app(
        llm=LLMSettings(f"http://127.0.0.1:{port}/v1", None, "local-model", timeout=2, max_retries=0)
    )
    response = ask(served, {"prompt": "anything"})
    assert response.status_code == 502
    message = response.json()["error"]["message"]
    assert f"127.0.0.1:{port}" in message and "'local-model'" in message and "could not be reached" in message


def test_without_an_llm_the_answer_is_extractive_and_labelled(served: Served) -> None:
    body = ask(served, {"prompt": "When does the meadow flood?", "return_context_docs": True}).json()
    assert body["extractive"] is True
    assert body["response"].startswith(EXTRACTIVE_LABEL)
    assert (
        "The meadow floods every spring when the river rises above the stone bridge. [1]" in body["response"]
    )
    assert body["citations"][0]["path"].endswith("notes/meadow.txt")
    assert body["citations"][0]["start"] == 0 and body["citations"][0]["end"] > 0
    assert len(body["context_docs"]) == 6 or len(body["context_docs"]) == len(served.store.documents())
    nothing = ask(served, {"prompt": "Anything?", "filters": "path == 'nowhere'"}).json()
    assert nothing["response"] == NO_ANSWER and nothing["citations"] == []
    missing = ask(served, {"filters": None})
    assert missing.status_code == 400 and "'prompt'" in missing.json()["error"]["message"]


def test_summaries_are_json_strings(
    serve_app: Callable[..., Served], llm: FakeLLMServer, served: Served
) -> None:
    texts = ["The falcon hunts at dawn. It nests high.", "Revenue grew by ten percent. Costs fell."]
    extractive = ask(served, {"text_list": texts}, "/v2/summarize").json()
    assert extractive == (
        "Extractive summary (no language model is configured): The falcon hunts at dawn. "
        "Revenue grew by ten percent."
    )
    llm.reply = lambda messages: "Falcons hunt; revenue grew."
    with_llm = serve_app(llm=settings(llm))
    assert (
        ask(with_llm, {"text_list": texts, "model": "summarizer"}, "/v1/pw_ai_summary").json()
        == "Falcons hunt; revenue grew."
    )
    assert llm.requests[-1]["model"] == "summarizer"
    assert "- The falcon hunts at dawn." in llm.requests[-1]["messages"][-1]["content"]
    assert ask(with_llm, {"text_list": "not a list"}, "/v2/summarize").status_code == 400


def client_for(served: Served) -> openai.OpenAI:
    return openai.OpenAI(base_url=served.url + "/v1", api_key="unused", max_retries=0, timeout=30)


def test_the_openai_client_chats_with_the_documents(
    serve_app: Callable[..., Served], llm: FakeLLMServer
) -> None:
    served = serve_app(llm=settings(llm))
    client = client_for(served)
    completion = client.chat.completions.create(
        model="ragflow",
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hello"},
            {"role": "assistant", "content": "Hi! Ask me about the documents."},
            {"role": "user", "content": [{"type": "text", "text": "When does the falcon hunt?"}]},
        ],
        extra_body={"filepath_globpattern": "**/guides/*"},
    )
    assert completion.choices[0].message.content == "According to the documents, # Falcon [1]" or (
        completion.choices[0].message.content or ""
    ).endswith("[1]")
    assert completion.choices[0].finish_reason == "stop" and completion.model == llm.model
    citations = completion.model_extra["citations"] if completion.model_extra else []
    assert citations[0]["path"].endswith("guides/falcon.md")
    [request] = llm.requests
    assert request["model"] == llm.model, "the model name 'ragflow' means the configured LLM's model"
    assert [m["role"] for m in request["messages"]] == ["system", "system", "user", "assistant", "user"]
    assert {p for _, p in sources_in(request["messages"][-1]["content"])} <= {
        p for p in (str(served.root / "guides/falcon.md"), str(served.root / "guides/lantern.md"))
    }
    assert [m.id for m in client.models.list()] == ["ragflow", llm.model]


def test_the_openai_client_streams_the_answer(serve_app: Callable[..., Served], llm: FakeLLMServer) -> None:
    served = serve_app(llm=settings(llm))
    stream = client_for(served).chat.completions.create(
        model="ragflow", messages=[{"role": "user", "content": "Who lights the harbor lantern?"}], stream=True
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert text.startswith("According to the documents,") and text.endswith("[1]")
    assert len(chunks) > 4, "the answer arrives in pieces"
    assert chunks[-1].choices[0].finish_reason == "stop"
    final_extra = chunks[-1].model_extra or {}
    assert final_extra["citations"][0]["path"].endswith("guides/lantern.md")
    assert llm.requests[0]["stream"] is True


def test_a_stream_cut_by_the_llm_ends_with_an_error_event(
    serve_app: Callable[..., Served], llm: FakeLLMServer
) -> None:
    served = serve_app(llm=settings(llm))
    llm.cut_stream_next(chunks=3)
    stream = client_for(served).chat.completions.create(
        model="ragflow", messages=[{"role": "user", "content": "Who lights the harbor lantern?"}], stream=True
    )
    with pytest.raises(openai.APIError, match="fake-llm"):
        list(stream)


def test_chat_errors_before_the_stream_starts_are_http_errors(
    serve_app: Callable[..., Served], llm: FakeLLMServer
) -> None:
    served = serve_app(llm=settings(llm))
    client = client_for(served)
    llm.fail_next(status=503)
    with pytest.raises(openai.APIStatusError) as failed:
        client.chat.completions.create(
            model="ragflow", messages=[{"role": "user", "content": "hi"}], stream=True
        )
    assert failed.value.status_code == 502 and "answered HTTP 503" in str(failed.value)
    with pytest.raises(openai.BadRequestError, match="user message"):
        client.chat.completions.create(
            model="ragflow", messages=[{"role": "system", "content": "no question"}]
        )


def test_without_an_llm_chat_answers_extractively_streaming_or_not(served: Served) -> None:
    client = client_for(served)
    question: list[ChatCompletionMessageParam] = [
        {"role": "user", "content": "What crosses the path of the violet planet?"}
    ]
    completion = client.chat.completions.create(model="anything", messages=question)
    content = completion.choices[0].message.content or ""
    assert content.startswith(EXTRACTIVE_LABEL) and "comet's orbit" in content
    assert completion.model == "ragflow-extractive"
    streamed = client.chat.completions.create(model="anything", messages=question, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in streamed) == content


def test_citations_are_the_cited_sources_in_range_or_all_of_them() -> None:
    from ragflow.answer import Answerer
    from ragflow.documents import Hit

    hits = [
        Hit(
            i, f"text {i}", {"path": f"/d/{i}.pdf", "page_number": i, "start": 10 * i, "end": 10 * i + 5}, 0.1
        )
        for i in range(3)
    ]
    answerer = Answerer(store=None)  # type: ignore[arg-type]  # citations need no store
    cited = answerer.citations("See [2] and [3], not [9] or [0].", hits)
    assert [(c.number, c.path, c.page, c.start, c.end) for c in cited] == [
        (2, "/d/1.pdf", 1, 10, 15),
        (3, "/d/2.pdf", 2, 20, 25),
    ]
    assert [c.number for c in answerer.citations("An answer citing nothing.", hits)] == [1, 2, 3]
    assert answerer.citations("No information found.", hits) == ()


@pytest.mark.parametrize(
    "options",
    [{"base_url": "localhost:11434"}, {"model": ""}, {"timeout": 0}, {"max_retries": -1}],
)
def test_llm_settings_refuse_values_that_cannot_work(options: dict[str, Any]) -> None:
    from ragflow.errors import ConfigError

    values: dict[str, Any] = {
        "base_url": "http://localhost:11434/v1",
        "api_key": None,
        "model": "m",
        **options,
    }
    with pytest.raises(ConfigError):
        LLMSettings(**values)
