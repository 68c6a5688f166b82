"""The connector tests' S3 server fixture, shared here for the benchmark's S3 run."""

from __future__ import annotations

from tests.connectors.conftest import moto_server

__all__ = ["moto_server"]
