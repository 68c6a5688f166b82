"""``ragflow query --mode`` and ``--context`` against a real server (hashing embedder)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ragflow.cli._main import main
from tests.server.conftest import serving


def test_query_sends_the_mode_and_the_context(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with serving(tmp_path / "docs") as served:
        assert (
            main(["query", "copper reef", "--url", served.url, "--k", "1", "--mode", "lexical", "--json"])
            == 0
        )
        [hit] = json.loads(capsys.readouterr().out)
        assert hit["metadata"]["path"].endswith("guides/lantern.md")
        assert hit["dist"] == pytest.approx(
            served.store.retrieve("copper reef", 1, search_mode="lexical")[0].dist
        )
        assert (
            main(["query", "falcon canyon", "--url", served.url, "--k", "1", "--context", "1", "--json"]) == 0
        )
        [hit] = json.loads(capsys.readouterr().out)
        assert hit["metadata"]["context_chunks"] == 1
