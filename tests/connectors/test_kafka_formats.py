"""How one Kafka message becomes a document change in each format, and how poison messages are named."""

from __future__ import annotations

import base64
import json

import pytest

from ragflow.connectors.kafka import KafkaSource, Message, decode
from ragflow.connectors.kafka.formats import DecodeOptions
from ragflow.connectors.kafka.offsets import StartAt, parse_start, read_position
from ragflow.errors import ConfigError
from ragflow.sources import ChangeKind

UPSERT, DELETE = ChangeKind.UPSERT, ChangeKind.DELETE


def message(value: bytes | None, key: bytes | None = b"notes.md", **extra: object) -> Message:
    return Message("docs", 2, 41, key, value, timestamp_millis=1_700_000_000_123, **extra)


def test_raw_message_is_the_document_keyed_by_its_key_with_kafka_metadata() -> None:
    decoded = decode(message(b"# Notes", headers=(("content-type", b"text/markdown"),)), DecodeOptions())
    change = decoded.change
    assert decoded.poison is None
    assert (change.doc_id, change.kind, change.data) == ("kafka://docs/notes.md", UPSERT, b"# Notes")
    meta = change.metadata
    assert meta["path"] == "kafka://docs/notes.md"
    assert (meta["topic"], meta["partition"], meta["offset"], meta["key"]) == ("docs", 2, 41, "notes.md")
    assert meta["timestamp_millis"] == 1_700_000_000_123 and meta["modified_at"] == 1_700_000_000
    assert meta["headers"] == {"content-type": "text/markdown"} and meta["content_type"] == "text/markdown"


def test_raw_type_comes_from_the_content_type_header_then_a_file_name_header_then_the_option() -> None:
    options = DecodeOptions(content_type="text/html")

    def declared(*headers: tuple[str, bytes]) -> tuple[object, object]:
        meta = decode(message(b"x", key=b"42", headers=headers), options).change.metadata
        return meta.get("content_type"), meta.get("filename")

    pdf = ("application/pdf", "a.md")
    assert declared(("Content-Type", b"application/PDF; x=1"), ("path", b"a.md")) == pdf
    assert declared(("filename", b"people.csv")) == (None, "people.csv")  # the suffix decides
    assert declared() == ("text/html", None)


def test_raw_tombstone_deletes_the_document() -> None:
    change = decode(message(None), DecodeOptions()).change
    assert (change.doc_id, change.kind, change.data) == ("kafka://docs/notes.md", DELETE, None)


def test_json_envelope_with_text_base64_metadata_and_op() -> None:
    opts = DecodeOptions(format="json")
    value = {"id": "a", "text": "alpha", "metadata": {"team": "x", "path": "no override"}}
    change = decode(message(json.dumps(value).encode(), key=b"ignored"), opts).change
    assert (change.doc_id, change.data) == ("kafka://docs/a", b"alpha")
    assert change.metadata["team"] == "x" and change.metadata["path"] == "kafka://docs/a"
    data = base64.b64encode(b"%PDF-1.4 ...").decode()
    keyed = decode(message(json.dumps({"data_base64": data}).encode(), key=b"r.pdf"), opts).change
    assert (keyed.doc_id, keyed.data) == ("kafka://docs/r.pdf", b"%PDF-1.4 ...")
    deleted = decode(message(b'{"id": "a", "op": "delete"}'), opts).change
    assert (deleted.doc_id, deleted.kind) == ("kafka://docs/a", DELETE)
    assert decode(message(None, key=b"a"), opts).change.kind is DELETE


@pytest.mark.parametrize("wrapped", [False, True])
def test_debezium_events_create_update_delete_and_tombstone(wrapped: bool) -> None:
    opts = DecodeOptions(format="debezium", id_column="doc", text_column="body")

    def event(op: str, before: object, after: object) -> bytes:
        payload = {"op": op, "before": before, "after": after, "source": {"table": "documents"}}
        return json.dumps({"schema": {}, "payload": payload} if wrapped else payload).encode()

    row = {"doc": 7, "body": "seven", "lang": "en", "tags": ["x"]}
    created = decode(message(event("c", None, row), key=b'{"doc": 7}'), opts).change
    assert (created.doc_id, created.kind, created.data) == ("kafka://docs/7", UPSERT, b"seven")
    assert created.metadata["lang"] == "en" and "tags" not in created.metadata  # scalars only
    assert created.metadata["op"] == "c"
    assert decode(message(event("u", row, {**row, "body": "7!"})), opts).change.data == b"7!"
    assert decode(message(event("r", None, row)), opts).change.kind is UPSERT
    deleted = decode(message(event("d", row, None)), opts).change
    assert (deleted.doc_id, deleted.kind) == ("kafka://docs/7", DELETE)
    key = json.dumps({"schema": {}, "payload": {"doc": 7}} if wrapped else {"doc": 7}).encode()
    assert decode(message(None, key=key), opts).change.doc_id == "kafka://docs/7"


@pytest.mark.parametrize(
    ("fmt", "value", "key", "reason"),
    [
        ("json", b"{not json", b"a", "is not JSON"),
        ("json", b"\xff\xfe{}", b"a", "is not UTF-8"),
        ("json", b"[1, 2]", b"a", "must be a JSON object"),
        ("json", b'{"id": "a"}', b"a", "neither a 'text'"),
        ("json", b'{"id": "a", "data_base64": "%%%"}', b"a", "not valid base64"),
        ("json", b'{"text": "t"}', None, "no 'id'"),
        ("debezium", b'{"op": "c", "after": {"id": 1}}', b"a", "no text column 'text'"),
        ("debezium", b'{"op": "x"}', b"a", "'op' is 'x'"),
        ("raw", b"data", None, "no key"),
        ("raw", b"data", b"\xff", "not valid UTF-8"),
        ("raw", b"x" * 11, b"a", "over max_message_bytes 10"),
    ],
)
def test_poison_message_is_a_document_error_naming_topic_partition_offset(
    fmt: str, value: bytes, key: bytes | None, reason: str
) -> None:
    options = DecodeOptions(format=fmt, max_message_bytes=10 if "max_message" in reason else 1000)
    decoded = decode(message(value, key=key), options)
    assert decoded.poison is not None and reason in decoded.poison
    assert decoded.poison.startswith("kafka message docs[2]@41: ")
    change = decoded.change
    assert change.kind is UPSERT and change.data is None and change.error == decoded.poison
    expected_id = "kafka://docs/a" if key == b"a" else "kafka://docs/2@41"
    assert change.doc_id == expected_id and change.metadata["offset"] == 41


def test_start_accepts_earliest_latest_millis_and_iso_times() -> None:
    assert parse_start("earliest") == StartAt("earliest")
    assert parse_start("latest") == StartAt("latest")
    assert parse_start(1_700_000_000_000) == StartAt("timestamp", 1_700_000_000_000)
    assert parse_start("2023-11-14T22:13:20Z") == StartAt("timestamp", 1_700_000_000_000)
    assert parse_start("2023-11-14T22:13:20") == StartAt("timestamp", 1_700_000_000_000)
    with pytest.raises(ConfigError, match="start must be"):
        parse_start("yesterday")


def test_position_round_trips_and_a_foreign_one_starts_afresh() -> None:
    assert read_position({"docs": {0: 5, 1: -2}}, "k") == {("docs", 0): 5, ("docs", 1): -2}
    assert read_position(None, "k") is None
    assert read_position({"folder": "fingerprint"}, "k") is None


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"topics": []}, "topics must be"),
        ({"format": "avro"}, "format must be one of raw, json, debezium"),
        ({"consumer": {"enable.auto.commit": True}}, "set by the source itself"),
        ({"dead_letter_topic": "docs"}, "also a topic the source reads"),
        ({"max_message_bytes": 0}, "max_message_bytes must be positive"),
    ],
)
def test_bad_options_are_config_errors(options: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        KafkaSource(**{"topics": "docs", **options})
