"""The examples in the user docs run as written."""

from __future__ import annotations

import re
from pathlib import Path

DOCS = Path(__file__).resolve().parents[1] / "docs"


def python_blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.S)


def test_the_engine_guide_example_runs_and_its_assertion_holds() -> None:
    blocks = python_blocks(DOCS / "engine.md")
    assert blocks, "docs/engine.md should open with a runnable example"
    exec(compile(blocks[0], "docs/engine.md", "exec"), {})
