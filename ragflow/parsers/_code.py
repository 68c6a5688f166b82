"""Source code read as text. Python is cut at its top-level definitions (through ``ast``), so that a
function or class is one unit (``symbol``, ``lines``) and stays whole in one chunk when it fits; other
languages are one unit, with their ``language``."""

from __future__ import annotations

import ast
from pathlib import PurePosixPath

from ragflow.documents import Metadata, TextUnit

from ._limits import ParseContext
from ._text import decode_text

__all__ = ["parse_code"]

_LANGUAGES = {
    ".py": "python", ".pyi": "python", ".js": "javascript", ".mjs": "javascript", ".cjs": "javascript",
    ".jsx": "javascript", ".ts": "typescript", ".tsx": "typescript", ".go": "go", ".rs": "rust",
    ".java": "java", ".kt": "kotlin", ".scala": "scala", ".c": "c", ".h": "c", ".cc": "c++", ".cpp": "c++",
    ".cxx": "c++", ".hpp": "c++", ".cs": "c#", ".rb": "ruby", ".php": "php", ".swift": "swift",
    ".sh": "shell", ".bash": "shell", ".zsh": "shell", ".sql": "sql", ".yaml": "yaml", ".yml": "yaml",
    ".toml": "toml", ".ini": "ini", ".cfg": "ini", ".r": "r", ".lua": "lua", ".pl": "perl",
    ".dockerfile": "dockerfile",
}  # fmt: skip
_DEFINITIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
_MODULE = "(module)"


def parse_code(data: bytes, metadata: Metadata, context: ParseContext) -> list[TextUnit]:
    """Python: one unit per top-level definition (with its decorators and the comments right above it)
    and per run of other top-level statements; other languages (and Python that does not parse): one."""
    text = decode_text(data, context.path)
    if not text.strip():
        return []
    language = _LANGUAGES.get(PurePosixPath(context.path).suffix.lower(), "text")
    meta = {**metadata, "language": language}
    if language == "python":
        try:
            return _python_units(text, meta)
        except (SyntaxError, ValueError):  # not valid Python (a Python 2 file...): still text
            pass
    return [TextUnit(text, meta)]


def _python_units(text: str, metadata: Metadata) -> list[TextUnit]:
    lines = text.splitlines(keepends=True)
    tree = ast.parse(text)
    spans: list[tuple[int, int, str]] = []  # 0-based first line, end line (exclusive), symbol
    for node in tree.body:
        first = min([node.lineno, *(d.lineno for d in getattr(node, "decorator_list", ()))]) - 1
        end = node.end_lineno or node.lineno
        if isinstance(node, _DEFINITIONS):
            while first > 0 and lines[first - 1].lstrip().startswith("#"):  # its leading comment
                first -= 1
            spans.append((first, end, node.name))
        elif spans and spans[-1][2] == _MODULE:
            spans[-1] = (spans[-1][0], end, _MODULE)
        else:
            spans.append((first, end, _MODULE))
    units = []
    previous_end = 0
    for index, (first, end, symbol) in enumerate(spans):
        if index == 0:
            first = 0  # the module docstring's leading comments and shebang go with the first unit
        first = max(first, previous_end)
        if symbol == _MODULE and index + 1 < len(spans):
            end = max(end, spans[index + 1][0])  # blank lines and comments between statements
        if index == len(spans) - 1:
            end = len(lines)  # trailing comments
        previous_end = end
        while first < end and not lines[first].strip():
            first += 1
        if first < end:
            chunk = "".join(lines[first:end]).rstrip()
            last = first + chunk.count("\n") + 1
            units.append(TextUnit(chunk, {**metadata, "symbol": symbol, "lines": f"{first + 1}-{last}"}))
    return units
