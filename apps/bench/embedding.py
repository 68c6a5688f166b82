"""Benchmark of the local embedder: the calibrated path (``LocalEmbedder()``, precision and batch size from
the calibration) against today's settings (float32, batches of 8, ``LocalEmbedder(precision="float32",
batch_size=8)``) on the same real chunks, alternating the two in every round so both see the same load.

    python -m apps.bench.embedding [--chunks N] [--rounds N] [--call-size N]

Prints Markdown: bulk chunks/s (median over rounds, min and max), the per-round ratio, process CPU time
over wall time while embedding (about 200% when both cores work), one chunk alone, one short query, and
the lowest cosine between the two paths' vectors. The texts are chunks of the standard library's module
docstrings cut at the default chunk size (real prose, on every machine).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np
import numpy.typing as npt

from apps.bench.pipeline import stdlib_corpus
from ragflow.embedders.local import LocalEmbedder
from ragflow.splitter import TokenSplitter

Embed = Callable[[list[str]], npt.NDArray[np.float32]]

QUERIES = (
    "how do I parse command line options",
    "copy a directory tree recursively",
    "send a log record to a file",
    "compare two sequences of lines",
    "run a shell command and read its output",
)


def real_chunks(count: int, max_tokens: int) -> list[str]:
    splitter = TokenSplitter(max_tokens)
    chunks = [chunk.text for _, doc in stdlib_corpus(400) for chunk in splitter.split(doc)]
    chunks = [chunk for chunk in chunks if len(chunk.split()) >= 40]  # full chunks, not paragraph tails
    if len(chunks) < count:
        sys.exit(f"only {len(chunks)} chunks in the corpus, fewer than --chunks {count}")
    return chunks[:count]


def bulk(embed: Embed, texts: list[str], call_size: int) -> tuple[float, float, npt.NDArray[np.float32]]:
    """Wall seconds, CPU seconds and vectors of embedding ``texts`` in calls of ``call_size``."""
    started, cpu = time.perf_counter(), time.process_time()
    vectors = np.vstack([embed(texts[i : i + call_size]) for i in range(0, len(texts), call_size)])
    return time.perf_counter() - started, time.process_time() - cpu, vectors


def single_ms(embed: Embed, texts: Sequence[str], repeats: int) -> float:
    times = []
    for i in range(repeats):
        started = time.perf_counter()
        embed([texts[i % len(texts)]])
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chunks", type=int, default=192, help="chunks embedded per round and path")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--call-size", type=int, default=64, help="texts per embed() call, as an epoch")
    args = parser.parse_args(argv)

    import torch

    load_average = os.getloadavg()
    started = time.perf_counter()
    calibrated = LocalEmbedder()
    calibrated.load()
    load_seconds = time.perf_counter() - started
    plan = calibrated.plan
    # Today's settings (float32, batches of 8) on the same code path: the same windows for a chunk longer
    # than the model's window, so the cosine below measures precision alone.
    baseline = LocalEmbedder(precision="float32", batch_size=8).embed
    texts = real_chunks(args.chunks, calibrated.max_tokens)
    words = statistics.mean(len(text.split()) for text in texts)
    paths: dict[str, Embed] = {"float32 today": baseline, "calibrated": calibrated.embed}
    rates: dict[str, list[float]] = {name: [] for name in paths}
    shares: dict[str, list[float]] = {name: [] for name in paths}
    ratios = []
    vectors: dict[str, npt.NDArray[np.float32]] = {}
    for round_number in range(args.rounds):
        order = list(paths) if round_number % 2 == 0 else list(reversed(paths))
        for name in order:
            wall, cpu, vectors[name] = bulk(paths[name], texts, args.call_size)
            rates[name].append(len(texts) / wall)
            shares[name].append(cpu / wall)
        ratios.append(rates["calibrated"][-1] / rates["float32 today"][-1])
    cosine = float(np.min(np.sum(vectors["float32 today"] * vectors["calibrated"], axis=1)))
    stats = calibrated.stats()

    print(f"- Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print(
        f"- Machine: {platform.platform()}, {os.cpu_count()} CPUs, load average "
        f"{load_average[0]:.2f} / {load_average[1]:.2f} / {load_average[2]:.2f} at start; torch "
        f"{torch.__version__}, {torch.get_num_threads()} intra-op threads"
    )
    print(
        f"- Command: `python -m apps.bench.embedding {' '.join(argv if argv is not None else sys.argv[1:])}`"
    )
    print(
        f"- Calibrated plan: device {stats.device}, batches of {plan.batch_size} in {plan.bulk}, one text in "
        f"{plan.single} ({plan.reason}); load + plan + warm-up took {load_seconds:.1f} s"
    )
    print(
        f"- Texts: {len(texts)} chunks of at most {calibrated.max_tokens} cl100k tokens "
        f"(mean {words:.0f} words), "
        f"embed() called with {args.call_size} at a time, {args.rounds} alternating rounds"
    )
    print()
    print("| path | chunks/s median | min | max | CPU ÷ wall | one chunk | one query |")
    print("|---|--:|--:|--:|--:|--:|--:|")
    for name, embed in paths.items():
        rate = rates[name]
        print(
            f"| {name} | {statistics.median(rate):.1f} | {min(rate):.1f} | {max(rate):.1f} "
            f"| {statistics.median(shares[name]):.0%} | {single_ms(embed, texts, 15):.1f} ms "
            f"| {single_ms(embed, QUERIES, 25):.1f} ms |"
        )
    print()
    print(
        f"Calibrated ÷ float32 today, per round: median {statistics.median(ratios):.2f}× "
        f"(range {min(ratios):.2f}-{max(ratios):.2f}; target ≥ 2.5×). Lowest cosine between the two paths' "
        f"vectors of the same chunk: {cosine:.6f} (bound 0.9999)."
    )


if __name__ == "__main__":
    main()
