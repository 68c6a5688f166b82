"""What is wrong in a configuration, and where: key paths, the lines they came from, the problems found
there, and the wording shared by every stage that finds one (reading, validating, building).

RagflowError
└── ConfigError
    └── InvalidConfigError   one or more ``ConfigProblem``, each with its file, line and key path
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ..errors import ConfigError

__all__ = [
    "ConfigProblem",
    "InvalidConfigError",
    "Location",
    "Origin",
    "did_you_mean",
    "first_message",
    "format_path",
    "kind_of",
    "value_message",
]

Location = tuple[str | int, ...]
"""A key path in the configuration: ``("sources", 0, "root")`` is ``sources[0].root``."""

_SECRET_KEY = re.compile(r"api_key|password|secret", re.I)


@dataclass(frozen=True, slots=True)
class ConfigProblem:
    """One thing wrong in a configuration: where (file, line, key path) and what."""

    file: str | None
    line: int | None
    path: str
    message: str

    def __str__(self) -> str:
        where = self.file or "configuration"
        if self.line is not None:
            where = f"{where}:{self.line}"
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class InvalidConfigError(ConfigError):
    """A configuration with one or more problems; ``problems`` lists them in file order."""

    def __init__(self, problems: Sequence[ConfigProblem]) -> None:
        self.problems = sorted(problems, key=lambda p: (p.line or 0, p.path))
        if len(self.problems) == 1:
            text = str(self.problems[0])
        else:
            listed = "\n".join(f"  {problem}" for problem in self.problems)
            text = f"{len(self.problems)} problems in the configuration:\n{listed}"
        super().__init__(text)


def format_path(loc: Location) -> str:
    """``("sources", 0, "root")`` -> ``"sources[0].root"``."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a configuration came from, to point errors found after validation at the right line."""

    file: str | None = None
    lines: dict[Location, int] = field(default_factory=dict)
    base_dir: Path = field(default_factory=Path.cwd)
    from_environment: set[Location] | None = None
    """Key paths whose whole value came from one ``${NAME}`` set in the environment (filled by the YAML
    reader); ``None`` when the configuration was not read from text, so where its values came from is
    unknown (``RagflowConfig.from_dict``)."""

    def line(self, loc: Location) -> int | None:
        for end in range(len(loc), 0, -1):
            if loc[:end] in self.lines:
                return self.lines[loc[:end]]
        return None

    def problem(self, loc: Location, message: str) -> ConfigProblem:
        return ConfigProblem(self.file, self.line(loc), format_path(loc), message)

    def error(self, loc: Location, message: str) -> InvalidConfigError:
        return InvalidConfigError([self.problem(loc, message)])


def value_message(error: Mapping[str, Any], path: Location) -> str:
    """A pydantic error at ``path`` in words, with the value given unless it is a secret or a whole
    mapping or list."""
    kind, message = error["type"], str(error["msg"])
    message = message.removeprefix("Value error, ")
    if kind == "sequence_str":
        return "expected a list of strings, got a single string: write it as a list, e.g. ['*.md']"
    value = error.get("input")
    name = str(path[-1]) if path else ""
    if _SECRET_KEY.search(name) or isinstance(value, dict | list):
        return message
    return f"{message} (got {value!r})"


def first_message(exc: ValidationError) -> str:
    """The first of ``exc``'s errors as ``key.path: message``."""
    error = exc.errors(include_url=False)[0]
    return f"{format_path(tuple(error['loc']))}: {value_message(error, tuple(error['loc']))}"


def did_you_mean(word: str, choices: Sequence[str]) -> str:
    """`` Did you mean 'x'?`` for the choice closest to a mistyped ``word``, or nothing."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" Did you mean {close[0]!r}?" if close else ""


def kind_of(value: Any) -> str:
    """What ``value`` is, for a message that says what was expected instead."""
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return f"{type(value).__name__} {value!r}"
