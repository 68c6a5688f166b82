"""The scale-out tests' one fixture: a ``Cluster`` of real processes (see ``test_crash``), stopped and its
table dropped afterwards."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.servers.postgres import shared_postgres

if TYPE_CHECKING:
    from tests.scaleout.test_crash import Cluster


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    from tests.scaleout.test_crash import Cluster  # it skips itself without the kafka and pgvector extras

    made = Cluster(tmp_path)
    try:
        yield made
    finally:
        made.stop_all()
        from ragflow.indexers.pgvector import PgvectorIndex

        PgvectorIndex(dim=64, dsn=shared_postgres().dsn, table=made.table).drop()
