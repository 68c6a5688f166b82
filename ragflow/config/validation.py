"""Validation of plain configuration data, section by section: every problem is collected, with its line
and key path and what is allowed there, before one ``InvalidConfigError`` lists them all."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ..errors import ConfigError
from .factories import find_factory, known_kinds, plugin_signature
from .problems import (
    ConfigProblem,
    InvalidConfigError,
    Location,
    Origin,
    did_you_mean,
    kind_of,
    value_message,
)
from .sections import (
    DEFAULT_KINDS,
    PLUGIN_SECTIONS,
    SECTION_NAMES,
    STATIC_SECTIONS,
    PersistenceConfig,
    PluginConfig,
    Section,
    ServerConfig,
    SourceConfig,
)

__all__ = ["Validator"]

log = logging.getLogger("ragflow.config")


class Validator:
    """Checks plain configuration data section by section, collecting every problem before raising."""

    def __init__(self, origin: Origin) -> None:
        self.origin = origin
        self.problems: list[ConfigProblem] = []

    def sections(self, data: dict[str, Any]) -> dict[str, Any]:
        """The validated sections of ``data``, for ``RagflowConfig.model_validate``."""
        sections: dict[str, Any] = {}
        for key, value in data.items():
            if key.startswith("x-"):
                continue  # extension keys hold YAML anchors for reuse, as in Docker Compose files
            if key not in SECTION_NAMES:
                self._unknown_key((key,), key, SECTION_NAMES, "")
            elif key == "sources":
                sections[key] = self._sources(value)
            elif key in ("embedder", "index"):
                sections[key] = self._plugin((key,), value, key)
            elif value is not None or key == "llm":
                sections[key] = self._static((key,), STATIC_SECTIONS[key], value)
                if isinstance(sections[key], ServerConfig):
                    sections[key] = self._server(sections[key])
        if self.problems:
            raise InvalidConfigError(self.problems)
        sections = {key: value for key, value in sections.items() if value is not None}
        persistence = sections.get("persistence")
        if persistence is not None and persistence.migration_gate is not None:
            gate = persistence.migration_gate
            gate = gate.model_copy(update={"eval_set": str(self._resolve(gate.eval_set))})
            sections["persistence"] = persistence = persistence.model_copy(update={"migration_gate": gate})
        if persistence is not None and persistence.state_dir is not None:
            state_dir = str(self._resolve(persistence.state_dir))
            sections["persistence"] = persistence.model_copy(update={"state_dir": state_dir})
        elif persistence is None:
            sections["persistence"] = PersistenceConfig(state_dir=str(self._resolve(".ragflow")))
        return sections

    def _sources(self, value: Any) -> list[SourceConfig] | None:
        if value is None:
            return []
        if not isinstance(value, list):
            self._add(
                ("sources",), f"expected a list of sources ('- kind: folder' items), got {kind_of(value)}"
            )
            return None
        built = [self._plugin(("sources", i), item, "source") for i, item in enumerate(value)]
        return [source for source in built if isinstance(source, SourceConfig)]

    def _plugin(self, loc: Location, value: Any, role: str) -> PluginConfig | None:
        model = PLUGIN_SECTIONS[role]
        if value is None:
            value = {}
        if not isinstance(value, dict):
            self._add(loc, f"expected a mapping with 'kind' and the {role}'s options, got {kind_of(value)}")
            return None
        options = dict(value)
        kind = options.pop("kind", DEFAULT_KINDS[role])
        if not isinstance(kind, str):
            known = ", ".join(known_kinds(role))
            if "kind" in value:
                self._add(
                    (*loc, "kind"), f"expected the name of a {role} kind ({known}), got {value['kind']!r}"
                )
            else:
                self._add(loc, f"missing required key 'kind': the {role} type, one of {known}")
            return None
        factory = self._factory(loc, role, kind)
        if factory is None:
            return None
        signature = plugin_signature(factory, kind, frozenset({"dim"}) if role == "index" else frozenset())
        try:
            checked = signature.model.model_validate(options).model_dump(exclude_unset=True)
        except ValidationError as exc:
            self._pydantic_problems(
                loc, value, exc, ("kind", *signature.model.model_fields), f"a {kind!r} {role}"
            )
            return None
        for key in signature.path_keys & checked.keys():
            if checked[key] is not None:
                checked[key] = str(self._resolve(checked[key]))
        return model(kind=kind, options=checked)

    def _server(self, server: ServerConfig) -> ServerConfig:
        """``server`` with its file paths taken from the configuration's folder; a named key's secret
        written in the file is a problem, the single legacy ``api_key`` written there a warning."""
        for i, entry in enumerate(server.api_keys):
            if entry.key not in (None, "") and not self._from_environment(("server", "api_keys", i, "key")):
                variable = re.sub(r"[^A-Za-z0-9]+", "_", entry.name).upper() + "_KEY"
                self._add(
                    ("server", "api_keys", i, "key"),
                    f"API key {entry.name!r}: the secret is written in the configuration file, where "
                    f"whoever reads the file can use it. Give it from the environment (key: ${{{variable}}} "
                    f"and set {variable}), from a file (key_file: /run/secrets/{entry.name}) or as its hex "
                    "SHA-256 (key_sha256), and change the secret if the file has been shared",
                )
        if server.api_key and not self._from_environment(("server", "api_key")):
            log.warning(
                "%s",
                self.origin.problem(
                    ("server", "api_key"),
                    "the API key is written in the configuration file, where whoever reads the file can "
                    "use it as an admin key. Write api_key: ${RAGFLOW_API_KEY} and set RAGFLOW_API_KEY, or "
                    "use server.api_keys with key_file (docs/security.md). Accepted, as earlier versions did",
                ),
            )
        keys = [
            entry.model_copy(update={"key_file": str(self._resolve(entry.key_file))})
            if entry.key_file is not None
            else entry
            for entry in server.api_keys
        ]
        paths = {
            name: str(self._resolve(path))
            for name in ("audit_log", "tls_cert", "tls_key")
            if (path := getattr(server, name)) is not None
        }
        return server.model_copy(update={"api_keys": keys, **paths})

    def _from_environment(self, loc: Location) -> bool:
        """Whether the value at ``loc`` came wholly from the environment (or cannot be told: no text)."""
        return self.origin.from_environment is None or loc in self.origin.from_environment

    def _factory(self, loc: Location, role: str, kind: str) -> Callable[..., Any] | None:
        kinds = known_kinds(role)
        suggestion = did_you_mean(kind, kinds)
        if kind not in kinds and (suggestion or role == "embedder"):
            # A typo: the plugin loader's advice to install a package named like it would mislead.
            self._add(
                (*loc, "kind"), f"unknown {role} kind {kind!r}.{suggestion} Known kinds: {', '.join(kinds)}"
            )
            return None
        try:
            return find_factory(role, kind)
        except ConfigError as exc:
            self._add((*loc, "kind"), str(exc))
            return None

    def _static(self, loc: Location, model: type[Section], value: Any) -> Section | None:
        if value is None:
            return None
        try:
            return model.model_validate(value)
        except ValidationError as exc:
            self._pydantic_problems(loc, value, exc, tuple(model.model_fields), f"section {loc[0]!r}")
            return None

    def _pydantic_problems(
        self, loc: Location, data: Any, exc: ValidationError, allowed: Sequence[str], owner: str
    ) -> None:
        for error in exc.errors(include_url=False):
            path = _data_path(data, error["loc"])
            kind = error["type"]
            if kind == "extra_forbidden":
                key = str(path[-1])
                self._unknown_key((*loc, *path), key, allowed, f" for {owner}")
            elif kind == "missing":
                missing = error["loc"][len(path)]
                self._add((*loc, *path, missing), f"missing required key {missing!r} for {owner}")
            elif kind in ("model_type", "dict_type") and not path:
                self._add(loc, f"expected a mapping of keys, got {kind_of(data)}")
            else:
                self._add((*loc, *path), value_message(error, path))

    def _unknown_key(self, loc: Location, key: str, allowed: Sequence[str], owner: str) -> None:
        self._add(
            loc,
            f"unknown key {key!r}{owner}.{did_you_mean(key, allowed)} Allowed keys: {', '.join(allowed)}",
        )

    def _add(self, loc: Location, message: str) -> None:
        self.problems.append(self.origin.problem(loc, message))

    def _resolve(self, path: str) -> Path:
        expanded = Path(path).expanduser()
        return expanded if expanded.is_absolute() else (self.origin.base_dir / expanded).resolve()


def _data_path(data: Any, loc: Sequence[str | int]) -> Location:
    """The part of a pydantic error location that exists in the data (dropping union member tags)."""
    path: list[str | int] = []
    node = data
    for part in loc:
        in_mapping = isinstance(node, dict) and part in node
        in_list = isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
        if not (in_mapping or in_list):
            break
        node = node[part]
        path.append(part)
    return tuple(path)
