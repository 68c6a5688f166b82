"""Source code read as text, cut at its top-level definitions so that a function or class is one unit
(``symbol``, ``lines``) and stays whole in one chunk when it fits: Python through ``ast``, curly-brace
languages (JavaScript, TypeScript, Go, Rust, Java, C, C++, C#...) at blank lines outside braces; other
languages (shell, SQL, YAML...) are one unit. Every unit has its ``language``."""

from __future__ import annotations

import ast
import re
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
_BRACE_LANGUAGES = frozenset(
    {"javascript", "typescript", "go", "rust", "java", "kotlin", "scala", "c", "c++", "c#", "php", "swift"}
)
_DECLARED = re.compile(
    r"\b(?:func|fn|function|class|struct|interface|enum|trait|impl|type|union|namespace|object)\s+"
    r"(?:\([^)]*\)\s*)?([A-Za-z_$][\w$]*)"
)
_CALLABLE = re.compile(r"([A-Za-z_$][\w$]*)\s*\([^;]*\)\s*(?:\{|=>|$)")
_BRACES = re.compile(r"\"(?:\\.|[^\"\\])*\"|'(?:\\.|[^'\\])*'|//.*|[{}]")


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
    elif language in _BRACE_LANGUAGES:
        units = _brace_units(text, meta)
        if units:
            return units
    return [TextUnit(text, meta)]


def _brace_units(text: str, metadata: Metadata) -> list[TextUnit]:
    """Curly-brace languages, without a parser per language: the file cut at blank lines outside any
    braces (so a function whose body has blank lines stays whole), each block named by the first
    declaration in it (``func area``, ``class Tide``, ``int main(...) {``); runs of blocks without a
    declaration (imports, constants) are one ``(module)`` unit. Braces in strings and ``//`` comments are
    ignored; unbalanced braces (a ``/* { */`` comment...) give ``[]``, and the file stays one unit."""
    lines = text.splitlines(keepends=True)
    blocks: list[tuple[int, int, str]] = []  # first line, end line (exclusive), symbol
    depth, start = 0, None
    for number, line in enumerate(lines):
        if start is None and line.strip():
            start = number
        for token in _BRACES.findall(line):
            depth += {"{": 1, "}": -1}.get(token, 0)
        if depth < 0:
            return []
        ends = not line.strip() or number == len(lines) - 1
        if depth == 0 and start is not None and ends:
            block = "".join(lines[start : number + 1])
            symbol = _symbol(block)
            if blocks and symbol == _MODULE and blocks[-1][2] == _MODULE:
                blocks[-1] = (blocks[-1][0], number + 1, _MODULE)
            else:
                blocks.append((start, number + 1, symbol))
            start = None
    if depth != 0 or len(blocks) < 2:
        return []
    units = []
    for first, end, symbol in blocks:
        chunk = "".join(lines[first:end]).rstrip()
        last = first + chunk.count("\n") + 1
        units.append(TextUnit(chunk, {**metadata, "symbol": symbol, "lines": f"{first + 1}-{last}"}))
    return units


def _symbol(block: str) -> str:
    for line in block.splitlines():
        code = line.strip()
        if not code or code.startswith(("//", "/*", "*", "#", "@", "import ", "package ", "use ")):
            continue
        found = _DECLARED.search(code) or (_CALLABLE.search(code) if not line[:1].isspace() else None)
        if found:
            return found.group(1)
    return _MODULE


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
