"""``ragflow publish`` against a real Kafka-protocol broker: files become raw messages keyed by path that
a Kafka source indexes; --delete sends tombstones."""

from __future__ import annotations

from pathlib import Path

import pytest

from ragflow.cli import main
from tests.connectors.kafka_helpers import kafka_source, store_over
from tests.servers.kafka import KafkaBroker, shared_broker
from tests.test_store import eventually

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="session")
def kafka() -> KafkaBroker:
    return shared_broker()


def test_publish_a_folder_then_delete_a_key_keeps_a_kafka_source_in_sync(
    kafka: KafkaBroker, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    docs = tmp_path / "docs"
    (docs / "guide").mkdir(parents=True)
    (docs / "guide" / "intro.md").write_text("# Intro\n\nKafka feeds the index.")
    (docs / "notes.txt").write_text("Plain notes about offsets.")
    (docs / ".hidden").write_text("never sent")
    topic = kafka.create_topic(partitions=3)
    assert main(["publish", str(docs), "--topic", topic, "--bootstrap-servers", kafka.bootstrap]) == 0
    assert "published 2 documents" in capsys.readouterr().err
    with store_over(kafka_source(kafka, topic)) as store:
        assert store.wait_until_fresh(30)
        assert eventually(lambda: len(store.documents()) == 2)
        docs_by_id = {d.doc_id: d for d in store.documents()}
        intro = docs_by_id[f"kafka://{topic}/guide/intro.md"]
        assert intro.status == "INDEXED" and intro.metadata["headers"]["content-type"] == "text/markdown"
        assert f"kafka://{topic}/notes.txt" in docs_by_id
        args = ["publish", "--delete", "notes.txt", "--topic", topic, "--bootstrap-servers", kafka.bootstrap]
        assert main(args) == 0
        assert eventually(
            lambda: [d.doc_id for d in store.documents()] == [f"kafka://{topic}/guide/intro.md"]
        )


def test_publish_with_nothing_or_a_missing_path_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["publish", "--topic", "t"]) == 2
    assert "nothing to publish" in capsys.readouterr().err
    assert main(["publish", str(tmp_path / "missing"), "--topic", "t"]) == 2
    assert "no such file or directory" in capsys.readouterr().err
    assert main(["publish", str(tmp_path), "--topic", "t", "-X", "nonsense"]) == 2
