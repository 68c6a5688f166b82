"""FolderSource on real temporary folders, real files and the real inotify observer."""

from __future__ import annotations

import ctypes
import errno
import os
import pwd
import shutil
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pytest

from ragflow.connectors.folder import FolderSource
from ragflow.connectors.folder.batch import _Group
from ragflow.connectors.folder.sync import _FolderSync
from ragflow.documents import ChangeKind, DocumentChange, DocumentSource
from ragflow.errors import ConfigError, SourceError

UPSERT, DELETE = ChangeKind.UPSERT, ChangeKind.DELETE


@dataclass(frozen=True)
class Emitted:
    """One ``emit`` call as the source made it."""

    at_ns: int
    changes: list[DocumentChange]
    snapshot_done: bool


class SourceRun:
    """Runs a source in its own thread, as the engine does, recording every emit call."""

    def __init__(
        self,
        source: FolderSource,
        mode: Literal["static", "streaming"],
        position: Any,
        thread_setup: Callable[[], None] | None,
    ) -> None:
        self.source = source
        self.emits: list[Emitted] = []
        self.stop_event = threading.Event()
        self.error: BaseException | None = None
        self._cond = threading.Condition()
        self._mode: Literal["static", "streaming"] = mode
        self._position = position
        self._thread_setup = thread_setup
        self.gate = threading.Event()
        """Cleared, it holds the source inside ``emit`` (after recording), so changes pile up unseen."""
        self.gate.set()
        self.thread = threading.Thread(target=self._main, daemon=True)

    def _main(self) -> None:
        try:
            if self._thread_setup is not None:
                self._thread_setup()
            self.source.run(self._emit, self.stop_event, self._mode, self._position)
        except BaseException as exc:
            self.error = exc
        finally:
            with self._cond:
                self._cond.notify_all()

    def _emit(self, changes: list[DocumentChange], snapshot_done: bool = False) -> None:
        with self._cond:
            self.emits.append(Emitted(time.time_ns(), list(changes), snapshot_done))
            self._cond.notify_all()
        self.gate.wait()

    def wait_until(self, predicate: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
        with self._cond:
            ok = self._cond.wait_for(lambda: predicate() or self.error is not None, timeout)
        if self.error is not None:
            raise self.error
        assert ok, f"timed out after {timeout} s waiting for {what}; emitted: {self.emits}"

    def wait_snapshot(self) -> list[DocumentChange]:
        self.wait_until(lambda: any(e.snapshot_done for e in self.emits), "snapshot_done")
        return [c for e in self.emits[: self._snapshot_index()] for c in e.changes]

    def _snapshot_index(self) -> int:
        return next(i for i, e in enumerate(self.emits) if e.snapshot_done)

    def live_groups(self) -> list[list[DocumentChange]]:
        """The change groups emitted after the snapshot, sentinels left out."""
        with self._cond:
            groups = [e.changes for e in self.emits[self._snapshot_index() + 1 :]]
        groups = [[c for c in g if not c.doc_id.startswith("sentinel-")] for g in groups]
        return [g for g in groups if g]

    def live_changes(self, doc_id: str | None = None) -> list[DocumentChange]:
        return [c for g in self.live_groups() for c in g if doc_id is None or c.doc_id == doc_id]

    def state(self) -> dict[str, DocumentChange]:
        """What a consumer applying every group in order holds now."""
        with self._cond:
            emits = list(self.emits)
        docs: dict[str, DocumentChange] = {}
        for emitted in emits:
            for change in emitted.changes:
                if change.kind is UPSERT:
                    docs[change.doc_id] = change
                else:
                    docs.pop(change.doc_id, None)
        return docs

    def wait_doc(self, doc_id: str, data: bytes, timeout: float = 5.0) -> None:
        def holds() -> bool:
            doc = self.state().get(doc_id)
            return doc is not None and doc.data == data

        self.wait_until(holds, f"{doc_id} = {data!r}", timeout)

    def wait_gone(self, *doc_ids: str, timeout: float = 5.0) -> None:
        self.wait_until(lambda: not set(doc_ids) & set(self.state()), f"{doc_ids} deleted", timeout)

    def settle(self, root: Path) -> None:
        """Return once every change made before this call has been processed.

        inotify reports events in order, and the source handles them in order, so once a file written
        now is emitted, anything done before it was seen: this proves "nothing was emitted" without sleeping.
        """
        SourceRun._sentinels += 1
        name = f"sentinel-{SourceRun._sentinels}.txt"
        (root / name).write_bytes(b"s")
        self.wait_doc(name, b"s")

    _sentinels = 0

    def join(self, timeout: float = 5.0) -> None:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "source thread did not return"
        if self.error is not None:
            raise self.error

    def stop(self) -> None:
        self.stop_event.set()
        self.gate.set()
        self.join()

    def hold(self, root: Path) -> None:
        """Park the source inside ``emit`` so that what the test does next reaches it as one batch."""
        self.gate.clear()
        self.settle(root)


RunSource = Callable[..., SourceRun]


@pytest.fixture
def run_source() -> Iterator[RunSource]:
    runs: list[SourceRun] = []

    def start(
        source: FolderSource,
        mode: Literal["static", "streaming"] = "streaming",
        position: Any = None,
        thread_setup: Callable[[], None] | None = None,
    ) -> SourceRun:
        run = SourceRun(source, mode, position, thread_setup)
        runs.append(run)
        run.thread.start()
        return run

    yield start
    for run in runs:
        run.stop_event.set()
        run.gate.set()
        run.thread.join(5)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    folder = tmp_path / "root"
    folder.mkdir()
    return folder


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def kinds(changes: list[DocumentChange]) -> set[tuple[str, ChangeKind]]:
    return {(c.doc_id, c.kind) for c in changes}


# -- snapshot ------------------------------------------------------------------------------------------------


def test_folder_source_satisfies_the_document_source_protocol(root: Path) -> None:
    assert isinstance(FolderSource(root), DocumentSource)
    assert FolderSource(root).name == f"folder:{root}"
    assert FolderSource(root, name="docs").name == "docs"


def test_static_snapshot_emits_every_file_sorted_with_metadata_then_returns(
    root: Path, run_source: RunSource
) -> None:
    write(root / "a" / "b.txt", b"bee")
    write(root / "a.txt", b"alpha")
    write(root / "z" / "deep" / "c.md", b"# c")
    before_ns = time.time_ns()

    run = run_source(FolderSource(root), mode="static")
    run.join()  # static mode returns by itself

    assert run.emits[-1] == Emitted(run.emits[-1].at_ns, [], True)
    assert sum(e.snapshot_done for e in run.emits) == 1
    changes = [c for e in run.emits[:-1] for c in e.changes]
    # Sorted by doc_id: "a.txt" < "a/b.txt" because "." < "/".
    assert [c.doc_id for c in changes] == ["a.txt", "a/b.txt", "z/deep/c.md"]
    assert [c.data for c in changes] == [b"alpha", b"bee", b"# c"]
    assert all(c.kind is UPSERT and c.error is None for c in changes)

    st = os.stat(root / "a" / "b.txt")
    meta = changes[1].metadata
    assert meta["path"] == str(root / "a" / "b.txt")
    assert meta["size"] == 3
    assert meta["modified_at"] == st.st_mtime_ns // 1_000_000_000
    assert meta["created_at"] == int(st.st_ctime)
    assert meta["owner"] == pwd.getpwuid(st.st_uid).pw_name
    assert before_ns <= meta["seen_at_ns"] <= time.time_ns()
    assert meta["seen_at"] == meta["seen_at_ns"] // 1_000_000_000
    assert changes[1].position["size"] == 3
    assert changes[1].position["mtime_ns"] == st.st_mtime_ns


def test_include_exclude_and_hidden_filters(root: Path, run_source: RunSource) -> None:
    for rel in [
        "notes/a.md",
        "notes/b.txt",
        "top.md",
        "drafts/wip.md",
        "x/drafts/nested.md",
        "notes/.hidden.md",
        ".hidden_dir/c.md",
        ".git/HEAD.md",
        "__pycache__/m.md",
        "keep/.ragflow/state.md",
    ]:
        write(root / rel, b"x")

    run = run_source(FolderSource(root, include=["*.md"], exclude=["/drafts"]), mode="static")
    run.join()
    assert sorted(run.state()) == ["notes/a.md", "top.md", "x/drafts/nested.md"]

    run = run_source(FolderSource(root, include=["/notes/*", "**/nested.md"]), mode="static")
    run.join()
    assert sorted(run.state()) == ["notes/a.md", "notes/b.txt", "x/drafts/nested.md"]

    run = run_source(FolderSource(root, include=["*.md"], skip_hidden=False), mode="static")
    run.join()
    # Hidden files now count, but version-control and cache directories never do.
    assert sorted(run.state()) == [
        ".hidden_dir/c.md",
        "drafts/wip.md",
        "notes/.hidden.md",
        "notes/a.md",
        "top.md",
        "x/drafts/nested.md",
    ]


def test_missing_root_raises_source_error_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(SourceError, match=str(missing)):
        FolderSource(missing).run(lambda *a, **k: None, threading.Event(), "static")


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"include": ["a**b"]}, "include"),
        ({"exclude": ["[abc"]}, "exclude"),
        ({"include": []}, "include"),
        ({"max_file_size": 0}, "max_file_size"),
        ({"poll_interval": 0}, "poll_interval"),
        ({"reconcile_interval": -1}, "reconcile_interval"),
        ({"coalesce_window": -0.1}, "coalesce_window"),
    ],
)
def test_bad_options_raise_config_error_naming_the_option(
    root: Path, kwargs: dict[str, Any], named: str
) -> None:
    with pytest.raises(ConfigError, match=named):
        FolderSource(root, **kwargs)


def test_fifo_and_other_special_files_are_skipped_without_blocking(root: Path, run_source: RunSource) -> None:
    os.mkfifo(root / "pipe.txt")
    write(root / "real.txt", b"r")
    run = run_source(FolderSource(root), mode="static")
    run.join()
    assert sorted(run.state()) == ["real.txt"]


# -- live changes --------------------------------------------------------------------------------------------


def test_single_write_reaches_emit_within_milliseconds(root: Path, run_source: RunSource) -> None:
    run = run_source(FolderSource(root))
    run.wait_snapshot()
    write_to_emit_ms, event_to_emit_ms = [], []
    for i in range(20):
        start = time.time_ns()
        write(root / f"f{i}.txt", b"hello")
        run.wait_doc(f"f{i}.txt", b"hello")
        emitted = next(e for e in run.emits if any(c.doc_id == f"f{i}.txt" for c in e.changes))
        [change] = emitted.changes
        write_to_emit_ms.append((emitted.at_ns - start) / 1e6)
        event_to_emit_ms.append((emitted.at_ns - change.metadata["seen_at_ns"]) / 1e6)
    print(
        f"\nover 20 single-file writes: write->emit median {statistics.median(write_to_emit_ms):.2f} ms "
        f"(max {max(write_to_emit_ms):.2f}); first event->emit median "
        f"{statistics.median(event_to_emit_ms):.2f} ms (max {max(event_to_emit_ms):.2f})"
    )
    assert statistics.median(write_to_emit_ms) < 1000


def test_modify_emits_the_new_content(root: Path, run_source: RunSource) -> None:
    write(root / "doc.txt", b"v1")
    run = run_source(FolderSource(root))
    run.wait_snapshot()
    (root / "doc.txt").write_bytes(b"version two")
    run.wait_doc("doc.txt", b"version two")
    change = run.live_changes("doc.txt")[-1]
    assert change.metadata["size"] == len(b"version two")


def test_delete_emits_a_delete(root: Path, run_source: RunSource) -> None:
    write(root / "doc.txt", b"v1")
    run = run_source(FolderSource(root))
    run.wait_snapshot()
    (root / "doc.txt").unlink()
    run.wait_gone("doc.txt")
    [change] = run.live_changes("doc.txt")
    assert change.kind is DELETE and change.data is None and change.position is None


def test_rename_within_the_tree_is_one_group_deleting_old_and_upserting_new(
    root: Path, run_source: RunSource
) -> None:
    write(root / "old.txt", b"content")
    run = run_source(FolderSource(root))
    run.wait_snapshot()
    (root / "sub").mkdir()
    run.settle(root)
    os.rename(root / "old.txt", root / "sub" / "new.txt")
    run.wait_doc("sub/new.txt", b"content")
    assert run.live_groups() == [
        [run.live_changes("old.txt")[0], run.live_changes("sub/new.txt")[0]],
    ]
    assert kinds(run.live_groups()[0]) == {("old.txt", DELETE), ("sub/new.txt", UPSERT)}


def test_moves_into_and_out_of_the_tree(root: Path, tmp_path: Path, run_source: RunSource) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    write(outside / "incoming.txt", b"in")
    write(root / "leaving.txt", b"out")
    run = run_source(FolderSource(root))
    run.wait_snapshot()

    os.rename(outside / "incoming.txt", root / "incoming.txt")
    run.wait_doc("incoming.txt", b"in")
    os.rename(root / "leaving.txt", outside / "leaving.txt")
    run.wait_gone("leaving.txt")
    assert kinds(run.live_changes()) == {("incoming.txt", UPSERT), ("leaving.txt", DELETE)}


def test_directory_move_is_one_group_of_deletes_and_upserts(root: Path, run_source: RunSource) -> None:
    for rel in ["docs/a.txt", "docs/sub/b.txt", "docs/sub/deeper/c.txt"]:
        write(root / rel, rel.encode())
    run = run_source(FolderSource(root))
    run.wait_snapshot()

    os.rename(root / "docs", root / "archive")
    run.wait_doc("archive/sub/deeper/c.txt", b"docs/sub/deeper/c.txt")
    [group] = run.live_groups()
    assert kinds(group) == {
        ("docs/a.txt", DELETE),
        ("docs/sub/b.txt", DELETE),
        ("docs/sub/deeper/c.txt", DELETE),
        ("archive/a.txt", UPSERT),
        ("archive/sub/b.txt", UPSERT),
        ("archive/sub/deeper/c.txt", UPSERT),
    }
    assert {c.doc_id: c.data for c in group if c.kind is UPSERT}["archive/sub/b.txt"] == b"docs/sub/b.txt"


def test_directory_moved_in_from_outside_is_indexed(
    root: Path, tmp_path: Path, run_source: RunSource
) -> None:
    write(tmp_path / "elsewhere" / "x" / "y.txt", b"y")
    run = run_source(FolderSource(root))
    run.wait_snapshot()
    os.rename(tmp_path / "elsewhere", root / "elsewhere")
    run.wait_doc("elsewhere/x/y.txt", b"y")


def test_directory_delete_deletes_every_document_below_it(root: Path, run_source: RunSource) -> None:
    for rel in ["keep.txt", "docs/a.txt", "docs/sub/b.txt", "docs/sub/deeper/c.txt"]:
        write(root / rel, b"x")
    run = run_source(FolderSource(root))
    run.wait_snapshot()
    shutil.rmtree(root / "docs")
    run.wait_gone("docs/a.txt", "docs/sub/b.txt", "docs/sub/deeper/c.txt")
    assert sorted(run.state()) == ["keep.txt"]


def test_atomic_save_is_one_upsert_of_the_target_and_the_temp_file_nets_out(
    root: Path, run_source: RunSource
) -> None:
    write(root / "doc.txt", b"v0")
    run = run_source(FolderSource(root))
    run.wait_snapshot()
    run.hold(root)
    tmp = root / "doc.txt.tmp"  # deliberately not hidden: hidden temp files are skipped anyway
    tmp.write_bytes(b"v1")
    os.replace(tmp, root / "doc.txt")
    run.gate.set()
    run.wait_doc("doc.txt", b"v1")
    run.settle(root)
    assert run.live_groups() == [run.live_changes("doc.txt")]
    assert [c.data for c in run.live_changes()] == [b"v1"]


def test_repeated_atomic_saves_each_give_exactly_one_upsert_of_the_target(
    root: Path, run_source: RunSource
) -> None:
    write(root / "doc.txt", b"v0")
    run = run_source(FolderSource(root))
    run.wait_snapshot()
    for i in range(1, 21):
        tmp = root / f"doc.txt.tmp{i}"
        tmp.write_bytes(f"v{i}".encode())
        os.replace(tmp, root / "doc.txt")
        run.wait_doc("doc.txt", f"v{i}".encode())
    run.settle(root)
    assert [c.data for c in run.live_changes("doc.txt")] == [f"v{i}".encode() for i in range(1, 21)]
    # Free-running, a temp file is emitted only if the saver stalls between close and rename for longer
    # than the source takes to react (CPU starvation); it is then deleted by the rename's group.
    temp_upserts = [c.doc_id for c in run.live_changes() if c.doc_id != "doc.txt" and c.kind is UPSERT]
    print(f"\n20 free-running atomic saves -> {len(temp_upserts)} temp-file upsert(s)")
    assert not set(temp_upserts) & set(run.state())


def test_burst_of_writes_while_busy_is_one_upsert_of_the_latest_content(
    root: Path, run_source: RunSource
) -> None:
    write(root / "doc.txt", b"start")
    run = run_source(FolderSource(root))
    run.wait_snapshot()
    run.hold(root)
    for i in range(10):
        (root / "doc.txt").write_bytes(f"write {i} ".encode() * (i + 1))
    run.gate.set()
    run.wait_doc("doc.txt", b"write 9 " * 10)
    run.settle(root)
    assert [c.data for c in run.live_changes("doc.txt")] == [b"write 9 " * 10]


def test_free_running_burst_of_writes_ends_with_the_latest_content(root: Path, run_source: RunSource) -> None:
    write(root / "doc.txt", b"start")
    run = run_source(FolderSource(root))
    run.wait_snapshot()
    for i in range(10):
        (root / "doc.txt").write_bytes(f"write {i} ".encode() * (i + 1))
    run.wait_doc("doc.txt", b"write 9 " * 10)
    run.settle(root)
    upserts = run.live_changes("doc.txt")
    print(f"\n10 free-running writes -> {len(upserts)} upsert(s)")
    assert upserts[-1].data == b"write 9 " * 10


def test_touch_chmod_and_identical_rewrite_emit_nothing(root: Path, run_source: RunSource) -> None:
    write(root / "doc.txt", b"same")
    run = run_source(FolderSource(root))
    run.wait_snapshot()
    os.utime(root / "doc.txt", ns=(1_000_000_000, 1_000_000_000))
    run.settle(root)
    (root / "doc.txt").write_bytes(b"same")
    run.settle(root)
    os.chmod(root / "doc.txt", 0o600)
    run.settle(root)
    assert run.live_changes() == []
    (root / "doc.txt").write_bytes(b"different")  # proves the file is still watched
    run.wait_doc("doc.txt", b"different")


def test_file_created_but_never_closed_is_emitted_after_the_grace_period(
    root: Path, tmp_path: Path, run_source: RunSource
) -> None:
    # A hard link appears with IN_CREATE only: no close ever follows.
    write(tmp_path / "original.txt", b"linked")
    run = run_source(FolderSource(root))
    run.wait_snapshot()
    os.link(tmp_path / "original.txt", root / "link.txt")
    run.wait_doc("link.txt", b"linked")


def test_stop_makes_a_streaming_run_return_promptly(root: Path, run_source: RunSource) -> None:
    run = run_source(FolderSource(root))
    run.wait_snapshot()
    start = time.perf_counter()
    run.stop()
    assert time.perf_counter() - start < 1.0


def test_root_deleted_then_recreated(root: Path, run_source: RunSource) -> None:
    write(root / "a.txt", b"a")
    write(root / "sub" / "b.txt", b"b")
    run = run_source(FolderSource(root))
    run.wait_snapshot()
    shutil.rmtree(root)
    run.wait_gone("a.txt", "sub/b.txt")
    assert run.thread.is_alive()  # the source keeps running, waiting for the root to come back
    write(root / "c.txt", b"c")
    run.wait_doc("c.txt", b"c")
    write(root / "d.txt", b"d")  # and watches the new directory live
    run.wait_doc("d.txt", b"d")
    assert sorted(run.state()) == ["c.txt", "d.txt"]


# -- polling, reconciliation, resume -------------------------------------------------------------------------


def test_polling_mode_detects_create_modify_and_delete(root: Path, run_source: RunSource) -> None:
    write(root / "old.txt", b"old")
    run = run_source(FolderSource(root, poll_interval=0.05))
    assert [c.doc_id for c in run.wait_snapshot()] == ["old.txt"]
    write(root / "new.txt", b"new")
    run.wait_doc("new.txt", b"new")
    (root / "new.txt").write_bytes(b"newer, and longer")
    run.wait_doc("new.txt", b"newer, and longer")
    (root / "old.txt").unlink()
    run.wait_gone("old.txt")


def test_reconciliation_catches_a_change_inotify_never_reports(
    root: Path, tmp_path: Path, run_source: RunSource
) -> None:
    # inotify reports a write to the watched directory of the path it was made through; a write through
    # a hard link outside the tree changes the file without any event: only a rescan can see it.
    write(root / "doc.txt", b"before")
    os.link(root / "doc.txt", tmp_path / "alias.txt")
    run = run_source(FolderSource(root, reconcile_interval=0.2))
    run.wait_snapshot()
    with open(tmp_path / "alias.txt", "r+b") as f:
        f.write(b"AFTER!")
    run.wait_doc("doc.txt", b"AFTER!", timeout=3.0)


def test_falls_back_to_scanning_when_inotify_cannot_start(
    root: Path, run_source: RunSource, monkeypatch: pytest.MonkeyPatch
) -> None:
    import watchdog.observers.inotify

    class ExhaustedInotify:
        def __init__(self, **kwargs: Any) -> None:
            raise OSError(errno.ENOSPC, "inotify watch limit reached")

    monkeypatch.setattr(watchdog.observers.inotify, "InotifyObserver", ExhaustedInotify)
    run = run_source(FolderSource(root, reconcile_interval=0.1))
    run.wait_snapshot()
    write(root / "new.txt", b"seen by a rescan")
    run.wait_doc("new.txt", b"seen by a rescan")


def test_resume_from_position_emits_only_what_changed(root: Path, run_source: RunSource) -> None:
    for name in ["same.txt", "edited.txt", "deleted.txt", "touched.txt", "replaced.txt"]:
        write(root / name, name.encode())
    first = run_source(FolderSource(root), mode="static")
    first.join()
    position = {doc_id: change.position for doc_id, change in first.state().items()}
    # Make the saved fingerprints old, as after a real restart (fresh ones are re-read to be safe).
    position = {doc_id: {**fp, "racy": False} for doc_id, fp in position.items()}

    (root / "edited.txt").write_bytes(b"edited!")
    (root / "deleted.txt").unlink()
    write(root / "added.txt", b"added")
    os.utime(root / "touched.txt", ns=(1_000_000_000, 1_000_000_000))
    st = os.stat(root / "replaced.txt")
    write(root / "tmp", b"replaced!!!!")  # same size as before, same mtime after utime: the inode differs
    os.utime(root / "tmp", ns=(st.st_atime_ns, st.st_mtime_ns))
    os.replace(root / "tmp", root / "replaced.txt")

    second = run_source(FolderSource(root), mode="static", position=position)
    second.join()
    changes = [c for e in second.emits for c in e.changes]
    assert second.emits[-1].snapshot_done
    assert kinds(changes) == {
        ("deleted.txt", DELETE),
        ("added.txt", UPSERT),
        ("edited.txt", UPSERT),
        ("replaced.txt", UPSERT),
    }
    assert {c.doc_id: c.data for c in changes if c.kind is UPSERT}["edited.txt"] == b"edited!"


def test_unparseable_position_entries_are_re_read_not_fatal(root: Path, run_source: RunSource) -> None:
    write(root / "a.txt", b"a")
    run = run_source(FolderSource(root), mode="static", position={"a.txt": "garbage", "gone.txt": None})
    run.join()
    assert kinds([c for e in run.emits for c in e.changes]) == {("a.txt", UPSERT), ("gone.txt", DELETE)}


def test_position_of_the_wrong_type_raises_source_error(root: Path) -> None:
    with pytest.raises(SourceError, match="position"):
        FolderSource(root).run(lambda *a, **k: None, threading.Event(), "static", position=["a.txt"])


# -- bad files -----------------------------------------------------------------------------------------------


def test_file_over_the_size_cap_is_an_error_naming_sizes_and_option(
    root: Path, run_source: RunSource
) -> None:
    write(root / "big.txt", b"x" * 20)
    write(root / "small.txt", b"x" * 10)
    run = run_source(FolderSource(root, max_file_size=10), mode="static")
    run.join()
    big, small = run.state()["big.txt"], run.state()["small.txt"]
    assert big.kind is UPSERT and big.data is None
    assert big.error is not None
    assert "20 bytes" in big.error and "10 bytes" in big.error and "max_file_size" in big.error
    assert small.data == b"x" * 10 and small.error is None


_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH = 1, 2


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


def _drop_dac_override_in_this_thread() -> None:
    """Make the calling thread, and only it, obey file permissions even as root.

    Linux capabilities are per thread: clearing CAP_DAC_OVERRIDE / CAP_DAC_READ_SEARCH from this thread's
    effective set makes the kernel return a real EACCES to it, while the rest of the process is unaffected.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    header = _CapHeader(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, calling thread
    data = (_CapData * 2)()
    if libc.capget(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capget failed")
    data[0].effective &= ~((1 << _CAP_DAC_OVERRIDE) | (1 << _CAP_DAC_READ_SEARCH))
    if libc.capset(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capset failed")


def test_unreadable_file_is_an_error_naming_path_and_errno(root: Path, run_source: RunSource) -> None:
    locked = write(root / "locked.txt", b"secret")
    write(root / "open.txt", b"public")
    locked.chmod(0o000)
    setup = _drop_dac_override_in_this_thread if os.geteuid() == 0 else None
    try:
        run = run_source(FolderSource(root), mode="static", thread_setup=setup)
        try:
            run.join()
        except OSError as exc:  # capset refused (e.g. a seccomp profile): no way to be denied as root
            pytest.skip(f"cannot drop CAP_DAC_OVERRIDE here: {exc}")
    finally:
        locked.chmod(0o644)
    change = run.state()["locked.txt"]
    assert change.data is None and change.error is not None
    assert str(locked) in change.error and "Permission denied" in change.error
    assert run.state()["open.txt"].data == b"public"


def test_unlistable_directory_keeps_its_documents_instead_of_deleting_them(
    root: Path, run_source: RunSource
) -> None:
    write(root / "locked" / "a.txt", b"a")
    write(root / "open.txt", b"o")
    first = run_source(FolderSource(root), mode="static")
    first.join()
    position = {doc_id: change.position for doc_id, change in first.state().items()}
    (root / "locked").chmod(0o000)
    setup = _drop_dac_override_in_this_thread if os.geteuid() == 0 else None
    try:
        second = run_source(FolderSource(root), mode="static", position=position, thread_setup=setup)
        second.join()
    finally:
        (root / "locked").chmod(0o755)
    assert [c for e in second.emits for c in e.changes] == []


def test_undecodable_file_name_does_not_stop_the_source(root: Path, run_source: RunSource) -> None:
    with open(os.path.join(os.fsencode(root), b"caf\xe9.txt"), "wb") as f:
        f.write(b"latin-1 name")
    write(root / "ok.txt", b"ok")
    run = run_source(FolderSource(root), mode="static")
    run.join()
    assert run.state()["ok.txt"].data == b"ok"
    assert run.state()["caf\udce9.txt"].data == b"latin-1 name"  # surrogate-escaped, as os.fsdecode gives


def _synced(root: Path) -> _FolderSync:
    """A source's internals after a static snapshot of ``root``, to drive them step by step."""
    sync = _FolderSync(FolderSource(root), lambda *a, **k: None, threading.Event())
    sync.run("static", None)
    return sync


def test_file_vanishing_between_listing_and_reading_is_a_delete_or_nothing(root: Path) -> None:
    write(root / "doc.txt", b"x")
    sync = _synced(root)
    (root / "doc.txt").unlink()
    group = _Group(sync._known)
    sync._sync_file("doc.txt", group, None)  # was emitted: becomes a delete
    sync._sync_file("never.txt", group, None)  # never emitted: nothing
    assert kinds(group.take()) == {("doc.txt", DELETE)}


def test_temp_file_read_and_then_renamed_within_one_group_nets_out(root: Path) -> None:
    # The race a free-running atomic save can hit: the temp file's close is handled (and the file read)
    # before the rename's event arrives, in a later round of the same group.
    write(root / "doc.txt", b"old")
    sync = _synced(root)
    group = _Group(sync._known)
    write(root / "doc.txt.tmp", b"new")
    sync._sync_path(str(root / "doc.txt.tmp"), group, None)
    os.replace(root / "doc.txt.tmp", root / "doc.txt")
    sync._sync_path(str(root / "doc.txt.tmp"), group, None)
    sync._sync_path(str(root / "doc.txt"), group, None)
    [change] = group.take()
    assert (change.doc_id, change.kind, change.data) == ("doc.txt", UPSERT, b"new")


# -- symlinks ------------------------------------------------------------------------------------------------


def test_symlinks_are_skipped_by_default(root: Path, tmp_path: Path, run_source: RunSource) -> None:
    write(tmp_path / "target" / "t.txt", b"t")
    write(root / "real.txt", b"r")
    (root / "file_link.txt").symlink_to(root / "real.txt")
    (root / "dir_link").symlink_to(tmp_path / "target")
    run = run_source(FolderSource(root), mode="static")
    run.join()
    assert sorted(run.state()) == ["real.txt"]


def test_followed_symlinks_with_a_loop_and_a_dangling_link(
    root: Path, tmp_path: Path, run_source: RunSource
) -> None:
    write(tmp_path / "target" / "t.txt", b"t")
    write(root / "a" / "real.txt", b"r")
    (root / "a" / "loop").symlink_to(root)  # back to an ancestor
    (root / "a" / "self").symlink_to(root / "a")
    (root / "file_link.txt").symlink_to(root / "a" / "real.txt")
    (root / "dir_link").symlink_to(tmp_path / "target")
    (root / "dangling.txt").symlink_to(root / "missing.txt")
    run = run_source(FolderSource(root, follow_symlinks=True), mode="static")
    run.join()
    state = run.state()
    assert sorted(state) == ["a/real.txt", "dir_link/t.txt", "file_link.txt"]
    assert state["file_link.txt"].data == b"r"


# -- metadata_from_paths -------------------------------------------------------------------------------------


def test_metadata_from_paths_tags_files_by_their_folders(root: Path, run_source: RunSource) -> None:
    write(root / "teams" / "support" / "faq.md", b"faq")
    write(root / "teams" / "hr" / "policy.md", b"policy")
    write(root / "README.md", b"readme")
    rules = {"teams/{team}/**": {"team": "{team}", "unit": "team-{team}"}, "/README.md": {"team": "all"}}
    run = run_source(FolderSource(root, metadata_from_paths=rules), mode="static")
    run.join()
    metadata = {doc_id: change.metadata for doc_id, change in run.state().items()}
    assert (metadata["teams/support/faq.md"]["team"], metadata["teams/support/faq.md"]["unit"]) == (
        "support",
        "team-support",
    )
    assert metadata["teams/hr/policy.md"]["team"] == "hr"
    assert metadata["README.md"]["team"] == "all"
    assert metadata["README.md"]["path"] == str(root / "README.md")  # the source's own keys are kept


def test_metadata_from_paths_follows_a_file_moved_to_another_team(root: Path, run_source: RunSource) -> None:
    write(root / "teams" / "support" / "faq.md", b"faq")
    run = run_source(FolderSource(root, metadata_from_paths={"teams/{team}/**": {"team": "{team}"}}))
    run.wait_snapshot()
    (root / "teams" / "hr").mkdir()
    os.rename(root / "teams" / "support" / "faq.md", root / "teams" / "hr" / "faq.md")
    run.wait_until(lambda: "teams/hr/faq.md" in run.state(), "the moved file")
    run.wait_gone("teams/support/faq.md")
    assert run.state()["teams/hr/faq.md"].metadata["team"] == "hr"


def test_changed_rules_re_emit_every_file_with_its_new_metadata(root: Path, run_source: RunSource) -> None:
    write(root / "teams" / "support" / "faq.md", b"faq")
    write(root / "gone.md", b"deleted while stopped")
    first = run_source(FolderSource(root, metadata_from_paths={"teams/{team}/**": {"team": "{team}"}}))
    first.wait_snapshot()
    first.stop()
    position = {doc_id: {**c.position, "racy": False} for doc_id, c in first.state().items()}
    (root / "gone.md").unlink()

    same = run_source(
        FolderSource(root, metadata_from_paths={"teams/{team}/**": {"team": "{team}"}}),
        mode="static",
        position=position,
    )
    same.join()
    assert kinds([c for e in same.emits for c in e.changes]) == {("gone.md", DELETE)}

    renamed = run_source(
        FolderSource(root, metadata_from_paths={"teams/{name}/**": {"group": "{name}"}}),
        mode="static",
        position=position,
    )
    renamed.join()
    changes = [c for e in renamed.emits for c in e.changes]
    assert kinds(changes) == {("teams/support/faq.md", UPSERT), ("gone.md", DELETE)}
    assert changes[[c.doc_id for c in changes].index("teams/support/faq.md")].metadata["group"] == "support"


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        ({"teams/{team}/**": {"team": "{name}"}}, "does not capture"),
        ({"teams/{team}/{team}": {"team": "{team}"}}, "captures a name twice"),
        ({"teams/[{team}]": {"team": "{team}"}}, "inside"),
        ({"a**/{team}": {"team": "{team}"}}, "whole path"),
        ({"teams/{team}/**": {"path": "{team}"}}, "not allowed"),
        ({"teams/{team}/**": {"team": ["x"]}}, "string, number or boolean"),
        ({"teams/{team}/**": {}}, "must map metadata keys"),
    ],
)
def test_bad_metadata_from_paths_rules_raise_config_error(
    root: Path, rules: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        FolderSource(root, metadata_from_paths=rules)


def test_a_capture_matches_one_whole_segment_and_nothing_else(root: Path) -> None:
    from ragflow.connectors.folder.read import PathMetadata

    rules = PathMetadata({"/teams/{team}/*.md": {"team": "{team}"}, "**/drafts/**": {"draft": True}})
    assert rules("teams/a.b-c d/x.md") == {"team": "a.b-c d"}
    assert rules("teams/x.md") == {}  # {team} needs a segment of its own
    assert rules("teams/a/b/x.md") == {}  # and one only
    assert rules("other/teams/a/x.md") == {}  # '/' anchors at the root
    assert rules("teams/a/drafts/x.md") == {"draft": True}
    assert rules("teams/(a)/x.md") == {"team": "(a)"}
