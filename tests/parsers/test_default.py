"""DefaultParser's dispatch: parsers added or overridden by suffix (argument or entry point), the time cap,
and the chunk ids a unit's location gives."""

from __future__ import annotations

from importlib.metadata import EntryPoint
from typing import Any

import pytest

from ragflow.documents import Metadata, TextUnit
from ragflow.engine import FrozenDict
from ragflow.errors import ParseError
from ragflow.parsers import DefaultParser, ParseLimits
from ragflow.pipeline import ChunkPiece, chunk_id, chunk_keys
from tests.parsers.builders import make_pptx
from tests.parsers.conftest import parse


class ShoutingParser:
    def parse(self, data: bytes, metadata: Metadata) -> list[TextUnit]:
        return [TextUnit(data.decode().upper(), {**metadata, "page_number": 1})]


def test_a_parser_given_by_suffix_adds_a_format_or_overrides_a_built_in() -> None:
    parser = DefaultParser(parsers={".odt": ShoutingParser(), "docx": ShoutingParser()})
    assert [u.text for u in parse(b"open document", "a.odt", parser)] == ["OPEN DOCUMENT"]
    assert [u.text for u in parse(b"not really word", "b.docx", parser)] == ["NOT REALLY WORD"]
    assert [u.text for u in parse(b"plain", "c.txt", parser)] == ["plain"]


def test_parsers_registered_as_entry_points_are_used(monkeypatch: pytest.MonkeyPatch) -> None:
    registered = [EntryPoint("odt", "tests.parsers.test_default:ShoutingParser", "ragflow.parsers")]

    def entry_points(group: str) -> list[EntryPoint]:
        return registered if group == "ragflow.parsers" else []

    monkeypatch.setattr("ragflow.parsers._default.entry_points", entry_points)
    assert [u.text for u in parse(b"from a plugin", "x.odt", DefaultParser())] == ["FROM A PLUGIN"]
    assert (
        parse(b"from a plugin", "x.odt", DefaultParser(entry_point_parsers=False))[0].text == "from a plugin"
    )


def test_a_parse_past_its_time_cap_stops_with_where_it_got(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = iter(range(0, 1000, 10))
    monkeypatch.setattr("ragflow.parsers._limits.time.monotonic", lambda: next(clock))
    deck = make_pptx([{"title": f"Slide {n}", "body": ["text"]} for n in range(3)])
    with pytest.raises(ParseError) as error:
        parse(deck, "slow.pptx", DefaultParser(limits=ParseLimits(max_seconds=15)))
    assert str(error.value) == (
        "slow.pptx: parsing took longer than 15 s (stopped at slide 2); split the file, or raise "
        "ParseLimits(max_seconds=...) for it"
    )


@pytest.mark.parametrize(
    "field", ["max_unpacked_bytes", "max_empty_rows", "max_attachment_bytes", "max_seconds"]
)
def test_limits_must_be_positive(field: str) -> None:
    with pytest.raises(ValueError, match=f"ParseLimits.{field} must be"):
        ParseLimits(**{field: 0})


def pieces(*units: tuple[dict[str, Any] | None, int]) -> list[ChunkPiece]:
    """``(location, chunk count)`` per unit, as the pipeline makes them."""
    return [
        ChunkPiece(f"text {i}", 0, 1, i, 1, None, FrozenDict(location) if location else None)
        for location, count in units
        for i in range(count)
    ]


def test_chunk_ids_are_per_unit_so_editing_one_unit_keeps_the_others() -> None:
    deck = chunk_keys("deck.pptx", pieces(({"slide": 1}, 2), ({"slide": 2}, 1), ({"slide": 3}, 1)))
    grown = chunk_keys("deck.pptx", pieces(({"slide": 1}, 2), ({"slide": 2}, 3), ({"slide": 3}, 1)))
    assert len(set(deck)) == 4 and len(set(grown)) == 6
    assert grown[:2] == deck[:2] and grown[-1] == deck[-1]


def test_repeated_locations_get_distinct_ids_and_pdf_ids_are_unchanged() -> None:
    same = chunk_keys("r.docx", pieces(({"section": "Notes"}, 1), ({"section": "Notes"}, 1)))
    assert len(set(same)) == 2
    pdf = [ChunkPiece("t", 0, 1, ordinal, 1, page) for page in (1, 2) for ordinal in (0, 1)]
    assert chunk_keys("a.pdf", pdf) == [chunk_id("a.pdf", p.page_number, p.ordinal) for p in pdf]


def test_the_parser_section_of_the_configuration_sets_engine_ocr_and_caps() -> None:
    from ragflow.config import RagflowConfig

    section = {"pdf_engine": "pypdfium2", "ocr": False, "max_empty_rows": 5, "max_seconds": 9.5}
    config = RagflowConfig.from_dict({"sources": [{"kind": "upload"}], "parser": section})
    parser = config.build_parser()
    assert isinstance(parser, DefaultParser)
    assert (parser.pdf_engine, parser.ocr) == ("pypdfium2", False)
    assert parser.limits == ParseLimits(max_empty_rows=5, max_seconds=9.5)
    assert RagflowConfig.from_dict({"sources": [{"kind": "upload"}]}).build_parser().limits == ParseLimits()  # type: ignore[attr-defined]
