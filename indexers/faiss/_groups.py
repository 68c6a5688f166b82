"""Metadata groups of the faiss index: each distinct metadata value is stored once under a group id, with
the count of live chunks carrying it, so that a filter runs once per value and not once per chunk."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np

from ._blocks import IntArray, Metadata

_MIN_RELEASE = 1024
"""Dead groups are kept until they are this many, and more than the live ones."""


class MetadataGroups:
    """The writer's table of metadata groups. ``values`` is shared with published snapshots: it is only
    appended to, and replaced by a new list (never edited in place) when dead groups are released.

    Args:
        values: the groups of a saved index (``None`` where one was released), their chunks still to be
            counted with :meth:`count_live`; none for a new index.
    """

    def __init__(self, values: Sequence[Metadata | None] = ()) -> None:
        self.values: list[Metadata | None] = list(values)
        self._keys: list[Hashable | None] = [metadata_key(v) if v is not None else None for v in self.values]
        self._of_key: dict[Hashable, int] = {
            key: gid for gid, key in enumerate(self._keys) if key is not None
        }
        self._live = np.zeros(len(self.values), dtype=np.int64)
        self._dead: set[int] = set()

    def intern(self, keys: Sequence[Hashable], metadata: Sequence[Metadata]) -> IntArray:
        """Group ids of new chunks' metadata (``keys`` from :func:`metadata_key`), counted as live;
        values not seen before get new groups."""
        gids = np.empty(len(keys), dtype=np.int64)
        for row, (key, value) in enumerate(zip(keys, metadata, strict=True)):
            gid = self._of_key.get(key)
            if gid is None:
                gid = len(self.values)
                self._of_key[key] = gid
                self._keys.append(key)
                # A private copy: the caller may reuse or mutate its dict after the apply.
                self.values.append(dict(value))
            gids[row] = gid
        if len(self.values) > len(self._live):
            grown = np.zeros(max(2 * len(self._live), len(self.values), 1024), dtype=np.int64)
            grown[: len(self._live)] = self._live
            self._live = grown
        touched = np.unique(gids)
        self._dead.difference_update(touched[self._live[touched] == 0].tolist())
        self.count_live(gids)
        return gids

    def count_live(self, gids: IntArray) -> None:
        """Count one more live chunk in each of ``gids`` (repeats count repeatedly)."""
        np.add.at(self._live, gids, 1)

    def drop(self, gids: IntArray) -> None:
        """Count one live chunk less in each of ``gids``; groups left without any become dead."""
        if not len(gids):
            return  # the usual case for an upsert's own ids; numpy's calls would cost more than the apply
        np.subtract.at(self._live, gids, 1)
        touched = np.unique(gids)
        self._dead.update(touched[self._live[touched] == 0].tolist())

    def mark_unused_dead(self) -> None:
        """Make every group without live chunks dead (after counting a loaded index's chunks)."""
        self._dead.update(
            gid for gid, value in enumerate(self.values) if value is not None and self._live[gid] == 0
        )

    def release_dead(self) -> None:
        """Forget the metadata of groups without live chunks once they outnumber the live ones."""
        live_groups = len(self.values) - len(self._dead)
        if len(self._dead) <= max(_MIN_RELEASE, live_groups):
            return
        # A new list, so that snapshots still reading the old one keep their metadata.
        values = list(self.values)
        for gid in self._dead:
            key = self._keys[gid]
            if key is not None:
                del self._of_key[key]
            self._keys[gid] = None
            values[gid] = None
        self.values = values
        self._dead.clear()

    def live_groups(self) -> int:
        """Groups with at least one live chunk."""
        return int(np.count_nonzero(self._live))


def metadata_key(value: Any) -> Hashable:
    """A hashable stand-in for a metadata value: equal keys mean equal values of the same types."""
    if isinstance(value, Mapping):
        return (Mapping, frozenset((k, metadata_key(v)) for k, v in value.items()))
    if isinstance(value, list | tuple):
        return (list, tuple(metadata_key(v) for v in value))
    try:
        hash(value)
    except TypeError:
        # Unhashable and not a container we know: equal only to itself (the group keeps it alive).
        return (id, id(value))
    return (type(value), value)
