"""The exit codes of ``ragflow`` and the errors its commands raise.

On top of ``ragflow.errors``::

    RagflowError
    ├── ConfigError                 exit 2
    └── CommandError                exit 1: the command could not do its job
        └── ServerUnreachableError  exit 3: nothing answers at the server URL
"""

from __future__ import annotations

from ragflow.errors import RagflowError

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3


class CommandError(RagflowError):
    """A command could not do its job; the message says why and what to do."""

    exit_code = EXIT_FAILURE


class ServerUnreachableError(CommandError):
    """Nothing answers at the server URL."""

    exit_code = EXIT_UNREACHABLE
