"""E-mail through the standard library's ``email``: one message (.eml) or a mailbox of them (.mbox), each
as a unit with its sender, recipients, subject and date in the metadata, the plain-text body preferred (an
HTML-only body through the HTML parser), and its attachments parsed by the same parsers under the same caps,
cited as the ``attachment`` of their message."""

from __future__ import annotations

import email
import email.policy
import re
from email.message import EmailMessage
from typing import Any

from ragflow.documents import Metadata, TextUnit
from ragflow.errors import IncompleteParse, ParseError

from ._html import html_to_text
from ._limits import ParseContext
from ._text import normalize_newlines

__all__ = ["parse_email", "parse_mbox"]

_MBOX_SEPARATOR = re.compile(rb"(?:\A|\r?\n)From [^\n]*\n")
_NESTED_SEPARATOR = " > "


def parse_email(data: bytes, metadata: Metadata, context: ParseContext) -> list[TextUnit]:
    """The units of one message: its body, then its attachments'."""
    return _message_units(_message(data), metadata, context)


def parse_mbox(data: bytes, metadata: Metadata, context: ParseContext) -> list[TextUnit]:
    """The units of each message of a mailbox (mboxo/mboxrd: messages start at a line ``From ...``),
    with its 1-based ``message`` number."""
    units: list[TextUnit] = []
    raw_messages = [raw for raw in _MBOX_SEPARATOR.split(data) if raw.strip()]
    for number, raw in enumerate(raw_messages, 1):
        context.deadline.check(f"message {number}")
        raw = re.sub(rb"(?m)^>(>*From )", rb"\1", raw)  # mboxrd quoting of body lines that start "From "
        units += _message_units(_message(raw), {**metadata, "message": number}, context)
    return units


def _message(data: bytes) -> EmailMessage:
    message = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(message, EmailMessage)  # what policy.default builds
    return message


def _message_units(message: EmailMessage, metadata: Metadata, context: ParseContext) -> list[TextUnit]:
    fields = _header_fields(message)
    meta = {**metadata, **fields}
    header_lines = [
        f"{label}: {fields[key]}"
        for key, label in (("subject", "Subject"), ("sender", "From"), ("recipients", "To"), ("date", "Date"))
        if fields.get(key)
    ]
    body = _body_text(message)
    units = []
    if body or header_lines:
        units.append(TextUnit("\n".join(header_lines) + ("\n\n" + body if body else ""), meta))
    for number, part in enumerate(message.iter_attachments(), 1):
        context.deadline.check(f"attachment {number}")
        units += _attachment_units(part, number, meta, context)
    return units


def _header_fields(message: EmailMessage) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for key, names in (("sender", ("from",)), ("recipients", ("to", "cc")), ("subject", ("subject",))):
        values = [" ".join(str(message[name]).split()) for name in names if message[name] is not None]
        if any(values):
            fields[key] = ", ".join(value for value in values if value)
    date = message["date"]
    if date is not None:
        when = getattr(date, "datetime", None)
        fields["date"] = when.isoformat() if when is not None else str(date)
    return fields


def _body_text(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain", "html"))
    if part is None:
        return ""
    try:
        content = part.get_content()
    except (LookupError, UnicodeError):  # an unknown charset: read it as UTF-8 with replacements
        payload = part.get_payload(decode=True)
        content = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""
    if not isinstance(content, str):
        return ""
    if part.get_content_type() == "text/html":
        return html_to_text(content)
    return normalize_newlines(content).strip()


def _attachment_units(
    part: EmailMessage, number: int, metadata: Metadata, context: ParseContext
) -> list[TextUnit]:
    name = part.get_filename() or f"attachment {number} ({part.get_content_type()})"
    label = _NESTED_SEPARATOR.join(filter(None, (metadata.get("attachment"), name)))
    where = f"attachment {name!r} of {context.path}"
    if part.get_content_type() == "message/rfc822":
        inner = part.get_payload()
        data = (
            inner[0].as_bytes()
            if isinstance(inner, list) and inner and hasattr(inner[0], "as_bytes")
            else b""
        )
        name = name if name.lower().endswith(".eml") else name + ".eml"
    else:
        payload = part.get_payload(decode=False)
        encoded = payload if isinstance(payload, str) else ""
        # the decoded size is known before decoding a 100 MB attachment: base64 grows by 4/3 plus line ends
        estimate = len(encoded)
        if estimate and part.get("content-transfer-encoding", "").lower() == "base64":
            estimate = (estimate - encoded.count("\n") - encoded.count("\r")) * 3 // 4
        cap = context.limits.max_attachment_bytes
        if estimate > cap:
            context.warnings.append(
                f"{where} is about {estimate:,} bytes, past the cap of {cap:,}; "
                f"not read (raise ParseLimits(max_attachment_bytes=...))"
            )
            return []
        decoded = part.get_payload(decode=True)
        data = decoded if isinstance(decoded, bytes) else b""
    if context.depth >= context.limits.max_depth:
        context.warnings.append(f"{where} is nested {context.depth} deep; not read")
        return []
    try:
        return context.parse_nested(data, {**metadata, "attachment": label}, name)
    except IncompleteParse as exc:
        context.warnings.append(str(exc))
        return exc.units
    except ParseError as exc:  # its message names the attachment as "<message path> > <file name>"
        context.warnings.append(str(exc))
        return []
