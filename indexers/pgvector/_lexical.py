"""The lexical side of the pgvector index: BM25 over PostgreSQL full-text search.

**Words.** Each chunk's words, cut by ragflow's own tokenizer (the embedded lexical index's,
``ragflow.retrieval.lexical_tokens``: a code identifier whole and in its parts, no stop words), are stored
as a ``tsvector`` in the chunk's own row (``lexemes``, with their positions, and ``words``, how many), so
the statement that writes a chunk's text and vector writes its words, and an epoch's transaction all of
them; a GIN index finds the chunks holding a word. PostgreSQL's own parsers would cut ``os.path.join``
or ``max_wal_senders`` differently from the embedded index; a ``tsvector`` literal keeps both the same.

**Ranking.** BM25 with the embedded index's constants and idf (``ragflow.retrieval.bm25``), so the two
rank alike: for each query word ``t``,
``idf(t) * tf * (k1 + 1) / (tf + k1 * (1 - b + b * words / avg_words))``, where ``tf`` is read from
``ts_rank`` of the single word (``frequency_sql``) and ``idf(t) = ln(1 + (N - df + 0.5) / (df + 0.5))``.
PostgreSQL's own ``ts_rank_cd`` over the whole query has no idf: on the PostgreSQL-manual questions it
ranked far below BM25 (docs/benchmarks.md); PostgreSQL's rankings only serve to read a frequency here.

**Corpus statistics** (``N``, the average length, each word's ``df``) are exact for a table below
``EXACT_BELOW`` chunks or never analysed (counted). Above it, ``N`` and the average length come from
PostgreSQL's planner statistics (``ANALYZE``, which autovacuum runs as the table changes), and so does
the ``df`` of the words common enough to be among the column's most common elements (about the 1,000
most frequent); the ``df`` of every other word of a query is counted, exactly, through the GIN index.

**Bounded work (MaxScore).** Scoring every chunk that holds any word of a question means, at 100k chunks,
tens of thousands of rows for words like ``table`` or ``database``. Instead the search scores first a
probe: the chunks holding the query's two rarest words together (or, when fewer than ``k`` do, those
holding any of its rarer words, up to a share of the table), whose ``k``-th score is ``theta``. Any other
chunk scores less than what its words can add at most, ``(k1 + 1) * idf`` each, so only the chunks
outside the probe holding a set of words whose bounds add up to more than ``theta`` can still enter the
top ``k``; the second pass asks the GIN index for exactly those (an OR of ANDs). The result is the exact
BM25 top ``k`` for those statistics, with far fewer rows read.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ragflow.retrieval import bm25, lexical_tokens

__all__ = [
    "EXACT_BELOW",
    "TOKENIZER",
    "CorpusStatistics",
    "Probe",
    "QueryPlan",
    "frequency_sql",
    "lexemes",
    "query_terms",
    "tsquery",
]

TOKENIZER = "ragflow lexical_tokens 1"
"""Names the tokenizer the ``lexemes`` column was written with (its column comment): a table written by
another is tokenised again when opened."""

EXACT_BELOW = 2_000
"""Below this many chunks (or before the table was ever analysed) the corpus statistics are counted."""
FIRST_PASS_SHARE = 0.02
"""The first pass scores the chunks holding the rarest query words up to this share of the table."""
FIRST_PASS_MIN_ROWS = 1_000
MAX_SUBSETS = 128
"""More sets of words than this in the second pass: it asks for any of the remaining words instead."""

_ZETA2 = 1.64493406685
"""pi^2 / 6 as PostgreSQL's ``ts_rank`` writes it (tsrank.c), to invert what it returns."""
_MAX_LEXEME_BYTES = 2046  # PostgreSQL refuses longer words ("word is too long")
_MAX_POSITION = 16383  # PostgreSQL clamps later positions to this one
_MAX_POSITIONS = 256  # and keeps at most this many positions per word


def lexemes(text: str) -> tuple[str, int]:
    """``text``'s words as a ``tsvector`` literal (each distinct word with its positions, from 1), and
    how many words it has (BM25's document length, as the embedded index counts it).

    >>> lexemes("Call os.path.join, then os.path.join twice")
    ("'call':1 'os.path.join':2,6 'os':3,7 'path':4,8 'join':5,9 'twice':10", 10)
    """
    tokens = lexical_tokens(text)
    positions: dict[str, list[int]] = {}
    for n, token in enumerate(tokens, 1):
        n = min(n, _MAX_POSITION)
        found = positions.get(token)
        if found is None:
            if len(token.encode()) <= _MAX_LEXEME_BYTES:
                positions[token] = [n]
        elif len(found) < _MAX_POSITIONS and found[-1] != n:
            found.append(n)
    literal = " ".join(f"{_quoted(t)}:{','.join(map(str, p))}" for t, p in positions.items())
    return literal, len(tokens)


def query_terms(query: str) -> list[str]:
    """The distinct words of ``query`` a chunk can hold, in order."""
    return [t for t in dict.fromkeys(lexical_tokens(query)) if len(t.encode()) <= _MAX_LEXEME_BYTES]


def frequency_sql(query: str = "%s") -> str:
    """SQL for how many times ``lexemes`` holds the word of ``query``, a one-word ``tsquery`` (default:
    a parameter): 0 to 256, PostgreSQL's most positions per word.

    ``ts_rank`` of one word that occurs ``n`` times (each position of weight D, 0.1) is
    ``0.1 * (1 + 1/2^2 + ... + 1/n^2) / (pi^2 / 6)``, a float4 that tells every ``n`` up to 256 apart;
    since ``pi^2 / 6 - (1 + ... + 1/n^2)`` is ``1 / (n + 1/2)`` to within ``1 / (12 n^3)``, ``n`` is the
    rounded ``1 / (pi^2 / 6 - sum) - 1/2`` (exact for every ``n``, tested against PostgreSQL).
    ``ts_rank_cd`` of the word gives ``0.1 * n`` directly, but zeroes 32 kB per call (a position
    array of PostgreSQL's largest size): at 100k chunks that made a lexical search's PostgreSQL CPU
    18.7 ms per question against 13.6 ms this way (docs/benchmarks.md)."""
    return (
        f"round(1.0::float8 / ({_ZETA2!r}::float8 - ts_rank(lexemes, {query}::tsquery, 0) "
        f"* {10 * _ZETA2!r}::float8) - 0.5::float8)"
    )


def tsquery(terms: Sequence[str]) -> str:
    """A ``tsquery`` literal matching a chunk that holds any of ``terms``.

    >>> tsquery(["it's", "join"])
    "'it''s' | 'join'"
    """
    return " | ".join(_quoted(t) for t in terms)


def _quoted(word: str) -> str:
    return "'" + word.replace("\\", "\\\\").replace("'", "''") + "'"


@dataclass(frozen=True, slots=True)
class CorpusStatistics:
    """``chunks`` (N), ``average_words`` and the ``df`` of the words PostgreSQL's statistics list as
    common (empty when exact: then every word's ``df`` is counted)."""

    chunks: float
    average_words: float
    common: Mapping[str, float]
    exact: bool

    def known_df(self, terms: Sequence[str]) -> dict[str, float]:
        """The ``df`` of each of ``terms`` that the statistics give (the others must be counted)."""
        return {t: self.common[t] for t in terms if t in self.common}


@dataclass(frozen=True, slots=True)
class QueryPlan:
    """How one query is scored: its words (rarest first) with their weights and the bound of what each
    can add to a chunk's score, and the probes that give the first pass its chunks."""

    terms: tuple[str, ...]
    idf: tuple[float, ...]
    rare: tuple[str, ...]
    bounds: Mapping[str, float]

    @classmethod
    def make(cls, terms: Sequence[str], df: Mapping[str, float], statistics: CorpusStatistics) -> QueryPlan:
        """The plan for ``terms`` (those no chunk holds are dropped) given each one's ``df``."""
        n = max(statistics.chunks, 1.0)
        held = sorted((t for t in terms if df.get(t, 0) > 0), key=lambda t: (df[t], t))
        idf = {t: bm25.idf(n, df[t]) for t in held}
        budget = max(FIRST_PASS_SHARE * n, FIRST_PASS_MIN_ROWS)
        rare: list[str] = []
        total = 0.0
        for t in held:
            if rare and total + df[t] > budget:
                break
            rare.append(t)
            total += df[t]
        bounds = {t: (bm25.K1 + 1) * idf[t] for t in held}
        return cls(tuple(held), tuple(idf[t] for t in held), tuple(rare), bounds)

    def probes(self) -> list[Probe]:
        """The first pass's candidates, to try in turn until one holds ``k`` chunks: those holding the
        two rarest words together (few chunks, and among the best: a high ``theta``), then those holding
        any of the rarer words (up to ``FIRST_PASS_SHARE`` of the table, at least the rarest word)."""
        broad = Probe(tuple(frozenset([t]) for t in self.rare))
        if len(self.terms) < 2:
            return [broad]
        return [Probe((frozenset(self.terms[:2]),)), broad]

    def weights(self, average_words: float) -> list[float]:
        """The parameters of ``score_sql``'s expression: per word, its weight and its length terms."""
        average = max(average_words, 1e-9)
        out: list[float] = []
        for idf in self.idf:
            out += [(bm25.K1 + 1) * idf, bm25.K1 * (1 - bm25.B), bm25.K1 * bm25.B / average]
        return out

    def second_pass(self, theta: float, probe: Probe) -> str | None:
        """The ``tsquery`` of the chunks outside ``probe`` that can still score above ``theta``: those
        holding a set of the words whose bounds add up to more than it (and that the probe does not
        hold: its chunks are scored); ``None`` if none can."""
        words = sorted(self.bounds, key=lambda t: (-self.bounds[t], t))
        if sum(self.bounds.values()) <= theta:
            return None
        sets: list[list[str]] = []

        def grow(start: int, chosen: list[str], total: float) -> bool:
            for i in range(start, len(words)):
                word = words[i]
                if total + self.bounds[word] > theta:
                    if not probe.covers([*chosen, word]):
                        sets.append([*chosen, word])
                    if len(sets) > MAX_SUBSETS:
                        return False
                elif not grow(i + 1, [*chosen, word], total + self.bounds[word]):
                    return False
            return True

        if grow(0, [], 0.0):
            if not sets:
                return None
            match = " | ".join("(" + " & ".join(_quoted(t) for t in s) + ")" for s in sets)
        else:
            match = tsquery(words)
        return f"({match}) & !({probe.tsquery()})"


@dataclass(frozen=True, slots=True)
class Probe:
    """The chunks of a first pass: those holding all the words of any of ``sets``."""

    sets: tuple[frozenset[str], ...]

    def tsquery(self) -> str:
        return " | ".join("(" + " & ".join(_quoted(t) for t in sorted(s)) + ")" for s in self.sets)

    def covers(self, words: Sequence[str]) -> bool:
        """Whether every chunk holding all of ``words`` is among the probe's."""
        held = set(words)
        return any(s <= held for s in self.sets)


def score_sql(terms: int, chunks: str, where: str) -> str:
    """A statement scoring the chunks matching a ``tsquery`` (its first parameter after the words') and
    ``where``, best first, at most a limit of them: its parameters are ``QueryPlan.weights`` (3 per
    word), each word's ``tsquery``, the match, ``where``'s own, then the limit. Only the ids and scores
    of the candidates are sorted; the best rows' texts and metadata are read once they are known."""
    frequencies = ", ".join(f"{frequency_sql()} AS tf{i}" for i in range(terms))
    score = " + ".join(f"%s * tf{i} / (tf{i} + %s + %s * words)" for i in range(terms))
    # OFFSET 0 keeps the innermost query whole, so each frequency is read once per row
    return (
        f"SELECT c.id, c.text, c.metadata, c.extra, b.score FROM (SELECT id, {score} AS score "
        f"FROM (SELECT id, words, {frequencies} FROM {chunks} WHERE lexemes @@ %s::tsquery AND ({where}) "
        f"OFFSET 0) AS f ORDER BY score DESC, id LIMIT %s) AS b JOIN {chunks} AS c ON c.id = b.id "
        "ORDER BY b.score DESC, c.id"
    )


def score_parameters(
    plan: QueryPlan, average_words: float, match: str, where_params: Sequence[object], limit: int
) -> list[object]:
    """``score_sql``'s parameters, in its order."""
    return [*plan.weights(average_words), *(tsquery([t]) for t in plan.terms), match, *where_params, limit]
