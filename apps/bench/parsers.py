"""Parse throughput per format, and pypdf against pypdfium2 on real PDFs.

    python -m apps.bench.parsers [--quick] [--pdf-dir /usr/share/R/doc/manual] [--embed]

Reports, as Markdown:
1. per format (Word, PowerPoint, Excel, mailbox, notebook, EPUB, Python, PDF): documents of realistic size
   built from real prose (the docstrings of the Python standard library) with the libraries people write
   them with (through the test suite's builders, tests/parsers/builders.py), parsed by ``DefaultParser``
   (best of 3): MB/s, units (pages, slides, sheet blocks, messages, cells, chapters, definitions) per
   second, and chunks per second after splitting; with ``--embed``, the share parsing would take of
   parse + embed, the local model timed on the same machine in the same run;
2. the PDF engines on the R manuals (Debian's ``r-doc-pdf``), a two-column page and a scanned page: pages/s,
   words extracted, words glued together (a missing space makes a 30+ letter word), agreement between the
   engines, reading order on two columns, and OCR of the scanned page.
"""

from __future__ import annotations

import argparse
import functools
import html
import io
import os
import platform
import re
import sys
import time
from collections import Counter
from collections.abc import Callable
from itertools import pairwise
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from apps.bench.pipeline import stdlib_corpus
from ragflow.parsers import DefaultParser
from ragflow.splitter import TokenSplitter
from tests.parsers.builders import make_docx, make_eml, make_epub, make_ipynb, make_pptx

R_MANUALS = Path("/usr/share/R/doc/manual")


def paragraphs(limit: int) -> list[tuple[str, list[str]]]:
    """``(title, paragraphs)`` of standard library docstrings: real prose, on every machine."""
    return [(name, [p for p in doc.split("\n\n") if p.strip()]) for name, doc in stdlib_corpus(limit)]


# -- documents of realistic size ------------------------------------------------------------------


def word_report(corpus: list[tuple[str, list[str]]]) -> bytes:
    return make_docx(
        [block for title, texts in corpus for block in [("h1", title), *(("p", t) for t in texts)]]
    )


def slide_deck(corpus: list[tuple[str, list[str]]]) -> bytes:
    return make_pptx(
        [
            {"title": title, "body": texts[i : i + 3]}
            for title, texts in corpus
            for i in range(0, len(texts), 3)
        ]
    )


def workbook(rows: int) -> bytes:
    import openpyxl

    book = openpyxl.Workbook(write_only=True)
    sheet = book.create_sheet("Ledger")
    sheet.append(["Id", "Date", "Account", "Amount", "Memo"])
    for i in range(rows):
        sheet.append([i, f"2025-{1 + i % 12:02d}-{1 + i % 28:02d}", f"ACC-{i % 97}", i * 1.25, f"entry {i}"])
    return _saved(book)


def mailbox(corpus: list[tuple[str, list[str]]]) -> bytes:
    return b"\n".join(
        f"From ann@example.org Tue Mar  4 09:{i % 60:02d}:00 2025\n".encode()
        + make_eml(title, "\n\n".join(texts))
        for i, (title, texts) in enumerate(corpus)
    )


def notebook(corpus: list[tuple[str, list[str]]]) -> bytes:
    cells: list[tuple[str, str, str | None]] = []
    for title, texts in corpus:
        cells.append(("markdown", f"# {title}\n" + "\n".join(texts[:2]), None))
        cells.append(("code", f"import {title}\nhelp({title})", "\n".join(texts[2:4]) or None))
    return make_ipynb(cells)


def ebook(corpus: list[tuple[str, list[str]]]) -> bytes:
    return make_epub([(title, "</p><p>".join(map(html.escape, texts))) for title, texts in corpus])


def python_source() -> bytes:
    """Real code: the standard library's largest modules."""
    root = Path(os.__file__).parent
    files = sorted(root.glob("*.py"), key=lambda path: -path.stat().st_size)[:8]
    return b"\n\n".join(path.read_bytes() for path in files)


def _saved(document: object) -> bytes:
    out = io.BytesIO()
    document.save(out)  # type: ignore[attr-defined]
    return out.getvalue()


# -- measuring ------------------------------------------------------------------------------------


def best_of(runs: int, work: Callable[[], object]) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(runs):
        start = time.perf_counter()
        result = work()
        best = min(best, time.perf_counter() - start)
    return best, result


def bench_formats(quick: bool, embed: bool) -> list[str]:
    corpus = paragraphs(20 if quick else 80)
    documents = {
        "Word (.docx)": ("report.docx", word_report(corpus), "sections"),
        "PowerPoint (.pptx)": ("deck.pptx", slide_deck(corpus), "slides"),
        "Excel (.xlsx)": ("ledger.xlsx", workbook(5_000 if quick else 50_000), "row blocks"),
        "mailbox (.mbox)": ("archive.mbox", mailbox(corpus), "messages"),
        "notebook (.ipynb)": ("analysis.ipynb", notebook(corpus), "cells"),
        "EPUB (.epub)": ("book.epub", ebook(corpus), "chapters"),
        "Python (.py)": ("stdlib.py", python_source(), "definitions"),
        "PDF (R-intro.pdf, pypdf)": ("R-intro.pdf", (R_MANUALS / "R-intro.pdf").read_bytes(), "pages"),
    }
    parser, splitter = DefaultParser(), TokenSplitter(max_tokens=128)
    embed_rate = _embed_rate(corpus) if embed else None
    lines = [
        "| format | size | parse s | MB/s | units | units/s | chunks | chunks/s parsed"
        + (" | parse share of parse+embed |" if embed_rate else " |"),
        "|---|---|---|---|---|---|---|---" + ("|---|" if embed_rate else "|"),
    ]
    for label, (name, data, unit) in documents.items():
        if not data:
            continue
        seconds, units = best_of(3, functools.partial(parser.parse, data, {"path": name}))
        assert isinstance(units, list)
        chunks = sum(len(splitter.split(u.text)) for u in units)
        row = (
            f"| {label} | {len(data) / 1e6:.2f} MB | {seconds:.3f} | {len(data) / 1e6 / seconds:.1f} | "
            f"{len(units)} {unit} | {len(units) / seconds:,.0f} | {chunks} | {chunks / seconds:,.0f}"
        )
        if embed_rate:
            embed_seconds = chunks / embed_rate
            row += f" | {100 * seconds / (seconds + embed_seconds):.1f}%"
        lines.append(row + " |")
    if embed_rate:
        lines.append(
            f"\nLocal model (all-MiniLM-L6-v2, CPU, batch 8): {embed_rate:.0f} chunks/s on these chunks."
        )
    return lines


def _embed_rate(corpus: list[tuple[str, list[str]]]) -> float:
    from ragflow.embedders.local import LocalEmbedder

    embedder = LocalEmbedder()
    splitter = TokenSplitter(max_tokens=embedder.max_tokens)
    texts = [c.text for _, ps in corpus[:10] for p in ps for c in splitter.split(p)][:160]
    embedder.embed(texts[:8])  # warm up
    start = time.perf_counter()
    for i in range(0, len(texts), 8):
        embedder.embed(texts[i : i + 8])
    return len(texts) / (time.perf_counter() - start)


# -- the PDF engines ------------------------------------------------------------------------------

WORD = re.compile(r"[A-Za-z]+")


def words(units: list) -> Counter[str]:
    return Counter(w.lower() for u in units for w in WORD.findall(u.text))


def bench_pdf_engines(pdf_dir: Path, quick: bool) -> list[str]:
    engines = {name: DefaultParser(pdf_engine=name, ocr=False) for name in ("pypdf", "pypdfium2")}
    names = (
        ["R-intro.pdf", "R-data.pdf"] if quick else ["R-intro.pdf", "R-data.pdf", "R-lang.pdf", "R-exts.pdf"]
    )
    lines = [
        "| PDF | pages | engine | seconds | pages/s | words | glued words (30+ letters) | word agreement |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in names:
        data = (pdf_dir / name).read_bytes()
        results = {}
        for engine, parser in engines.items():
            seconds, units = best_of(2, functools.partial(parser.parse, data, {"path": name}))
            assert isinstance(units, list)
            results[engine] = (seconds, units, words(units))
        a, b = results["pypdf"][2], results["pypdfium2"][2]
        agreement = sum((a & b).values()) / max(sum((a | b).values()), 1)
        for engine, (seconds, units, counted) in results.items():
            glued = sum(n for w, n in counted.items() if len(w) >= 30)
            pages = units[-1].metadata["page_number"] if units else 0
            total = sum(counted.values())
            lines.append(
                f"| {name} | {pages} | {engine} | {seconds:.2f} | {pages / seconds:.0f} | {total:,} "
                f"| {glued} | {100 * agreement:.1f}% |"
            )
    lines += ["", *two_columns(engines), "", *scanned_page(pdf_dir)]
    return lines


def two_columns(engines: dict[str, DefaultParser]) -> list[str]:
    """A two-column page of numbered sentences: how much of the reading order each engine keeps."""
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import getSampleStyleSheet
    from reportlab.platypus import BaseDocTemplate, Frame, PageTemplate, Paragraph

    sentences = [f"Sentence S{i:03d} tells about the harbor and the copper reef." for i in range(120)]
    out = io.BytesIO()
    doc = BaseDocTemplate(out, pagesize=A4)
    width = (doc.width - 12) / 2
    frames = [Frame(doc.leftMargin + i * (width + 12), doc.bottomMargin, width, doc.height) for i in range(2)]
    doc.addPageTemplates([PageTemplate(frames=frames)])
    style = getSampleStyleSheet()["BodyText"]
    doc.build([Paragraph(" ".join(sentences[i : i + 6]), style) for i in range(0, len(sentences), 6)])
    lines = ["Two-column page (reportlab, 120 numbered sentences): sentences read in order, per engine:", ""]
    for engine, parser in engines.items():
        text = " ".join(u.text for u in parser.parse(out.getvalue(), {"path": "two-columns.pdf"}))
        order = [int(n) for n in re.findall(r"S(\d{3})", text)]
        in_order = sum(1 for x, y in pairwise(order) if y == x + 1)
        pairs = max(len(order) - 1, 1)
        lines.append(f"- {engine}: {len(set(order))}/120 found, {in_order}/{pairs} successive pairs in order")
    return lines


def scanned_page(pdf_dir: Path) -> list[str]:
    """Page 10 of R-intro rendered at 150 dpi and put back as a picture: a scan with no text layer."""
    import pypdfium2 as pdfium
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.utils import ImageReader
    from reportlab.pdfgen import canvas

    source = pdfium.PdfDocument(str(pdf_dir / "R-intro.pdf"))
    page = source[9]
    truth = Counter(w.lower() for w in WORD.findall(page.get_textpage().get_text_bounded()))
    image = page.render(scale=150 / 72).to_pil()
    out = io.BytesIO()
    pdf = canvas.Canvas(out, pagesize=A4)
    pdf.drawImage(ImageReader(image), 0, 0, width=A4[0], height=A4[1])
    pdf.showPage()
    pdf.save()
    lines = ["Scanned page (R-intro page 10 as a 150 dpi picture):", ""]
    for engine in ("pypdf", "pypdfium2"):
        try:
            DefaultParser(pdf_engine=engine, ocr=False).parse(out.getvalue(), {"path": "scan.pdf"})
            lines.append(f"- {engine}: text found (unexpected)")
        except Exception as exc:
            lines.append(f"- {engine} without OCR: {exc}")
    start = time.perf_counter()
    units = DefaultParser().parse(out.getvalue(), {"path": "scan.pdf"})
    seconds = time.perf_counter() - start
    found = words(units)
    recall = sum((found & truth).values()) / max(sum(truth.values()), 1)
    lines.append(
        f"- with OCR (RapidOCR): {seconds:.1f} s for the page (the first call loads the models), "
        f"word recall against the page's text layer {100 * recall:.0f}%"
    )
    return lines


def main() -> None:
    options = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    options.add_argument("--quick", action="store_true", help="smaller documents, fewer PDFs")
    options.add_argument(
        "--pdf-dir", type=Path, default=R_MANUALS, help="where the R manuals are (r-doc-pdf)"
    )
    options.add_argument("--embed", action="store_true", help="also time the local model on the same chunks")
    args = options.parse_args()
    print(
        f"# Parser benchmark ({platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {sys.version.split()[0]}, load average {os.getloadavg()[0]:.1f})\n"
    )
    print("\n".join(bench_formats(args.quick, args.embed)))
    print()
    if (args.pdf_dir / "R-intro.pdf").exists():
        print("\n".join(bench_pdf_engines(args.pdf_dir, args.quick)))
    else:
        print(f"(no R manuals in {args.pdf_dir}: apt-get install r-doc-pdf for the PDF engine comparison)")


if __name__ == "__main__":
    main()
