"""Word and PowerPoint files written by python-docx and python-pptx."""

from __future__ import annotations

from tests.parsers.builders import make_docx, make_pptx
from tests.parsers.conftest import located, parse

REPORT = make_docx(
    [
        ("p", "Prepared for the harbor board."),
        ("h1", "Report"),
        ("p", "The lantern project finished on time."),
        ("h2", "Costs"),
        ("p", "Copper prices rose sharply in spring."),
        ("table", [["Item", "Cost"], ["Copper", "4,200"], ["Glass", "900"]]),
        ("h2", "Risks"),
        ("p", "Storms may delay the second phase."),
        ("h1", "Appendix"),
        ("p", "Contact the keeper."),
    ],
    header="Harbor Board — confidential",
    footer="Page footer text",
)


def test_docx_sections_keep_their_heading_path_in_document_order() -> None:
    units = parse(REPORT, "team/report.docx")
    assert located(units, "section") == [
        (None,),
        ("Report",),
        ("Report > Costs",),
        ("Report > Risks",),
        ("Appendix",),
        ("(headers and footers)",),
    ]
    assert units[0].text == "Prepared for the harbor board."
    assert units[2].text.startswith("Costs\n\nCopper prices rose sharply in spring.")


def test_docx_tables_are_rows_of_header_value_pairs() -> None:
    costs = parse(REPORT, "report.docx")[2].text
    assert "Item: Copper; Cost: 4,200\nItem: Glass; Cost: 900" in costs


def test_docx_headers_and_footers_appear_once() -> None:
    units = parse(REPORT, "report.docx")
    everything = "\n".join(unit.text for unit in units)
    assert everything.count("Harbor Board — confidential") == 1
    assert units[-1].text == "Harbor Board — confidential\nPage footer text"


DECK = make_pptx(
    [
        {
            "title": "Roadmap",
            "body": ["Ship the lantern in May", "Hire two keepers"],
            "notes": "Mention budget",
        },
        {"title": "Budget", "body": ["Total spend"], "table": [["Quarter", "Spend"], ["Q1", "10k"]]},
        {"title": "Thanks", "body": []},
    ]
)


def test_pptx_is_one_unit_per_slide_with_number_title_text_table_and_notes() -> None:
    units = parse(DECK, "decks/plan.pptx")
    assert located(units, "slide", "slide_title") == [(1, "Roadmap"), (2, "Budget"), (3, "Thanks")]
    assert units[0].text == "Roadmap\n\nShip the lantern in May\nHire two keepers\n\nNotes: Mention budget"
    assert "Quarter: Q1; Spend: 10k" in units[1].text
    assert units[2].text == "Thanks"


def test_office_files_are_recognised_by_content_whatever_their_name() -> None:
    assert located(parse(DECK, "download.bin"), "slide") == [(1,), (2,), (3,)]
    assert located(parse(REPORT, "report.pptx"), "section")[1] == ("Report",)
