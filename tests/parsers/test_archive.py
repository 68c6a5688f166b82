"""Office files that cannot be read: truncated, password-protected, zip bombs, legacy or misnamed."""

from __future__ import annotations

import io
import zipfile

import pytest

from ragflow.errors import ParseError
from ragflow.parsers import DefaultParser, DocumentFormat, ParseLimits, detect_format
from tests.parsers.builders import encrypted, make_docx, make_xlsx, zip_bomb
from tests.parsers.conftest import parse

REPORT = make_docx([("h1", "Report"), ("p", "Quarterly numbers.")])


def test_a_truncated_docx_is_refused_as_truncated() -> None:
    with pytest.raises(
        ParseError, match=r"^team/cut\.docx: truncated or corrupt Office file \(not a complete zip"
    ):
        parse(REPORT[: len(REPORT) // 2], "team/cut.docx")


def test_a_password_protected_docx_says_to_remove_the_password() -> None:
    data = encrypted(REPORT)
    assert detect_format("secret.docx", data) is DocumentFormat.OLE
    with pytest.raises(
        ParseError, match=r"^secret\.docx: the Office file is password-protected \(encrypted\)"
    ):
        parse(data, "secret.docx")


def test_a_legacy_binary_office_file_says_to_save_as_docx() -> None:
    legacy = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(600)
    with pytest.raises(ParseError, match=r"^old\.doc: a legacy binary Office file .* save it as \.docx"):
        parse(legacy, "old.doc")


def test_a_zip_bomb_is_refused_from_its_declared_sizes_before_reading() -> None:
    bomb = zip_bomb(300 << 20)
    compressed = zipfile.ZipFile(io.BytesIO(bomb)).getinfo("word/document.xml").compress_size
    assert len(bomb) < 2 << 20
    with pytest.raises(ParseError) as error:
        parse(bomb, "team/bomb.docx")
    assert str(error.value) == (
        "team/bomb.docx: the Word document would unpack to 314,572,808 bytes (word/document.xml alone "
        f"314,572,800 from {compressed:,} compressed), past the cap of 268,435,456; not read (a zip "
        "bomb?). If the file is genuine, raise ParseLimits(max_unpacked_bytes=...)"
    )


def test_the_unpacked_size_cap_applies_to_every_zip_format() -> None:
    parser = DefaultParser(limits=ParseLimits(max_unpacked_bytes=2000))
    book = make_xlsx({"S": [["a"] * 50] * 50})
    with pytest.raises(ParseError, match=r"^b\.xlsx: the Excel workbook would unpack to [\d,]+ bytes"):
        parse(book, "b.xlsx", parser)


def test_a_misnamed_file_is_read_by_content_or_refused_clearly() -> None:
    assert parse(REPORT, "report.pdf")[0].metadata["section"] == "Report"
    with pytest.raises(
        ParseError, match=r"^cut\.docx: truncated or corrupt Office file \(not a complete zip"
    ):
        parse(b"PK\x03\x04 but not really a zip" + bytes(50), "cut.docx")
    with pytest.raises(ParseError, match=r"^notes\.docx: not a Word document: not a zip archive \(it starts"):
        parse(b"Meeting notes, typed in a text editor.", "notes.docx")


def test_a_zip_that_is_no_known_format_is_refused_naming_its_members() -> None:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("photos/a.jpg", b"...")
    with pytest.raises(
        ParseError, match=r"^x\.zip: a zip archive that is not a Word.*photos/a\.jpg.*unpack it"
    ):
        parse(out.getvalue(), "x.zip")
