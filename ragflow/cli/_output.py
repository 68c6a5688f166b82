"""What the commands write on stderr besides the progress display: messages, and log records."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import TextIO


def say(message: str, stream: TextIO | None = None) -> None:
    """Print ``message`` on ``stream`` (default: stderr), at once."""
    print(message, file=stream or sys.stderr, flush=True)


def add_log_level_argument(parser: argparse.ArgumentParser) -> None:
    """``--log-level``, the level ``configure_logging`` takes."""
    parser.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="how much to log on stderr (default: info)",
    )


def configure_logging(ragflow_level: str) -> None:
    """Warnings from libraries, ``ragflow_level`` and up from ragflow's own loggers, on stderr."""
    logging.basicConfig(
        level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s", handlers=[StderrHandler()]
    )
    logging.getLogger("ragflow").setLevel(ragflow_level.upper())


class StderrHandler(logging.StreamHandler[TextIO]):
    """Writes each record to ``sys.stderr`` as it is when the record comes, not as it was when logging was
    set up: while the progress bar is live on a terminal, ``sys.stderr`` is rich's proxy, which prints the
    line above the bar instead of through it."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        pass  # set by StreamHandler.__init__ and setStream; always follows sys.stderr instead
