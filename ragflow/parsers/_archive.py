"""Opening the zip archive inside an Office file or e-book safely: the uncompressed sizes its directory
declares are checked against the cap before any member is read (a zip bomb is refused unread; Python's
``zipfile`` never inflates a member past its declared size), and truncated, encrypted or misnamed files get
a message that says which they are. Also the refusals for OLE2 containers and other zips."""

from __future__ import annotations

import io
import zipfile

from ragflow.errors import ParseError

from ._formats import OFFICE_FORMATS, DocumentFormat
from ._limits import ParseContext

__all__ = ["open_archive", "refuse_ole", "refuse_zip"]

_OLE_ENCRYPTED_MARKERS = ("EncryptionInfo".encode("utf-16-le"), "EncryptedPackage".encode("utf-16-le"))


def open_archive(data: bytes, context: ParseContext, document_format: DocumentFormat) -> zipfile.ZipFile:
    """``data`` as an open zip archive whose members may be read.

    Raises:
        ParseError: not a complete zip archive, password-protected members, or members that unpack
            past ``ParseLimits.max_unpacked_bytes`` together.
    """
    what = OFFICE_FORMATS.get(document_format, "zip archive")
    if not data.startswith(b"PK"):
        raise ParseError(
            f"{context.path}: not a {what}: not a zip archive (it starts with {data[:12]!r}); "
            f"if the file is misnamed, give it the suffix of its real format"
        )
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise ParseError(
            f"{context.path}: truncated or corrupt {what} (not a complete zip archive: {exc}); "
            f"open and save it again, or copy it again if it was cut short"
        ) from None
    members = archive.infolist()
    unpacked = sum(member.file_size for member in members)
    limit = context.limits.max_unpacked_bytes
    if unpacked > limit:
        archive.close()
        biggest = max(members, key=lambda member: member.file_size)
        raise ParseError(
            f"{context.path}: the {what} would unpack to {unpacked:,} bytes ({biggest.filename} alone "
            f"{biggest.file_size:,} from {biggest.compress_size:,} compressed), past the cap of {limit:,}; "
            f"not read (a zip bomb?). If the file is genuine, raise ParseLimits(max_unpacked_bytes=...)"
        )
    if any(member.flag_bits & 0x1 for member in members):
        archive.close()
        raise ParseError(f"{context.path}: the {what} is password-protected; remove the password to index it")
    return archive


def refuse_ole(data: bytes, context: ParseContext) -> ParseError:
    """The error for an OLE2 container: an encrypted Office file, or a legacy binary Office format."""
    head = data[: 1024 * 1024]
    if any(marker in head for marker in _OLE_ENCRYPTED_MARKERS):
        return ParseError(
            f"{context.path}: the Office file is password-protected (encrypted); "
            f"remove the password (File > Info > Protect) and save it again to index it"
        )
    return ParseError(
        f"{context.path}: a legacy binary Office file (.doc, .xls, .ppt or Outlook .msg), which is not "
        f"supported; save it as .docx, .xlsx or .pptx (or the message as .eml) to index it"
    )


def refuse_zip(data: bytes, context: ParseContext) -> ParseError:
    """The error for a zip archive that is no format ragflow reads, or a damaged Office file."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        return ParseError(
            f"{context.path}: truncated or corrupt Office file (not a complete zip archive: {exc}); "
            f"open and save it again, or copy it again if it was cut short"
        )
    shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
    return ParseError(
        f"{context.path}: a zip archive that is not a Word, PowerPoint, Excel or EPUB file (it holds "
        f"{shown or 'nothing'}); ragflow does not read inside other archives: unpack it into the folder"
    )
