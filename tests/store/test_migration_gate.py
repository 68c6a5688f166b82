"""The evaluation gate of a migration (``persistence.migration_gate``, docs/persistence.md): before the swap
both generations answer a labelled question set; the swap waits while the new one scores lower, both
scores are shown (``ragflow migrate status``, ``GET /v1/migration``), and ``ragflow migrate start --force``
swaps anyway. The hashing test embedder makes a model that is worse on purpose: at 2 dimensions every
document looks alike to vector search, at 256 each is found by its own words."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import httpx
import pytest

from ragflow import cli
from ragflow.config import RagflowConfig
from ragflow.config.problems import InvalidConfigError
from ragflow.embedders import EMBEDDER_KINDS
from ragflow.store.generations import read_pointer
from ragflow.store.migrating import MigratingStore, MigrationAction
from tests.fakes.hashing_embedder import HashingEmbedder
from tests.server.conftest import running
from tests.store.test_migration import first_build, wait_for


@pytest.fixture(autouse=True)
def hashing_kind(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(EMBEDDER_KINDS, "hashing", HashingEmbedder)  # type: ignore[arg-type]


def corpus(tmp_path: Path, documents: int = 12) -> tuple[Path, Path]:
    """A folder of documents with words of their own, and questions asking for each by those words."""
    folder = tmp_path / "docs"
    folder.mkdir()
    rng = random.Random(5)
    questions = []
    for i in range(documents):
        words = [f"w{i}x{j}" for j in range(6)]
        (folder / f"d{i}.md").write_text(" ".join(words * 3) + ".")
        questions.append({"query": " ".join(rng.sample(words, 3)), "relevant": [f"d{i}.md"]})
    eval_set = tmp_path / "questions.jsonl"
    eval_set.write_text("".join(json.dumps(q) + "\n" for q in questions))
    return folder, eval_set


def gated(folder: Path, state: Path, dim: int, gate: dict[str, Any] | None) -> RagflowConfig:
    persistence: dict[str, Any] = {"state_dir": str(state), "checkpoint_interval": 0.2}
    if gate is not None:
        persistence["migration_gate"] = {"search_mode": "vector", **gate}
    return RagflowConfig.from_dict(
        {
            "sources": [{"kind": "folder", "root": str(folder), "reconcile_interval": None}],
            "embedder": {"kind": "hashing", "dim": dim},
            "persistence": persistence,
        }
    )


def generations(config: RagflowConfig) -> MigratingStore:
    return config.build_generations(config.build_sources)


def test_the_gate_holds_a_worse_generation_shows_both_scores_and_force_swaps_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder, eval_set = corpus(tmp_path)
    state = tmp_path / "state"
    first_build(gated(folder, state, 256, None))
    store = generations(gated(folder, state, 2, {"eval_set": str(eval_set)}))
    with store, running(_app(store)) as url:
        wait_for(lambda: store.migration_status()["state"] == "held", what="the gate to hold the swap")
        status = httpx.get(f"{url}/v1/migration").json()
        gate = status["gate"]
        assert (gate["metric"], gate["questions"], gate["passed"], gate["forced"]) == (
            "mrr@10",
            12,
            False,
            False,
        )
        assert gate["active_score"] > 0.9 and gate["new_score"] < gate["active_score"]
        assert httpx.get(f"{url}/v1/statistics").json()["migration"]["gate"]["passed"] is False
        assert store.active.embedder.dim == 256 and read_pointer(state).active == "."
        assert store.retrieve("w3x1 w3x2", k=1, search_mode="vector")[0].metadata["path"].endswith("d3.md")
        assert cli.main(["migrate", "status", "--url", url]) == cli.EXIT_OK
        shown = capsys.readouterr().out
        assert "migration      held" in shown and "HOLDING the swap" in shown, shown
        with pytest.raises(MigrationAction, match="--force"):
            store.start_migration()
        assert store.migration_status()["state"] == "held", "it stays held: nothing changed"
        assert cli.main(["migrate", "start", "--force", "--url", url]) == cli.EXIT_OK
        wait_for(lambda: store.migration_status()["state"] == "swapped", what="the forced swap")
        assert store.active.embedder.dim == 2
        gate = store.migration_status()["gate"]
        assert gate["forced"] is True and gate["passed"] is False
    events = [entry["event"] for entry in read_pointer(state).history]
    assert events[-2:] == ["forced", "swapped"]


def test_the_gate_lets_a_generation_that_scores_at_least_as_well_swap_and_records_both_scores(
    tmp_path: Path,
) -> None:
    folder, eval_set = corpus(tmp_path)
    state = tmp_path / "state"
    first_build(gated(folder, state, 2, None))
    store = generations(gated(folder, state, 256, {"eval_set": str(eval_set), "metric": "recall@1"}))
    with store:
        wait_for(lambda: store.migration_status()["state"] == "swapped", what="the swap")
        gate = store.migration_status()["gate"]
        assert gate["passed"] is True and gate["metric"] == "recall@1"
        assert gate["new_score"] == 1.0 and gate["new_score"] > gate["active_score"]
        assert store.active.embedder.dim == 256
    (swapped,) = [entry for entry in read_pointer(state).history if entry["event"] == "swapped"]
    assert swapped["gate"]["new_score"] == 1.0


def test_a_tolerance_lets_a_slightly_worse_generation_swap(tmp_path: Path) -> None:
    folder, eval_set = corpus(tmp_path)
    state = tmp_path / "state"
    first_build(gated(folder, state, 256, None))
    store = generations(gated(folder, state, 2, {"eval_set": str(eval_set), "tolerance": 1.0}))
    with store:
        wait_for(lambda: store.migration_status()["state"] == "swapped", what="the swap")
        gate = store.migration_status()["gate"]
        assert gate["passed"] is True and gate["new_score"] < gate["active_score"]


def test_a_gate_whose_question_file_is_missing_or_malformed_is_refused_at_start(tmp_path: Path) -> None:
    folder, _ = corpus(tmp_path, 2)
    with pytest.raises(InvalidConfigError, match="migration_gate"):
        generations(gated(folder, tmp_path / "s1", 64, {"eval_set": str(tmp_path / "missing.jsonl")}))
    (tmp_path / "bad.jsonl").write_text('{"query": "no relevant"}\n')
    with pytest.raises(InvalidConfigError, match=r"bad\.jsonl:1"):
        generations(gated(folder, tmp_path / "s2", 64, {"eval_set": str(tmp_path / "bad.jsonl")}))
    with pytest.raises(InvalidConfigError, match="metric"):
        gated(folder, tmp_path / "s3", 64, {"eval_set": "q.jsonl", "metric": "precision"})


def test_a_relative_eval_set_is_taken_from_the_configuration_files_folder(tmp_path: Path) -> None:
    config = RagflowConfig.from_dict(
        {"persistence": {"migration_gate": {"eval_set": "eval/q.jsonl"}}}, base_dir=tmp_path
    )
    gate = config.persistence.migration_gate
    assert gate is not None and gate.eval_set == str(tmp_path / "eval" / "q.jsonl")
    assert (gate.metric, gate.tolerance) == ("mrr@10", 0.0)


def _app(store: MigratingStore) -> Any:
    from ragflow.server.app import create_app

    return create_app(store)  # type: ignore[arg-type]
