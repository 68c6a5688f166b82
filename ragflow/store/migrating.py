"""``MigratingStore``: a configuration change that alters what the index holds (embedding model, dimension,
parser/splitter settings, state format) becomes a migration nobody notices. The active generation keeps
serving and keeps applying every source change; the next generation is built beside it from the saved
parses, at a lower priority; once both hold the same documents, queries switch to it in one step, with
its query embedder (docs/persistence.md, "Generations and migrations").

Guarantees, and where they come from:

* A query runs wholly on one generation: it takes the active ``DocumentStore`` once (one reference,
  replaced under ``_lock``) and that store's index and query embedder answer it.
* The swap never goes back in time: it happens while the active store cannot apply an epoch (its
  ``apply_lock``), only when the new store is idle and its sources hold exactly the documents (ids and
  content digests) that the active store's sources hold. "Idle" includes its sources: a change a source
  thread recorded but has not yet handed to the engine counts as pending (``DocumentFeed.pending``).
* With an evaluation gate (``ragflow.store.migration_gate``), the swap also waits until the new
  generation scores at least as well on a labelled question set, unless forced.
* A crash at any point leaves exactly one generation active: ``generation.json`` names it and is replaced
  atomically (``generations.write_pointer``). A migration interrupted by a crash resumes from the new
  generation's own checkpoints, its vectors from the embedding cache.

The mechanism is above the index contract: each generation is a ``DocumentStore`` with its own
``VectorIndex`` instance, whatever its kind.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

from ..engine import DiskCache, EpochReport, UdfCache
from ..errors import ConfigError
from ..persistence import CACHE_FILE, FORMAT_VERSION, DirectoryLock, SavedState, StateIdentity, read_state
from .document_store import DocumentStore
from .generations import (
    UploadFanout,
    leftover_generations,
    next_generation,
    read_pointer,
    read_recipe,
    remove_generation,
    write_pointer,
    write_recipe,
)
from .migration_gate import GateKeeper, MigrationGate

__all__ = ["MigratingStore", "StoreRecipe", "UploadFanout"]

log = logging.getLogger("ragflow.store")

_LOCK_FILE = "generations.lock"
_MAX_YIELD = 0.25
"""The longest a batch of the new generation waits for live changes and queries before it embeds anyway
(so a migration under constant load still progresses)."""


class StoreRecipe(Protocol):
    """How to build a generation: the settings it is saved with (JSON) and the store they make."""

    @property
    def settings(self) -> dict[str, Any]:
        """What the generation's ``recipe.json`` keeps, enough for ``with_settings`` to build it again."""
        ...

    def identity(self) -> StateIdentity:
        """What the generation's state is valid for (model, dimension, parser/splitter)."""
        ...

    def with_settings(self, settings: Mapping[str, Any]) -> StoreRecipe:
        """This recipe with a saved generation's settings (its model, splitter...) instead of its own."""
        ...

    def build(self, state_dir: Path, cache: UdfCache, seed: SavedState | None) -> DocumentStore:
        """A new ``DocumentStore`` (not started) on ``state_dir`` with the shared embedding ``cache``,
        seeded from ``seed`` (another generation's checkpoint) when its own state is empty. Its sources
        are new instances of the configured ones."""
        ...


class MigrationAction(ConfigError):
    """``abort``, ``rollback`` or ``start`` cannot be done now (the REST API answers 409)."""


class MigratingStore:
    """A store made of generations (see the module's documentation); it answers what a ``DocumentStore``
    answers, from the active generation, plus ``migration_status``, ``abort_migration``,
    ``rollback_migration`` and ``start_migration``.

    Args:
        state_dir: The state directory (the root generation, the pointer file and the embedding cache).
        recipe: What the configuration builds now.
        keep_previous: Seconds the replaced generation keeps running after a swap, for an instant
            rollback; then it is stopped and deleted (``0``: at once).
        gate: An evaluation gate: the swap waits while the new generation scores lower on its
            evaluation set (``ragflow.store.migration_gate``).
    """

    def __init__(
        self,
        state_dir: str | Path,
        recipe: StoreRecipe,
        *,
        keep_previous: float = 600.0,
        gate: MigrationGate | None = None,
    ) -> None:
        if keep_previous < 0:
            raise ConfigError(f"keep_previous must be 0 or more seconds, got {keep_previous}")
        self.state_dir = Path(state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.recipe = recipe
        self.keep_previous = keep_previous
        self._dir_lock = DirectoryLock(self.state_dir, _LOCK_FILE, holder="server")
        self._lock = threading.RLock()
        self._listeners: list[Callable[[EpochReport], None]] = []
        self._queries = 0
        self._stopped = threading.Event()
        self._started_at: float | None = None
        self._thread: threading.Thread | None = None
        self._previous: DocumentStore | None = None
        self._previous_until: float | None = None
        self._new: DocumentStore | None = None
        self._status: dict[str, Any] = {"state": "none"}
        self._gate = gate
        self._gatekeeper = GateKeeper(gate)
        self._progress: list[tuple[float, int]] = []
        try:
            self.cache = DiskCache(self.state_dir / CACHE_FILE)
            self._pointer = read_pointer(self.state_dir)
            self._active = self._open()
        except BaseException:
            self._dir_lock.release()
            raise

    # -- opening --------------------------------------------------------------------------------------

    def _open(self) -> DocumentStore:
        pointer = self._pointer
        target = self.recipe.identity().meta()
        active_dir = self.state_dir / pointer.active
        found = read_state(active_dir)
        keep = {pointer.active}
        if pointer.building is not None and (found is None or found[0] != target):
            keep.add(pointer.building)
        leftovers = leftover_generations(self.state_dir, keep)
        if pointer.previous == "." and "." not in keep:
            leftovers.append(".")
        for name in leftovers:
            log.info("removing the generation %s (replaced, or a migration that was dropped)", name)
            remove_generation(self.state_dir, name)
        if pointer.previous is not None or (pointer.building is not None and pointer.building not in keep):
            pointer.previous = None if pointer.previous not in keep else pointer.previous
            pointer.building = pointer.building if pointer.building in keep else None
            write_pointer(self.state_dir, pointer)
        if found is None or _same(found[0], target):
            store = self._build(self.recipe, pointer.active, None)
            return store
        saved_settings = read_recipe(active_dir)
        if saved_settings is None or found[0].get("format_version") != str(FORMAT_VERSION):
            return self._replace_unservable(found[0], target)
        active = self._build(self.recipe.with_settings(saved_settings), pointer.active, None)
        if pointer.declined is not None and _same(pointer.declined, target):
            self._status = {
                "state": "declined",
                "message": "a migration to the configured settings was aborted or rolled back; "
                "`ragflow migrate start` starts it again",
                "to": target,
            }
            log.warning(
                "serving the generation %s (%s): the migration to the configured settings was aborted or "
                "rolled back; run `ragflow migrate start` to migrate again",
                pointer.active,
                _describe(found[0]),
            )
            return active
        self._active = active
        try:
            self._prepare_migration(found[0], target)
        except BaseException:
            active.stop(timeout=5)
            raise
        return active

    def _replace_unservable(self, saved: Mapping[str, str], target: Mapping[str, str]) -> DocumentStore:
        """The active generation cannot be served by this version (another state format, or no saved
        settings: written before generations): a new generation is built at once and the old one removed,
        as ``rebuild`` would do; queries see a partial index until it is complete."""
        log.warning(
            "the state in %s was written with %s, and cannot be served while its replacement is built "
            "(%s): building the index again for %s; queries see a partial index until it is complete",
            self.state_dir / self._pointer.active,
            _describe(saved),
            "another state format"
            if saved.get("format_version") != str(FORMAT_VERSION)
            else "it has no recipe.json, written by an older ragflow",
            _describe(target),
        )
        old = self._pointer.active
        name = next_generation(self.state_dir, self._pointer)
        self._pointer.active, self._pointer.building = name, None
        self._pointer.note("rebuilt", **{"from": dict(saved), "to": dict(target)})
        write_pointer(self.state_dir, self._pointer)
        remove_generation(self.state_dir, old)
        return self._build(self.recipe, name, None)

    def _prepare_migration(self, saved: Mapping[str, str], target: Mapping[str, str]) -> None:
        pointer = self._pointer
        name = pointer.building or next_generation(self.state_dir, pointer)
        existing = read_state(self.state_dir / name)
        if existing is not None and not _same(existing[0], target):
            remove_generation(self.state_dir, name)  # a migration to other settings, dropped
            existing = None
        resumed = existing is not None and existing[1].last_checkpoint is not None
        seed: SavedState | None = None
        if not resumed and saved.get("parser_id") == target.get("parser_id"):
            found = read_state(self.state_dir / pointer.active)
            seed = found[1] if found is not None else None
        pointer.building, pointer.declined = name, None
        write_pointer(self.state_dir, pointer)
        self._new = self._build(self.recipe, name, seed)
        self._new.before_embed = self._yield_to_live_work
        self._gatekeeper = GateKeeper(self._gate)
        total = self._active.statistics()["file_count"] or 0
        self._status = {
            "state": "building",
            "generation": name,
            "from": dict(saved),
            "to": dict(target),
            "resumed": resumed,
            "seeded_from_saved_parses": seed is not None,
            "documents_total": total,
            "started_at": time.time(),
        }
        log.info(
            "migrating %s from %s to %s: building the generation %s beside the active one (%s); "
            "queries keep being answered by %s until the swap",
            self.state_dir,
            _describe(saved),
            _describe(target),
            name,
            "resumed from its checkpoint"
            if resumed
            else "from the saved parses"
            if seed is not None
            else "the parser or splitter changed: its sources are read and parsed again",
            pointer.active,
        )

    def _build(self, recipe: StoreRecipe, name: str, seed: SavedState | None) -> DocumentStore:
        directory = self.state_dir / name
        directory.mkdir(parents=True, exist_ok=True)
        store = recipe.build(directory, self.cache, seed)
        write_recipe(directory, dict(recipe.settings))
        store.on_update(functools.partial(self._forward, store))
        return store

    # -- lifecycle ------------------------------------------------------------------------------------

    def start(self) -> MigratingStore:
        self._started_at = time.monotonic()
        self._active.start()
        if self._new is not None:
            self._start_migration_thread()
        return self

    def stop(self, timeout: float = 30) -> None:
        self._stopped.set()
        if self._thread is not None:
            self._thread.join(timeout)
        with self._lock:
            others = [s for s in (self._new, self._previous) if s is not None]
            self._new = self._previous = None
        try:
            for store in others:
                _stop_quietly(store, timeout)
            self._active.stop(timeout)
        finally:
            self.cache.close()
            self._dir_lock.release()

    def run_static(self) -> None:
        raise ConfigError("a MigratingStore serves; index once with a DocumentStore (ragflow index)")

    def __enter__(self) -> MigratingStore:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- what a DocumentStore answers: the active generation ------------------------------------------

    @property
    def active(self) -> DocumentStore:
        """The generation that answers queries now."""
        return self._active

    def __getattr__(self, name: str) -> Any:
        # everything else a DocumentStore offers, from the generation active when it is asked for
        if name.startswith("__") or name in ("_active", "_lock"):
            raise AttributeError(name)
        return getattr(self._active, name)

    def retrieve(self, *args: Any, **kwargs: Any) -> Any:
        with self._query():
            return self._active.retrieve(*args, **kwargs)

    async def aretrieve(self, *args: Any, **kwargs: Any) -> Any:
        with self._query():
            return await self._active.aretrieve(*args, **kwargs)

    def on_update(self, callback: Callable[[EpochReport], None]) -> None:
        """Call ``callback(report)`` after each epoch of the active generation."""
        self._listeners.append(callback)

    def accepts_uploads(self, uploads: Any) -> bool:
        """Whether ``uploads`` (an ``UploadFanout`` of this store) reaches the generations' sources."""
        return isinstance(uploads, UploadFanout) and uploads.store is self

    def generations(self) -> list[DocumentStore]:
        """The running generations, the active one first."""
        with self._lock:
            return [s for s in (self._active, self._new, self._previous) if s is not None]

    @contextlib.contextmanager
    def _query(self) -> Iterator[None]:
        with self._lock:
            self._queries += 1
        try:
            yield
        finally:
            with self._lock:
                self._queries -= 1

    def _forward(self, store: DocumentStore, report: EpochReport) -> None:
        if store is not self._active:
            return
        for listener in self._listeners:
            try:
                listener(report)
            except Exception:
                log.exception("on_update callback failed")

    def _yield_to_live_work(self) -> None:
        """Before each slice the new generation embeds: wait (at most ``_MAX_YIELD`` s) while queries run or
        the active generation has live changes to index."""
        deadline = time.monotonic() + _MAX_YIELD
        while time.monotonic() < deadline and not self._stopped.is_set():
            if self._queries == 0 and self._active.engine.wait_idle(0):
                return
            time.sleep(0.005)

    # -- the migration ------------------------------------------------------------------------------

    def _start_migration_thread(self) -> None:
        new = self._new
        assert new is not None
        new.start()
        self._progress = [(time.monotonic(), 0)]
        self._thread = threading.Thread(
            target=self._migrate, args=(new,), name="ragflow-migration", daemon=True
        )
        self._thread.start()

    def _migrate(self, new: DocumentStore) -> None:
        try:
            while not self._stopped.is_set() and self._new is new:
                if new.engine.failure is not None:
                    raise new.engine.failure
                self._note_progress(new)
                if new.wait_until_fresh(0) and self._gate_allows(new) and self._try_swap(new):
                    break
                self._stopped.wait(0.05)
            self._expire_previous()
        except BaseException as exc:
            log.exception("the migration failed; the active generation keeps serving")
            with self._lock:
                self._status.update(state="failed", error=f"{type(exc).__name__}: {exc}")

    def _note_progress(self, new: DocumentStore) -> None:
        done = new.statistics()["file_count"] or 0
        now = time.monotonic()
        self._progress.append((now, done))
        self._progress = [(t, d) for t, d in self._progress if now - t <= 30] or [(now, done)]
        first_t, first_d = self._progress[0]
        rate = (done - first_d) / (now - first_t) if now - first_t > 0.5 else None
        total = max(self._status.get("documents_total") or 0, self._active.statistics()["file_count"] or 0)
        remaining = max(0, total - done)
        self._status.update(
            documents_done=done,
            documents_total=total,
            chunks_done=new.index.count(),
            rate_documents_per_second=round(rate, 2) if rate is not None else None,
            eta_seconds=round(remaining / rate, 1) if rate else (0.0 if remaining == 0 else None),
        )

    def _gate_allows(self, new: DocumentStore) -> bool:
        """Whether the evaluation gate (if any) lets ``new`` replace the active generation now; while it
        holds, the state is ``held`` and both scores are in the status."""
        keeper = self._gatekeeper
        allowed = keeper.allows(self._active, new, lambda: frozenset(_documents_view(new).items()))
        with self._lock:
            if self._new is new:
                self._status["state"] = "catching_up" if allowed else "held"
        return allowed

    def _try_swap(self, new: DocumentStore) -> bool:
        """Swap if ``new`` holds what the active generation holds; ``False`` to try again shortly."""
        old = self._active
        if not new.flush_checkpoint():  # so that a restart after the swap finds the new one complete
            return False
        warm = new.query_embedder.embed(["warm up"])  # the first query after the swap must not load a model
        del warm
        with old.apply_lock:  # the active generation cannot apply an epoch until the swap is done
            # the view first, idleness after: a change the view holds is then in the engine or applied
            # (a feed counts a change recorded but not yet pushed as pending, DocumentFeed.pending)
            view = _documents_view(new)
            if view != _documents_view(old) or not new.engine.wait_idle(0):
                return False
            with self._lock:
                if self._new is not new or self._stopped.is_set():
                    return True
                pointer = self._pointer
                previous = pointer.active
                pointer.previous, pointer.active, pointer.building = (
                    previous,
                    self._status["generation"],
                    None,
                )
                pointer.swapped_at = time.time()
                gate = self._gatekeeper.describe()
                pointer.note(
                    "swapped",
                    **{"from": self._status["from"], "to": self._status["to"]},
                    **({"gate": gate} if gate is not None else {}),
                )
                write_pointer(self.state_dir, pointer)  # the swap, on disk: one atomic rename
                self._active, self._new, self._previous = new, None, old
                new.before_embed = None
                self._previous_until = time.monotonic() + self.keep_previous
                self._status.update(
                    state="swapped",
                    swapped_at=pointer.swapped_at,
                    previous=previous,
                    rollback_until=time.time() + self.keep_previous,
                    documents_done=len(view),
                    eta_seconds=0.0,
                )
        log.info(
            "swapped: queries are answered by the generation %s (%s); the previous one (%s) is kept for "
            "a rollback for %.0f s",
            pointer.active,
            _describe(self._status["to"]),
            previous,
            self.keep_previous,
        )
        return True

    def _expire_previous(self) -> None:
        """Keep the replaced generation live for ``keep_previous`` seconds, then stop and delete it."""
        while not self._stopped.is_set():
            with self._lock:
                until = self._previous_until
                if self._previous is None or until is None:
                    return
                if time.monotonic() >= until:
                    self._drop_previous()
                    return
            self._stopped.wait(min(1.0, max(0.0, until - time.monotonic())))

    def _drop_previous(self) -> None:
        with self._lock:
            previous, self._previous, self._previous_until = self._previous, None, None
            name, self._pointer.previous = self._pointer.previous, None
            write_pointer(self.state_dir, self._pointer)
            self._status.pop("rollback_until", None)
            self._status["previous"] = None
        if previous is not None:
            _stop_quietly(previous, 10)
        if name is not None:
            remove_generation(self.state_dir, name)
            log.info("removed the previous generation %s", name)

    # -- control --------------------------------------------------------------------------------------

    def migration_status(self) -> dict[str, Any]:
        """Where a migration stands: ``state`` (``none``, ``building``, ``catching_up``, ``held`` (by the
        evaluation gate), ``swapped``, ``aborted``, ``rolled_back``, ``declined``, ``failed``), the
        ``active`` generation, the one being built, ``from``/``to`` identities,
        ``documents_done``/``documents_total``, ``chunks_done``, ``rate_documents_per_second``,
        ``eta_seconds``, with a gate its ``gate`` (both generations' scores), and after a swap the
        ``previous`` generation kept until ``rollback_until``."""
        with self._lock:
            status = dict(self._status)
            gate = self._gatekeeper.describe()
            if gate is not None and status["state"] != "none":
                status["gate"] = gate
            status["active"] = self._pointer.active
            status["building"] = self._pointer.building
            status["previous"] = self._pointer.previous if self._previous is not None else None
            status["history"] = list(self._pointer.history[-5:])
        return status

    def abort_migration(self) -> dict[str, Any]:
        """Stop building the new generation and delete it; the active generation goes on serving. A
        restart with the same configuration does not start it again (``start_migration`` does)."""
        with self._lock:
            new = self._new
            if new is None:
                raise MigrationAction("no migration is running (ragflow migrate status)")
            self._new = None
            name = self._pointer.building
            self._pointer.building = None
            self._pointer.declined = dict(self._status["to"])
            self._pointer.note("aborted", generation=name)
            write_pointer(self.state_dir, self._pointer)
            self._status.update(state="aborted", aborted_at=time.time())
        _stop_quietly(new, 10)
        if name is not None:
            remove_generation(self.state_dir, name)
        log.info("aborted the migration; the generation %s keeps serving", self._pointer.active)
        return self.migration_status()

    def rollback_migration(self) -> dict[str, Any]:
        """Swap back to the generation the last swap replaced, while it is kept (``keep_previous``); the
        rolled-back generation is deleted, and a restart with the same configuration keeps the old one."""
        with self._lock:
            old = self._previous
            if old is None:
                raise MigrationAction(
                    "there is no previous generation to roll back to: none was swapped out, or it was "
                    "deleted when its keep_previous_generation time ran out"
                )
            new, name = self._active, self._pointer.active
            pointer = self._pointer
            pointer.active, pointer.previous = pointer.previous or ".", None
            pointer.declined = dict(self._status.get("to") or self.recipe.identity().meta())
            pointer.note("rolled_back", generation=name)
            write_pointer(self.state_dir, pointer)
            self._active, self._previous, self._previous_until = old, None, None
            self._status.update(state="rolled_back", rolled_back_at=time.time())
            self._status.pop("rollback_until", None)
        _stop_quietly(new, 10)
        remove_generation(self.state_dir, name)
        log.info("rolled back: the generation %s serves again; %s was deleted", pointer.active, name)
        return self.migration_status()

    def start_migration(self, force: bool = False) -> dict[str, Any]:
        """Start migrating to the configured settings again after an abort or a rollback. With ``force``,
        the evaluation gate does not hold the swap: a running migration that it holds swaps now (once
        caught up), and one started now swaps without being evaluated."""
        with self._lock:
            if self._new is not None:
                if force:
                    self._gatekeeper.forced = True
                    self._pointer.note("forced", generation=self._pointer.building)
                    write_pointer(self.state_dir, self._pointer)
                    log.warning("the evaluation gate is overridden: the migration swaps once caught up")
                    return self.migration_status()
                held = (
                    " and held by the evaluation gate (--force swaps anyway)"
                    if self._gatekeeper.holding
                    else ""
                )
                raise MigrationAction(f"a migration is already running{held} (ragflow migrate status)")
            target = self.recipe.identity().meta()
            found = read_state(self.state_dir / self._pointer.active)
            if found is None or _same(found[0], target):
                raise MigrationAction("the active generation already has the configured settings")
            if self._previous is not None:
                self._drop_previous()
            if self._thread is not None and self._thread.is_alive():
                self._thread.join(5)
            self._prepare_migration(found[0], target)
            self._gatekeeper.forced = force
            self._pointer.note("started", to=dict(target))
            write_pointer(self.state_dir, self._pointer)
            if self._started_at is not None:
                self._start_migration_thread()
        return self.migration_status()


def _documents_view(store: DocumentStore) -> dict[tuple[str, str], tuple[str, str | None]]:
    """What a store's sources hold: ``(source, doc_id) -> (content digest, error)``."""
    view: dict[tuple[str, str], tuple[str, str | None]] = {}
    for feed in store.feeds:
        with feed._lock:
            rows = list(feed.current.values())
        view.update(((feed.name, row.doc_id), (row.digest, row.error)) for row in rows)
    return view


def _same(saved: Mapping[str, str], target: Mapping[str, str]) -> bool:
    return all(saved.get(key) == value for key, value in target.items())


def _describe(meta: Mapping[str, str]) -> str:
    return f"model {meta.get('model_id')!r} ({meta.get('dim')}-d), {meta.get('parser_id')}"


def _stop_quietly(store: DocumentStore, timeout: float) -> None:
    try:
        store.stop(timeout)
    except Exception:
        log.debug("a generation stopped with an error", exc_info=True)
