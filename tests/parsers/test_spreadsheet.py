"""Excel workbooks written by openpyxl, read in read-only mode."""

from __future__ import annotations

import pytest

from ragflow.errors import IncompleteParse, ParseError
from ragflow.parsers import DefaultParser, ParseLimits
from tests.parsers.builders import make_xlsx, million_empty_rows, with_cached_formula_values
from tests.parsers.conftest import located, parse


def test_xlsx_rows_are_header_value_pairs_cited_by_sheet_and_row_range() -> None:
    book = make_xlsx(
        {
            "Sales": [["Region", "Revenue", "Owner"], ["North", 1200, "Ann"], ["South", 800.5, None]],
            "Staff": [["Name", "Role"], ["Bob", "Keeper"]],
        }
    )
    units = parse(book, "finance/q1.xlsx")
    assert located(units, "sheet", "rows") == [("Sales", "2-3"), ("Staff", "2")]
    assert units[0].text == "Region: North; Revenue: 1200; Owner: Ann\nRegion: South; Revenue: 800.5"
    assert units[1].text == "Name: Bob; Role: Keeper"


def test_xlsx_big_sheets_come_in_blocks_of_at_most_20_rows() -> None:
    rows = [["N"]] + [[i] for i in range(1, 46)]
    units = parse(make_xlsx({"Items": rows}), "items.xlsx")
    assert located(units, "rows") == [("2-21",), ("22-41",), ("42-46",)]
    assert units[2].text.splitlines()[0] == "N: 41"


def test_xlsx_blocks_of_long_rows_are_cut_sooner_to_stay_about_one_chunk() -> None:
    rows = [["Id", "Memo"]] + [[i, "a long memo of the ledger entry " * 3] for i in range(1, 11)]
    units = parse(make_xlsx({"Ledger": rows}), "ledger.xlsx")
    assert located(units, "rows") == [("2-4",), ("5-7",), ("8-10",), ("11",)]
    assert all(len(unit.text) < 400 for unit in units)


def test_xlsx_formulas_give_their_cached_values() -> None:
    book = make_xlsx({"Calc": [["A", "B", "Sum"], [5, 7, "=A2+B2"]]})
    [unit] = parse(with_cached_formula_values(book, {"C2": "12"}), "calc.xlsx")
    assert unit.text == "A: 5; B: 7; Sum: 12"


def test_xlsx_without_a_text_header_labels_columns_by_letter() -> None:
    [unit] = parse(make_xlsx({"N": [[1, 2], [3, 4]]}), "n.xlsx")
    assert unit.text == "A: 1; B: 2\nA: 3; B: 4"


def test_xlsx_with_a_million_empty_rows_stops_reading_and_says_so() -> None:
    book = million_empty_rows(make_xlsx({"Log": [["When", "What"], ["Monday", "storm"]]}))
    with pytest.raises(IncompleteParse) as error:
        parse(book, "logs/huge.xlsx")
    assert str(error.value) == (
        "sheet 'Log' of logs/huge.xlsx has 10,000 empty rows in a row from row 3; the rest of the sheet was "
        "not read (delete the empty rows, or raise ParseLimits(max_empty_rows=...))"
    )
    assert [unit.text for unit in error.value.units] == ["When: Monday; What: storm"]


def test_xlsx_with_only_empty_rows_is_an_error() -> None:
    book = million_empty_rows(make_xlsx({"Empty": [["", ""], ["", ""]]}), count=20)
    message = r"^e\.xlsx: sheet 'Empty' of e\.xlsx has 5 empty rows in a row from row 1; the rest"
    with pytest.raises(ParseError, match=message):
        parse(book, "e.xlsx", DefaultParser(limits=ParseLimits(max_empty_rows=5)))
