"""Plugin construction: which classes a ``kind`` can name, how a class's constructor becomes the keys of its
section (so a new source or index kind needs no change in the configuration code), and building a part
from its section."""

from __future__ import annotations

import functools
import inspect
import os
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any

from pydantic import BaseModel, ConfigDict, TypeAdapter, create_model

from ..errors import ConfigError
from ..plugins import available, load_connector, load_indexer
from .problems import Location, Origin
from .sections import PluginConfig

__all__ = ["PluginSignature", "build_plugin", "find_factory", "known_kinds", "plugin_signature"]

_RESERVED_KEYS = frozenset({"kind"})
"""Keys a plugin section uses itself; a constructor parameter of the same name is ``<plugin>_<name>``."""


def known_kinds(role: str) -> list[str]:
    """The kinds a ``role`` (``source``, ``embedder`` or ``index``) can name."""
    if role == "embedder":
        from ..embedders import EMBEDDER_KINDS

        return list(EMBEDDER_KINDS)
    return available("ragflow.connectors" if role == "source" else "ragflow.indexers")


def find_factory(role: str, kind: str) -> Callable[..., Any]:
    """What ``kind`` names for ``role``: a class or function that the options are passed to.

    Raises:
        ConfigError: no installed plugin registers ``kind`` (the plugin loader says what to install).
    """
    if role == "embedder":
        from ..embedders import EMBEDDER_KINDS

        return EMBEDDER_KINDS[kind]
    loader = load_connector if role == "source" else load_indexer
    factory: Callable[..., Any] = loader(kind)
    return factory


def build_plugin(origin: Origin, loc: Location, role: str, section: PluginConfig, **given: Any) -> Any:
    """The part that ``section`` (at ``loc``) configures, constructed with its options and ``given``; a
    constructor's refusal becomes a problem at ``loc``."""
    factory = find_factory(role, section.kind)
    signature = plugin_signature(factory, section.kind, frozenset(given))
    try:
        return factory(**signature.arguments(section.options), **given)
    except ConfigError as exc:
        raise origin.error(loc, str(exc)) from None


@dataclass(frozen=True)
class PluginSignature:
    """How a plugin constructor's parameters appear as configuration keys."""

    model: type[BaseModel]
    """Validates the options; extra keys are refused."""
    parameters: Mapping[str, str]
    """Configuration key -> constructor parameter (they differ only for reserved names like ``kind``)."""
    path_keys: frozenset[str]
    """Keys holding file system paths, resolved against the configuration file's folder."""

    def arguments(self, options: Mapping[str, Any]) -> dict[str, Any]:
        return {self.parameters[key]: value for key, value in options.items()}


@functools.lru_cache(maxsize=64)
def plugin_signature(factory: Callable[..., Any], kind: str, supplied: frozenset[str]) -> PluginSignature:
    """Read ``factory``'s constructor: every parameter but ``self``, ``*args``, ``**kwargs`` and those the
    caller ``supplied`` becomes an option, typed by its annotation (``Any`` where pydantic cannot check
    it) and required when it has no default."""
    hints = _parameter_hints(factory)
    fields: dict[str, Any] = {}
    parameters: dict[str, str] = {}
    path_keys = set()
    for name, parameter in inspect.signature(factory).parameters.items():
        if name in supplied or parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        key = f"{kind}_{name}" if name in _RESERVED_KEYS else name
        hint = hints.get(name, Any)
        if _is_path_hint(hint):
            hint = str | None if type(None) in typing.get_args(hint) else str
            path_keys.add(key)
        default = ... if parameter.default is parameter.empty else parameter.default
        fields[key] = (hint, default)
        parameters[key] = name
    model = create_model(
        f"{getattr(factory, '__name__', kind)}Options",
        __config__=ConfigDict(extra="forbid", arbitrary_types_allowed=True),
        **fields,
    )
    return PluginSignature(model, parameters, frozenset(path_keys))


def _parameter_hints(factory: Callable[..., Any]) -> dict[str, Any]:
    function = factory.__init__ if isinstance(factory, type) else factory  # type: ignore[misc]
    try:
        hints = typing.get_type_hints(function)
    except Exception:  # a name only imported for type checking: fall back to one hint at a time
        hints = {}
        namespace = getattr(function, "__globals__", {})
        for name, annotation in getattr(function, "__annotations__", {}).items():
            try:
                hints[name] = eval(annotation, namespace) if isinstance(annotation, str) else annotation
            except Exception:
                hints[name] = Any
    checkable = {}
    for name, hint in hints.items():
        try:
            TypeAdapter(hint, config=ConfigDict(arbitrary_types_allowed=True))
            checkable[name] = hint
        except Exception:
            checkable[name] = Any
    return checkable


def _is_path_hint(hint: Any) -> bool:
    for member in typing.get_args(hint) or (hint,):
        origin = typing.get_origin(member) or member
        if origin is os.PathLike or (isinstance(origin, type) and issubclass(origin, PurePath)):
            return True
    return False
