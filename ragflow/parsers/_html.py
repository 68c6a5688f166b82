"""HTML to the text a browser would show: no scripts or styles, blocks as paragraphs, table cells on one
line."""

from __future__ import annotations

import re
from html.parser import HTMLParser

__all__ = ["html_to_text"]


_SKIPPED = frozenset({"script", "style", "noscript", "template"})
_BLOCKS = frozenset(
    {
        "address", "article", "aside", "blockquote", "body", "caption", "details", "dialog", "div", "dl",
        "fieldset", "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6", "header",
        "hgroup", "hr", "html", "main", "nav", "ol", "p", "pre", "section", "summary", "table", "title", "ul",
    }
)  # fmt: skip
_LINES = frozenset({"br", "dd", "dt", "li", "option", "tr"})
_CELLS = frozenset({"td", "th"})
_VOID = frozenset({"br", "hr"})


class _VisibleText(HTMLParser):
    """Collect the text a browser would show, with blocks as paragraphs and list items as lines."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skipping = 0
        self._preformatted = 0
        self._pending_break = 0  # 0: none, 1: new line, 2: blank line; emitted before the next text
        self._pending_space = False
        self._line_has_text = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIPPED:
            self._skipping += 1
        elif tag == "pre":
            self._preformatted += 1
        if tag in _CELLS and self._line_has_text and not self._pending_break:
            self._write(" | ")
        self._break_for(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIPPED:
            self._skipping = max(0, self._skipping - 1)
        elif tag == "pre":
            self._preformatted = max(0, self._preformatted - 1)
        if tag not in _VOID:
            self._break_for(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._break_for(tag)

    def handle_data(self, data: str) -> None:
        if self._skipping:
            return
        if self._preformatted:
            self._write(data)
            return
        collapsed = " ".join(data.split())
        if data[:1].isspace():
            self._pending_space = True
        if collapsed:
            self._write(collapsed)
            self._pending_space = data[-1].isspace()

    def _break_for(self, tag: str) -> None:
        if tag in _BLOCKS:
            self._pending_break = 2
        elif tag in _LINES:
            self._pending_break = max(self._pending_break, 1)

    def _write(self, text: str) -> None:
        if self.parts and self._pending_break:
            self.parts.append("\n" * self._pending_break)
            self._line_has_text = False
        elif self._pending_space and self._line_has_text:
            self.parts.append(" ")
        self._pending_break = 0
        self._pending_space = False
        self.parts.append(text)
        self._line_has_text = True


def html_to_text(html: str) -> str:
    """The visible text of an HTML page: no scripts or styles, blocks separated by blank lines.

    Example:
        >>> html_to_text("<h1>Title</h1><p>One <i>two</i></p><ul><li>a</li><li>b</li></ul>")
        'Title\\n\\nOne two\\n\\na\\nb'
    """
    parser = _VisibleText()
    parser.feed(html)
    parser.close()
    text = "".join(parser.parts)
    text = re.sub(r"[ \t]+\n", "\n", text)
    return re.sub(r"\n{3,}", "\n\n", text).strip()
