"""The options by which ``serve`` and ``index`` are told what to index (a folder or a YAML file, and a
state directory), and the configuration they resolve to."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from ragflow.errors import ConfigError

if TYPE_CHECKING:
    from ragflow.config import RagflowConfig


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """``PATH`` or ``--config FILE``, and ``--state-dir DIR``."""
    where = parser.add_mutually_exclusive_group()
    where.add_argument("path", nargs="?", help="a folder to index with the default settings (no config file)")
    where.add_argument(
        "--config", metavar="FILE", help="a YAML configuration file (see docs/configuration.md)"
    )
    parser.add_argument(
        "--state-dir",
        metavar="DIR",
        help="where state lives: indexed documents, source positions, embedding cache, uploads "
        "(default: persistence.state_dir, .ragflow)",
    )


def config_from(args: argparse.Namespace) -> RagflowConfig:
    """The configuration the options name, with ``--host``, ``--port`` and ``--state-dir`` applied."""
    # Imported here: the config module (and what it imports) is heavy for `query` and `status`.
    from ragflow.config import RagflowConfig, load_config

    if args.config:
        config = load_config(args.config)
    elif args.path:
        config = RagflowConfig.for_folder(args.path)
    else:
        raise ConfigError(
            f"nothing to index: pass a folder (ragflow {args.command} ./docs) or a configuration file "
            f"(ragflow {args.command} --config app.yaml)"
        )
    return config.with_overrides(
        host=getattr(args, "host", None), port=getattr(args, "port", None), state_dir=args.state_dir
    )
