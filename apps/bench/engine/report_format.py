"""Number formats and Markdown tables for benchmark reports."""

from __future__ import annotations

from collections.abc import Sequence


def format_rate(value: float) -> str:
    if value >= 1e6:
        return f"{value / 1e6:.2f}M"
    if value >= 1e3:
        return f"{value / 1e3:.0f}k"
    return f"{value:.0f}"


def format_ns(value: float) -> str:
    if value >= 1e6:
        return f"{value / 1e6:.2f} ms"
    return f"{value / 1e3:.0f} µs"


def verdict(met: bool) -> str:
    return "yes" if met else "**no**"


def table(header: Sequence[str], align: str, rows: list[list[str]]) -> list[str]:
    """A Markdown table; ``align`` holds one letter per column: l(eft), r(ight) or c(enter)."""
    rule = {"l": "---", "r": "--:", "c": ":-:"}
    lines = [header, [rule[a] for a in align], *rows]
    return ["| " + " | ".join(cells) + " |" for cells in lines]
