"""The ``ragflow`` argument parser, made of each command's own, and ``main``: run the command the
arguments name and turn its errors into messages and exit codes."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import Protocol

from ragflow import __version__
from ragflow.cli import (
    _bench,
    _eval,
    _feed,
    _index,
    _mcp,
    _migrate,
    _publish,
    _query,
    _serve,
    _status,
    _worker,
)
from ragflow.cli._errors import EXIT_FAILURE, EXIT_USAGE, CommandError
from ragflow.cli._output import say
from ragflow.errors import ConfigError, RagflowError


class Command(Protocol):
    """What a command's module holds: its one-line help, its description, its options and what it runs."""

    HELP: str
    DESCRIPTION: str

    def add_arguments(self, parser: argparse.ArgumentParser) -> None: ...

    def run(self, args: argparse.Namespace) -> int: ...


COMMANDS: dict[str, Command] = {
    "serve": _serve,
    "index": _index,
    "query": _query,
    "status": _status,
    "bench": _bench,
    "publish": _publish,
    "mcp": _mcp,
    "worker": _worker,
    "feed": _feed,
    "eval": _eval,
    "migrate": _migrate,
}


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``ragflow`` and its subcommands."""
    parser = argparse.ArgumentParser(
        prog="ragflow",
        description="Keep a vector index of documents in sync with where they live, and serve retrieval.",
        epilog="Exit codes: 0 ok, 1 failed, 2 bad usage or configuration, 3 server not reachable.",
    )
    parser.add_argument("--version", action="version", version=f"ragflow {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, command in COMMANDS.items():
        subparser = commands.add_parser(name, help=command.HELP, description=command.DESCRIPTION)
        command.add_arguments(subparser)
        subparser.set_defaults(handler=command.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``ragflow`` with ``argv`` (default ``sys.argv[1:]``) and return its exit code."""
    args = build_parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except ConfigError as exc:
        say(f"error: {exc}")
        return EXIT_USAGE
    except CommandError as exc:
        say(f"error: {exc}")
        return exc.exit_code
    except RagflowError as exc:
        say(f"error: {exc}")
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return 130
