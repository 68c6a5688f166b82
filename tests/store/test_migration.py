"""Migrations (docs/persistence.md, "Generations and migrations"): a configuration change that alters what
the index holds is built beside the serving generation and swapped in atomically. These tests run the
``MigratingStore`` that ``ragflow serve`` runs, from a configuration, with the hashing test embedder
registered as embedder kind ``hashing`` (the real local model: tests/store/test_migration_model.py)."""

from __future__ import annotations

import contextlib
import json
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from ragflow.config import RagflowConfig
from ragflow.embedders import EMBEDDER_KINDS
from ragflow.store import DocumentStore
from ragflow.store.generations import read_pointer
from ragflow.store.migrating import MigratingStore, MigrationAction
from tests.fakes.hashing_embedder import HashingEmbedder
from tests.test_store import index_contents

WORDS = "amber basalt cedar delta ember fjord garnet harbor indigo jasper kelp lantern".split()


@pytest.fixture(autouse=True)
def hashing_kind(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(EMBEDDER_KINDS, "hashing", HashingEmbedder)  # type: ignore[arg-type]


def config_for(
    folder: Path, state: Path, *, dim: int = 64, max_tokens: int = 64, **persistence: Any
) -> RagflowConfig:
    return RagflowConfig.from_dict(
        {
            "sources": [{"kind": "folder", "root": str(folder), "reconcile_interval": None}],
            "embedder": {"kind": "hashing", "dim": dim, "max_tokens": 128},
            "splitter": {"max_tokens": max_tokens},
            "persistence": {"state_dir": str(state), "checkpoint_interval": 0.2, **persistence},
        }
    )


def generations(config: RagflowConfig) -> MigratingStore:
    return config.build_generations(config.build_sources)


def document(i: int, rng: random.Random) -> str:
    # one paragraph of ~60 tokens: one chunk under max_tokens 64, four or more under 16
    return f"doc{i}x " + " ".join(rng.choice(WORDS) for _ in range(50)) + "."


def write_folder(folder: Path, n: int, seed: int = 1) -> None:
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (folder / f"d{i}.md").write_text(document(i, rng))


def wait_for(predicate: Callable[[], bool], timeout: float = 60, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def first_build(config: RagflowConfig) -> None:
    store = generations(config)
    with store:
        assert store.wait_until_fresh(60)
    assert store.migration_status()["state"] == "none"


def scratch_contents(config: RagflowConfig, tmp: Path) -> list[tuple[Any, ...]]:
    fresh = config.model_copy(
        update={"persistence": config.persistence.model_copy(update={"state_dir": str(tmp)})}
    )
    store = fresh.build_store()
    store.run_static()
    return index_contents(store)


class TaggedIndex:
    """An index whose hits say which generation (its dimension) they came from."""

    def __init__(self, inner: Any, tag: int) -> None:
        self._inner = inner
        self._tag = tag

    def search(self, *args: Any, **kwargs: Any) -> Any:
        return [
            replace(h, metadata={**h.metadata, "_generation": self._tag})
            for h in self._inner.search(*args, **kwargs)
        ]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


@pytest.fixture
def tagged(monkeypatch: pytest.MonkeyPatch) -> None:
    build_index = RagflowConfig.build_index
    monkeypatch.setattr(
        RagflowConfig, "build_index", lambda self, dim: TaggedIndex(build_index(self, dim), dim)
    )


class Churn:
    """Queries without pause and edits/deletes files while a migration runs; checks each answer."""

    def __init__(
        self, store: MigratingStore, folder: Path, classify: Callable[[list[Any]], set[Any]]
    ) -> None:
        self.store, self.folder, self.classify = store, folder, classify
        self.failures: list[str] = []
        self.answers = 0
        self.deleted: dict[str, float] = {}  # file -> when its absence was first seen
        self.edited: dict[str, str] = {}  # file -> its new word
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._query, daemon=True)

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        self._thread.start()
        try:
            yield
        finally:
            self._stop.set()
            self._thread.join(10)

    def _query(self) -> None:
        rng = random.Random(3)
        while not self._stop.is_set():
            try:
                hits = self.store.retrieve(" ".join(rng.sample(WORDS, 3)), k=6)
            except Exception as exc:
                self.failures.append(f"a query failed: {exc!r}")
                continue
            kinds = self.classify(hits)
            if len(kinds) > 1:
                self.failures.append(f"an answer mixed generations: {kinds}")
            self.answers += 1
            for name, seen_absent in list(self.deleted.items()):
                present = self.store.retrieve("doc", k=3, filepath_globpattern=f"*/{name}")
                if present and seen_absent:
                    self.failures.append(f"the deleted {name} was returned again")
                if not present and not seen_absent:
                    self.deleted[name] = time.monotonic()

    def delete(self, name: str) -> None:
        (self.folder / name).unlink()
        self.deleted[name] = 0.0

    def edit(self, name: str, word: str) -> None:
        (self.folder / name).write_text(f"{word} " + " ".join(WORDS * 4) + ".")
        self.edited[name] = word

    def visible(self, name: str) -> bool:
        word = self.edited[name]
        return any(word in h.text for h in self.store.retrieve(word, k=3, filepath_globpattern=f"*/{name}"))


def by_chunk_size(hits: list[Any]) -> set[str]:
    """Under max_tokens 64 each document is one chunk of ~55 tokens, under 16 none is over 16."""
    return {"64" if len(h.text.split()) > 20 else "16" for h in hits if h.text.startswith("doc")}


def by_index(hits: list[Any]) -> set[int]:
    return {h.metadata["_generation"] for h in hits}


def migrate_under_churn(
    tmp_path: Path,
    old: RagflowConfig,
    new: RagflowConfig,
    classify: Callable[[list[Any]], set[Any]],
    **query: Any,
) -> MigratingStore:
    folder = tmp_path / "docs"
    first_build(old)
    store = generations(new)
    assert store.migration_status()["state"] == "building"
    with store:
        assert store.active.embedder.model_id == old.build_embedder().model_id
        churn = Churn(store, folder, classify)
        original = store.retrieve
        store.retrieve = lambda *a, **k: original(*a, **{**query, **k})  # type: ignore[method-assign]
        with churn.running():
            for i in range(3):
                churn.delete(f"d{i}.md")
                churn.edit(f"d{10 + i}.md", f"zebra{i}")
                time.sleep(0.05)
            wait_for(lambda: store.migration_status()["state"] == "swapped", what="the swap")
            for i in range(3, 5):
                churn.delete(f"d{i}.md")
                churn.edit(f"d{20 + i}.md", f"yak{i}")
            for name in churn.edited:
                wait_for(lambda name=name: churn.visible(name), what=f"the edit of {name}")
            wait_for(lambda: all(churn.deleted.values()), what="the deletes")
            assert store.wait_until_fresh(30)
            time.sleep(0.3)
        assert not churn.failures, churn.failures[:5]
        assert churn.answers > 5
        assert store.active.embedder.model_id == new.build_embedder().model_id
        assert scratch_contents(new, tmp_path / "scratch") == index_contents(store.active)
    return store


def test_a_chunk_size_change_is_built_beside_and_swapped_without_downtime(tmp_path: Path) -> None:
    folder, state = tmp_path / "docs", tmp_path / "state"
    write_folder(folder, 40)
    old = config_for(folder, state, max_tokens=64)
    new = config_for(folder, state, max_tokens=16)
    migrate_under_churn(tmp_path, old, new, by_chunk_size)
    pointer = read_pointer(state)
    assert pointer.active == "generations/g1" and pointer.building is None
    # the next start serves the new generation at once, without migrating
    with generations(new) as again:
        assert again.migration_status()["state"] == "none"
        assert again.wait_until_fresh(30)
        assert scratch_contents(new, tmp_path / "scratch2") == index_contents(again.active)
    assert not (state / "state.sqlite").exists(), "the replaced root generation was deleted"


def test_an_embedder_change_reuses_the_saved_parses_and_switches_the_query_model(
    tmp_path: Path, tagged: None
) -> None:
    folder, state = tmp_path / "docs", tmp_path / "state"
    write_folder(folder, 40)
    old = config_for(folder, state, dim=64)
    new = config_for(folder, state, dim=32)
    store = migrate_under_churn(tmp_path, old, new, by_index, search_mode="vector")
    assert store.migration_status()["seeded_from_saved_parses"] is True


def test_switching_back_to_a_model_already_used_embeds_nothing(tmp_path: Path) -> None:
    folder, state = tmp_path / "docs", tmp_path / "state"
    write_folder(folder, 20)
    a, b = config_for(folder, state, dim=64), config_for(folder, state, dim=32)
    first_build(a)
    for config in (b, a):
        store = generations(config)
        with store:
            wait_for(lambda store=store: store.migration_status()["state"] == "swapped", what="the swap")
            embedder = store.active.embedder
    assert isinstance(embedder, HashingEmbedder)
    assert [t for t in embedder.embedded if t != "warm up"] == [], "its vectors were all in the cache"


def test_abort_keeps_the_old_generation_and_a_restart_does_not_migrate_again(tmp_path: Path) -> None:
    folder, state = tmp_path / "docs", tmp_path / "state"
    write_folder(folder, 10)
    old, new = config_for(folder, state, dim=64), config_for(folder, state, dim=32)
    first_build(old)
    store = generations(new)
    status = store.abort_migration()  # before it starts
    assert status["state"] == "aborted" and status["active"] == "."
    with store:
        assert store.wait_until_fresh(30)
        assert store.active.embedder.dim == 64
        with pytest.raises(MigrationAction):
            store.abort_migration()
    assert not (state / "generations" / "g1").exists()
    with generations(new) as again:
        assert again.migration_status()["state"] == "declined"
        assert again.active.embedder.dim == 64
        again.start_migration()
        wait_for(lambda: again.migration_status()["state"] == "swapped", what="the swap")
        assert again.active.embedder.dim == 32


def test_rollback_swaps_back_while_the_previous_generation_is_kept(tmp_path: Path) -> None:
    folder, state = tmp_path / "docs", tmp_path / "state"
    write_folder(folder, 10)
    old, new = config_for(folder, state, dim=64), config_for(folder, state, dim=32)
    first_build(old)
    with generations(new) as store:
        wait_for(lambda: store.migration_status()["state"] == "swapped", what="the swap")
        (folder / "late.md").write_text("doc late quokka " + " ".join(WORDS))
        # the previous generation kept applying changes: after the rollback it has the late edit
        wait_for(lambda: any("quokka" in h.text for h in store.retrieve("quokka", k=2)), what="the edit")
        status = store.rollback_migration()
        assert status["state"] == "rolled_back" and status["active"] == "."
        assert store.active.embedder.dim == 64
        wait_for(lambda: any("quokka" in h.text for h in store.retrieve("quokka", k=2)), timeout=10, what="x")
    assert read_pointer(state).declined is not None
    assert not (state / "generations" / "g1").exists()


def test_keep_previous_zero_deletes_the_old_generation_at_the_swap(tmp_path: Path) -> None:
    folder, state = tmp_path / "docs", tmp_path / "state"
    write_folder(folder, 5)
    old = config_for(folder, state, dim=64)
    new = config_for(folder, state, dim=32, keep_previous_generation=0)
    first_build(old)
    with generations(new) as store:
        wait_for(lambda: store.migration_status()["state"] == "swapped", what="the swap")
        wait_for(lambda: not (state / "state.sqlite").exists(), timeout=10, what="the deletion")
        with pytest.raises(MigrationAction):
            store.rollback_migration()


def test_a_document_store_alone_cannot_migrate(tmp_path: Path) -> None:
    from ragflow.connectors.folder import FolderSource
    from ragflow.errors import ConfigError

    (tmp_path / "a.md").write_text("x")
    with pytest.raises(ConfigError, match="ragflow serve"):
        DocumentStore(
            FolderSource(tmp_path),
            embedder=HashingEmbedder(),
            state_dir=tmp_path / "s",
            on_incompatible_state="migrate",
        )


@pytest.mark.model
def test_with_the_real_local_model_a_chunk_size_change_is_invisible_to_queries(tmp_path: Path) -> None:
    folder, state = tmp_path / "docs", tmp_path / "state"
    write_folder(folder, 30)

    def local(max_tokens: int) -> RagflowConfig:
        data = config_for(folder, state, max_tokens=max_tokens).to_dict()
        data["embedder"] = {"kind": "local"}
        return RagflowConfig.from_dict(
            {k: data[k] for k in ("sources", "splitter", "embedder", "persistence")}
        )

    migrate_under_churn(tmp_path, local(64), local(16), by_chunk_size)


def test_the_swap_waits_for_a_change_its_source_recorded_but_has_not_handed_to_the_engine(
    tmp_path: Path,
) -> None:
    """A source thread paused between recording a change (its feed's ``current``) and pushing it: the
    new generation's sources then hold what the serving one holds while its engine is idle without
    the change. The swap must wait for the push (``DocumentFeed.pending``), or queries would go back in
    time to the edited document's old text."""
    folder, state = tmp_path / "docs", tmp_path / "state"
    write_folder(folder, 10)
    old, new = config_for(folder, state, dim=64), config_for(folder, state, dim=32)
    first_build(old)
    store = generations(new)
    building = store.generations()[1]
    embed_gate, push_gate, pushing = threading.Event(), threading.Event(), threading.Event()
    yield_to_live_work = building.before_embed
    assert yield_to_live_work is not None

    def held_embed() -> None:  # keeps the new generation from catching up until the edit is held
        embed_gate.wait(30)
        yield_to_live_work()

    building.before_embed = held_embed
    with store:
        for feed in [*store.active.feeds, *building.feeds]:
            assert feed.snapshot_done.wait(30)
        (feed,) = building.feeds
        follow = feed.before_push

        def paused_push(position: Any) -> None:
            pushing.set()
            push_gate.wait(30)
            if follow is not None:
                follow(position)

        feed.before_push = paused_push
        (folder / "d3.md").write_text("doc3x walrus " + " ".join(WORDS))
        wait_for(pushing.is_set, what="the new generation's source to record the edit")
        wait_for(lambda: any("walrus" in h.text for h in store.retrieve("walrus", k=2)), what="the edit")
        embed_gate.set()
        deadline = time.monotonic() + 3  # without DocumentFeed.pending the swap happens well within this
        while time.monotonic() < deadline:
            assert store.migration_status()["state"] != "swapped", "swapped before the held change"
            time.sleep(0.05)
        push_gate.set()
        wait_for(lambda: store.migration_status()["state"] == "swapped", what="the swap")
        assert store.active.embedder.dim == 32
        assert any("walrus" in h.text for h in store.retrieve("walrus", k=2))


def test_status_of_a_state_directory_follows_the_generation_pointer(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from ragflow import cli

    folder, state = tmp_path / "docs", tmp_path / "state"
    write_folder(folder, 6)
    old, new = config_for(folder, state, dim=64), config_for(folder, state, dim=32)
    first_build(old)

    def status() -> dict[str, Any]:
        capsys.readouterr()
        assert cli.main(["status", "--state-dir", str(state), "--json"]) == cli.EXIT_OK
        described: dict[str, Any] = json.loads(capsys.readouterr().out)
        return described

    store = generations(new)  # the pointer names the generation being built from here on
    building = status()
    assert (building["dim"], building["documents"]) == (64, 6)
    assert building["generations"]["building"]["generation"] == "generations/g1"
    assert cli.main(["status", "--state-dir", str(state)]) == cli.EXIT_OK
    assert "migrating to     generations/g1" in capsys.readouterr().out
    with store:
        wait_for(lambda: store.migration_status()["state"] == "swapped", what="the swap")
    swapped = status()
    assert swapped["state_dir"] == str(state / "generations" / "g1")
    assert (swapped["dim"], swapped["documents"], swapped["chunks"]) == (32, 6, building["chunks"])
    assert swapped["cache"]["entries"] == 2 * building["chunks"], "the root's cache, both models' vectors"
    assert swapped["generations"]["building"] is None


def test_a_migrating_generation_embeds_in_small_slices_and_yields_before_each(tmp_path: Path) -> None:
    """The model takes one call at a time: a live edit of the serving generation waits for the slice of
    the migration in progress, so the new generation never hands it a whole batch."""
    folder = tmp_path / "docs"
    write_folder(folder, 30)
    config = config_for(folder, tmp_path / "state", max_tokens=16)
    store = config.build_store()
    yields: list[int] = []
    store.before_embed = lambda: yields.append(1)
    store.run_static()
    embedder = store.embedder
    assert isinstance(embedder, HashingEmbedder)
    sizes = [len(batch) for batch in embedder.calls]
    assert sum(sizes) > 100  # chunk texts (a repeated text is embedded once)
    assert max(sizes) <= 16 and len(yields) == len(sizes)
