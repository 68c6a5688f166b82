"""What one request may cost: the longest query, answer prompt and chat conversation, the deepest JSON body,
and how many requests of each class run at once (docs/rest-api.md, "Limits"). The caps answer 400 with the
limit in the message; the in-flight bounds are enforced by ``shedding.ShedLoad``."""

from __future__ import annotations

from dataclasses import dataclass

from ragflow.errors import ConfigError

from .errors import ApiError

__all__ = ["RequestLimits", "check_length", "length_error"]


@dataclass(frozen=True, slots=True)
class RequestLimits:
    """The server's per-request caps and in-flight bounds; ``server.*`` keys of the same names.

    The text caps are far above what the model can use (the local model reads ~1,000-2,000 characters of a
    query; the embedder cuts the rest before tokenizing, so a long query costs no more than a full window)
    and exist so that no request makes the server read, log and hold megabytes for nothing."""

    max_query_chars: int = 10_000
    """The longest ``query`` of a retrieval (and of the MCP and page searches)."""
    max_prompt_chars: int = 20_000
    """The longest ``prompt`` of ``/v2/answer`` (the LLM sees it with the sources)."""
    max_chat_chars: int = 100_000
    """The most text all the ``messages`` of one chat completion may hold together (history included)."""
    max_json_depth: int = 32
    """How deeply a JSON body may nest objects and arrays; deeper is a 400 before it is parsed."""
    max_inflight_queries: int = 24
    """Retrievals and other reads handled at once; more are answered 503 with ``Retry-After``."""
    max_inflight_answers: int = 4
    """Answers, summaries and chat completions handled at once (each may hold an LLM call)."""
    max_inflight_uploads: int = 8
    """Uploads and deletes handled at once."""

    def __post_init__(self) -> None:
        small = {name: value for name in self.__slots__ if (value := getattr(self, name)) < 1}
        if small:
            raise ConfigError(f"request limits must be at least 1, got {small}")

    @classmethod
    def of(cls, settings: object) -> RequestLimits:
        """The limits ``settings`` (the ``server`` section of a configuration) holds, by name."""
        return cls(**{name: getattr(settings, name) for name in cls.__slots__ if hasattr(settings, name)})

    def in_flight(self) -> dict[str, int]:
        """The in-flight bound of each route class (``shedding.ROUTE_CLASSES``)."""
        return {
            "query": self.max_inflight_queries,
            "answer": self.max_inflight_answers,
            "upload": self.max_inflight_uploads,
        }


def check_length(text: str, limit: int, param: str, setting: str) -> None:
    """A 400 naming ``param`` when ``text`` is longer than ``limit`` characters (``setting`` is the
    configuration key that raises it)."""
    message = length_error(text, limit, param, setting)
    if message is not None:
        raise ApiError(400, message, param=param)


def length_error(text: str, limit: int, param: str, setting: str) -> str | None:
    """What is wrong with ``text`` when it is longer than ``limit`` characters, else ``None``."""
    if len(text) <= limit:
        return None
    return (
        f"{param} is {len(text):,} characters long; this server accepts at most {limit:,} "
        f"(server.{setting}); send a shorter {param}"
    )
