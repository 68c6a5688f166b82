"""The documents and changes the benchmark writes: generated text (deterministic for a seed) or a real
corpus, every paragraph opened by a unique marker word, and each change with what a query must then see.

A change is visible when, for each of its expectations, the chunks the server returns for that document
hold every ``present`` marker and no ``absent`` one (or, for ``gone``, no chunk at all)."""

from __future__ import annotations

import random
import string
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from ragflow.errors import ConfigError

WORDS = (
    "the a of and to in river harbor lantern keeper falcon meadow orbit report revenue quarry stream engine "
    "document folder change epoch search filter answer model server client request response index query "
    "vector latency copper reef canyon summit valley season winter summer market ledger account budget "
    "garden forest stone bridge tower signal engineer network storage archive library chapter section "
    "policy review quarterly schedule meeting customer product release feature pipeline worker batch queue "
    "memory disk thread process kernel cluster replica leader follower region zone window timer metric "
    "alert dashboard owner team project planning design contract invoice payment shipment warehouse"
).split()

MAX_CORPUS_WORDS = 1500
"""Corpus documents are cut to this many words, so every chunk of one fits a single retrieve of ``k``."""


class ChangeKind(StrEnum):
    """What a timed change does to a document at the source."""

    CREATE = "create"
    """A new document."""
    EDIT = "edit"
    """One paragraph replaced; the rest of the document unchanged."""
    REWRITE = "rewrite"
    """The whole document replaced by new text."""
    APPEND = "append"
    """A paragraph added at the end."""
    RENAME = "rename"
    """The document moved to a new name: the new name must show its text, the old one nothing."""
    DELETE = "delete"
    """The document removed: no query may return it."""


ALL_KINDS = tuple(ChangeKind)


def parse_kinds(text: str) -> list[ChangeKind]:
    """The kinds of change named in ``text`` (comma-separated), or a ``ConfigError`` saying which exist."""
    try:
        return [ChangeKind(k.strip()) for k in text.split(",") if k.strip()]
    except ValueError:
        raise ConfigError(f"--kinds takes {', '.join(ChangeKind)} (comma-separated), got {text!r}") from None


@dataclass
class Document:
    """One document of the workload: its name (relative to the run's folder, bucket prefix or topic) and
    its paragraphs, each starting with its marker word."""

    name: str
    paragraphs: list[str]

    @property
    def text(self) -> str:
        return "\n\n".join(self.paragraphs) + "\n"

    @property
    def markers(self) -> list[str]:
        return [p.split(maxsplit=1)[0] for p in self.paragraphs]


@dataclass(frozen=True)
class Expectation:
    """What the chunks of the document ``name`` must show once a change is visible."""

    name: str
    present: tuple[str, ...] = ()
    absent: tuple[str, ...] = ()
    gone: bool = False

    def met_by(self, texts: Iterable[str]) -> bool:
        """Whether chunks with these ``texts`` (all the document's chunks a query returned) show it."""
        joined = "\n".join(texts)
        if self.gone:
            return not joined
        return all(m in joined for m in self.present) and not any(m in joined for m in self.absent)

    @property
    def query(self) -> str:
        """The query to ask: the first marker it must find (any word for a document that must be gone)."""
        return self.present[0] if self.present else (self.absent[0] if self.absent else "document")


@dataclass(frozen=True)
class Operation:
    """One write at the source: ``put`` a text under a name, ``remove`` it, or ``rename`` it (``text`` is
    then its text, for sources where a rename is a delete and a put)."""

    op: str
    name: str
    text: str = ""
    new_name: str = ""


@dataclass(frozen=True)
class Change:
    """A planned change: the writes that make it and what must be seen once it is visible."""

    kind: ChangeKind
    doc: str
    operations: tuple[Operation, ...]
    expectations: tuple[Expectation, ...]


@dataclass
class Workload:
    """Makes documents and changes for one run; the same seed gives the same texts and choices."""

    seed: int = 0
    words: tuple[int, int] = (300, 600)
    corpus_paragraphs: list[str] = field(default_factory=list)
    rng: random.Random = field(init=False)
    live: dict[str, Document] = field(init=False, default_factory=dict)
    _made: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def marker(self) -> str:
        return "fbm" + "".join(self.rng.choices(string.ascii_lowercase + string.digits, k=9))

    def paragraph(self) -> str:
        if self.corpus_paragraphs:
            body = self.rng.choice(self.corpus_paragraphs)
        else:
            sentences = []
            for _ in range(self.rng.randint(3, 6)):
                words = self.rng.choices(WORDS, k=self.rng.randint(8, 16))
                sentences.append(" ".join(words).capitalize() + ".")
            body = " ".join(sentences)
        return f"{self.marker()} {body}"

    def generated(self, name: str) -> Document:
        target = self.rng.randint(*self.words)
        paragraphs: list[str] = []
        while sum(len(p.split()) for p in paragraphs) < target:
            paragraphs.append(self.paragraph())
        return Document(name, paragraphs)

    def _name(self, prefix: str) -> str:
        self._made += 1
        return f"{prefix}-{self._made:05d}.txt"

    def initial(self, count: int, corpus: list[Document] | None = None) -> list[Document]:
        """The first ``count`` documents (from ``corpus`` if given, else generated)."""
        docs = (
            [
                Document(self._name("doc"), [f"{self.marker()} {p}" for p in d.paragraphs])
                for d in corpus[:count]
            ]
            if corpus
            else [self.generated(self._name("doc")) for _ in range(count)]
        )
        self.live.update((d.name, d) for d in docs)
        return docs

    def pick(self, exclude: set[str] | None = None) -> Document:
        names = sorted(n for n in self.live if not exclude or n not in exclude)
        if not names:
            raise ConfigError("no document left to change: use more documents (--docs) or fewer changes")
        return self.live[self.rng.choice(names)]

    def change(self, kind: ChangeKind, doc: Document | None = None) -> Change:
        """Plan one change of ``kind`` (to ``doc``, or a random live document) and apply it to the model."""
        if kind is ChangeKind.CREATE:
            new = self.generated(self._name("new"))
            self.live[new.name] = new
            return Change(kind, new.name, (Operation("put", new.name, new.text),), (self._shows(new),))
        doc = doc or self.pick()
        if kind is ChangeKind.DELETE:
            del self.live[doc.name]
            return Change(
                kind, doc.name, (Operation("remove", doc.name),), (Expectation(doc.name, gone=True),)
            )
        if kind is ChangeKind.RENAME:
            new = Document(self._name("moved"), doc.paragraphs)
            del self.live[doc.name]
            self.live[new.name] = new
            return Change(
                kind,
                doc.name,
                (Operation("rename", doc.name, new.text, new.name),),
                (self._shows(new), Expectation(doc.name, gone=True)),
            )
        old = doc.markers
        if kind is ChangeKind.EDIT:
            at = self.rng.randrange(len(doc.paragraphs))
            doc.paragraphs[at] = self.paragraph()
            expectation = Expectation(doc.name, (doc.markers[at],), (old[at],))
        elif kind is ChangeKind.APPEND:
            doc.paragraphs.append(self.paragraph())
            expectation = Expectation(doc.name, (doc.markers[-1],))
        else:  # REWRITE
            doc.paragraphs = self.generated(doc.name).paragraphs
            expectation = Expectation(doc.name, tuple(doc.markers), tuple(old))
        return Change(kind, doc.name, (Operation("put", doc.name, doc.text),), (expectation,))

    @staticmethod
    def _shows(doc: Document) -> Expectation:
        return Expectation(doc.name, tuple(doc.markers))

    def visible_now(self, doc: Document) -> Expectation:
        """What a query shows for ``doc`` as it is now (to wait for the initial documents)."""
        return self._shows(doc)


def read_corpus(folder: Path, limit: int) -> tuple[list[Document], list[str]]:
    """Up to ``limit`` documents from the ``.txt``/``.md`` files under ``folder`` (their paragraphs, cut
    to ``MAX_CORPUS_WORDS`` words), and every paragraph of every file (the pool edits draw from)."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in (".txt", ".md"))
    docs: list[Document] = []
    pool: list[str] = []
    for path in files:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        paragraphs = [" ".join(p.split()) for p in text.split("\n\n") if len(p.split()) >= 5]
        pool.extend(paragraphs)
        kept, words = [], 0
        for p in paragraphs:
            if words >= MAX_CORPUS_WORDS:
                break
            kept.append(p)
            words += len(p.split())
        if kept and len(docs) < limit:
            docs.append(Document(path.name, kept))
    if not docs:
        raise ConfigError(f"no readable .txt or .md file with text under {folder}")
    return docs, pool
