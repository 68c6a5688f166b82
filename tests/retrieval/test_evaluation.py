from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from ragflow.errors import ConfigError
from ragflow.retrieval.evaluation import EvalQuestion, load_questions, score_mode


def test_both_file_formats_are_read(tmp_path: Path) -> None:
    path = tmp_path / "q.jsonl"
    rows = [{"query": "a?", "relevant": ["x.md"]}, {"question": "b?", "pages": ["y.html", "z.html"]}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    assert load_questions(path) == [EvalQuestion("a?", ("x.md",)), EvalQuestion("b?", ("y.html", "z.html"))]


def test_a_malformed_line_is_named(tmp_path: Path) -> None:
    path = tmp_path / "q.jsonl"
    path.write_text('{"query": "a?", "relevant": ["x"]}\n{"query": "b?"}\n')
    with pytest.raises(ConfigError, match=r"q.jsonl:2"):
        load_questions(path)


def test_scores_match_hand_computed_values() -> None:
    questions = [
        EvalQuestion("first", ("docs/a.md",)),  # relevant at rank 1
        EvalQuestion("third", ("b.md", "c.md")),  # b at 3 (its second chunk at 4 adds nothing), c never
        EvalQuestion("missed", ("d.md",)),
    ]
    ranked = {
        "first": ["/srv/docs/a.md", "/srv/b.md"],
        "third": ["/srv/a.md", "/srv/x.md", "/srv/b.md", "/srv/b.md"],
        "missed": ["/srv/a.md"],
    }
    scores = score_mode("hybrid", questions, lambda q: ([{"path": p} for p in ranked[q]], 0.001))
    assert [r.rank for r in scores.results] == [1, 3, None]
    assert scores.recall(1) == pytest.approx(1 / 3) and scores.recall(5) == pytest.approx(2 / 3)
    assert scores.mrr10 == pytest.approx((1 + 1 / 3) / 3)
    ideal_two = 1 + 1 / math.log2(3)
    assert scores.ndcg10 == pytest.approx((1 + (1 / 2) / ideal_two) / 3)
    assert [m.question.query for m in scores.misses(1)] == ["third", "missed"]
    assert [(m["query"], m["rank"]) for m in scores.to_dict()["misses"]] == [("missed", None)]
