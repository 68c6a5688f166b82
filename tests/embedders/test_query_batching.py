"""Tests for ragflow.embedders.query_batching: concurrent queries share forward passes and each gets its own
vector; errors reach every caller of a pass; indexing gives way to waiting queries, boundedly."""

from __future__ import annotations

import doctest
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack

import numpy as np
import numpy.typing as npt
import pytest

import ragflow.embedders.query_batching
from ragflow.embedders.query_batching import QueryBatcher, QueryPriority
from tests.fakes.hashing_embedder import HashingEmbedder


class SlowEmbedder(HashingEmbedder):
    """A hashing embedder whose every call takes ``seconds`` (a forward pass), recording batch sizes."""

    def __init__(self, seconds: float = 0.05) -> None:
        super().__init__(dim=16)
        self.seconds = seconds
        self.query_priority = QueryPriority()

    def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        time.sleep(self.seconds)
        return super().embed(texts)


def test_the_examples_in_the_docstrings_work() -> None:
    result = doctest.testmod(ragflow.embedders.query_batching)
    assert result.attempted > 0 and result.failed == 0


def test_concurrent_queries_share_passes_and_each_gets_its_own_vector() -> None:
    embedder = SlowEmbedder()
    batcher = QueryBatcher(embedder)
    queries = [f"query number {i} about the harbor lantern {i * 7}" for i in range(32)]
    with ThreadPoolExecutor(32) as pool:
        vectors = list(pool.map(lambda q: batcher.embed([q])[0], queries))
    expected = HashingEmbedder(dim=16).embed(queries)
    np.testing.assert_array_equal(np.stack(vectors), expected)
    assert batcher.queries == 32
    assert batcher.passes < 16, [len(c) for c in embedder.calls]  # 32 alone would be 32 passes
    assert max(len(call) for call in embedder.calls) > 1


def test_a_short_query_beside_a_long_one_gets_a_pass_of_its_own_first() -> None:
    """A pass costs what its longest text costs: a short query waiting with a window-filling one is
    embedded alone, first, and answered before the long one's pass (not padded to it, not held for it)."""
    in_pass, release = threading.Event(), threading.Event()

    class LengthCost(SlowEmbedder):
        def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
            if texts[0].startswith("busy"):
                in_pass.set()
                assert release.wait(10)
            time.sleep(0.2 if max(map(len, texts)) > 1000 else 0.01)
            return HashingEmbedder.embed(self, texts)

    embedder = LengthCost()
    batcher = QueryBatcher(embedder, cache_size=0)
    finished: dict[str, float] = {}
    busy = threading.Thread(target=lambda: batcher.embed(["busy " * 300]))
    busy.start()
    assert in_pass.wait(10)  # the worker is in a long pass; the two below wait together for the next
    started = time.monotonic()

    def ask(name: str, text: str) -> None:
        vector = batcher.embed([text])
        finished[name] = time.monotonic() - started
        np.testing.assert_array_equal(vector, HashingEmbedder(dim=16).embed([text]))

    threads = [
        threading.Thread(target=ask, args=a) for a in (("long", "lantern " * 500), ("short", "a lantern"))
    ]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 10
    while len(batcher._queue) < 2 and time.monotonic() < deadline:
        time.sleep(0.001)
    release.set()
    for thread in [busy, *threads]:
        thread.join(10)
    assert [len(max(call, key=len)) > 1000 for call in embedder.calls] == [True, False, True]
    assert finished["short"] < finished["long"] - 0.1, finished


def test_a_pass_holds_at_most_max_batch_queries() -> None:
    embedder = SlowEmbedder()
    batcher = QueryBatcher(embedder, max_batch=4)
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda i: batcher.embed([f"q{i}"]), range(16)))
    assert max(len(call) for call in embedder.calls) <= 4
    assert sum(len(call) for call in embedder.calls) == 16


def test_an_error_reaches_every_caller_of_the_pass_and_the_batcher_goes_on() -> None:
    class Failing(SlowEmbedder):
        fail = True

        def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
            if self.fail:
                time.sleep(0.05)
                raise RuntimeError("model broke")
            return super().embed(texts)

    embedder = Failing()
    batcher = QueryBatcher(embedder)
    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(batcher.embed, [f"q{i}"]) for i in range(8)]
        for future in futures:
            with pytest.raises(RuntimeError, match="model broke"):
                future.result(10)
    embedder.fail = False
    assert batcher.embed(["after"]).shape == (1, 16)
    assert embedder.query_priority.queries_waiting == 0


def test_the_worker_ends_when_idle_and_a_new_query_starts_another() -> None:
    batcher = QueryBatcher(HashingEmbedder(dim=8), idle_exit=0.05)
    batcher.embed(["first"])
    deadline = time.monotonic() + 5
    while batcher._worker is not None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert batcher._worker is None
    assert batcher.embed(["second"]).shape == (1, 8)


def test_an_empty_call_embeds_nothing() -> None:
    assert QueryBatcher(HashingEmbedder(dim=8)).embed([]).shape == (0, 8)


def test_indexing_waits_for_waiting_queries_then_takes_smaller_batches() -> None:
    priority = QueryPriority(max_yield=10, recent=0.5, shrink=4)
    done = threading.Event()
    waited: list[float] = []

    def indexing_batch() -> None:
        started = time.monotonic()
        assert priority.bulk_batch_size(8) == 2  # queries came just now: a quarter
        waited.append(time.monotonic() - started)
        done.set()

    with priority.waiting(3):
        thread = threading.Thread(target=indexing_batch)
        thread.start()
        assert not done.wait(0.2), "indexing went on while queries were waiting"
    thread.join(5)
    assert done.is_set() and waited[0] >= 0.2
    assert priority.yields == 1


def test_indexing_never_waits_longer_than_max_yield() -> None:
    priority = QueryPriority(max_yield=0.05, shrink=4)
    with priority.waiting(1):
        started = time.monotonic()
        priority.bulk_batch_size(8)
        assert time.monotonic() - started < 5  # bounded by max_yield, not by the queries
    assert priority.bulk_batch_size(8) == 2


def test_without_queries_indexing_keeps_its_batch_size() -> None:
    assert QueryPriority(recent=0.5).bulk_batch_size(8) == 8


def test_under_a_constant_stream_of_queries_indexing_takes_its_turn() -> None:
    priority = QueryPriority(max_yield=30, shrink=4)
    sizes: list[int] = []
    with ExitStack() as first:
        first.enter_context(priority.waiting(1))
        indexing = threading.Thread(target=lambda: sizes.append(priority.bulk_batch_size(8)))
        indexing.start()
        deadline = time.monotonic() + 5
        while priority.yields == 0 and time.monotonic() < deadline:
            time.sleep(0.005)
        with priority.waiting(1):  # arrives while indexing waits: the next turn is indexing's
            time.sleep(0.1)
            assert not sizes, "indexing went on before the query waiting ahead of it"
            first.close()
            indexing.join(5)
            assert sizes == [2], "indexing waited for a query that came after it"


def test_a_query_asked_again_takes_its_vector_from_the_cache_not_the_model() -> None:
    embedder = SlowEmbedder(seconds=0.0)
    batcher = QueryBatcher(embedder)
    first = batcher.embed(["where is the harbor lantern?", "how do tides work"])
    first[0][:] = 0.0  # what a caller does with its array does not reach the cache
    again = batcher.embed(["how do tides work", "where is the harbor lantern?"])
    np.testing.assert_array_equal(
        again, HashingEmbedder(dim=16).embed(["how do tides work", "where is the harbor lantern?"])
    )
    assert embedder.calls == [["where is the harbor lantern?", "how do tides work"]]  # one pass, no second
    assert (batcher.cache_hits, batcher.queries) == (2, 2)
    assert batcher.embed(["new one", "new one"]).shape == (2, 16)
    assert embedder.calls[-1] == ["new one"]  # the same text twice in one call: embedded once


def test_the_cache_keeps_the_most_recently_asked_queries_only() -> None:
    embedder = SlowEmbedder(seconds=0.0)
    batcher = QueryBatcher(embedder, cache_size=2)
    for text in ["a", "b", "a", "c"]:  # "b" is the least recently asked when "c" comes
        batcher.embed([text])
    assert [call[0] for call in embedder.calls] == ["a", "b", "c"]
    batcher.embed(["a"])
    batcher.embed(["b"])
    assert [call[0] for call in embedder.calls] == ["a", "b", "c", "b"]


def test_a_cache_of_size_zero_embeds_every_query() -> None:
    embedder = SlowEmbedder(seconds=0.0)
    batcher = QueryBatcher(embedder, cache_size=0)
    batcher.embed(["same"])
    batcher.embed(["same"])
    assert len(embedder.calls) == 2 and batcher.cache_hits == 0
