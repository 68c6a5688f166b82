"""The batched UDF (``map_batched``): computed at most once per distinct input, retractions that repeat
the insertion's result, batch sizes, concurrency, async functions, and the memory and disk caches."""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from ragflow.engine import Change, DiskCache, Engine, FrozenDict, MemoryCache, Table, content_key


class CountingUdf:
    """A batch function that upper-cases strings and records every batch it was called with."""

    def __init__(self) -> None:
        self.batches: list[list[Any]] = []

    def __call__(self, batch: list[str]) -> list[str]:
        self.batches.append(list(batch))
        return [text.upper() for text in batch]

    @property
    def inputs(self) -> list[Any]:
        return [value for batch in self.batches for value in batch]


def _paragraphs(key: str, text: str) -> list[tuple[Any, str]]:
    return [((key, i), part) for i, part in enumerate(text.split("|"))]


def _udf_stats(table: Table) -> dict[str, int]:
    return table.stats()[table.node.name]


def test_an_unchanged_row_through_flat_map_and_map_batched_is_computed_once() -> None:
    udf = CountingUdf()
    engine = Engine()
    docs = engine.input()
    embedded = docs.flat_map(_paragraphs).map_batched(udf)
    result = embedded.collect()
    engine.advance({docs: [("d", "one|two|three", 1)]})
    engine.advance({docs: [("d", "one|two|three", -1), ("d", "one|2|three", 1)]})
    assert sorted(udf.inputs) == ["2", "one", "three", "two"]
    assert _udf_stats(embedded) == {"computed": 4, "cache_hits": 0}
    assert result.as_dict() == {("d", 0): "ONE", ("d", 1): "2", ("d", 2): "THREE"}


def test_identical_inputs_under_different_keys_are_computed_once() -> None:
    udf = CountingUdf()
    engine = Engine()
    rows = engine.input()
    embedded = rows.map_batched(udf)
    result = embedded.collect()
    engine.advance({rows: [(1, "same", 1), (2, "same", 1)]})
    engine.advance({rows: [(3, "same", 1)]})
    assert udf.inputs == ["same"]
    assert result.as_dict() == {1: "SAME", 2: "SAME", 3: "SAME"}


def test_a_result_stays_alive_while_a_row_with_that_input_moves_to_another_key() -> None:
    udf = CountingUdf()
    engine = Engine()
    rows = engine.input()
    result = rows.map_batched(udf).collect()
    engine.advance({rows: [(1, "text", 1)]})
    engine.advance({rows: [(1, "text", -1), (2, "text", 1)]})  # a rename
    assert result.as_dict() == {2: "TEXT"}
    assert udf.inputs == ["text"]


def test_a_retraction_emits_exactly_what_the_insertion_emitted_for_a_nondeterministic_function() -> None:
    engine = Engine()
    rows = engine.input()
    embedded = rows.map_batched(lambda batch: [random.random() for _ in batch])
    changes: list[Change] = []
    embedded.subscribe(lambda epoch, epoch_changes: changes.extend(epoch_changes))
    result = embedded.collect()
    engine.advance({rows: [(1, "a", 1), (2, "b", 1), (3, "a", 1)]})
    engine.advance({rows: [(1, "a", -1), (2, "b", -1)]})
    inserted = {c.key: c.row for c in changes if c.diff > 0}
    retracted = {c.key: c.row for c in changes if c.diff < 0}
    assert retracted == {1: inserted[1], 2: inserted[2]}
    assert result.as_dict() == {3: inserted[3]}
    assert inserted[1] == inserted[3]  # same input, same (single) computation


def test_batches_never_exceed_batch_size() -> None:
    udf = CountingUdf()
    engine = Engine()
    rows = engine.input()
    rows.map_batched(udf, batch_size=3).collect()
    engine.advance({rows: [(i, f"t{i}", 1) for i in range(10)]})
    assert [len(batch) for batch in udf.batches] == [3, 3, 3, 1]


def test_input_and_merge_choose_what_is_computed_and_how_it_joins_the_row() -> None:
    udf = CountingUdf()
    engine = Engine()
    rows = engine.input()
    out = rows.map_batched(
        udf, input=lambda row: row["text"], merge=lambda row, vec: (row["id"], vec)
    ).collect()
    engine.advance({rows: [(1, _doc(7, "hi"), 1)]})
    assert out.as_dict() == {1: (7, "HI")}
    assert udf.inputs == ["hi"]


def _doc(doc_id: int, text: str) -> FrozenDict:
    return FrozenDict(id=doc_id, text=text)


def _slow(batch: list[int]) -> list[int]:
    time.sleep(0.1)
    return [value * 2 for value in batch]


async def _slow_async(batch: list[int]) -> list[int]:
    await asyncio.sleep(0.1)
    return [value * 2 for value in batch]


@pytest.mark.parametrize("fn", [_slow, _slow_async], ids=["threads", "async"])
def test_concurrent_batches_overlap_their_waiting(fn: Any) -> None:
    engine = Engine()
    rows = engine.input()
    result = rows.map_batched(fn, batch_size=1, concurrency=4).collect()
    started = time.perf_counter()
    engine.advance({rows: [(i, i, 1) for i in range(8)]})
    elapsed = time.perf_counter() - started
    print(f"8 batches of 0.1 s with concurrency 4 ({fn.__name__}): {elapsed:.3f} s")
    assert elapsed < 0.6  # serially they take 0.8 s
    assert result.as_dict() == {i: i * 2 for i in range(8)}


def test_an_async_function_works_without_concurrency() -> None:
    engine = Engine()
    rows = engine.input()
    # BatchFn is typed for plain functions only although map_batched documents async ones
    result = rows.map_batched(_slow_async, batch_size=2).collect()  # type: ignore[arg-type]
    engine.advance({rows: [(1, 1, 1), (2, 2, 1), (3, 3, 1)]})
    assert result.as_dict() == {1: 2, 2: 4, 3: 6}


def _embed_with(cache: DiskCache, udf: CountingUdf, texts: list[str]) -> tuple[Table, dict[Any, Any]]:
    engine = Engine()
    rows = engine.input()
    embedded = rows.map_batched(udf, cache=cache, namespace="model-v1")
    result = embedded.collect()
    engine.advance({rows: [(i, text, 1) for i, text in enumerate(texts)]})
    return embedded, result.as_dict()


def test_a_new_engine_over_the_same_disk_cache_does_not_recompute(tmp_path: Path) -> None:
    path = tmp_path / "cache" / "udf.sqlite"
    first_udf, second_udf = CountingUdf(), CountingUdf()
    cache = DiskCache(path)
    _, first = _embed_with(cache, first_udf, ["a", "b"])
    cache.close()
    reopened = DiskCache(path)
    embedded, second = _embed_with(reopened, second_udf, ["a", "b", "c"])
    reopened.close()
    assert second_udf.inputs == ["c"]
    assert _udf_stats(embedded) == {"computed": 1, "cache_hits": 2}
    assert second == {**first, 2: "C"}


def test_a_cache_namespace_separates_functions() -> None:
    cache = MemoryCache()
    udfs = [CountingUdf(), CountingUdf()]
    for namespace, udf in zip(["model-a", "model-b"], udfs, strict=True):
        engine = Engine()
        rows = engine.input()
        rows.map_batched(udf, cache=cache, namespace=namespace).collect()
        engine.advance({rows: [(1, "text", 1)]})
    assert [u.inputs for u in udfs] == [["text"], ["text"]]
    assert len(cache) == 2


def test_a_reinserted_input_comes_from_the_cache_after_its_rows_were_gone() -> None:
    udf = CountingUdf()
    engine = Engine()
    rows = engine.input()
    embedded = rows.map_batched(udf, cache=MemoryCache())
    result = embedded.collect()
    engine.advance({rows: [(1, "a", 1)]})
    engine.advance({rows: [(1, "a", -1)]})
    engine.advance({rows: [(1, "a", 1)]})
    assert udf.inputs == ["a"]
    assert _udf_stats(embedded) == {"computed": 1, "cache_hits": 1}
    assert result.as_dict() == {1: "A"}


def test_memory_cache_evicts_the_least_recently_used_entry_beyond_max_entries() -> None:
    cache = MemoryCache(max_entries=2)
    a, b, c = (content_key("ns", v) for v in "abc")
    cache.put_many({a: 1, b: 2})
    assert cache.get_many([a]) == {a: 1}  # a is now more recent than b
    cache.put_many({c: 3})
    assert len(cache) == 2
    assert cache.get_many([a, b, c]) == {a: 1, c: 3}


def test_disk_cache_reads_more_keys_than_sqlite_binds_in_one_statement(tmp_path: Path) -> None:
    cache = DiskCache(tmp_path / "udf.sqlite")
    items = {content_key("ns", i): i for i in range(1200)}
    cache.put_many(items)
    assert cache.get_many(items) == items
    assert len(cache) == 1200
    cache.close()


def test_content_key_is_equal_for_equal_inputs_and_differs_across_namespaces() -> None:
    assert content_key("m", ("a", 1)) == content_key("m", ("a", 1))
    assert content_key("m", "a") != content_key("n", "a")
    assert content_key("m", "a") != content_key("m", "b")


def test_batch_size_must_be_positive() -> None:
    engine = Engine()
    with pytest.raises(ValueError, match="batch_size"):
        engine.input().map_batched(CountingUdf(), batch_size=0)


def test_equal_rows_with_fields_in_a_different_order_are_computed_once() -> None:
    udf = CountingUdf()
    engine = Engine()
    rows = engine.input()
    rows.map_batched(lambda batch: udf([row["text"] for row in batch])).collect()
    engine.advance({rows: [(1, FrozenDict(text="a", lang="en"), 1), (2, FrozenDict(lang="en", text="a"), 1)]})
    assert udf.inputs == ["a"]


CONTENT_KEY_SCRIPT = (
    "from ragflow.engine import content_key; "
    "print(content_key('m', frozenset({'alpha', 'beta', 'gamma', 'delta', 'epsilon'})).hex())"
)


def test_content_key_of_a_set_is_the_same_in_every_process() -> None:
    keys = set()
    for seed in ("1", "2", "3"):
        env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
        done = subprocess.run(
            [sys.executable, "-c", CONTENT_KEY_SCRIPT], capture_output=True, text=True, env=env, check=True
        )
        keys.add(done.stdout.strip())
    assert len(keys) == 1


def test_a_result_the_disk_cache_cannot_store_does_not_stop_the_pipeline(tmp_path: Path) -> None:
    engine = Engine()
    rows = engine.input()
    cache = DiskCache(tmp_path / "udf.sqlite")
    out = rows.map_batched(lambda batch: [threading.Lock() for _ in batch], cache=cache).collect()
    engine.advance({rows: [(1, "a", 1)]})
    assert len(out) == 1 or len(engine.current_errors()) == 1
    cache.close()


def test_input_key_names_the_input_so_a_retraction_without_the_payload_finds_its_result() -> None:
    """Rows carrying a large payload only on insertion (documents) are matched by ``input_key``."""
    engine = Engine()
    docs = engine.input()
    calls: list[list[Any]] = []

    def parse(batch: list[Any]) -> list[Any]:
        calls.append(batch)
        return [f"parsed:{payload}" for _, payload in batch]

    out = docs.map_batched(
        parse, input_key=lambda row: row[0], merge=lambda row, result: (row[0], result)
    ).collect()
    engine.advance({docs: [("d1", ("digest-1", "big payload"), 1)]})
    assert out.multiset() == {("d1", ("digest-1", "parsed:big payload")): 1}
    # the retraction carries no payload; it must still retract exactly what was inserted
    engine.advance({docs: [("d1", ("digest-1", None), -1)]})
    assert out.multiset() == {}
    assert len(calls) == 1


def test_keep_dropped_puts_restored_results_in_the_cache_when_their_rows_go() -> None:
    udf = CountingUdf()
    engine = Engine()
    rows = engine.input()
    cache = MemoryCache()
    upper = rows.map_batched(udf, cache=cache, keep_dropped=True)
    node = upper.node
    key = content_key(node.namespace, "text")  # type: ignore[attr-defined]
    node.live[key] = ["TEXT", 1]  # type: ignore[attr-defined]  # as a restore leaves it, not in the cache
    engine.advance({rows: [("a", "text", -1)]})
    assert cache.get_many([key]) == {key: "TEXT"}
    engine.advance({rows: [("b", "text", 1)]})
    assert udf.inputs == [] and _udf_stats(upper) == {"computed": 0, "cache_hits": 1}
