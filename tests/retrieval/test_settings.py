from __future__ import annotations

from pathlib import Path

import pytest

from ragflow.config import RagflowConfig
from ragflow.errors import ConfigError
from ragflow.retrieval import RetrievalSettings


def config(tmp_path: Path, retrieval: dict[str, object]) -> RagflowConfig:
    (tmp_path / "docs").mkdir(exist_ok=True)
    data = {"sources": [{"kind": "folder", "root": "docs"}], "retrieval": retrieval}
    return RagflowConfig.from_dict(data, base_dir=tmp_path)


def test_the_retrieval_section_reaches_the_store_options(tmp_path: Path) -> None:
    options = config(
        tmp_path, {"search_mode": "lexical", "rrf_k": 10, "lexical_weight": 2}
    ).retrieval_options()
    assert options["retrieval"] == RetrievalSettings("lexical", 10, 1.0, 2.0)
    assert options["lexical"] is True and options["reranker"] is None


def test_reranking_needs_a_local_model_folder(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="rerank_model"):
        config(tmp_path, {"rerank": True})
    with pytest.raises(ConfigError, match="never downloads"):
        config(tmp_path, {"rerank_model": "cross-encoder/ms-marco-MiniLM-L-6-v2"}).retrieval_options()


def test_lexical_modes_need_the_lexical_index(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="lexical_index"):
        config(tmp_path, {"lexical_index": False})
    assert (
        config(tmp_path, {"lexical_index": False, "search_mode": "vector"}).retrieval.search_mode == "vector"
    )


@pytest.mark.parametrize(
    "bad", [{"search_mode": "fuzzy"}, {"rrf_k": -1}, {"vector_weight": 0, "lexical_weight": 0}]
)
def test_settings_refuse_values_they_cannot_serve(bad: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        RetrievalSettings(**bad)  # type: ignore[arg-type]
