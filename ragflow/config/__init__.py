"""The YAML configuration of a ragflow deployment (sources, parser, splitter, embedder, index, LLM, server,
persistence), validated with errors that name the file, line and key, and built into a ``DocumentStore``.

Sources and indexes are found by name through entry points, and their options are checked against the
constructor of the class registered under that name, so a new source kind needs no change here.

The package's modules, one job each: ``sections`` (the pydantic section models), ``schema``
(``RagflowConfig`` and the ways to make one), ``yaml_reader`` (YAML with the line of every key and ``${ENV}``
references), ``validation`` (every problem with its line and what is allowed), ``factories`` (plugin kinds,
their constructors' keys, building a part) and ``problems`` (where a problem is and how it is worded).

Example:
    >>> config = parse_config("sources:\\n  - kind: folder\\n    root: docs\\n")
    >>> config.sources[0].kind, config.server.port
    ('folder', 8000)
"""

from __future__ import annotations

from .problems import ConfigProblem, InvalidConfigError
from .schema import RagflowConfig, load_config, parse_config
from .sections import (
    EmbedderConfig,
    IndexConfig,
    LLMConfig,
    ParserConfig,
    PersistenceConfig,
    ServerConfig,
    SourceConfig,
    SplitterConfig,
)

__all__ = [
    "ConfigProblem",
    "EmbedderConfig",
    "IndexConfig",
    "InvalidConfigError",
    "LLMConfig",
    "ParserConfig",
    "PersistenceConfig",
    "RagflowConfig",
    "ServerConfig",
    "SourceConfig",
    "SplitterConfig",
    "load_config",
    "parse_config",
]
