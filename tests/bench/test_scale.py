"""``ragflow bench scale`` at tiny sizes: every size gets its edits, deletes, memory and restart figures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ragflow.cli import EXIT_OK, EXIT_USAGE, main


def test_each_size_reports_its_edits_deletes_memory_and_restart(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "scale.json"
    assert main(["bench", "scale", "--chunks", "50,200", "--changes", "3", "--json", str(out)]) == EXIT_OK
    rows = json.loads(out.read_text())
    assert [row["documents"] for row in rows] == [5, 20]
    for row in rows:
        assert row["chunks"] >= row["documents"] * 5
        assert len(row["edit_s"]) == 3 and len(row["delete_s"]) == 3
        assert all(0 < s < 30 for s in row["edit_s"] + row["delete_s"])
        assert row["restart_s"] > 0 and row["memory_per_chunk_bytes"] != 0
    table = capsys.readouterr().out
    assert "edit p50" in table and f"{rows[1]['chunks']:,}" in table


def test_sizes_must_be_numbers(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "scale", "--chunks", "1k"]) == EXIT_USAGE
    assert "--chunks" in capsys.readouterr().err
