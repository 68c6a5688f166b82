"""EPUB e-books: the package document (OPF) named by ``META-INF/container.xml`` gives the spine, the
reading order; each chapter's XHTML goes through the HTML parser and becomes a unit with its ``chapter``
title (from the table of contents, else its first heading, else its ``<title>``)."""

from __future__ import annotations

import posixpath
import re
import xml.etree.ElementTree as ET
import zipfile
from typing import Any

from ragflow.documents import Metadata, TextUnit
from ragflow.errors import ParseError

from ._archive import open_archive
from ._formats import DocumentFormat
from ._html import html_to_text
from ._limits import ParseContext
from ._text import decode_text

__all__ = ["parse_epub"]

_HEADING = re.compile(r"<h[1-3][^>]*>(.*?)</h[1-3]>", re.I | re.S)
_HEAD = re.compile(r"<head[\s>].*?</head>", re.I | re.S)
_TITLE = re.compile(r"<title[^>]*>(.*?)</title>", re.I | re.S)


def parse_epub(data: bytes, metadata: Metadata, context: ParseContext) -> list[TextUnit]:
    """One unit per spine item with text, in reading order."""
    with open_archive(data, context, DocumentFormat.EPUB) as archive:
        try:
            opf_path = _rootfile(archive)
            opf = ET.fromstring(archive.read(opf_path))
        except (KeyError, ET.ParseError, ValueError) as exc:
            raise ParseError(
                f"{context.path}: not a valid EPUB ({type(exc).__name__}: {exc}); "
                f"the container or package document is missing or broken"
            ) from None
        base = posixpath.dirname(opf_path)
        manifest = {
            item.get("id"): item.attrib
            for item in opf.iter()
            if _local(item.tag) == "item" and item.get("id")
        }
        titles = _toc_titles(archive, manifest, base)
        units = []
        spine = [ref.get("idref") for ref in opf.iter() if _local(ref.tag) == "itemref"]
        for number, idref in enumerate(spine, 1):
            context.deadline.check(f"chapter {number}")
            item = manifest.get(idref)
            if item is None or "html" not in item.get("media-type", "html"):
                continue
            href = posixpath.normpath(posixpath.join(base, item.get("href", "")))
            try:
                page = decode_text(archive.read(href), f"{context.path} > {href}", html=True)
            except KeyError:
                context.warnings.append(f"chapter {href!r} of {context.path} is missing from the archive")
                continue
            text = html_to_text(_HEAD.sub("", page, count=1))  # its <title> repeats the chapter heading
            if text:
                title = titles.get(href) or _first(_HEADING, page) or _first(_TITLE, page) or f"part {number}"
                units.append(TextUnit(text, {**metadata, "chapter": title}))
        return units


def _rootfile(archive: zipfile.ZipFile) -> str:
    container = ET.fromstring(archive.read("META-INF/container.xml"))
    for element in container.iter():
        if _local(element.tag) == "rootfile" and element.get("full-path"):
            return str(element.get("full-path"))
    raise ValueError("META-INF/container.xml names no rootfile")


def _toc_titles(archive: zipfile.ZipFile, manifest: dict[Any, Any], base: str) -> dict[str, str]:
    """Chapter titles by file, from the EPUB 3 navigation document or the EPUB 2 NCX."""
    titles: dict[str, str] = {}
    for item in manifest.values():
        is_nav = "nav" in item.get("properties", "").split()
        if not (is_nav or item.get("media-type") == "application/x-dtbncx+xml"):
            continue
        toc_path = posixpath.normpath(posixpath.join(base, item.get("href", "")))
        try:
            toc = ET.fromstring(archive.read(toc_path))
        except (KeyError, ET.ParseError):
            continue
        toc_base = posixpath.dirname(toc_path)
        for element in toc.iter():
            tag = _local(element.tag)
            if tag == "a" and element.get("href"):
                target, label = element.get("href", ""), "".join(element.itertext())
            elif tag == "navPoint":
                content = next((e for e in element if _local(e.tag) == "content"), None)
                text = next((e for e in element.iter() if _local(e.tag) == "text"), None)
                if content is None or text is None:
                    continue
                target, label = content.get("src", ""), "".join(text.itertext())
            else:
                continue
            file = posixpath.normpath(posixpath.join(toc_base, target.split("#")[0]))
            titles.setdefault(file, " ".join(label.split()))
    return titles


def _first(pattern: re.Pattern[str], page: str) -> str:
    match = pattern.search(page)
    return " ".join(html_to_text(match.group(1)).split()) if match else ""


def _local(tag: Any) -> str:
    return str(tag).rsplit("}", 1)[-1]
