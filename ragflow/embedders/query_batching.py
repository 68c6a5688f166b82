"""Queries first: concurrent queries are embedded together in one forward pass (the model, not the number of
queries, is the cost: sixteen short queries in one pass cost little more than one), a query asked again takes
its vector from a small cache instead of the model, and indexing gives way to waiting queries between its
batches. ``QueryBatcher`` does the first two; ``QueryPriority``, shared by a model's query and indexing
instances, the last."""

from __future__ import annotations

import hashlib
import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from ragflow.documents import Embedder

__all__ = ["QueryBatcher", "QueryPriority"]


class QueryPriority:
    """Queries waiting for or in a forward pass, as indexing sees them.

    Query paths wrap their work in ``waiting(n)``; indexing calls ``bulk_batch_size(size)`` before each of
    its batches, which waits until the queries waiting at that moment have their vectors (at most
    ``max_yield`` seconds), so queries and indexing batches take turns: under a constant stream of queries
    indexing still makes a batch after each query pass, never starved. It returns a smaller batch
    (``size // shrink``) while queries keep coming (one came within ``recent`` seconds): a query that arrives
    during an indexing batch then shares the processor with a short batch, not a long one. By default batches
    do not shrink (``shrink=1``): on 2 AMX Xeon cores, quiet, 1,000 files indexed under 40 queries/s from
    16 clients took 6.2 s with 1, 8.1 s with 2 and 10.1 s with 4 (4.1 s without queries), while the queries'
    p99 stayed at 32, 28 and 27 ms: passes cut by cost are short enough to share the processor.

    Example:
        >>> priority = QueryPriority(shrink=4)
        >>> priority.bulk_batch_size(8)
        8
        >>> with priority.waiting(1):
        ...     priority.queries_waiting
        1
        >>> priority.bulk_batch_size(8)  # a query just went through
        2
    """

    def __init__(self, *, max_yield: float = 0.1, recent: float = 0.5, shrink: int = 1) -> None:
        self.max_yield = max_yield
        self.recent = recent
        self.shrink = shrink
        self._cond = threading.Condition()
        self._tickets: set[int] = set()
        """One per ``waiting`` block in progress, numbered in order of arrival."""
        self._next_ticket = 0
        self._waiting = 0
        self._last = -math.inf
        self.yields = 0
        """How many indexing batches waited for queries."""

    @property
    def queries_waiting(self) -> int:
        with self._cond:
            return self._waiting

    @contextmanager
    def waiting(self, queries: int) -> Iterator[None]:
        """Count ``queries`` as waiting while the block runs (from their arrival to their vectors)."""
        with self._cond:
            self._waiting += queries
            ticket = self._next_ticket
            self._next_ticket += 1
            self._tickets.add(ticket)
        try:
            yield
        finally:
            with self._cond:
                self._waiting -= queries
                self._tickets.discard(ticket)
                self._last = time.monotonic()
                self._cond.notify_all()

    def bulk_batch_size(self, size: int) -> int:
        """Before an indexing batch of ``size``: let waiting queries go first, then the size to use."""
        with self._cond:
            if self._tickets:
                self.yields += 1
                arrived = self._next_ticket  # later queries wait for the next turn
                self._cond.wait_for(
                    lambda: not any(t < arrived for t in self._tickets), timeout=self.max_yield
                )
            busy = time.monotonic() - self._last < self.recent
        return max(1, size // self.shrink) if busy else size


@dataclass(eq=False)
class _Pending:
    texts: list[str]
    done: threading.Event = field(default_factory=threading.Event)
    vectors: npt.NDArray[np.float32] | None = None
    error: BaseException | None = None


class QueryBatcher:
    """Embeds queries from many threads in shared forward passes.

    ``embed(texts)`` blocks its caller until its vectors are ready. One worker thread (started on demand,
    gone after ``idle_exit`` seconds without queries) takes every query waiting, up to ``max_batch``, and
    embeds them in one call; queries arriving meanwhile form the next batch, so batches grow with the load
    by themselves. Under concurrent load (the last pass held several queries) the worker also waits up to
    ``max_wait`` seconds for more before a pass; a lone query never waits.

    Queries go through the embedder's ``embed_queries`` where it has one (the local model: cut to its window
    before tokenizing), else its ``embed``; its ``query_priority`` (shared with the indexing instance) is
    told how many queries wait. The vectors of the last ``cache_size`` distinct query texts are kept
    (0: none): a query asked again (a dashboard's refresh, a retry, a client polling for a change) costs no
    forward pass, and takes no processor from indexing. A batcher serves one model, so its cache never
    outlives it.

    Example:
        >>> class Ones:  # an embedder: model_id, dim, embed
        ...     model_id, dim = "ones", 4
        ...     def embed(self, texts):
        ...         return np.ones((len(texts), 4), dtype=np.float32)
        >>> QueryBatcher(Ones()).embed(["where is the lantern?"]).shape
        (1, 4)
    """

    def __init__(
        self,
        embedder: Embedder,
        *,
        max_batch: int = 32,
        max_wait: float = 0.002,
        idle_exit: float = 5.0,
        cache_size: int = 1024,
    ) -> None:
        self.embedder = embedder
        self.max_batch = max_batch
        self.max_wait = max_wait
        self.idle_exit = idle_exit
        self.priority: QueryPriority | None = getattr(embedder, "query_priority", None)
        self._embed: Callable[[Sequence[str]], npt.NDArray[np.float32]] = getattr(
            embedder, "embed_queries", embedder.embed
        )
        self._cond = threading.Condition()
        self._queue: deque[_Pending] = deque()
        self._worker: threading.Thread | None = None
        self._last_pass_end = -math.inf
        self._last_pass_size = 0
        self.passes = 0
        """Forward passes made (calls to the embedder)."""
        self.queries = 0
        """Queries embedded."""
        self.cache_size = cache_size
        self.cache_hits = 0
        """Queries answered from the cache (not embedded)."""
        self._cache: OrderedDict[bytes, npt.NDArray[np.float32]] = OrderedDict()
        self._cache_lock = threading.Lock()

    def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """The vectors of ``texts``: from the cache, or embedded with whatever other queries are waiting."""
        texts = list(texts)
        if not texts:
            return self._embed([])
        if self.cache_size <= 0:
            return self._embed_waiting(texts)
        keys = [_cache_key(text) for text in texts]
        with self._cache_lock:
            known = [self._cache.get(key) for key in keys]
            for key, vector in zip(keys, known, strict=True):
                if vector is not None:
                    self._cache.move_to_end(key)
            self.cache_hits += sum(vector is not None for vector in known)
        missing = {key: text for key, text, v in zip(keys, texts, known, strict=True) if v is None}
        if missing:
            vectors = self._embed_waiting(list(missing.values()))
            found = {key: vectors[i].copy() for i, key in enumerate(missing)}
            with self._cache_lock:
                for key, vector in found.items():
                    self._cache[key] = vector
                    self._cache.move_to_end(key)
                while len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)
            known = [found[key] if v is None else v for key, v in zip(keys, known, strict=True)]
        return np.stack([vector for vector in known if vector is not None]).astype(np.float32, copy=False)

    def _embed_waiting(self, texts: list[str]) -> npt.NDArray[np.float32]:
        """The vectors of ``texts``, embedded in the next pass with whatever other queries are waiting."""
        pending = _Pending(texts)
        with self._waiting(len(pending.texts)):
            with self._cond:
                self._queue.append(pending)
                if self._worker is None:
                    self._worker = threading.Thread(
                        target=self._run, name="ragflow-query-batcher", daemon=True
                    )
                    self._worker.start()
                self._cond.notify()
            pending.done.wait()
        if pending.error is not None:
            raise pending.error
        assert pending.vectors is not None
        return pending.vectors

    def _waiting(self, queries: int) -> AbstractContextManager[None]:
        return self.priority.waiting(queries) if self.priority is not None else nullcontext()

    def _run(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            for group in _by_length(batch):
                self._pass(group)
            with self._cond:
                self._last_pass_end, self._last_pass_size = time.monotonic(), len(batch)

    def _pass(self, group: list[_Pending]) -> None:
        """Embed the queries of ``group`` in one call and hand each caller its vectors."""
        texts = [text for pending in group for text in pending.texts]
        try:
            vectors = self._embed(texts)
        except BaseException as exc:  # every caller of the pass gets the error
            for pending in group:
                pending.error = exc
                pending.done.set()
            return
        start = 0
        for pending in group:
            pending.vectors = vectors[start : start + len(pending.texts)]
            start += len(pending.texts)
            pending.done.set()
        with self._cond:
            self.passes += 1
            self.queries += len(texts)

    def _next_batch(self) -> list[_Pending] | None:
        """The queries of the next pass (``None``: idle long enough, the worker ends)."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._queue, timeout=self.idle_exit):
                self._worker = None
                return None
            concurrent = self._last_pass_size > 1 and time.monotonic() - self._last_pass_end < 0.05
            if concurrent and self.max_wait > 0 and self._count() < self.max_batch:
                deadline = time.monotonic() + self.max_wait
                while self._count() < self.max_batch and (left := deadline - time.monotonic()) > 0:
                    self._cond.wait(left)
            batch: list[_Pending] = []
            size = 0
            while self._queue and (not batch or size + len(self._queue[0].texts) <= self.max_batch):
                pending = self._queue.popleft()
                batch.append(pending)
                size += len(pending.texts)
            return batch

    def _count(self) -> int:
        return sum(len(pending.texts) for pending in self._queue)


def _by_length(batch: list[_Pending]) -> list[list[_Pending]]:
    """``batch`` in groups of similar length, shortest first: a pass costs what its longest text costs,
    so a short query waiting beside a window-filling one gets its vectors from a pass of its own, before
    the long one's, instead of paying for both (~4 ms alone, ~18 ms for a full window, AMX Xeon). Classes
    double from 128 characters (~32 word-pieces), as the embedder's own passes by word-pieces do."""
    groups: dict[int, list[_Pending]] = {}
    for pending in batch:
        longest = max((len(text) for text in pending.texts), default=0)
        groups.setdefault(max(0, math.ceil(math.log2(max(longest, 1) / 128))), []).append(pending)
    return [groups[length_class] for length_class in sorted(groups)]


def _cache_key(text: str) -> bytes:
    """A query's key in the cache: a digest, so that a megabyte query does not hold a megabyte there."""
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()
