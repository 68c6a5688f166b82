"""What a scoped API key may see: a glob on ``path`` and/or a metadata filter, ANDed into every filter the
key's requests carry, so that a client's filter can narrow the scope but never widen it.

The store takes filters as text (so the index can cache what a filter matched). A scope and a client's
filter are joined as ``(scope) && (client)``, and the join is checked by parsing it back: it must be an
``and`` of exactly the two parsed expressions, or the request is refused. No client text can therefore
escape its parentheses, and a scope's glob becomes a JSON literal in ``globmatch``, never filter syntax.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping
from typing import Any

import jmespath
from jmespath import exceptions as jmespath_errors

from ragflow.errors import ConfigError, FilterError
from ragflow.filters import MetadataFilter, compile_filter

__all__ = ["Scope"]


class Scope:
    """Documents whose ``path`` matches ``filepath_globpattern`` and whose metadata passes
    ``metadata_filter`` (the retrieve request's filter language), both when both are given.

    Example:
        >>> scope = Scope("**/support/**", None)
        >>> scope.allows({"path": "/docs/support/faq.md"}), scope.allows({"path": "/docs/hr/pay.md"})
        (True, False)
        >>> expression, glob = scope.narrow("team == 'a'", "*.md")
        >>> glob
        '*.md'

    Raises:
        ConfigError: neither is given, or one does not parse.
    """

    __slots__ = ("_parsed", "_predicate", "expression", "filepath_globpattern", "metadata_filter")

    def __init__(self, filepath_globpattern: str | None, metadata_filter: str | None) -> None:
        self.filepath_globpattern = filepath_globpattern or None
        self.metadata_filter = (metadata_filter or "").strip() or None
        try:
            predicate = compile_filter(self.metadata_filter, self.filepath_globpattern)
        except FilterError as exc:
            raise ConfigError(f"invalid key scope: {exc}") from None
        if predicate is None:
            raise ConfigError("a key scope needs filepath_globpattern or metadata_filter")
        self._predicate: MetadataFilter = predicate
        parts = []
        if self.filepath_globpattern is not None:
            parts.append(f"globmatch({_json_literal(self.filepath_globpattern)}, path)")
        if self.metadata_filter is not None:
            # compared with true: a scope matches only where its filter is true, as MetadataFilter does,
            # so that the `&&` below cannot pass a merely truthy value on to the client's filter
            parts.append(f"(({self.metadata_filter}) == `true`)")
        self.expression = " && ".join(parts)
        """The scope as one filter expression (its glob turned into ``globmatch``)."""
        self._parsed = _parse(self.expression)
        if self.filepath_globpattern is not None and _glob_literal(self._parsed) != self.filepath_globpattern:
            raise ConfigError(f"key scope glob {self.filepath_globpattern!r} cannot be written as a filter")

    def allows(self, metadata: Mapping[str, Any]) -> bool:
        """Whether a document with ``metadata`` is inside the scope."""
        return self._predicate(metadata)

    def narrow(self, metadata_filter: str | None, filepath_globpattern: str | None) -> tuple[str, str | None]:
        """A client's two filter parameters ANDed with this scope: ``(metadata_filter, glob)`` to pass on.

        Raises:
            FilterError: the client's filter or glob does not parse (a 400 naming it), or the joined
                expression does not parse as the AND of the two (refused rather than trusted).
        """
        client = (metadata_filter or "").strip() or None
        compile_filter(client, filepath_globpattern)  # the client's own errors, worded as usual
        if client is None:
            return self.expression, filepath_globpattern
        joined = f"({self.expression}) && ({client})"
        expected = {"type": "and_expression", "children": [self._parsed, _parse(client)], "value": None}
        parsed = _parse(joined)
        if {**parsed, "value": None} != expected:
            raise FilterError(
                f"invalid metadata filter {client!r}: it cannot be combined with this key's scope; "
                "send a complete expression"
            )
        return joined, filepath_globpattern

    def __repr__(self) -> str:
        return f"Scope({self.filepath_globpattern!r}, {self.metadata_filter!r})"


def _json_literal(text: str) -> str:
    """``text`` as a JMESPath JSON literal (backticks inside it escaped as the lexer expects)."""
    return "`" + json.dumps(text).replace("`", "\\`") + "`"


def _parse(expression: str) -> dict[str, Any]:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PendingDeprecationWarning)  # Pathway's legacy `literals`
            parsed: Any = jmespath.compile(expression).parsed
    except jmespath_errors.JMESPathError as exc:
        raise FilterError(f"invalid metadata filter {expression!r}: {exc}") from None
    return dict(parsed)


def _glob_literal(parsed: dict[str, Any]) -> Any:
    """The pattern of the leading ``globmatch(literal, path)`` of a parsed scope expression."""
    node = parsed
    while node.get("type") == "and_expression":
        node = node["children"][0]
    return node["children"][0].get("value") if node.get("type") == "function_expression" else None


def in_scope_ids(statuses: list[Any], scope: Scope) -> set[str]:
    """The ids of the documents of ``statuses`` inside ``scope``."""
    return {s.doc_id for s in statuses if scope.allows(s.metadata)}
