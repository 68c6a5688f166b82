"""How one Kafka message becomes one document change, per ``format``: ``raw`` (the value is the document's
bytes), ``json`` (an envelope with the text or base64 data) and ``debezium`` (a CDC event of a table of
documents). A message that cannot be read (a poison message) becomes a change with an ``error`` that names
its topic, partition and offset; it never raises."""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from ragflow.sources import ChangeKind, DocumentChange, deletion

__all__ = ["FORMATS", "Decoded", "Message", "MessageFormat", "decode", "document_path"]

MessageFormat = Literal["raw", "json", "debezium"]
FORMATS: tuple[MessageFormat, ...] = ("raw", "json", "debezium")

# Metadata keys the source sets itself; a message's own metadata (json) or columns (debezium) cannot
# override them.
_SYSTEM_KEYS = frozenset(
    {"path", "doc_id", "topic", "partition", "offset", "timestamp_millis", "headers", "key", "size"}
    | {"seen_at", "seen_at_ns", "modified_at", "created_at"}
)
_CONTENT_TYPE_HEADERS = ("content-type", "content_type")
_FILENAME_HEADERS = ("path", "filename", "file_name")


@dataclass(frozen=True, slots=True)
class Message:
    """What the source needs of a consumed Kafka message (``confluent_kafka.Message`` is not built by
    hand, so tests and the decoder use this)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...] = ()
    timestamp_millis: int | None = None

    @classmethod
    def of(cls, raw: Any) -> Message:
        """What the source needs of ``raw``, a consumed ``confluent_kafka.Message``."""
        stamp_type, stamp = raw.timestamp()
        return cls(
            raw.topic(),
            raw.partition(),
            raw.offset(),
            raw.key(),
            raw.value(),
            tuple(raw.headers() or ()),
            stamp if stamp_type else None,
        )

    @property
    def where(self) -> str:
        """``topic[partition]@offset``, as errors name the message."""
        return f"{self.topic}[{self.partition}]@{self.offset}"


@dataclass(frozen=True, slots=True)
class Decoded:
    """A message's change, and the reason it is poison (``None`` when it was read fine)."""

    change: DocumentChange
    poison: str | None = None


@dataclass(frozen=True, slots=True)
class DecodeOptions:
    """The source's options that decoding reads."""

    format: MessageFormat = "raw"
    max_message_bytes: int = 10 * 1024 * 1024
    content_type: str | None = None
    id_column: str = "id"
    text_column: str = "text"


class _Poison(Exception):
    """A message that cannot become a document; the message says why."""


def document_path(topic: str, doc_key: str) -> str:
    """A document's id and ``path``: ``kafka://<topic>/<id>``, so that glob filters match it."""
    return f"kafka://{topic}/{doc_key}"


def decode(message: Message, options: DecodeOptions) -> Decoded:
    """The change ``message`` stands for under ``options.format``; a poison message becomes an UPSERT with
    ``error`` set (of its key's document when the key is readable, else of a document named after the
    message's place), whose text names the topic, partition and offset."""
    seen_ns = time.time_ns()
    key = _text_or_none(message.key)
    try:
        if message.value is not None and len(message.value) > options.max_message_bytes:
            raise _Poison(
                f"the value is {len(message.value)} bytes, over max_message_bytes "
                f"{options.max_message_bytes}; raise max_message_bytes or send a smaller document"
            )
        return Decoded(_READERS[options.format](message, key, options, seen_ns))
    except _Poison as exc:
        reason = f"kafka message {message.where}: {exc}"
        doc_key = key if key else f"{message.partition}@{message.offset}"
        metadata = _metadata(message, document_path(message.topic, doc_key), key, seen_ns)
        return Decoded(
            DocumentChange(metadata["path"], ChangeKind.UPSERT, None, metadata, error=reason), reason
        )


# -- the formats --------------------------------------------------------------------------------------


def _raw(message: Message, key: str | None, options: DecodeOptions, seen_ns: int) -> DocumentChange:
    doc_key = _required_key(message, key)
    path = document_path(message.topic, doc_key)
    if message.value is None:  # a tombstone
        return deletion(path, path, seen_ns)
    metadata = _metadata(message, path, key, seen_ns, size=len(message.value))
    # what the parser reads the type from (see DefaultParser.parse): the message's own content-type, else
    # its file name's suffix, else the configured content_type, else the id's suffix and the content
    filename = _header(message, _FILENAME_HEADERS)
    content_type = _header(message, _CONTENT_TYPE_HEADERS) or (None if filename else options.content_type)
    if content_type:
        metadata["content_type"] = content_type.split(";")[0].strip().lower()
    if filename:
        metadata["filename"] = filename
    return DocumentChange(path, ChangeKind.UPSERT, message.value, metadata)


def _json(message: Message, key: str | None, options: DecodeOptions, seen_ns: int) -> DocumentChange:
    if message.value is None:
        path = document_path(message.topic, _required_key(message, key))
        return deletion(path, path, seen_ns)
    envelope = _json_object(message.value, "the value")
    doc_key = envelope.get("id", key)
    if doc_key is None or doc_key == "":
        raise _Poison("no 'id' in the value and no key: a document needs one or the other")
    path = document_path(message.topic, str(doc_key))
    op = envelope.get("op", "upsert")
    if op == "delete":
        return deletion(path, path, seen_ns)
    if op != "upsert":
        raise _Poison(f"'op' is {op!r}; use 'upsert' or 'delete'")
    data = _envelope_data(envelope)
    metadata = _metadata(message, path, key, seen_ns, size=len(data))
    extra = envelope.get("metadata") or {}
    if not isinstance(extra, Mapping):
        raise _Poison(f"'metadata' must be an object, got {type(extra).__name__}")
    metadata.update((k, v) for k, v in extra.items() if str(k) not in _SYSTEM_KEYS)
    return DocumentChange(path, ChangeKind.UPSERT, data, metadata)


def _debezium(message: Message, key: str | None, options: DecodeOptions, seen_ns: int) -> DocumentChange:
    if message.value is None:  # the tombstone that follows a delete: the id is in the key
        row_key = _unwrap(_json_object(message.key or b"", "the key")) if message.key else {}
        path = document_path(message.topic, _column(row_key, options.id_column, "the key"))
        return deletion(path, path, seen_ns)
    event = _unwrap(_json_object(message.value, "the value"))
    op = event.get("op")
    if op == "d":
        before = event.get("before")
        if not isinstance(before, Mapping):
            raise _Poison("a delete ('op': 'd') without a 'before' row; enable REPLICA IDENTITY or key it")
        path = document_path(message.topic, _column(before, options.id_column, "'before'"))
        return deletion(path, path, seen_ns)
    if op not in ("c", "u", "r"):
        raise _Poison(f"'op' is {op!r}; a Debezium event has 'c', 'u', 'r' or 'd'")
    after = event.get("after")
    if not isinstance(after, Mapping):
        raise _Poison(f"an event with 'op': {op!r} has no 'after' row")
    path = document_path(message.topic, _column(after, options.id_column, "'after'"))
    text = after.get(options.text_column)
    if not isinstance(text, str):
        raise _Poison(
            f"the row has no text column {options.text_column!r} (columns: {sorted(after)}); "
            "set text_column to the column that holds the document"
        )
    data = text.encode("utf-8")
    metadata = _metadata(message, path, key, seen_ns, size=len(data))
    metadata["op"] = op
    metadata.update(
        (str(k), v)
        for k, v in after.items()
        if k != options.text_column and str(k) not in _SYSTEM_KEYS and _is_scalar(v)
    )
    return DocumentChange(path, ChangeKind.UPSERT, data, metadata)


_READERS: dict[str, Callable[[Message, str | None, DecodeOptions, int], DocumentChange]] = {
    "raw": _raw,
    "json": _json,
    "debezium": _debezium,
}


# -- pieces -------------------------------------------------------------------------------------------


def _metadata(
    message: Message, path: str, key: str | None, seen_ns: int, size: int | None = None
) -> dict[str, Any]:
    seconds = seen_ns // 1_000_000_000
    stamp = message.timestamp_millis
    modified = stamp // 1000 if stamp is not None and stamp > 0 else seconds
    metadata: dict[str, Any] = {
        "path": path,
        "topic": message.topic,
        "partition": message.partition,
        "offset": message.offset,
        "timestamp_millis": stamp,
        "headers": {name: _text_or_none(value) for name, value in message.headers},
        "key": key,
        "modified_at": modified,
        "seen_at": seconds,
        "seen_at_ns": seen_ns,
    }
    if size is not None:
        metadata["size"] = size
    return metadata


def _required_key(message: Message, key: str | None) -> str:
    if message.key is None or message.key == b"":
        raise _Poison("no key: in the raw format the key is the document's id")
    if key is None:
        raise _Poison("the key is not valid UTF-8; keys are document ids")
    return key


def _json_object(raw: bytes, what: str) -> Mapping[str, Any]:
    try:
        value = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise _Poison(f"{what} is not UTF-8 ({exc.reason} at byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise _Poison(f"{what} is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    if not isinstance(value, Mapping):
        raise _Poison(f"{what} must be a JSON object, got {type(value).__name__}")
    return value


def _envelope_data(envelope: Mapping[str, Any]) -> bytes:
    text, encoded = envelope.get("text"), envelope.get("data_base64")
    if isinstance(text, str):
        return text.encode("utf-8")
    if isinstance(encoded, str):
        try:
            return base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise _Poison("'data_base64' is not valid base64") from None
    raise _Poison("the value has neither a 'text' string nor a 'data_base64' string")


def _unwrap(event: Mapping[str, Any]) -> Mapping[str, Any]:
    """A Debezium event or key without its ``{"schema": ..., "payload": ...}`` wrapping, if it has one."""
    payload = event.get("payload")
    if "schema" in event and isinstance(payload, Mapping):
        return payload
    return event


def _column(row: Mapping[str, Any], column: str, where: str) -> str:
    value = row.get(column)
    if value is None or value == "" or isinstance(value, dict | list):
        raise _Poison(f"{where} has no id column {column!r} (columns: {sorted(row)}); set id_column")
    return str(value)


def _header(message: Message, names: tuple[str, ...]) -> str | None:
    for name, value in message.headers:
        if name.lower() in names and value:
            return _text_or_none(value)
    return None


def _text_or_none(raw: bytes | None) -> str | None:
    if raw is None:
        return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _is_scalar(value: object) -> bool:
    return value is None or isinstance(value, str | int | float | bool)
