"""The YAML reader: configuration text to plain data, remembering the line of every key and replacing
``${ENV}`` references in values (and which values came wholly from the environment), so that every later
problem can name its line and a secret written in the file can be told from one given by the environment."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

import yaml

from .problems import ConfigProblem, InvalidConfigError, Location, Origin, format_path

__all__ = ["YamlReader"]

_REFERENCE = re.compile(r"\$\$\{|\$\{(?:(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\})?")
_MERGE_TAG = "tag:yaml.org,2002:merge"


class YamlReader:
    """Turns YAML text into plain data via the node tree, so that every key keeps its line, replacing
    ``${ENV}`` references inside scalar values (never in comments or keys)."""

    def __init__(self, origin: Origin, environ: Mapping[str, str]) -> None:
        self.origin = origin
        self.lines = origin.lines
        self.environ = environ
        self.problems: list[ConfigProblem] = []
        self.loader = yaml.SafeLoader("")

    def read(self, text: str) -> Any:
        try:
            node = yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            line = mark.line + 1 if mark is not None else None
            reason = " ".join(str(getattr(exc, "problem", None) or exc).split())
            problem = ConfigProblem(self.origin.file, line, "", f"invalid YAML: {reason}")
            raise InvalidConfigError([problem]) from None
        data = None if node is None else self._value(node, ())
        if self.problems:
            raise InvalidConfigError(self.problems)
        return data

    def _value(self, node: yaml.Node, loc: Location) -> Any:
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, loc)
        if isinstance(node, yaml.SequenceNode):
            items = []
            for i, child in enumerate(node.value):
                self.lines[(*loc, i)] = child.start_mark.line + 1
                items.append(self._value(child, (*loc, i)))
            return items
        return self._scalar(node, loc)

    def _mapping(self, node: yaml.MappingNode, loc: Location) -> dict[str, Any]:
        result: dict[str, Any] = {}
        first_line: dict[str, int] = {}
        for key_node, value_node, merged in _entries(node):
            if not isinstance(key_node, yaml.ScalarNode):
                self._problem(key_node, loc, "a key must be a plain name, not a list or mapping")
                continue
            key = str(self.loader.construct_object(key_node))
            line = key_node.start_mark.line + 1
            if key in result:
                if merged:
                    continue  # a key given explicitly wins over one merged in with <<
                self._problem(key_node, (*loc, key), f"duplicate key (first given on line {first_line[key]})")
                continue
            first_line[key] = line
            self.lines[(*loc, key)] = line
            result[key] = self._value(value_node, (*loc, key))
        return result

    def _scalar(self, node: yaml.Node, loc: Location) -> Any:
        if "${" not in node.value:
            return self._construct(node, loc)
        text = self._interpolate(node.value, node, loc)
        if self.origin.from_environment is not None and self._wholly_from_environment(node.value):
            self.origin.from_environment.add(loc)
        if getattr(node, "style", None) is None and text == "":
            return None  # an unquoted reference to an empty value is YAML's empty value: null
        return text

    def _construct(self, node: yaml.Node, loc: Location) -> Any:
        try:
            return self.loader.construct_object(node, deep=True)
        except yaml.YAMLError as exc:
            self._problem(node, loc, f"invalid value: {getattr(exc, 'problem', None) or exc}")
            return None

    def _interpolate(self, value: str, node: yaml.Node, loc: Location) -> str:
        def replace(match: re.Match[str]) -> str:
            if match.group(0) == "$${":
                return "${"
            name, default = match.group("name"), match.group("default")
            if name is None:
                snippet = value[match.start() : match.start() + 20]
                self._problem(
                    node,
                    loc,
                    f"malformed reference {snippet!r}: write ${{NAME}} or ${{NAME:-default}} "
                    "(and $${ for a literal ${)",
                )
                return ""
            found = self.environ.get(name)
            if default is not None and not found:
                return default
            if found is None:
                self._problem(
                    node,
                    loc,
                    f"environment variable {name} is not set; "
                    f"set it, or give a default: ${{{name}:-default}}",
                )
                return ""
            return found

        return _REFERENCE.sub(replace, value)

    def _wholly_from_environment(self, value: str) -> bool:
        """Whether ``value`` is one ``${NAME}`` whose text the environment gave (not its default): then no
        part of what it stands for is written in the file."""
        match = _REFERENCE.fullmatch(value)
        name = match.group("name") if match is not None else None
        if match is None or name is None:
            return False
        found = self.environ.get(name)
        return found is not None and (match.group("default") is None or found != "")

    def _problem(self, node: yaml.Node, loc: Location, message: str) -> None:
        line = node.start_mark.line + 1
        self.problems.append(ConfigProblem(self.origin.file, line, format_path(loc), message))


def _entries(node: yaml.MappingNode) -> Iterator[tuple[yaml.Node, yaml.Node, bool]]:
    """A mapping's (key, value, merged) pairs: its own first, then those merged in with ``<<``."""
    merges = []
    for key_node, value_node in node.value:
        if key_node.tag == _MERGE_TAG:
            merges.append(value_node)
        else:
            yield key_node, value_node, False
    for merge in merges:
        sources = merge.value if isinstance(merge, yaml.SequenceNode) else [merge]
        for source in sources:
            if isinstance(source, yaml.MappingNode):
                for key_node, value_node, _ in _entries(source):
                    yield key_node, value_node, True
