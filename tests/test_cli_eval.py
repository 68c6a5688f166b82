"""``ragflow eval`` against a real server over a folder (hashing embedder): every mode in one run, the
table, the misses and ``--json``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ragflow.cli._main import main
from tests.server.conftest import serving


def test_eval_compares_modes_against_a_server(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    questions = tmp_path / "questions.jsonl"
    rows = [
        {"query": "Who lights the harbor lantern at dusk?", "relevant": ["guides/lantern.md"]},
        {"query": "When does the meadow flood?", "relevant": ["meadow.txt"]},
        {"query": "quarterly revenue of the quarry", "relevant": ["reports/q1.html"]},
        {"query": "a question about nothing here", "relevant": ["missing.md"]},
    ]
    questions.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with serving(tmp_path / "docs") as served:
        assert (
            main(
                [
                    "eval",
                    str(questions),
                    "--url",
                    served.url,
                    "--modes",
                    "vector",
                    "lexical",
                    "hybrid",
                    "rerank",
                ]
            )
            == 0
        )
        out, err = capsys.readouterr()
        assert "rerank: skipped" in err and "cross-encoder" in err
        rows_of_table = [line for line in out.splitlines() if line.startswith("| ") and "mode" not in line]
        assert [line.split(" | ")[0] for line in rows_of_table] == ["| vector", "| lexical", "| hybrid"]
        assert "a question about nothing here (none in 10" in out
        assert main(["eval", str(questions), "--url", served.url, "--modes", "lexical", "--json"]) == 0
        report = json.loads(capsys.readouterr().out)
    [lexical] = report["modes"]
    assert report["questions"] == 4 and lexical["mode"] == "lexical"
    assert lexical["recall@5"] == 0.75 and [m["query"] for m in lexical["misses"]] == [rows[3]["query"]]
