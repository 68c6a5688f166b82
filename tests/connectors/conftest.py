"""Test servers the connector tests share, each started once per session on free ports of 127.0.0.1 and
stopped by its PID: SeaweedFS (S3) and moto's server (S3 with SQS notifications)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

from tests.servers.s3 import MotoServer, SeaweedFS, temporary_directory


@pytest.fixture(scope="session")
def seaweedfs() -> Iterator[SeaweedFS]:
    pytest.importorskip("boto3")
    directory = temporary_directory()
    server = SeaweedFS(directory)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    pytest.importorskip("boto3")
    server = MotoServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()
