"""Text decoding: strict UTF-8 (or UTF-16/32 with a byte order mark, or an HTML page's declared charset),
with a clear ``ParseError`` for binary or undecodable content instead of garbled text."""

from __future__ import annotations

import codecs
import re

from ragflow.errors import ParseError

__all__ = ["decode_text", "normalize_newlines"]

_META_CHARSET = re.compile(rb"<meta[^>]+charset\s*=\s*[\"']?\s*([A-Za-z0-9_.:-]+)", re.I)

# Bytes that do not occur in text: C0 controls except tab, newlines, form feed and escape (terminal
# logs), and DEL. More than this share of them in a sample means binary content.
_CONTROL_BYTES = bytes(sorted({*range(0x20), 0x7F} - {0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x1B}))
_NOT_CONTROL_BYTES = bytes(sorted(set(range(256)) - set(_CONTROL_BYTES)))
_CONTROL_CHARS = re.compile("[" + re.escape(_CONTROL_BYTES.decode("ascii")) + "]")
_MAX_CONTROL_SHARE = 0.05
# Text in a legacy 8-bit encoding has a few invalid bytes (accents); binary data has a lot of them.
_MAX_INVALID_UTF8_SHARE = 0.30
_SAMPLE = 64 * 1024
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),  # before UTF-16 LE: it starts with the same two bytes
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)


# -- text decoding ----------------------------------------------------------------------------------


def decode_text(data: bytes, path: str, html: bool = False) -> str:
    """Decode strictly: UTF-8, or UTF-16/32 with a byte order mark, or (HTML only) the charset the
    page declares. Never guesses, so a document is either read right or refused with the reason."""
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            text = _decode_as(data, len(bom), encoding, path)
            _refuse_binary_text(text, path)
            return normalize_newlines(text)
    _refuse_binary_bytes(data, path)
    declared = _declared_charset(data) if html else None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        if declared is None or declared == "utf-8":
            _refuse_mostly_invalid(data, path)
            raise _undecodable(data, path, exc, 0, "UTF-8") from None
        text = _decode_as(data, 0, declared, path)
    return normalize_newlines(text)


def _decode_as(data: bytes, offset: int, encoding: str, path: str) -> str:
    try:
        return data[offset:].decode(encoding)
    except UnicodeDecodeError as exc:
        raise _undecodable(data, path, exc, offset, encoding) from None


def _undecodable(data: bytes, path: str, exc: UnicodeDecodeError, offset: int, encoding: str) -> ParseError:
    position = offset + exc.start
    bad = data[position : offset + exc.end].hex(" ")
    return ParseError(
        f"{path}: not valid {encoding} text: bytes {bad} at byte offset {position} ({exc.reason}); "
        f"save the file as UTF-8 (or UTF-16 with a byte order mark)"
    )


def _declared_charset(data: bytes) -> str | None:
    match = _META_CHARSET.search(data[:4096])
    if match is None:
        return None
    try:
        return codecs.lookup(match.group(1).decode("ascii")).name
    except LookupError:
        return None


def _refuse_binary_bytes(data: bytes, path: str) -> None:
    nul = data.find(b"\0")
    if nul >= 0:
        if _looks_like_utf16(data[:_SAMPLE]):
            raise ParseError(
                f"{path}: looks like UTF-16 text without a byte order mark, which is unsupported; "
                f"save it as UTF-8 or UTF-16 with a BOM"
            )
        raise ParseError(f"{path}: binary or unsupported content (a NUL byte at offset {nul}); {_SUPPORTED}")
    sample = data[:_SAMPLE]
    controls = len(sample.translate(None, _NOT_CONTROL_BYTES))
    if controls > _MAX_CONTROL_SHARE * len(sample):
        raise ParseError(
            f"{path}: binary or unsupported content ({controls} control bytes in the first {len(sample)}); "
            f"{_SUPPORTED}"
        )


def _looks_like_utf16(sample: bytes) -> bool:
    """Whether ``sample`` looks like mostly-ASCII text in UTF-16 without a byte order mark: a NUL in
    (nearly) every other byte, and (nearly) none in between."""
    if len(sample) < 8:
        return False
    even, odd = sample[0::2], sample[1::2]
    return any(
        zeros.count(0) >= 0.9 * len(zeros) and others.count(0) <= 0.1 * len(others)
        for zeros, others in ((even, odd), (odd, even))
    )


def _refuse_binary_text(text: str, path: str) -> None:
    sample = text[:_SAMPLE]
    controls = len(_CONTROL_CHARS.findall(sample))
    if "\0" in text or controls > _MAX_CONTROL_SHARE * len(sample):
        raise ParseError(
            f"{path}: binary or unsupported content (control characters in the text); {_SUPPORTED}"
        )


def _refuse_mostly_invalid(data: bytes, path: str) -> None:
    sample = data[:_SAMPLE]
    invalid = sample.decode("utf-8", "replace").count("\ufffd")
    if invalid > _MAX_INVALID_UTF8_SHARE * len(sample):
        raise ParseError(
            f"{path}: binary or unsupported content ({invalid} invalid UTF-8 sequences in the first "
            f"{len(sample)} bytes); {_SUPPORTED}"
        )


_SUPPORTED = "supported formats are listed in docs/formats.md (text must be UTF-8)"


def normalize_newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")
