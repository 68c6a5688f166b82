"""Where the benchmark writes its documents: the source the server under test reads from. Each target
turns the workload's operations into writes at that source and says what a document's ``path`` metadata
ends with there, which is how a query is narrowed to one document."""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path
from typing import Any, Protocol

from ragflow.errors import ConfigError, RagflowError

from ._workload import Operation


class SourceTarget(Protocol):
    """A place the server under test indexes, that the benchmark can change."""

    kind: str
    """``folder``, ``s3`` or ``kafka``."""

    def apply(self, operation: Operation) -> None:
        """Make one write; return only once it is done (the freshness clock starts then)."""
        ...

    def path_suffix(self, name: str) -> str:
        """What the ``path`` metadata of document ``name`` ends with on the server."""
        ...

    def close(self) -> None:
        """Remove what the run wrote, where that makes sense."""
        ...


class FolderTarget:
    """A folder the server watches. The run writes into its own subfolder (``freshness-<id>``), so an
    attached server's other documents are left alone; ``close`` removes the subfolder."""

    kind = "folder"

    def __init__(self, folder: Path, run_id: str | None = None, *, keep: bool = False) -> None:
        self.subfolder = f"freshness-{run_id or uuid.uuid4().hex[:8]}"
        self.root = Path(folder).resolve() / self.subfolder
        self.root.mkdir(parents=True, exist_ok=True)
        self.keep = keep

    def apply(self, operation: Operation) -> None:
        path = self.root / operation.name
        if operation.op == "put":
            # One write call, as an editor saving a small file does; the folder source copes with a file
            # seen half-written, and a peer must too.
            with path.open("w", encoding="utf-8") as f:
                f.write(operation.text)
        elif operation.op == "remove":
            path.unlink()
        elif operation.op == "rename":
            os.rename(path, self.root / operation.new_name)
        else:
            raise ConfigError(f"unknown operation {operation.op!r}")

    def path_suffix(self, name: str) -> str:
        return f"/{self.subfolder}/{name}"

    def close(self) -> None:
        if not self.keep:
            shutil.rmtree(self.root, ignore_errors=True)


class TargetError(RagflowError):
    """A write at the source failed (the broker or the object store refused it)."""


class KafkaTarget:
    """A Kafka topic the server consumes as documents, one message per version keyed by the document's
    name (``freshness-<id>/<name>``: ragflow's raw format, path ``kafka://<topic>/<key>``); a delete is a
    tombstone and a rename a tombstone plus a put. A write returns once the broker acknowledged it."""

    kind = "kafka"

    def __init__(
        self, bootstrap: str, topic: str, run_id: str, settings: dict[str, Any] | None = None
    ) -> None:
        try:
            from confluent_kafka import Producer
        except ImportError:
            raise ConfigError(
                "the Kafka source needs confluent-kafka: pip install 'ragflow[kafka]'"
            ) from None
        self.topic = topic
        self.prefix = f"freshness-{run_id}"
        self._producer = Producer(
            {"bootstrap.servers": bootstrap, "linger.ms": 0, "acks": "all", **(settings or {})}
        )
        self._failed: list[str] = []

    def _delivered(self, error: Any, message: Any) -> None:
        if error is not None:
            self._failed.append(str(error))

    def _send(self, name: str, text: str | None) -> None:
        value = None if text is None else text.encode()
        self._producer.produce(self.topic, value, f"{self.prefix}/{name}", on_delivery=self._delivered)

    def apply(self, operation: Operation) -> None:
        if operation.op == "put":
            self._send(operation.name, operation.text)
        elif operation.op == "remove":
            self._send(operation.name, None)
        elif operation.op == "rename":
            self._send(operation.name, None)
            self._send(operation.new_name, operation.text)
        else:
            raise ConfigError(f"unknown operation {operation.op!r}")
        if self._producer.flush(30) or self._failed:
            failed, self._failed = self._failed, []
            raise TargetError(f"Kafka did not take a message for topic {self.topic!r}: {failed or 'timeout'}")

    def path_suffix(self, name: str) -> str:
        return f"/{self.prefix}/{name}"

    def close(self) -> None:
        self._producer.flush(30)


class S3Target:
    """An S3 bucket the server indexes; the run writes under ``<prefix>freshness-<id>/`` and removes what
    it wrote at the end. A rename is a copy and a delete (S3 has no rename). Credentials come from the
    usual AWS environment variables or profile."""

    kind = "s3"

    def __init__(self, endpoint: str | None, bucket: str, prefix: str, run_id: str) -> None:
        try:
            import boto3
        except ImportError:
            raise ConfigError("the S3 source needs boto3: pip install 'ragflow[s3]'") from None
        self.bucket = bucket
        self.prefix = f"{prefix}freshness-{run_id}/"
        from botocore.config import Config

        # path-style addressing: S3-compatible servers on an address (no bucket subdomains) need it
        style = {"addressing_style": "path"} if endpoint else {}
        self._client = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1",
            config=Config(s3=style),
        )

    def apply(self, operation: Operation) -> None:
        key = self.prefix + operation.name
        if operation.op == "put":
            self._client.put_object(Bucket=self.bucket, Key=key, Body=operation.text.encode())
        elif operation.op == "remove":
            self._client.delete_object(Bucket=self.bucket, Key=key)
        elif operation.op == "rename":
            new = self.prefix + operation.new_name
            self._client.copy_object(
                Bucket=self.bucket, Key=new, CopySource={"Bucket": self.bucket, "Key": key}
            )
            self._client.delete_object(Bucket=self.bucket, Key=key)
        else:
            raise ConfigError(f"unknown operation {operation.op!r}")

    def path_suffix(self, name: str) -> str:
        return f"/{self.prefix}{name}"

    def close(self) -> None:
        pages = self._client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.prefix)
        for page in pages:
            for item in page.get("Contents", []):
                self._client.delete_object(Bucket=self.bucket, Key=item["Key"])
