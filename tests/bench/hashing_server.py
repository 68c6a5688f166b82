"""A ragflow server with the fast hashing embedder, for the benchmark's end-to-end tests (the real model
would make them slow), over one source:

    python -m tests.bench.hashing_server PORT STATE folder FOLDER
    python -m tests.bench.hashing_server PORT STATE kafka BOOTSTRAP TOPIC
    python -m tests.bench.hashing_server PORT STATE s3 ENDPOINT BUCKET [SQS_QUEUE_URL]

S3 credentials come from the AWS environment variables."""

from __future__ import annotations

import sys

import uvicorn

from ragflow.documents import DocumentSource
from ragflow.plugins import load_connector
from ragflow.server import create_app
from ragflow.store import DocumentStore
from tests.fakes.hashing_embedder import HashingEmbedder
from tests.servers.kafka import CONSUMER_SETTINGS


def source(kind: str, *args: str) -> DocumentSource:
    if kind == "folder":
        return load_connector("folder")(args[0])  # type: ignore[no-any-return]
    if kind == "kafka":
        return load_connector("kafka")(args[1], args[0], consumer=CONSUMER_SETTINGS)  # type: ignore[no-any-return]
    notified = (
        {"notifications": {"sqs_queue_url": args[2]}, "reconcile_interval": 300.0} if len(args) > 2 else {}
    )
    return load_connector("s3")(  # type: ignore[no-any-return]
        args[1], endpoint_url=args[0], addressing_style="path", poll_interval=0.1, **notified
    )


def main(port: str, state: str, kind: str, *args: str) -> None:
    store = DocumentStore(source(kind, *args), embedder=HashingEmbedder(dim=64), state_dir=state)
    with store:  # uvicorn stops on SIGTERM, then the store stops and saves its state
        uvicorn.run(create_app(store), host="127.0.0.1", port=int(port), log_level="warning")


if __name__ == "__main__":
    main(*sys.argv[1:])
