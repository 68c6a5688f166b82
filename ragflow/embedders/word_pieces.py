"""A local model's input window, counted in the model's own tokenizer: what the splitter checks so that no
chunk is longer than what the model reads. Only the ``tokenizers`` library is loaded (from the model
folder's ``tokenizer.json``), never torch, so splitting does not wait for the model."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ragflow.errors import ConfigError

__all__ = ["WordPieceWindow"]

# A BERT pre-token boundary, whatever the text around it: the whitespace BERT sees as whitespace in every
# case, and ASCII punctuation (each such character is a word of its own). Characters BERT deletes (control
# and format characters) are deliberately not here: deleting them glues their neighbours into one word.
_RUN = re.compile(r"[^ \t\n\r!-/:-@\[-`{-~]+|[!-/:-@\[-`{-~]")


class WordPieceWindow:
    """The input window of a model with a Hugging Face tokenizer (``tokenizer.json``): its size in the
    model's tokens, an exact count, and a cheap upper bound of that count.

    The bound, for a BERT WordPiece tokenizer, takes a word of ASCII letters and digits as one piece when
    the vocabulary holds it whole (the greedy longest match then takes it whole), any other word as at most
    one piece per character (UTF-8 byte, where it is not ASCII: normalisation may decompose a character,
    e.g. a Hangul syllable into up to three jamo), each ASCII punctuation mark as one piece, plus the
    special tokens. Ordinary prose is bounded within a few percent of its count, so only text dense in
    identifiers, numbers or other scripts needs the exact count near the limit. For any other tokenizer
    the bound is the byte count (no token is shorter than a byte) plus the special tokens.

    Counting is thread-safe: a fast tokenizer must not be used by two threads at once.
    """

    def __init__(self, folder: str | Path, max_tokens: int, name: str) -> None:
        path = Path(folder) / "tokenizer.json"
        if not path.is_file():
            raise ConfigError(f"{folder} has no tokenizer.json: the model's input window cannot be counted")
        from tokenizers import Tokenizer

        self.max_tokens = max_tokens
        self.name = f"{name} tokens"
        self._tokenizer = Tokenizer.from_file(str(path))
        # The file may carry the training-time truncation and padding; a count must see neither.
        self._tokenizer.no_truncation()
        self._tokenizer.no_padding()
        self._lock = threading.Lock()
        self._specials = self._tokenizer.num_special_tokens_to_add(is_pair=False)
        self._whole_words, self._lowercase = _bert_whole_words(json.loads(path.read_text("utf-8")))

    def count(self, texts: Sequence[str]) -> list[int]:
        """How many tokens the model takes for each text, special tokens included, untruncated."""
        with self._lock:
            encodings = self._tokenizer.encode_batch(list(texts), add_special_tokens=True)
        return [len(encoding.ids) for encoding in encodings]

    def bound(self, text: str) -> int:
        """An upper bound of ``count([text])[0]``, at a fraction of its cost."""
        if len(text) <= self.max_tokens and text.isascii():
            return len(text) + self._specials  # at most one token per character: short text costs nothing
        if self._whole_words is None:
            return len(text.encode("utf-8", "surrogatepass")) + self._specials
        words = self._whole_words
        total = self._specials
        for run in _RUN.findall(text):
            if not run.isascii():
                total += len(run.encode("utf-8", "surrogatepass"))
            elif not run.isalnum():
                total += len(run)  # a punctuation mark, or a word holding control characters
            elif (run.lower() if self._lowercase else run) in words:
                total += 1
            else:
                total += len(run)
        return total


def _bert_whole_words(config: dict[str, Any]) -> tuple[frozenset[str] | None, bool]:
    """The vocabulary's whole words (no continuation prefix) and whether text is lowercased first, for a
    tokenizer whose pieces the bound can reason about (BERT normaliser and pre-tokeniser, WordPiece);
    ``None`` for any other."""
    model, normalizer = config.get("model") or {}, config.get("normalizer") or {}
    pre_tokenizer = config.get("pre_tokenizer") or {}
    if (
        model.get("type") != "WordPiece"
        or normalizer.get("type") != "BertNormalizer"
        or pre_tokenizer.get("type") != "BertPreTokenizer"
        or not all(_bracketed(token.get("content", "")) for token in config.get("added_tokens") or [])
    ):
        return None, False
    prefix = model.get("continuing_subword_prefix") or "##"
    words = frozenset(word for word in model["vocab"] if not word.startswith(prefix))
    return words, bool(normalizer.get("lowercase"))


def _bracketed(token: str) -> bool:
    """Whether an added token (matched in the raw text before any splitting) starts and ends with ASCII
    punctuation, so that it cannot split what the bound takes as one word ([CLS], [MASK]...)."""
    return bool(token) and all(_RUN.fullmatch(c) and not c.isalnum() for c in (token[0], token[-1]))
