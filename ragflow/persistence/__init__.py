"""Durable document state for ``DocumentStore``: checkpoints of the parsed documents and of each source's
position in ``<state_dir>/state.sqlite``, verified and loaded on start, so that a restart re-parses and
re-embeds nothing that did not change while it was stopped (see docs/persistence.md).

The package's modules, one job each: ``records`` (what a checkpoint holds, and the errors), ``rows`` (its
checksummed rows), ``statefile`` (the file: schema, lock, open, write), ``checkpointer`` (when to write),
``embedding_cache`` (a cache that survives a full disk), ``failures`` (why a write failed, for people) and
``describe`` (the ``describe_state`` report).
"""

from __future__ import annotations

from ..sources import PositionScope, position_scope  # the source contract; also named here
from .checkpointer import Checkpointer
from .describe import describe_state
from .embedding_cache import TolerantCache
from .failures import human_size
from .records import (
    CACHE_FILE,
    FORMAT_VERSION,
    STATE_FILE,
    CheckpointBatch,
    CheckpointInfo,
    IncompatibleStateError,
    OnIncompatible,
    SavedDocument,
    SavedState,
    SourceState,
    StateError,
    StateIdentity,
)
from .statefile import LOCK_FILE, DirectoryLock, StateFile, open_state, read_state

__all__ = [
    "CACHE_FILE",
    "FORMAT_VERSION",
    "LOCK_FILE",
    "STATE_FILE",
    "CheckpointBatch",
    "CheckpointInfo",
    "Checkpointer",
    "DirectoryLock",
    "IncompatibleStateError",
    "OnIncompatible",
    "PositionScope",
    "SavedDocument",
    "SavedState",
    "SourceState",
    "StateError",
    "StateFile",
    "StateIdentity",
    "TolerantCache",
    "describe_state",
    "human_size",
    "open_state",
    "position_scope",
    "read_state",
]
