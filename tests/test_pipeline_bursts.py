"""``DocumentFeed`` with a burst: a live group of thousands of documents (10,000 files dropped into a folder
at once) is pushed in slices, each an epoch of its own, so the burst becomes searchable bit by bit; its
deletes come last, so nothing disappears before what replaces it; small live groups stay whole."""

from __future__ import annotations

import threading
from typing import Any

from ragflow.pipeline import BURST_SLICES, DocumentFeed
from ragflow.sources import ChangeKind, DocumentChange


def upsert(doc_id: str, position: Any = None) -> DocumentChange:
    return DocumentChange(doc_id, ChangeKind.UPSERT, b"text of " + doc_id.encode(), position=position)


def delete(doc_id: str, position: Any = None) -> DocumentChange:
    return DocumentChange(doc_id, ChangeKind.DELETE, position=position)


class Scripted:
    """A source that emits its groups once its (empty) snapshot is done."""

    name = "scripted"

    def __init__(self, *groups: list[DocumentChange]) -> None:
        self.groups = groups

    def run(self, emit: Any, stop: threading.Event, mode: str, position: Any) -> None:
        emit([upsert(f"old-{i}") for i in range(3)])
        emit([], snapshot_done=True)
        for group in self.groups:
            emit(group)


def pushes_of(source: Scripted, slice_size: int = 8) -> list[list[tuple[Any, Any, int]]]:
    pushed: list[list[tuple[Any, Any, int]]] = []
    feed = DocumentFeed(source, snapshot_slice=slice_size)  # type: ignore[arg-type]
    feed.run(lambda deltas, position: pushed.append(list(deltas)), threading.Event(), "streaming")
    return pushed[1:]  # after the snapshot


def test_a_burst_is_pushed_in_slices_with_its_deletes_last() -> None:
    burst = [delete("old-0")] + [upsert(f"new-{i:03d}") for i in range(100)] + [delete("old-1")]
    pushed = pushes_of(Scripted(burst), slice_size=8)
    assert len(pushed) > 1 and all(len({d[0] for d in push}) <= 8 for push in pushed)
    assert sorted(d[0] for push in pushed for d in push if d[2] == 1) == [f"new-{i:03d}" for i in range(100)]
    removed = [(i, d[0]) for i, push in enumerate(pushed) for d in push if d[2] == -1]
    assert sorted(doc for _, doc in removed) == ["old-0", "old-1"]
    assert {i for i, _ in removed} == {len(pushed) - 1}, "a delete came before the burst's last slice"


def test_a_small_live_group_stays_whole() -> None:
    rename = [delete("old-2"), upsert("renamed")]
    group = [upsert(f"doc-{i}") for i in range(BURST_SLICES * 8)]  # at the limit: not a burst
    assert [len(push) for push in pushes_of(Scripted(rename, group), slice_size=8)] == [2, BURST_SLICES * 8]


def test_a_document_deleted_and_created_again_keeps_its_order() -> None:
    burst = [delete("old-0")] + [upsert(f"new-{i}") for i in range(50)] + [upsert("old-0")]
    pushed = pushes_of(Scripted(burst), slice_size=8)
    final: dict[str, int] = {}
    for push in pushed:
        for doc_id, _row, diff in push:
            final[doc_id] = final.get(doc_id, 0) + diff
    assert final["old-0"] == 0  # retracted once, inserted once: still there


def test_a_positioned_burst_keeps_its_order_and_resume_points() -> None:
    burst = [upsert(f"m-{i}", position=i) for i in range(40)] + [delete("old-0", position=40)]
    pushed = pushes_of(Scripted(burst), slice_size=8)
    order = [d[0] for push in pushed for d in push if d[2] == 1 or d[0] == "old-0"]
    assert order[-1] == "old-0" and len(pushed) > 1
