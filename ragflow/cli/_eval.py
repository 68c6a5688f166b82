"""``ragflow eval``: retrieval quality on labelled questions, every search mode in one run, against a
running server or over a local folder / configuration (its state directory is reused)."""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ragflow.cli._client import Client, HttpError, add_client_arguments
from ragflow.cli._config_options import add_config_arguments, config_from
from ragflow.cli._errors import EXIT_OK
from ragflow.cli._output import configure_logging, say
from ragflow.errors import ConfigError
from ragflow.retrieval.evaluation import CUTOFFS, MISSED_AT, ModeScores, load_questions, score_mode

HELP = "measure retrieval quality (recall@k, MRR@10, nDCG@10) on labelled questions, per search mode"
DESCRIPTION = (
    'Ask every question of QUESTIONS (JSON lines: {"query": ..., "relevant": [paths or doc ids]}) '
    "in each search mode and print recall@1/5/10, MRR@10, nDCG@10 and latency per mode, then the "
    "questions each mode missed. With --url it asks a running server (POST /v1/retrieve); with a folder "
    "or --config it builds the store itself (indexing what its state directory does not hold yet)."
)
MODES = ("vector", "lexical", "hybrid", "rerank")

Search = Callable[[str, str, int], list[Mapping[str, Any]]]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``eval``'s options."""
    parser.add_argument("questions", metavar="QUESTIONS", help="the question file (docs/retrieval.md)")
    add_config_arguments(parser)
    add_client_arguments(parser)
    parser.add_argument(
        "--modes",
        nargs="+",
        choices=MODES,
        default=["vector", "lexical", "hybrid"],
        help="search modes to compare; rerank is hybrid + the cross-encoder (default: vector lexical hybrid)",
    )
    parser.add_argument("--k", type=int, default=10, help="hits asked per question (default: 10)")
    parser.add_argument("--misses", type=int, default=5, help="missed questions shown per mode (default: 5)")
    parser.add_argument("--json", action="store_true", help="print the scores and every miss as JSON")
    parser.set_defaults(path=None)


def run(args: argparse.Namespace) -> int:
    """Run ``ragflow eval`` and return its exit code."""
    if args.k < max(CUTOFFS):
        raise ConfigError(
            f"--k must be at least {max(CUTOFFS)} (recall@10 and MRR@10 need 10 hits), got {args.k}"
        )
    questions = load_questions(args.questions)
    local = bool(args.path or args.config)
    search = _local_search(args) if local else _server_search(Client(args.url, args.api_key, args.timeout))
    results: list[ModeScores] = []
    for mode in args.modes:
        try:
            search(questions[0].query, mode, args.k)  # warm up, and find out whether the mode is served
        except (ConfigError, HttpError) as exc:
            say(f"{mode}: skipped ({exc})")
            continue
        results.append(score_mode(mode, questions, _timed(search, mode, args.k)))
    if args.json:
        print(json.dumps({"questions": len(questions), "modes": [r.to_dict() for r in results]}, indent=2))
        return EXIT_OK
    _print_table(results, len(questions), args.questions)
    for scores in results:
        _print_misses(scores, args.k, args.misses)
    return EXIT_OK


def _timed(search: Search, mode: str, k: int) -> Callable[[str], tuple[list[Mapping[str, Any]], float]]:
    def timed(query: str) -> tuple[list[Mapping[str, Any]], float]:
        started = time.perf_counter()
        hits = search(query, mode, k)
        return hits, time.perf_counter() - started

    return timed


def _request(mode: str) -> dict[str, Any]:
    return {"search_mode": "hybrid", "rerank": True} if mode == "rerank" else {"search_mode": mode}


def _server_search(client: Client) -> Search:
    def search(query: str, mode: str, k: int) -> list[Mapping[str, Any]]:
        hits = client.post("/v1/retrieve", {"query": query, "k": k, **_request(mode)})
        return [hit.get("metadata") or {} for hit in hits]

    return search


def _local_search(args: argparse.Namespace) -> Search:
    configure_logging("warning")
    store = config_from(args).build_store()
    say("indexing what the state directory does not hold yet...")
    store.run_static()

    def search(query: str, mode: str, k: int) -> list[Mapping[str, Any]]:
        return [hit.metadata for hit in store.retrieve(query, k, **_request(mode))]

    return search


def _print_table(results: Sequence[ModeScores], questions: int, path: str) -> None:
    print(f"{questions} questions from {path}")
    print()
    print("| mode | recall@1 | recall@5 | recall@10 | MRR@10 | nDCG@10 | p50 ms | p95 ms |")
    print("|---|--:|--:|--:|--:|--:|--:|--:|")
    for s in results:
        print(
            f"| {s.mode} | {s.recall(1):.3f} | {s.recall(5):.3f} | {s.recall(10):.3f} | {s.mrr10:.3f} "
            f"| {s.ndcg10:.3f} | {s.latency_ms(0.5):.1f} | {s.latency_ms(0.95):.1f} |"
        )


def _print_misses(scores: ModeScores, k: int, shown: int) -> None:
    misses = scores.misses(MISSED_AT)
    if not misses or shown <= 0:
        return
    print()
    print(f"{scores.mode}: {len(misses)} questions without a relevant hit in the first {MISSED_AT} (of {k}):")
    for miss in misses[:shown]:
        where = f"first relevant at {miss.rank}" if miss.rank is not None else f"none in {k}"
        print(
            f"  - {miss.question.query} ({where}; wanted {', '.join(miss.question.relevant)}; "
            f"got {', '.join(miss.top)})"
        )
