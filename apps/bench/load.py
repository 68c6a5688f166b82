"""Load benchmark of the REST server: ``python -m apps.bench.load [options]`` is ``ragflow bench load``
(``ragflow.bench._load``; ``--help`` lists the options). Results are recorded in docs/benchmarks.md."""

from __future__ import annotations

import sys

from ragflow.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "load", *sys.argv[1:]]))
