"""EPUB e-books written with zipfile."""

from __future__ import annotations

from tests.parsers.builders import make_epub
from tests.parsers.conftest import located, parse


def test_chapters_come_in_spine_order_with_their_toc_titles() -> None:
    book = make_epub([("The Harbor", "Ships wait for the tide."), ("The Reef", "Copper reef lies east.")])
    units = parse(book, "books/sea.epub")
    assert located(units, "chapter") == [("The Harbor",), ("The Reef",)]
    assert units[1].text == "The Reef\n\nCopper reef lies east."


def test_an_epub_is_recognised_by_content_without_its_suffix() -> None:
    assert located(parse(make_epub([("Only", "Text.")]), "book"), "chapter") == [("Only",)]
