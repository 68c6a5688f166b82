"""``ragflow bench freshness`` driving the other sources against a ragflow server (hashing embedder): a
Kafka topic on a real broker (tansu) and an S3 bucket whose changes reach the server as SQS notifications
(moto's server)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ragflow.bench import FreshnessResult
from ragflow.cli import EXIT_OK, main
from tests.servers.kafka import KafkaBroker, free_port
from tests.servers.s3 import ACCESS_KEY, SECRET_KEY, MotoServer

ROOT = Path(__file__).resolve().parents[2]
SMALL = ["--docs", "5", "--changes", "1", "--gap", "0.02,0.05", "--timeout", "30", "--burst", "3"]


def server_cmd(*source: str) -> str:
    return f"{sys.executable} -m tests.bench.hashing_server {{port}} {{state}} " + " ".join(source)


def every_kind_visible(path: Path) -> FreshnessResult:
    result = FreshnessResult.load(path)
    assert set(result.kinds()) == {"create", "edit", "rewrite", "append", "rename", "delete"}
    assert all(r.status == "visible" for r in result.records), [
        r for r in result.records if r.fresh_s is None
    ]
    assert result.initial["visible"] == 5 and len(result.bursts) == 1
    return result


@pytest.fixture
def broker() -> Iterator[KafkaBroker]:
    pytest.importorskip("confluent_kafka")
    broker = KafkaBroker(free_port())
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


def test_a_kafka_topic(broker: KafkaBroker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    topic = broker.create_topic(partitions=1)
    args = ["bench", "freshness", "--source", "kafka", "--kafka-bootstrap", broker.bootstrap]
    args += ["--kafka-topic", topic, "--server-cmd", server_cmd("kafka", "{bootstrap}", "{topic}"), *SMALL]
    assert main([*args, "--json", str(tmp_path / "kafka.json")]) == EXIT_OK
    result = every_kind_visible(tmp_path / "kafka.json")
    assert result.run["source"] == "kafka"


def test_an_s3_bucket_with_notifications(
    moto_server: MotoServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    bucket, queue = moto_server.notified_bucket()
    args = ["bench", "freshness", "--source", "s3", "--s3-bucket", bucket]
    args += ["--s3-endpoint", moto_server.endpoint]
    args += ["--server-cmd", server_cmd("s3", "{endpoint}", "{bucket}", queue), *SMALL]
    assert main([*args, "--json", str(tmp_path / "s3.json")]) == EXIT_OK
    result = every_kind_visible(tmp_path / "s3.json")
    assert result.run["source"] == "s3"
    client = moto_server.client()
    assert client.list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0  # the run removed what it wrote
