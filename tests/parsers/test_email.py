"""E-mail messages and mailboxes written with the standard library's ``email``."""

from __future__ import annotations

import pytest

from ragflow.errors import IncompleteParse
from ragflow.parsers import DefaultParser, DocumentFormat, ParseLimits, detect_format
from tests.parsers.builders import make_docx, make_eml, make_html_only_eml
from tests.parsers.conftest import located, parse


def test_eml_headers_become_metadata_and_the_plain_body_is_preferred() -> None:
    mail = make_eml("Lantern repair", "The lantern lens cracked.\n", html="<p>HTML <b>copy</b></p>")
    [unit] = parse(mail, "mail/repair.eml")
    assert unit.metadata == {
        "path": "mail/repair.eml",
        "sender": "Ann Lee <ann@example.org>",
        "recipients": "Bob Roy <bob@example.org>, cy@example.org",
        "subject": "Lantern repair",
        "date": "2025-03-04T09:30:00+01:00",
    }
    assert unit.text == (
        "Subject: Lantern repair\nFrom: Ann Lee <ann@example.org>\n"
        "To: Bob Roy <bob@example.org>, cy@example.org\nDate: 2025-03-04T09:30:00+01:00\n\n"
        "The lantern lens cracked."
    )


def test_an_html_only_body_goes_through_the_html_parser() -> None:
    [unit] = parse(
        make_html_only_eml("Hi", "<html><body><p>Visible</p><script>x()</script></body></html>"), "a.eml"
    )
    assert unit.text.endswith("\n\nVisible")


def test_attachments_are_parsed_by_the_same_parsers_and_cited_as_attachments() -> None:
    report = make_docx([("h1", "Findings"), ("p", "The reef moved north.")])
    mail = make_eml(
        "Survey", "See attached.", attachments=[("survey.docx", report, "application/octet-stream")]
    )
    units = parse(mail, "mail/survey.eml")
    assert located(units, "attachment", "section", "subject") == [
        (None, None, "Survey"),
        ("survey.docx", "Findings", "Survey"),
    ]
    assert units[1].text == "Findings\n\nThe reef moved north."
    assert units[1].metadata["path"] == "mail/survey.eml"


def test_an_attachment_past_the_cap_is_named_and_skipped_and_the_message_indexed() -> None:
    mail = make_eml(
        "Backup", "Big file attached.", attachments=[("dump.txt", b"x" * 3_000_000, "text/plain")]
    )
    parser = DefaultParser(limits=ParseLimits(max_attachment_bytes=1_000_000))
    with pytest.raises(IncompleteParse) as error:
        parser.parse(mail, {"path": "mail/backup.eml"})
    assert str(error.value) == (
        "attachment 'dump.txt' of mail/backup.eml is about 3,000,000 bytes, past the cap of 1,000,000; "
        "not read (raise ParseLimits(max_attachment_bytes=...))"
    )
    assert [unit.metadata.get("attachment") for unit in error.value.units] == [None]


def test_an_unreadable_attachment_is_named_and_the_message_indexed() -> None:
    mail = make_eml(
        "Logs", "Archive attached.", attachments=[("logs.zip", b"PK\x03\x04broken", "application/zip")]
    )
    with pytest.raises(IncompleteParse, match=r"^mail/logs\.eml > logs\.zip: binary or unsupported content"):
        parse(mail, "mail/logs.eml")


def test_mbox_messages_are_numbered_units() -> None:
    first = make_eml("First", "Storm warning for Monday.\nFrom the coast guard.\n")
    second = make_eml("Second", "All clear.")
    mbox = b"From ann@example.org Tue Mar  4 09:30:00 2025\n" + first.replace(b"\nFrom the", b"\n>From the")
    mbox += b"\nFrom bob@example.org Wed Mar  5 10:00:00 2025\n" + second
    units = parse(mbox, "mail/archive.mbox")
    assert located(units, "message", "subject") == [(1, "First"), (2, "Second")]
    assert units[0].text.endswith("Storm warning for Monday.\nFrom the coast guard.")


def test_a_mailbox_is_recognised_by_its_separator_line_but_prose_starting_with_from_is_not() -> None:
    mbox = b"From ann@example.org Tue Mar  4 09:30:00 2025\n" + make_eml("Hello", "Body.")
    assert detect_format("Mail/inbox", mbox) is DocumentFormat.MBOX
    assert detect_format("Mail/one", make_eml("Hello", "Body.")) is DocumentFormat.EMAIL
    assert detect_format("README", b"From the author, 2024\nThanks for reading.\n") is DocumentFormat.TEXT
