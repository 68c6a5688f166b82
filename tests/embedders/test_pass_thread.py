"""Tests for where torch passes run: every pass on more than one OpenMP thread on the process's one pass
thread (ragflow.embedders.hardware.PassThread), a replica's passes on its caller's thread and one OpenMP
thread (use_openmp_threads), so that a process never holds two OpenMP teams."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from ragflow.embedders.hardware import pass_thread, use_openmp_threads
from ragflow.embedders.local import LocalEmbedder


def in_thread(job: Any) -> Any:
    result: list[Any] = []
    thread = threading.Thread(target=lambda: result.append(job()))
    thread.start()
    thread.join()
    return result[0]


def test_openmp_threads_are_set_for_the_calling_thread_only() -> None:
    import torch

    before = in_thread(torch.get_num_threads)

    def one() -> int:
        assert use_openmp_threads(1)
        return torch.get_num_threads()

    assert in_thread(one) == 1
    assert in_thread(torch.get_num_threads) == before


def test_the_hardware_reports_torchs_threads_whatever_the_calling_thread_set() -> None:
    import torch

    from ragflow.embedders.hardware import detect_hardware

    expected = in_thread(torch.get_num_threads)

    def lowered() -> int:
        use_openmp_threads(1)  # as a replica's pass on this thread leaves it
        return detect_hardware("cpu").threads

    assert in_thread(lowered) == expected


def test_the_pass_thread_runs_jobs_returns_results_and_raises_their_errors() -> None:
    assert pass_thread().run(lambda: threading.current_thread().name) == "ragflow-torch"
    assert in_thread(lambda: pass_thread().run(lambda: 6 * 7)) == 42
    assert pass_thread().run(lambda: pass_thread().run(lambda: "nested")) == "nested"  # no deadlock

    def fail() -> None:
        raise ValueError("the pass failed")

    with pytest.raises(ValueError, match="the pass failed"):
        pass_thread().run(fail)
    assert pass_thread().run(lambda: "still serving") == "still serving"


@pytest.fixture(scope="module")
def embedder() -> Iterator[LocalEmbedder]:
    loaded = LocalEmbedder(precision="float32", batch_size=4, compile="off")
    loaded.load()
    yield loaded


@pytest.mark.model
def test_passes_run_on_the_pass_thread_and_a_replicas_on_one_openmp_thread_of_its_caller(
    embedder: LocalEmbedder,
) -> None:
    import torch

    seen: list[tuple[str, int]] = []

    def record(module: Any, inputs: Any) -> None:
        seen.append((threading.current_thread().name, torch.get_num_threads()))

    replica = embedder.replica()
    replica.load()
    hooks = [e.load()[0].register_forward_pre_hook(record) for e in (embedder, replica)]
    try:
        embedder.embed(["from the main thread", "a second text"])
        in_thread(lambda: embedder.embed(["from another thread", "and another"]))
        replica.embed_queries(["a query from the main thread"])
        caller = in_thread(
            lambda: (replica.embed_queries(["a query from a worker"]), threading.current_thread().name)[1]
        )
    finally:
        for hook in hooks:
            hook.remove()
    hardware = embedder._setup.hardware
    assert hardware is not None and hardware.device == "cpu"
    assert seen[:2] == [("ragflow-torch", hardware.threads)] * 2
    assert seen[2:] == [(threading.current_thread().name, 1), (caller, 1)]
