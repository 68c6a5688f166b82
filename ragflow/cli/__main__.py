"""``python -m ragflow.cli``: the ``ragflow`` command."""

from __future__ import annotations

import sys

from ragflow.cli import main

if __name__ == "__main__":
    sys.exit(main())
