"""Question answering over a document store: retrieve the best chunks, ask an OpenAI-compatible LLM with
numbered sources, and return its answer with citations (path, page, character span). Without an LLM, an
extractive answer quoted from the best passages, labelled as such, with the same citations. LLM failures
raise ``ragflow.errors.LLMError`` (re-exported here)."""

from __future__ import annotations

import asyncio
import functools
import re
import threading
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from .documents import Hit
from .errors import ConfigError, LLMError
from .parsers import LOCATION_FIELDS

if TYPE_CHECKING:
    import openai

__all__ = [
    "EXTRACTIVE_LABEL",
    "NO_ANSWER",
    "Answer",
    "Answerer",
    "ChatTurn",
    "Citation",
    "LLMError",
    "LLMSettings",
    "Retriever",
]

NO_ANSWER = "No information found."
"""What the LLM is told to say, and what is answered, when the sources do not hold the answer."""

EXTRACTIVE_LABEL = (
    "Extractive answer (no language model is configured; quoted from the best-matching passages):"
)

SYSTEM_PROMPT = (
    "You answer questions using only the numbered sources you are given. Cite every source you use with "
    "its number in square brackets, like [1] or [2][3]. Be concise. If the sources do not contain the "
    f'answer, reply exactly "{NO_ANSWER}" and nothing else.'
)

_WORD = re.compile(r"\w+")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n\s*\n")
_CITATION = re.compile(r"\[(\d{1,3})\]")
_MIN_SENTENCE_WORDS = 4
_STOPWORDS = frozenset(
    "a an and are as at be by can did do does for from has have how i in is it its of on or so that the "
    "their there this to was were what when where which who why will with you your".split()
)


@dataclass(frozen=True, slots=True)
class LLMSettings:
    """How to reach an OpenAI-compatible chat completions API (OpenAI, vLLM, Ollama, llama.cpp...).

    ``timeout`` is per attempt in seconds; a failed attempt (timeout, connection error, HTTP 408/409/429/5xx)
    is retried ``max_retries`` times with backoff by the ``openai`` client.
    """

    base_url: str
    api_key: str | None
    model: str
    timeout: float = 30.0
    max_retries: int = 2
    temperature: float = 0.0

    def __post_init__(self) -> None:
        if not self.base_url.startswith(("http://", "https://")):
            raise ConfigError(
                f"LLM base_url must be an http(s) URL such as http://localhost:11434/v1, got "
                f"{self.base_url!r}"
            )
        if not self.model:
            raise ConfigError("LLM model must be named (e.g. 'gpt-4o-mini' or 'llama3.1')")
        if self.timeout <= 0 or self.max_retries < 0:
            raise ConfigError(
                f"LLM timeout must be > 0 and max_retries >= 0, got {self.timeout} and {self.max_retries}"
            )


@dataclass(frozen=True, slots=True)
class Citation:
    """One numbered source an answer relies on, with where its text sits in the parsed document."""

    number: int
    doc_id: str | None
    path: str | None
    page: int | None
    start: int | None
    end: int | None
    text: str
    dist: float
    location: Mapping[str, Any] = field(default_factory=dict)
    """Where inside the document the passage is, as its parser says (``slide``, ``sheet`` and ``rows``,
    ``section``, ``cell``, ``chapter``, ``attachment``...: ragflow.parsers.LOCATION_FIELDS)."""

    @classmethod
    def of(cls, number: int, hit: Hit) -> Citation:
        meta = hit.metadata
        return cls(
            number,
            _optional_str(meta.get("doc_id")),
            _optional_str(meta.get("path")),
            _optional_int(meta.get("page_number")),
            _optional_int(meta.get("start")),
            _optional_int(meta.get("end")),
            hit.text,
            float(hit.dist),
            _location(meta),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "doc_id": self.doc_id,
            "path": self.path,
            "page": self.page,
            "start": self.start,
            "end": self.end,
            "text": self.text,
            "dist": self.dist,
            "location": dict(self.location),
        }


@dataclass(frozen=True, slots=True)
class Answer:
    """An answer, the sources it was given (numbered from 1 in this order) and those it cites."""

    text: str
    citations: tuple[Citation, ...]
    sources: tuple[Hit, ...]
    extractive: bool
    found: bool
    model: str | None


@dataclass(frozen=True, slots=True)
class ChatTurn:
    """A message of a conversation (``role`` is ``system``, ``user`` or ``assistant``)."""

    role: str
    content: str


class Retriever(Protocol):
    """What answering needs from a store (``DocumentStore`` is one)."""

    def retrieve(
        self,
        query: str,
        k: int = 3,
        metadata_filter: str | None = None,
        filepath_globpattern: str | None = None,
    ) -> list[Hit]: ...


class Answerer:
    """Answers questions from a store's documents, with an LLM if one is configured.

    Args:
        store: Where the sources come from.
        llm: The chat model; ``None`` answers extractively.
        k: Sources given to the model (the most asked for in adaptive mode).
        adaptive: Ask with ``first_k`` sources, then ``factor`` times more, up to ``k``, until the model
            answers something other than ``NO_ANSWER`` (cheap questions stay cheap).

    Example:
        >>> llm = LLMSettings("http://localhost:11434/v1", None, "llama3.1")
        >>> answerer = Answerer(store, llm)  # doctest: +SKIP
        >>> answerer.answer("Who maintains the harbor lantern?").citations[0].path  # doctest: +SKIP
        '/docs/harbor.md'
    """

    def __init__(
        self,
        store: Retriever,
        llm: LLMSettings | None = None,
        *,
        k: int = 6,
        adaptive: bool = False,
        first_k: int = 2,
        factor: int = 2,
    ) -> None:
        if k < 1 or first_k < 1 or factor < 2:
            raise ConfigError(
                f"answering needs k >= 1, first_k >= 1 and factor >= 2, got {k}, {first_k}, {factor}"
            )
        self.store = store
        self.llm = llm
        self.k = k
        self.adaptive = adaptive
        self.first_k = first_k
        self.factor = factor
        self._client: openai.OpenAI | None = None
        self._client_lock = threading.Lock()

    # -- answering ------------------------------------------------------------------------------

    def answer(
        self,
        question: str,
        *,
        metadata_filter: str | None = None,
        filepath_globpattern: str | None = None,
        model: str | None = None,
        k: int | None = None,
        adaptive: bool | None = None,
        history: Sequence[ChatTurn] = (),
    ) -> Answer:
        """Answer ``question`` from the ``k`` best chunks passing the filters.

        Raises:
            FilterError: a filter is invalid.
            LLMError: the LLM failed; the message names its base URL and model.
        """
        hits = self.store.retrieve(question, k or self.k, metadata_filter, filepath_globpattern)
        if self.llm is None:
            return extractive_answer(question, hits)
        if not (self.adaptive if adaptive is None else adaptive):
            return self._ask(question, hits, model, history)
        for n in self._schedule(len(hits)):
            answer = self._ask(question, hits[:n], model, history)
            if answer.found:
                break
        return answer

    def stream(
        self,
        question: str,
        *,
        metadata_filter: str | None = None,
        filepath_globpattern: str | None = None,
        model: str | None = None,
        k: int | None = None,
        history: Sequence[ChatTurn] = (),
    ) -> tuple[list[Hit], Iterator[str]]:
        """The sources and an iterator over the answer's text as it is generated.

        The LLM is called before this returns, so a failure to reach it raises here; a failure in the
        middle of the answer raises ``LLMError`` from the iterator.
        """
        hits = self.store.retrieve(question, k or self.k, metadata_filter, filepath_globpattern)
        if self.llm is None:
            return hits, _pieces(extractive_answer(question, hits).text)
        settings = self.llm
        name = model or settings.model
        with self._llm_errors(name):
            chunks = self.client.chat.completions.create(
                model=name,
                messages=_messages(question, hits, history),  # type: ignore[arg-type]
                temperature=settings.temperature,
                stream=True,
            )
        return hits, self._deltas(chunks, name)

    async def aanswer(self, question: str, **options: Any) -> Answer:
        """``answer`` (same keyword arguments) without blocking the event loop: retrieval and the LLM call
        run on a worker thread."""
        return await asyncio.to_thread(functools.partial(self.answer, question, **options))

    async def astream(self, question: str, **options: Any) -> tuple[list[Hit], AsyncIterator[str]]:
        """``stream`` (same keyword arguments) without blocking the event loop: the sources, and the
        answer's text as it is generated, each piece read from the LLM on a worker thread."""
        hits, pieces = await asyncio.to_thread(functools.partial(self.stream, question, **options))
        return hits, _off_loop(pieces)

    def citations(self, text: str, hits: Sequence[Hit]) -> tuple[Citation, ...]:
        """The sources ``text`` cites as ``[n]``; all of them if it cites none (and none if it is
        ``NO_ANSWER``)."""
        if not _is_no_answer(text):
            numbers = sorted({int(n) for n in _CITATION.findall(text) if 1 <= int(n) <= len(hits)})
            return tuple(Citation.of(n, hits[n - 1]) for n in (numbers or range(1, len(hits) + 1)))
        return ()

    def summarize(self, texts: Sequence[str], model: str | None = None) -> str:
        """A short summary of ``texts`` (extractive, and labelled so, without an LLM)."""
        if self.llm is None:
            firsts = [_sentences(text)[0] for text in texts if text.strip()]
            return "Extractive summary (no language model is configured): " + " ".join(firsts)
        listing = "\n\n".join(f"- {text}" for text in texts)
        prompt = f"Summarize the following texts in a few sentences.\n\n{listing}"
        return self._complete([{"role": "user", "content": prompt}], model or self.llm.model)

    # -- the LLM --------------------------------------------------------------------------------

    @property
    def client(self) -> openai.OpenAI:
        """The ``openai`` client for ``llm`` (made on first use)."""
        if self.llm is None:
            raise ConfigError("no LLM is configured")
        with self._client_lock:
            if self._client is None:
                import openai

                self._client = openai.OpenAI(
                    base_url=self.llm.base_url,
                    api_key=self.llm.api_key or "not-needed",
                    timeout=self.llm.timeout,
                    max_retries=self.llm.max_retries,
                )
            return self._client

    def _ask(self, question: str, hits: list[Hit], model: str | None, history: Sequence[ChatTurn]) -> Answer:
        assert self.llm is not None
        name = model or self.llm.model
        text = self._complete(_messages(question, hits, history), name)
        found = not _is_no_answer(text)
        return Answer(text, self.citations(text, hits), tuple(hits), False, found, name)

    def _schedule(self, available: int) -> list[int]:
        """How many sources each adaptive attempt gets: first_k, first_k * factor, ... then all."""
        limit, sizes, n = min(self.k, available), [], self.first_k
        while n < limit:
            sizes.append(n)
            n *= self.factor
        return [*sizes, limit]

    def _complete(self, messages: list[dict[str, str]], model: str) -> str:
        settings = self.llm
        assert settings is not None
        with self._llm_errors(model):
            completion = self.client.chat.completions.create(
                model=model,
                messages=messages,  # type: ignore[arg-type]
                temperature=settings.temperature,
            )
            choices = getattr(completion, "choices", None)
            content = choices[0].message.content if choices else None
        if not isinstance(content, str):
            raise LLMError(
                f"the LLM at {settings.base_url} (model {model!r}) answered something that is not a chat "
                f"completion: {str(completion)[:200]!r}"
            )
        return content.strip()

    def _deltas(self, chunks: Iterable[Any], model: str) -> Iterator[str]:
        finished = False
        with self._llm_errors(model):
            for chunk in chunks:
                choices = getattr(chunk, "choices", None)
                if choices:
                    finished = finished or choices[0].finish_reason is not None
                    delta = getattr(choices[0].delta, "content", None)
                    if delta:
                        yield delta
        if not finished:
            assert self.llm is not None
            raise LLMError(
                f"the LLM at {self.llm.base_url} (model {model!r}) ended its streamed answer before "
                "finishing it (no finish_reason): the connection was cut"
            )

    def _llm_errors(self, model: str) -> _LLMErrors:
        assert self.llm is not None
        return _LLMErrors(self.llm, model)


class _LLMErrors:
    """Turns whatever the ``openai`` client raises into an ``LLMError`` naming the endpoint and model."""

    def __init__(self, settings: LLMSettings, model: str) -> None:
        self.settings = settings
        self.model = model

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        if exc is None or isinstance(exc, LLMError) or not isinstance(exc, Exception):
            return
        import openai

        where = f"the LLM at {self.settings.base_url} (model {self.model!r})"
        tries = f"{self.settings.max_retries + 1} attempt(s)"
        if isinstance(exc, openai.APITimeoutError):
            message = f"{where} did not answer within {self.settings.timeout:g} s ({tries})"
        elif isinstance(exc, openai.APIStatusError):
            message = f"{where} answered HTTP {exc.status_code}: {_upstream_message(exc)}"
        elif isinstance(exc, openai.APIConnectionError):
            cause = exc.__cause__ or exc
            message = f"{where} could not be reached ({tries}): {type(cause).__name__}: {cause}"
        else:
            message = f"{where} answered something that is not a chat completion: {type(exc).__name__}: {exc}"
        raise LLMError(message) from exc


# -- prompts and extractive answers ---------------------------------------------------------------


def _messages(question: str, hits: Sequence[Hit], history: Sequence[ChatTurn]) -> list[dict[str, str]]:
    sources = "\n\n".join(f"[{i}] {_source_label(hit)}\n{hit.text}" for i, hit in enumerate(hits, 1))
    user = f"Sources:\n\n{sources or '(no sources matched)'}\n\nQuestion: {question}"
    turns = [{"role": t.role, "content": t.content} for t in history]
    return [{"role": "system", "content": SYSTEM_PROMPT}, *turns, {"role": "user", "content": user}]


def _source_label(hit: Hit) -> str:
    label = str(hit.metadata.get("path") or hit.metadata.get("doc_id") or "unknown")
    location = _location(hit.metadata).items()
    where = ", ".join(f"{key.removesuffix('_number').replace('_', ' ')} {value}" for key, value in location)
    return f"{label} ({where})" if where else label


def _location(metadata: Mapping[str, Any]) -> dict[str, Any]:
    return {key: metadata[key] for key in LOCATION_FIELDS if metadata.get(key) is not None}


def extractive_answer(question: str, hits: Sequence[Hit], max_sentences: int = 3) -> Answer:
    """An answer quoted from ``hits``: the sentences sharing most words with ``question`` (ties go to the
    better-ranked source), each followed by its source number; labelled with ``EXTRACTIVE_LABEL``."""
    if not hits:
        return Answer(NO_ANSWER, (), (), True, False, None)
    wanted = _keywords(question)
    scored = []
    for rank, hit in enumerate(hits):
        for position, sentence in enumerate(_sentences(hit.text)):
            overlap = len(wanted & _keywords(sentence))
            scored.append((-overlap, rank, position, sentence))
    # headings and fragments quote badly: prefer sentences of a few words
    scored.sort(key=lambda item: (len(item[3].split()) < _MIN_SENTENCE_WORDS, *item))
    best = [item for item in scored if item[0] < 0][:max_sentences] or scored[:1]
    best.sort(key=lambda item: (item[1], item[2]))
    lines = [f"- {sentence} [{rank + 1}]" for _, rank, _, sentence in best]
    numbers = sorted({rank + 1 for _, rank, _, _ in best})
    citations = tuple(Citation.of(n, hits[n - 1]) for n in numbers)
    return Answer("\n".join([EXTRACTIVE_LABEL, *lines]), citations, tuple(hits), True, True, None)


async def _off_loop(pieces: Iterator[str]) -> AsyncIterator[str]:
    while (piece := await asyncio.to_thread(next, pieces, None)) is not None:
        yield piece


def _pieces(text: str) -> Iterator[str]:
    """``text`` in word-sized pieces, as a streamed answer arrives."""
    yield from re.findall(r"\S+\s*|\s+", text)


def _sentences(text: str) -> list[str]:
    found = [" ".join(s.split()) for s in _SENTENCE_END.split(text)]
    return [s for s in found if s] or [" ".join(text.split())]


def _keywords(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.lower()) if len(w) > 2 and w not in _STOPWORDS}


def _is_no_answer(text: str) -> bool:
    normalized = " ".join(_WORD.findall(text.lower()))
    return normalized.startswith(" ".join(_WORD.findall(NO_ANSWER.lower())))


def _upstream_message(exc: Any) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, Mapping):
        error = body.get("error", body)
        if isinstance(error, Mapping) and error.get("message"):
            return str(error["message"])[:300]
    return str(getattr(exc, "message", exc))[:300]


def _optional_int(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _optional_str(value: Any) -> str | None:
    return str(value) if value is not None else None
