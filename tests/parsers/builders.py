"""Real documents built with the libraries people write them with (python-docx, python-pptx, openpyxl,
reportlab, Pillow) or with the standard library (e-mail, notebooks, EPUB), for the parser tests."""

from __future__ import annotations

import io
import json
import zipfile
from email.message import EmailMessage
from typing import Any

import docx
import openpyxl
import pptx
from msoffcrypto.format.ooxml import OOXMLFile
from PIL import Image, ImageDraw, ImageFont
from reportlab.lib.pagesizes import A4
from reportlab.lib.utils import ImageReader
from reportlab.pdfgen import canvas


def make_docx(blocks: list[tuple[str, Any]], header: str | None = None, footer: str | None = None) -> bytes:
    """``blocks``: ("h1".."h3", text), ("p", text) or ("table", rows)."""
    document = docx.Document()
    for kind, value in blocks:
        if kind.startswith("h"):
            document.add_heading(value, level=int(kind[1:]))
        elif kind == "p":
            document.add_paragraph(value)
        else:
            table = document.add_table(rows=len(value), cols=len(value[0]))
            for r, row in enumerate(value):
                for c, cell in enumerate(row):
                    table.cell(r, c).text = cell
    section = document.sections[0]
    if header:
        section.header.paragraphs[0].text = header
    if footer:
        section.footer.paragraphs[0].text = footer
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def make_pptx(slides: list[dict[str, Any]]) -> bytes:
    """Each slide: ``title``, ``body`` (lines), optional ``table`` (rows) and ``notes``."""
    deck = pptx.Presentation()
    for spec in slides:
        slide = deck.slides.add_slide(deck.slide_layouts[1])
        slide.shapes.title.text = spec["title"]
        slide.placeholders[1].text_frame.text = "\n".join(spec.get("body", []))
        if "table" in spec:
            rows = spec["table"]
            shape = slide.shapes.add_table(len(rows), len(rows[0]), 0, 0, 4_000_000, 1_000_000)
            for r, row in enumerate(rows):
                for c, cell in enumerate(row):
                    shape.table.cell(r, c).text = cell
        if "notes" in spec:
            slide.notes_slide.notes_text_frame.text = spec["notes"]
    out = io.BytesIO()
    deck.save(out)
    return out.getvalue()


def make_xlsx(sheets: dict[str, list[list[Any]]]) -> bytes:
    """Sheets of rows; a string starting with ``=`` is a formula."""
    workbook = openpyxl.Workbook()
    workbook.remove(workbook.active)
    for title, rows in sheets.items():
        sheet = workbook.create_sheet(title)
        for row in rows:
            sheet.append(row)
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()


def with_cached_formula_values(xlsx: bytes, values: dict[str, str]) -> bytes:
    """openpyxl writes formulas without results (Excel computes them on save); put in the cached
    ``<v>`` Excel would have written for the formula cells named in ``values`` (e.g. ``{"C2": "12"}``)."""
    source = zipfile.ZipFile(io.BytesIO(xlsx))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for item in source.infolist():
            data = source.read(item)
            if item.filename.startswith("xl/worksheets/sheet"):
                text = data.decode()
                for ref, value in values.items():
                    start = text.find(f'<c r="{ref}"')
                    end = text.find("</f>", start) + len("</f>")
                    if start >= 0 and end > start:
                        text = text[:end] + f"<v>{value}</v>" + text[end:]
                data = text.encode()
            target.writestr(item, data)
    return out.getvalue()


def make_eml(
    subject: str,
    body: str,
    html: str | None = None,
    attachments: list[tuple[str, bytes, str]] = (),  # type: ignore[assignment]
) -> bytes:
    """A message from Ann to Bob (and Cy in copy); attachments are (file name, data, MIME type)."""
    message = EmailMessage()
    message["From"] = "Ann Lee <ann@example.org>"
    message["To"] = "Bob Roy <bob@example.org>"
    message["Cc"] = "cy@example.org"
    message["Subject"] = subject
    message["Date"] = "Tue, 04 Mar 2025 09:30:00 +0100"
    message.set_content(body)
    if html is not None:
        message.add_alternative(html, subtype="html")
    for name, data, mime in attachments:
        maintype, subtype = mime.split("/")
        message.add_attachment(data, maintype=maintype, subtype=subtype, filename=name)
    return bytes(message)


def make_html_only_eml(subject: str, html: str) -> bytes:
    message = EmailMessage()
    message["From"] = "ann@example.org"
    message["To"] = "bob@example.org"
    message["Subject"] = subject
    message.set_content(html, subtype="html")
    return bytes(message)


def make_ipynb(cells: list[tuple[str, str, str | None]]) -> bytes:
    """(cell type, source, text output or None) per cell; code cells also get an image output."""
    notebook_cells = []
    for kind, source, output in cells:
        cell: dict[str, Any] = {"cell_type": kind, "metadata": {}, "source": source.splitlines(keepends=True)}
        if kind == "code":
            cell["execution_count"] = 1
            cell["outputs"] = [
                {"output_type": "display_data", "data": {"image/png": "iVBORw0KGgo="}, "metadata": {}}
            ]
            if output is not None:
                cell["outputs"].insert(0, {"output_type": "stream", "name": "stdout", "text": [output]})
        notebook_cells.append(cell)
    notebook = {
        "nbformat": 4,
        "nbformat_minor": 5,
        "metadata": {"widgets": {"application/vnd.jupyter.widget-state+json": {"state": {"w": "SECRET"}}}},
        "cells": notebook_cells,
    }
    return json.dumps(notebook).encode()


def make_epub(chapters: list[tuple[str, str]], title: str = "A Book") -> bytes:
    """An EPUB 3 with a navigation document; chapters are (title, paragraph) in reading order, stored in the
    archive in reverse so that spine order, not file order, is what counts."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as book:
        book.writestr("mimetype", "application/epub+zip", compress_type=zipfile.ZIP_STORED)
        book.writestr(
            "META-INF/container.xml",
            '<?xml version="1.0"?><container version="1.0" '
            'xmlns="urn:oasis:names:tc:opendocument:xmlns:container">'
            '<rootfiles><rootfile full-path="OEBPS/content.opf" media-type="application/oebps-package+xml"/>'
            "</rootfiles></container>",
        )
        items = "".join(
            f'<item id="c{i}" href="text/ch{i}.xhtml" media-type="application/xhtml+xml"/>'
            for i in range(len(chapters))
        )
        spine = "".join(f'<itemref idref="c{i}"/>' for i in range(len(chapters)))
        book.writestr(
            "OEBPS/content.opf",
            '<?xml version="1.0"?><package xmlns="http://www.idpf.org/2007/opf" version="3.0">'
            f'<metadata xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:title>{title}</dc:title></metadata>'
            f'<manifest><item id="nav" href="nav.xhtml" media-type="application/xhtml+xml" properties="nav"/>'
            f"{items}</manifest><spine>{spine}</spine></package>",
        )
        links = "".join(f'<li><a href="text/ch{i}.xhtml">{t}</a></li>' for i, (t, _) in enumerate(chapters))
        book.writestr(
            "OEBPS/nav.xhtml",
            '<html xmlns="http://www.w3.org/1999/xhtml" xmlns:epub="http://www.idpf.org/2007/ops"><body>'
            f'<nav epub:type="toc"><ol>{links}</ol></nav></body></html>',
        )
        for i, (chapter, text) in reversed(list(enumerate(chapters))):
            book.writestr(
                f"OEBPS/text/ch{i}.xhtml",
                f'<html xmlns="http://www.w3.org/1999/xhtml"><head><title>{chapter}</title></head>'
                f"<body><h1>{chapter}</h1><p>{text}</p></body></html>",
            )
    return out.getvalue()


def text_image(lines: list[str], size: tuple[int, int] = (1400, 260)) -> Image.Image:
    """A picture of typed lines, as a scanner would give."""
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=44)
    for i, line in enumerate(lines):
        draw.text((40, 40 + 90 * i), line, fill="black", font=font)
    return image


def png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def make_pdf_with_scan(pages: list[str | Image.Image]) -> bytes:
    """A PDF whose pages are typed text (a text layer) or a picture (a scanned page, no text layer)."""
    out = io.BytesIO()
    pdf = canvas.Canvas(out, pagesize=A4)
    for page in pages:
        if isinstance(page, str):
            pdf.drawString(72, 760, page)
        else:
            pdf.drawImage(ImageReader(page), 40, 500, width=520, height=520 * page.height / page.width)
        pdf.showPage()
    pdf.save()
    return out.getvalue()


def encrypted(document: bytes, password: str = "hunter2") -> bytes:
    """``document`` encrypted as Word does for "Protect with password" (an OLE2 container)."""
    out = io.BytesIO()
    OOXMLFile(io.BytesIO(document)).encrypt(password, out)
    return out.getvalue()


def zip_bomb(inflated_bytes: int) -> bytes:
    """A .docx-looking zip whose word/document.xml inflates to ``inflated_bytes`` zeros (~1000:1)."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        with archive.open("word/document.xml", "w", force_zip64=True) as member:
            block = b"\0" * (1 << 20)
            for _ in range(inflated_bytes >> 20):
                member.write(block)
    return out.getvalue()


def million_empty_rows(book: bytes, count: int = 1_000_000) -> bytes:
    """``book`` with a sheet whose data is followed by a million (``count``) styled but empty rows (as
    formatting whole columns in Excel leaves), its dimension saying so."""
    source = zipfile.ZipFile(io.BytesIO(book))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for item in source.infolist():
            data = source.read(item)
            if item.filename == "xl/worksheets/sheet1.xml":
                text = data.decode()
                empty = "".join(f'<row r="{r}"><c r="A{r}" s="0"/></row>' for r in range(3, count + 3))
                text = text.replace("</sheetData>", empty + "</sheetData>")
                text = text.replace('<dimension ref="A1:B2"/>', f'<dimension ref="A1:B{count + 2}"/>')
                data = text.encode()
            target.writestr(item.filename, data)
    return out.getvalue()
