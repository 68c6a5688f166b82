"""Offsets: the Kafka source's position (the next offset to read, per topic and partition), where a
partition starts when it is assigned, and the ``start`` option."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ragflow.errors import ConfigError

__all__ = ["BEGINNING", "Offsets", "StartAt", "parse_start", "read_position"]

log = logging.getLogger("ragflow.connectors.kafka")

BEGINNING = -2
"""librdkafka's logical offset for "the first message still in the partition" (``OFFSET_BEGINNING``);
saved for a partition that was assigned but gave nothing yet, so a restart still starts at its beginning."""

Offsets = dict[tuple[str, int], int]
"""``(topic, partition) -> next offset to read`` (``BEGINNING`` before the first message)."""


@dataclass(frozen=True, slots=True)
class StartAt:
    """Where a partition that neither this state nor the group has an offset for starts."""

    where: str
    """``"earliest"``, ``"latest"`` or ``"timestamp"``."""
    timestamp_millis: int | None = None


def parse_start(start: str | int | dt.datetime) -> StartAt:
    """``start`` as configured: ``earliest``, ``latest``, a Unix time in milliseconds, an ISO 8601 time
    (UTC when it names no zone) or a ``datetime``."""
    if isinstance(start, dt.datetime):
        return StartAt("timestamp", _millis(start))
    if isinstance(start, bool):
        raise ConfigError(f"start must be 'earliest', 'latest' or a time, got {start!r}")
    if isinstance(start, int):
        if start < 0:
            raise ConfigError(f"start must be a non-negative Unix time in milliseconds, got {start}")
        return StartAt("timestamp", start)
    if start in ("earliest", "latest"):
        return StartAt(start)
    try:
        return StartAt("timestamp", _millis(dt.datetime.fromisoformat(str(start))))
    except ValueError:
        raise ConfigError(
            f"start must be 'earliest', 'latest', a Unix time in milliseconds or an ISO 8601 time such as "
            f"'2025-01-31T12:00:00Z', got {start!r}"
        ) from None


def read_position(position: Any, source: str) -> Offsets | None:
    """The offsets a saved ``position`` holds (``{topic: {partition: offset}}``); ``None`` for none (a
    fresh state) or one this version cannot read (logged: the source then starts as on a fresh state)."""
    if position is None:
        return None
    try:
        return {
            (str(topic), int(partition)): int(offset)
            for topic, partitions in dict(position).items()
            for partition, offset in dict(partitions).items()
        }
    except (TypeError, ValueError, AttributeError):
        log.warning("source %r: saved position %r is not a Kafka position; starting afresh", source, position)
        return None


def as_position(offsets: Mapping[tuple[str, int], int]) -> dict[str, dict[int, int]]:
    """``offsets`` as a change's position (what a checkpoint saves): ``{topic: {partition: offset}}``."""
    position: dict[str, dict[int, int]] = {}
    for (topic, partition), offset in sorted(offsets.items()):
        position.setdefault(topic, {})[partition] = offset
    return position


def _millis(moment: dt.datetime) -> int:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return int(moment.timestamp() * 1000)
