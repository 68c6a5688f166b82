"""Finding sources and indexes by name through entry points, so ragflow never imports a concrete one and
third parties can add their own (entry point groups ``ragflow.connectors`` and ``ragflow.indexers``)."""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Any

from .errors import ConfigError

__all__ = ["available", "load_connector", "load_indexer"]

CONNECTORS = "ragflow.connectors"
INDEXERS = "ragflow.indexers"


def available(group: str) -> list[str]:
    """The names registered in an entry point group, sorted."""
    return sorted({ep.name for ep in entry_points(group=group)})


def _load(group: str, name: str, what: str) -> Any:
    matches = [ep for ep in entry_points(group=group) if ep.name == name]
    if not matches:
        known = ", ".join(available(group)) or "none"
        raise ConfigError(
            f"unknown {what} {name!r}: installed {what}s are {known}. "
            f"If {name!r} comes from an optional extra or another package, install it (e.g. pip install "
            f"'ragflow[{name}]') so it registers under the entry point group {group!r}."
        )
    try:
        return matches[0].load()
    except ImportError as exc:
        raise ConfigError(
            f"{what} {name!r} is registered but cannot be imported ({exc}); install its dependencies, "
            f"e.g. pip install 'ragflow[{name}]'"
        ) from exc


def load_connector(name: str) -> Any:
    """The source class registered as ``name`` (e.g. ``"folder"``)."""
    return _load(CONNECTORS, name, "source")


def load_indexer(name: str) -> Any:
    """The vector index class registered as ``name`` (e.g. ``"faiss"``)."""
    return _load(INDEXERS, name, "index")
