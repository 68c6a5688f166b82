"""The batched-UDF operator: runs an expensive function (an embedder) over all the rows an epoch
inserts, in batches, at most once per distinct input, with a content-addressed cache in front.

A result is remembered for as long as some row with that input is present, so a retraction emits
exactly what the insertion emitted (embedders are not bit-for-bit deterministic across batch shapes)."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .cache import UdfCache, content_key
from .changes import Delta, consolidate_or_report, describe, report
from .graph import EpochContext, Node

__all__ = ["BatchedUdfNode"]

BatchFn = Callable[[list[Any]], Sequence[Any] | Awaitable[Sequence[Any]]]


def _merge_result(row: Any, result: Any) -> Any:
    return result


class BatchedUdfNode(Node):
    """``row -> merge(row, fn([input(row), ...])[i])`` computed in batches of at most ``batch_size``.

    ``fn`` takes a list of inputs and returns one result per input, in order; it may be ``async def``.
    With ``concurrency > 1`` batches run in parallel threads (or concurrently, for async functions) so
    slow I/O overlaps. ``namespace`` separates cache entries of different functions (use the model id).
    ``input_key(row)`` names the input for the cache when the input itself is large or is only present
    on insertion (e.g. a content digest); by default the input is its own name. With ``keep_dropped``,
    a result whose last row goes away is put in the cache then (not only when computed): with a
    ``MemoryCache`` this keeps recently dropped results, e.g. across a rename split over two epochs.
    """

    kind = "map_batched"

    def __init__(
        self,
        source: Node,
        fn: BatchFn,
        *,
        batch_size: int = 64,
        input: Callable[[Any], Any] | None = None,
        input_key: Callable[[Any], Any] | None = None,
        merge: Callable[[Any, Any], Any] | None = None,
        cache: UdfCache | None = None,
        namespace: str = "",
        concurrency: int = 1,
        keep_dropped: bool = False,
    ) -> None:
        super().__init__([source])
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.fn = fn
        self.batch_size = batch_size
        self.input = input or (lambda row: row)
        self.input_key = input_key
        self.merge = merge or _merge_result
        self.cache = cache
        self.namespace = namespace or getattr(fn, "__qualname__", "udf")
        self.concurrency = max(1, concurrency)
        self.keep_dropped = keep_dropped and cache is not None
        # content key -> [result, number of rows present with that input]
        self.live: dict[bytes, list[Any]] = {}
        # content key -> [error message, number of rows present] for inputs the function rejected
        self.failed: dict[bytes, list[Any]] = {}
        self.computed = 0  # inputs actually passed to fn
        self.cache_hits = 0

    def stats(self) -> dict[str, int]:
        return {"computed": self.computed, "cache_hits": self.cache_hits}

    def step(self, deltas: list[list[Delta]], ctx: EpochContext) -> list[Delta]:
        changes = consolidate_or_report(deltas[0], self.name, ctx.errors)
        keyed: list[tuple[bytes, Any, Delta]] = []
        needed: dict[bytes, Any] = {}
        for change in changes:
            try:
                value = self.input(change[1])
                identity = value if self.input_key is None else self.input_key(change[1])
                key = content_key(self.namespace, identity)
            except Exception as exc:
                report(ctx.errors, self.name, change, f"{type(exc).__name__}: {exc}")
                continue
            keyed.append((key, value, change))
            if change[2] > 0 and key not in self.live and key not in self.failed:
                needed[key] = value
        self._compute(needed)
        out: list[Delta] = []
        # insertions first: a result whose last row goes away while another row with the same input
        # arrives (a rename) must stay alive, not be dropped and found missing
        keyed.sort(key=lambda item: -item[2][2])
        for key, _, change in keyed:
            self._emit(key, change, out, ctx)
        return out

    def _emit(self, key: bytes, change: Delta, out: list[Delta], ctx: EpochContext) -> None:
        table = self.failed if key in self.failed else self.live
        entry = table.get(key)
        if entry is None:  # a retraction of a row never inserted: pass nothing on
            return
        entry[1] += change[2]
        if table is self.failed:
            report(ctx.errors, self.name, change, entry[0])
        else:
            try:
                out.append((change[0], self.merge(change[1], entry[0]), change[2]))
            except Exception as exc:
                report(ctx.errors, self.name, change, f"merge failed: {type(exc).__name__}: {exc}")
        if entry[1] <= 0:
            del table[key]
            if self.keep_dropped and table is self.live:
                assert self.cache is not None
                self.cache.put_many({key: entry[0]})

    def _compute(self, needed: dict[bytes, Any]) -> None:
        if not needed:
            return
        cached = self.cache.get_many(needed) if self.cache is not None else {}
        self.cache_hits += len(cached)
        for key, result in cached.items():
            self.live[key] = [result, 0]
        missing = [(key, value) for key, value in needed.items() if key not in cached]
        batches = [missing[i : i + self.batch_size] for i in range(0, len(missing), self.batch_size)]
        fresh: dict[bytes, Any] = {}
        for batch, results in zip(batches, self._run_batches(batches), strict=True):
            for (key, value), result in zip(batch, results, strict=True):
                if isinstance(result, _Failure):
                    self.failed[key] = [f"{result.message} (input {describe(value, 80)})", 0]
                else:
                    fresh[key] = result
                    self.live[key] = [result, 0]
        self.computed += len(missing)
        if fresh and self.cache is not None:
            self.cache.put_many(fresh)

    def _run_batches(self, batches: list[list[tuple[bytes, Any]]]) -> list[list[Any]]:
        inputs = [[value for _, value in batch] for batch in batches]
        if inspect.iscoroutinefunction(self.fn):
            return asyncio.run(self._run_async(inputs))
        if self.concurrency == 1 or len(inputs) <= 1:
            return [self._call(batch) for batch in inputs]
        with ThreadPoolExecutor(self.concurrency, thread_name_prefix=self.name) as pool:
            return list(pool.map(self._call, inputs))

    async def _run_async(self, inputs: list[list[Any]]) -> list[list[Any]]:
        limit = asyncio.Semaphore(self.concurrency)

        async def one(batch: list[Any]) -> list[Any]:
            async with limit:
                try:
                    results = await self.fn(batch)  # type: ignore[misc]
                    return self._checked(batch, results)
                except Exception:
                    pass
                return [await self._call_one_async(value) for value in batch]

        return list(await asyncio.gather(*(one(batch) for batch in inputs)))

    async def _call_one_async(self, value: Any) -> Any:
        try:
            return self._checked([value], await self.fn([value]))[0]  # type: ignore[misc]
        except Exception as exc:
            return _Failure(_message(exc))

    def _call(self, batch: list[Any]) -> list[Any]:
        """Results for a batch; when the batch fails, each input is retried alone so one bad input only
        fails itself."""
        try:
            return self._checked(batch, self.fn(batch))
        except Exception as exc:
            if len(batch) == 1:
                return [_Failure(_message(exc))]
        return [self._call([value])[0] for value in batch]

    def _checked(self, batch: list[Any], results: Any) -> list[Any]:
        results = list(results)
        if len(results) != len(batch):
            raise _WrongCount(f"returned {len(results)} results for a batch of {len(batch)} inputs")
        return results


class _WrongCount(Exception):
    pass


class _Failure:
    __slots__ = ("message",)

    def __init__(self, message: str) -> None:
        self.message = message


def _message(exc: BaseException) -> str:
    if isinstance(exc, _WrongCount):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"
