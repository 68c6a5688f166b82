"""The freshness benchmark of docs/benchmarks.md: the same workload against ragflow (``ragflow serve``,
the default local model) and, given a Python that has Pathway, against Pathway's DocumentStoreServer
(``pathway_server.py``, the same model), one after the other; each run's JSON and one report side by side.

    python -m apps.freshness_bench [--out DIR] [--pathway-python /work/pathway-venv/bin/python]
                                   [--docs 100] [--changes 20] [--burst 100] [--restart 10] [--quick]

Everything else is ``ragflow bench freshness`` (``ragflow.bench``); this only fixes the two server
commands and the outputs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ragflow.bench import FreshnessOptions, FreshnessResult, freshness_table, html_report, run_freshness
from ragflow.cli._output import say

HERE = Path(__file__).resolve().parent
RAGFLOW = (
    f"{sys.executable} -m ragflow.cli serve {{folder}} --port {{port}} --state-dir {{state}} "
    "--log-level warning"
)


def pathway_command(python: str, commit_ms: int | None = None) -> str:
    commit = f" {commit_ms}" if commit_ms is not None else ""
    return f"{python} {HERE / 'pathway_server.py'} {{folder}} {{port}} {{state}}{commit}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=Path("freshness-results"), help="where the files go")
    parser.add_argument("--pathway-python", help="a Python with pathway[xpack-llm] (a separate venv)")
    parser.add_argument(
        "--pathway-commit-ms",
        type=int,
        help="also run Pathway with this autocommit_duration_ms for its folder connector "
        "(its default, 1500 ms, is the first Pathway run)",
    )
    parser.add_argument("--skip-ragflow", action="store_true", help="run only the Pathway server(s)")
    parser.add_argument("--docs", type=int, default=100)
    parser.add_argument("--changes", type=int, default=20, help="timed changes of each kind")
    parser.add_argument("--burst", type=int, default=100)
    parser.add_argument("--restart", type=int, default=10, help="edits made while the server is down")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="10 documents, 3 changes each, burst 10")
    args = parser.parse_args(argv)
    if args.quick:
        args.docs, args.changes, args.burst, args.restart = 10, 3, 10, 3
    args.out.mkdir(parents=True, exist_ok=True)
    servers = {} if args.skip_ragflow else {"ragflow": RAGFLOW}
    if args.pathway_python:
        servers["pathway"] = pathway_command(args.pathway_python)
        if args.pathway_commit_ms is not None:
            servers[f"pathway-commit-{args.pathway_commit_ms}ms"] = pathway_command(
                args.pathway_python, args.pathway_commit_ms
            )
    results: list[FreshnessResult] = []
    for name, command in servers.items():
        say(f"== {name}: {command}")
        options = FreshnessOptions(
            server_cmd=command,
            docs=args.docs,
            changes=args.changes,
            burst=args.burst,
            restart=args.restart,
            seed=args.seed,
            label=f"{name} (folder, all-MiniLM-L6-v2)",
            server_log=args.out / f"{name}-server.log",
            timeout=120.0,
            progress=say,
        )
        result = run_freshness(options)
        result.save(args.out / f"{name}.json")
        results.append(result)
    # every run in the folder (earlier ones too), ragflow first
    saved = sorted(args.out.glob("*.json"), key=lambda path: (not path.stem.startswith("ragflow"), path.name))
    results = [FreshnessResult.load(path) for path in saved]
    print(freshness_table(results))
    (args.out / "report.html").write_text(html_report(results), encoding="utf-8")
    say(f"written: {', '.join(str(args.out / f'{n}.json') for n in servers)}, {args.out / 'report.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
