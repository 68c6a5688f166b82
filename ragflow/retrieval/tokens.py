"""Words for the lexical index: prose words and code identifiers (``os.path.join``, ``snake_case``,
``CamelCase``) cut into their parts and kept whole, lower-cased, without English stop words.

The same function reads documents and queries, so a query for ``path join`` finds ``os.path.join`` and a
query for ``os.path.join`` ranks the chunk that names it whole above one that merely has the three words.
"""

from __future__ import annotations

import re

__all__ = ["STOP_WORDS", "lexical_tokens"]

STOP_WORDS = frozenset(
    """a about above after again against all am an and any are as at be because been before being below
    between both but by can could did do does doing down during each few for from further had has have
    having he her here hers herself him himself his how i if in into is it its itself just me more most my
    myself no nor not now of off on once only or other our ours ourselves out over own same she should so
    some such than that the their theirs them themselves then there these they this those through to too
    under until up very was we were what when where which while who whom why will with would you your
    yours yourself yourselves""".split()
)

# a run of word characters, possibly joined by dots, colons or hyphens inside (os.path.join, std::vec)
_TERM = re.compile(r"[^\W_][\w]*(?:(?:\.|::|-)[^\W_][\w]*)*|_+[^\W_]\w*")
_JOINERS = re.compile(r"\.|::|-|_+")
# lower->Upper and ACRONYMWord boundaries inside an identifier: parseHTTPResponse -> parse HTTP Response
_CAMEL = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+")


def lexical_tokens(text: str) -> list[str]:
    """The index terms of ``text`` in order: each word lower-cased; an identifier both whole and in
    its parts (``os.path.join`` -> ``os.path.join os path join``; ``snake_case`` -> ``snake_case snake
    case``; ``CamelCase`` -> ``camelcase camel case``). Stop words are left out, except inside an
    identifier's whole form.

    >>> lexical_tokens("Call os.path.join on each getFileName")
    ['call', 'os.path.join', 'os', 'path', 'join', 'getfilename', 'get', 'file', 'name']
    """
    out: list[str] = []
    for word in _TERM.findall(text):
        if (word.isalnum() and word[1:].islower()) or word.isdigit():  # a plain word: the common case, fast
            lowered = word.lower()
            if lowered not in STOP_WORDS:
                out.append(lowered)
            continue
        parts = [p for piece in _JOINERS.split(word) if piece for p in _CAMEL.findall(piece) or [piece]]
        whole = word.lower().strip("_")
        if len(parts) <= 1:
            if whole not in STOP_WORDS:
                out.append(whole)
            continue
        out.append(whole)
        out.extend(p.lower() for p in parts if p.lower() not in STOP_WORDS)
    return out
