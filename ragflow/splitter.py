"""Token-bounded text splitting whose chunk boundaries are anchored on content, so that editing one
paragraph re-creates only the chunks around it and every other chunk stays byte-identical."""

from __future__ import annotations

import bisect
import enum
import re
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import accumulate, chain, pairwise
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import tiktoken

from ragflow.documents import Chunk
from ragflow.errors import ConfigError
from ragflow.tokenizer import get_encoding

__all__ = ["InputWindow", "TokenSplitter"]


class InputWindow(Protocol):
    """What an embedding model reads of a text, in the model's own tokens: a chunk longer than
    ``max_tokens`` (special tokens included) would be truncated or embedded in parts."""

    @property
    def name(self) -> str:
        """Which tokenizer counts (part of the splitter's identity)."""
        ...

    @property
    def max_tokens(self) -> int: ...

    def count(self, texts: Sequence[str]) -> list[int]:
        """The exact number of the model's tokens of each text."""
        ...

    def bound(self, text: str) -> int:
        """An upper bound of ``count([text])[0]`` that costs much less than counting."""
        ...


class _Break(enum.IntEnum):
    """How good a place to cut the boundary after a segment is; a higher value is a better cut."""

    TOKEN = 0
    WORD = 1
    LINE = 2
    SENTENCE = 3
    PARAGRAPH = 4


# The separators of each level, strongest first; a piece too big for a chunk is cut at the next level.
# A sentence ends at . ! ? … (optionally followed by a closing quote or bracket) before whitespace, or
# right after a CJK full stop, which needs no whitespace. No pattern starts with a repeated class that
# can match a long run of spaces: that would make the search quadratic in the length of the run.
_LEVELS: tuple[tuple[re.Pattern[str], _Break], ...] = (
    (re.compile(r"\n[^\S\n]*\n\s*"), _Break.PARAGRAPH),
    (re.compile(r"(?:(?<=[.!?…])|(?<=[.!?…][\"'”’)\]]))\s+|(?<=[。！？])\s*"), _Break.SENTENCE),
    (re.compile(r"\n\s*"), _Break.LINE),
)
_WHITESPACE = re.compile(r"\s+")

# A piece longer than this many characters per budget token is taken as too big without counting:
# real text averages 3-5 characters per token, and counting a whole one-paragraph document only to
# learn that it must be cut would double the splitting time of such documents.
_MAX_CHARS_PER_TOKEN = 16

# The smallest core budget that can always hold one code point: UTF-8 needs at most 4 bytes for it
# and a byte-level BPE never needs more tokens than bytes, so a hard cut always makes progress.
_MIN_BUDGET = 4

# The overlap is taken from this many characters per overlap token at the end of the previous chunk.
_OVERLAP_CHARS_PER_TOKEN = 8

# The smallest input window a splitter accepts: any one character (at most 4 UTF-8 bytes, so at most 4
# tokens of any tokenizer that falls back to bytes) and a few special tokens always fit it.
_MIN_WINDOW = 16


@dataclass(frozen=True, slots=True)
class _Segment:
    """An unbreakable piece of text (``text[start:end]``, no surrounding whitespace) of exact size."""

    start: int
    end: int
    n_tokens: int
    break_after: _Break


class TokenSplitter:
    """Split text into chunks of at most ``max_tokens`` tokens, cutting at paragraphs, then sentences,
    then lines, then whitespace, and only as a last resort inside a word.

    Boundaries are *content-defined*: the text is first cut into segments (paragraphs, or the sentences
    of a paragraph too big for one chunk), and a chunk always ends after a segment whose hash falls
    below ``n_tokens / target_tokens``, so such anchors come about every ``target_tokens`` tokens.
    Between two anchors, segments are packed greedily into chunks, each cut at the strongest break that
    leaves it at least half full. An edit therefore re-flows only the run of segments between the
    anchors around it. The hash is CRC-32 of the segment's UTF-8 bytes, never Python's salted ``hash``:
    boundaries must be the same in every process, or a restart would re-embed everything.

    With ``overlap`` > 0, every chunk but the first also starts with up to ``overlap`` tokens of the
    end of the previous chunk (at a word start where possible); chunks then pack ``max_tokens -
    overlap`` tokens of new text, so ``n_tokens <= max_tokens`` still holds.

    Token counts use ``encode_ordinary``: text that spells a special token such as ``<|endoftext|>``
    is counted as the ordinary text it is. A splitter may be shared by threads.

    With a ``window`` (the embedding model's own tokenizer and input limit, ``InputWindow``), no chunk
    is longer than the model reads either: a segment over the window is cut further (at sentences, lines,
    words), and a chunk over it gives up segments at its end, as it does for ``max_tokens``. Only a text
    whose cheap ``bound`` exceeds the window is counted exactly. Every decision still depends on the
    content of the segments alone, so an edit still re-creates only the chunks around it.

    Example:
        >>> splitter = TokenSplitter(max_tokens=64)
        >>> [c.text for c in splitter.split("First paragraph.\\n\\nSecond one.")]
        ['First paragraph.\\n\\nSecond one.']
    """

    def __init__(
        self,
        max_tokens: int,
        overlap: int = 0,
        encoding: str | tiktoken.Encoding = "cl100k_base",
        *,
        target_tokens: int | None = None,
        window: InputWindow | None = None,
    ) -> None:
        if max_tokens < 2 * _MIN_BUDGET:
            raise ConfigError(f"max_tokens must be at least {2 * _MIN_BUDGET}, got {max_tokens}")
        if not 0 <= overlap <= max_tokens // 2:
            raise ConfigError(
                f"overlap must be between 0 and max_tokens // 2 = {max_tokens // 2}, got {overlap}"
            )
        self.max_tokens = max_tokens
        self.overlap = overlap
        self._budget = max_tokens - overlap
        if target_tokens is None:
            # Measured on the Rust book (50-paragraph documents, one paragraph edited): anchors every
            # ~budget tokens fill chunks to ~63% of max_tokens and change 1.25 chunks per edit on
            # average; anchors every budget/2 tokens fill only ~49% for 1.1 changed chunks.
            target_tokens = self._budget
        if target_tokens < 1:
            raise ConfigError(f"target_tokens must be positive, got {target_tokens}")
        if window is not None and window.max_tokens < _MIN_WINDOW:
            raise ConfigError(
                f"the input window of {window.name} must hold at least {_MIN_WINDOW} tokens, "
                f"got {window.max_tokens}"
            )
        self.target_tokens = target_tokens
        self._encoding = get_encoding(encoding) if isinstance(encoding, str) else encoding
        self.encoding_name: str = self._encoding.name
        # Part of the splitter's identity (with the settings above): bump it whenever a change to this
        # module moves any chunk boundary, so that stores keyed on it re-split instead of mixing both.
        self.algorithm_version = 1
        # Also part of the identity, when set: chunks cut to a window differ from chunks that are not
        # (a store keyed on the identity refuses, or rebuilds, a state split without the window).
        self.window_name: str | None = window.name if window is not None else None
        self.window_tokens: int | None = window.max_tokens if window is not None else None
        self._window = window
        self._gap_tokens: dict[str, int] = {}

    @classmethod
    def for_embedder(
        cls,
        embedder: Any,
        max_tokens: int | None = None,
        overlap: int = 0,
        encoding: str | tiktoken.Encoding = "cl100k_base",
    ) -> TokenSplitter:
        """The splitter for ``embedder``'s chunks: ``max_tokens`` defaults to the embedder's, and the
        embedder's ``input_window()``, when it has one, bounds every chunk in the model's own tokens."""
        input_window = getattr(embedder, "input_window", None)
        return cls(
            max_tokens if max_tokens is not None else embedder.max_tokens,
            overlap,
            encoding,
            window=input_window() if callable(input_window) else None,
        )

    def split(self, text: str) -> list[Chunk]:
        """Cut ``text`` into chunks with ``chunk.text == text[chunk.start:chunk.end]`` and
        ``chunk.n_tokens <= max_tokens``; whitespace between chunks belongs to none of them."""
        segments: list[_Segment] = []
        # Paragraphs are never grouped: each is a segment (or several) of its own, whatever its
        # neighbours are, so that an edit cannot move the segments of another paragraph.
        for start, end in _pieces(_LEVELS[0][0], text, 0, len(text)):
            self._segment(text, start, end, 1, _Break.PARAGRAPH, segments)
        return [
            Chunk(text[start:end], start, end, ordinal, n_tokens)
            for ordinal, (start, end, n_tokens) in enumerate(self._chunk_spans(text, segments))
        ]

    def count_tokens(self, text: str) -> int:
        """The number of tokens ``text`` has in this splitter's encoding."""
        return len(self._encoding.encode_ordinary(text))

    def _window_excess(self, text: str) -> int:
        """How many of the model's tokens ``text`` has beyond the window (0 if it fits or there is no
        window); counted exactly only when the cheap bound does not prove that it fits."""
        window = self._window
        if window is None or window.bound(text) <= window.max_tokens:
            return 0
        return max(0, window.count([text])[0] - window.max_tokens)

    # -- segments -------------------------------------------------------------------------------

    def _segment(
        self,
        text: str,
        start: int,
        end: int,
        level: int,
        break_after: _Break,
        out: list[_Segment],
        n_tokens: int | None = None,
    ) -> None:
        """Append to ``out`` the segments of ``text[start:end]``, a piece without surrounding
        whitespace, cutting it at ``_LEVELS[level]`` or weaker separators only if it does not fit."""
        if n_tokens is None and end - start <= _MAX_CHARS_PER_TOKEN * self._budget:
            n_tokens = self.count_tokens(text[start:end])
        if n_tokens is not None and n_tokens <= self._budget:
            if not self._window_excess(text[start:end]):
                out.append(_Segment(start, end, n_tokens, break_after))
                return
            n_tokens = None  # too long for the window: cut it like a piece over the budget
        if level >= len(_LEVELS):
            self._cut_windows(text, start, end, break_after, out)
            return
        pattern, strength = _LEVELS[level]
        pieces = self._group_small(text, _pieces(pattern, text, start, end))
        if len(pieces) == 1:
            self._segment(text, start, end, level + 1, break_after, out, n_tokens)
            return
        for i, (piece_start, piece_end) in enumerate(pieces):
            after = strength if i < len(pieces) - 1 else break_after
            self._segment(text, piece_start, piece_end, level + 1, after, out)

    def _group_small(self, text: str, pieces: list[tuple[int, int]]) -> list[tuple[int, int]]:
        """Join consecutive small pieces (sentences, lines) of one oversized paragraph into groups of
        at most the budget in UTF-8 bytes.

        A token is never shorter than a byte, so a group surely fits one chunk; counting it once
        instead of piece by piece is what keeps short-line text (JSON, CSV, code) fast to split.
        Groups also end after a piece chosen by its content (on average every half budget of bytes),
        so that an edited line regroups only its neighbours, not the rest of the paragraph.
        """
        if len(pieces) < 2:
            return pieces
        first = pieces[0][0]
        paragraph = text[first : pieces[-1][1]]
        char_bytes = _char_byte_offsets(paragraph)
        data = paragraph.encode("utf-8", "surrogatepass")
        threshold = 2**33 / self._budget
        grouped = [pieces[0]]
        for (previous_start, previous_end), (piece_start, piece_end) in pairwise(pieces):
            group_start = grouped[-1][0]
            previous_bytes = data[char_bytes[previous_start - first] : char_bytes[previous_end - first]]
            if (
                zlib.crc32(previous_bytes) >= len(previous_bytes) * threshold
                and char_bytes[piece_end - first] - char_bytes[group_start - first] <= self._budget
            ):
                grouped[-1] = (group_start, piece_end)
            else:
                grouped.append((piece_start, piece_end))
        return grouped

    def _cut_windows(self, text: str, start: int, end: int, break_after: _Break, out: list[_Segment]) -> None:
        """Cut a piece with no usable sentence or line break into windows of at most the budget,
        ending each window at its last whitespace, or at a token boundary inside a long word."""
        piece = text[start:end]
        tokens = self._encoding.encode_ordinary(piece)
        token_ends = self._token_ends(tokens)
        char_bytes = _char_byte_offsets(piece)
        spaces = [match.span() for match in _WHITESPACE.finditer(piece)]
        space_starts = [space_start for space_start, _ in spaces]
        c0 = 0
        while c0 < len(piece):
            # The window starts inside token ``first`` (after a cut inside a multi-byte character) or
            # at its start; ``limit`` tokens later is as far as the budget can reach.
            first = bisect.bisect_right(token_ends, int(char_bytes[c0])) - 1
            limit = first + self._budget
            while True:
                c1 = len(piece) if limit >= len(tokens) else _char_at_or_before(char_bytes, token_ends[limit])
                c1 = max(c1, c0 + 1)
                cut, resume, strength = c1, c1, _Break.TOKEN
                if c1 < len(piece):
                    k = bisect.bisect_right(space_starts, c1) - 1
                    if k >= 0 and c0 < spaces[k][0]:
                        cut, resume, strength = spaces[k][0], spaces[k][1], _Break.WORD
                n_tokens = self.count_tokens(piece[c0:cut])
                # One character always fits (see _MIN_BUDGET, _MIN_WINDOW); anything longer is
                # measured, since a substring need not tokenize like its part of the whole.
                if cut == c0 + 1:
                    break
                if n_tokens > self._budget:
                    limit -= max(1, n_tokens - self._budget)
                    continue
                excess = self._window_excess(piece[c0:cut])
                if not excess:
                    break
                # the window's tokens over its size, in proportion as this splitter's tokens
                assert self._window is not None
                limit -= max(1, -(-n_tokens * excess // (self._window.max_tokens + excess)))
            out.append(
                _Segment(start + c0, start + cut, n_tokens, break_after if resume >= len(piece) else strength)
            )
            c0 = resume

    def _token_ends(self, tokens: list[int]) -> list[int]:
        """The UTF-8 byte offset at which each token ends, after a leading 0."""
        return list(accumulate(map(len, self._encoding.decode_tokens_bytes(tokens)), initial=0))

    # -- chunks ---------------------------------------------------------------------------------

    def _is_anchor(self, text: str, segment: _Segment) -> bool:
        """Whether a chunk must end after ``segment``: true with probability ``n_tokens / target``,
        decided by the segment's own content alone."""
        digest = zlib.crc32(text[segment.start : segment.end].encode("utf-8", "surrogatepass"))
        return digest < (segment.n_tokens / self.target_tokens) * 2**32

    def _runs(self, text: str, segments: list[_Segment]) -> Iterator[list[_Segment]]:
        """The segments between consecutive anchors."""
        run: list[_Segment] = []
        for segment in segments:
            run.append(segment)
            if self._is_anchor(text, segment):
                yield run
                run = []
        if run:
            yield run

    def _chunk_spans(self, text: str, segments: list[_Segment]) -> Iterator[tuple[int, int, int]]:
        """Pack each run of segments into chunks ``(start, end, n_tokens)``, overlap included."""
        previous_start: int | None = None
        for run in self._runs(text, segments):
            i = 0
            while i < len(run):
                cut = self._best_cut(text, run, i)
                while True:
                    core_start, end = run[i].start, run[cut].end
                    single = run[i].n_tokens if cut == i else None
                    start, n_tokens = self._measure(text, previous_start, core_start, end, single)
                    # The estimate counts separators on their own and merging across them rarely
                    # changes the count, but the limit is a promise: give up a segment if needed.
                    # A single segment always fits, without overlap if need be.
                    if cut == i or (n_tokens <= self.max_tokens and not self._window_excess(text[start:end])):
                        break
                    cut -= 1
                yield start, end, n_tokens
                previous_start = core_start
                i = cut + 1

    def _best_cut(self, text: str, run: list[_Segment], i: int) -> int:
        """The last segment of the chunk starting at ``run[i]``: the strongest break among those that
        leave the chunk at least half full, by estimated size."""
        sizes = [run[i].n_tokens]
        j = i
        while j + 1 < len(run):
            size = sizes[-1] + self._count_gap(text[run[j].end : run[j + 1].start]) + run[j + 1].n_tokens
            if size > self._budget:
                break
            sizes.append(size)
            j += 1
        if j == len(run) - 1:
            return j
        half = self._budget // 2
        candidates = [k for k in range(i, j + 1) if sizes[k - i] >= half] or [j]
        return max(candidates, key=lambda k: (run[k].break_after, k))

    def _count_gap(self, gap: str) -> int:
        count = self._gap_tokens.get(gap)
        if count is None:
            count = self.count_tokens(gap)
            if len(self._gap_tokens) < 4096:
                self._gap_tokens[gap] = count
        return count

    def _measure(
        self, text: str, previous_start: int | None, start: int, end: int, known: int | None
    ) -> tuple[int, int]:
        """The start and exact size of the chunk whose new text is ``text[start:end]``: moved back
        into the previous chunk by at most ``overlap`` tokens (to a word start) if that fits."""
        if self.overlap and previous_start is not None:
            # Only the tail of the previous chunk matters; a tail holding fewer than ``overlap``
            # tokens just makes a shorter overlap.
            tail_start = max(previous_start, start - _OVERLAP_CHARS_PER_TOKEN * self.overlap)
            tail = text[tail_start:start]
            tokens = self._encoding.encode_ordinary(tail)
            token_ends = self._token_ends(tokens)
            char_bytes = _char_byte_offsets(tail)
            want = self.overlap
            while want > 0:
                new_start = tail_start + _char_at_or_after(char_bytes, token_ends[max(0, len(tokens) - want)])
                # A chunk never swallows the whole previous one, and starts at a word where the text
                # has words at all (CJK or a long hard-cut word has none).
                new_start = max(new_start, previous_start + 1)
                if not text[new_start - 1].isspace():
                    space = _WHITESPACE.search(text, new_start, start)
                    if space and space.end() < start:
                        new_start = space.end()
                while new_start < start and text[new_start].isspace():
                    new_start += 1
                if new_start >= start:
                    break
                total = self.count_tokens(text[new_start:end])
                if total > self.max_tokens:
                    want -= total - self.max_tokens
                    continue
                excess = self._window_excess(text[new_start:end])
                if not excess:
                    return new_start, total
                # An overlap is worth less than a fitting chunk: halve it until the window holds both.
                want //= 2
        return start, known if known is not None else self.count_tokens(text[start:end])


def _pieces(pattern: re.Pattern[str], text: str, start: int, end: int) -> list[tuple[int, int]]:
    """The non-blank spans of ``text[start:end]`` between matches of ``pattern``, without their
    leading and trailing whitespace."""
    bounds = [start, *chain.from_iterable(match.span() for match in pattern.finditer(text, start, end)), end]
    pieces = []
    for piece_start, piece_end in zip(bounds[::2], bounds[1::2], strict=True):
        # Separators swallow the whitespace after them, so few pieces need stripping.
        if piece_start < piece_end and (text[piece_start].isspace() or text[piece_end - 1].isspace()):
            piece_start, piece_end = _strip(text, piece_start, piece_end)
        if piece_start < piece_end:
            pieces.append((piece_start, piece_end))
    return pieces


def _strip(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def _char_byte_offsets(text: str) -> npt.NDArray[np.int64]:
    """The UTF-8 byte offset of each character of ``text``, and the total length after them."""
    if text.isascii():
        return np.arange(len(text) + 1, dtype=np.int64)
    # Lone surrogates cannot be UTF-8 encoded; tiktoken encodes them as U+FFFD, also 3 bytes long.
    data = np.frombuffer(text.encode("utf-8", "surrogatepass"), dtype=np.uint8)
    starts = np.flatnonzero((data & 0xC0) != 0x80)
    return np.append(starts, len(data)).astype(np.int64)


def _char_at_or_before(char_bytes: npt.NDArray[np.int64], byte_offset: int) -> int:
    """The index of the last character boundary at or before ``byte_offset``."""
    return int(np.searchsorted(char_bytes, byte_offset, side="right")) - 1


def _char_at_or_after(char_bytes: npt.NDArray[np.int64], byte_offset: int) -> int:
    """The index of the first character boundary at or after ``byte_offset``."""
    return int(np.searchsorted(char_bytes, byte_offset, side="left"))
