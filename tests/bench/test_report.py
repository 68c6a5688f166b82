"""The HTML report: self-contained, one CDF per change kind, a timeline per run, a stage breakdown where
the server reports stages; and it loads and draws in a real headless Chromium without errors.

The browser test uses Debian's ``chromium``: if it is missing and ``apt-get`` can install it (as root),
the test installs it (``apt-get install chromium``); otherwise it is skipped, saying why."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from ragflow.bench import ChangeRecord, FreshnessResult, html_report

KINDS = ("create", "edit", "rewrite", "append", "rename", "delete")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def a_run(label: str, scale: float, stages: bool) -> FreshnessResult:
    records = []
    for n, kind in enumerate(KINDS):
        for i in range(5):
            fresh = scale * (0.05 + 0.01 * i)
            view = {"detected": 0.002, "indexed": scale * 0.04} if stages else {}
            records.append(
                ChangeRecord(
                    kind,
                    "single",
                    f"doc-{i}.txt",
                    i * 0.7 + n,
                    0.001,
                    fresh,
                    fresh - 0.01,
                    3,
                    "visible",
                    view,
                )
            )
    records.append(ChangeRecord("edit", "single", "late.txt", 9.0, 0.001, None, 1.0, 40, "timeout"))
    return FreshnessResult(
        run={"label": label, "poll_interval_s": 0.01, "url": "http://127.0.0.1:1"},
        initial={"documents": 10, "visible": 10, "seconds": 2.0, "docs_per_s": 5.0},
        records=records,
        queries={"idle": [0.01, 0.02], "polling": [0.01, 0.03]},
    )


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.open: list[str] = []
        self.seen: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.seen.append(tag)
        if tag not in ("meta", "br", "rect", "line", "circle", "polyline", "path", "text"):
            self.open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in ("rect", "line", "circle", "polyline", "path", "text"):
            return
        assert self.open and self.open[-1] == tag, f"</{tag}> closes <{self.open[-1] if self.open else None}>"
        self.open.pop()


def test_the_page_parses_with_one_cdf_per_kind_and_a_stage_breakdown() -> None:
    page = html_report([a_run("ragflow", 1.0, stages=True), a_run("peer", 3.0, stages=False)])
    tags = _Tags()
    tags.feed(page)
    assert tags.open == [], tags.open
    for kind in KINDS:
        assert page.count(f'data-kind="{kind}"') == 1
    assert page.count('class="plot timeline"') == 2
    assert page.count('class="plot stages"') == 1  # only the run with stage times
    assert "reports no per-document stage times" in page
    assert "timed out" in page  # the timeout is drawn, not dropped


def test_the_page_references_nothing_outside_itself() -> None:
    page = html_report([a_run("ragflow", 1.0, stages=True)])
    assert not re.search(r"<(script|link|img|iframe)\b", page)
    urls = set(re.findall(r"https?://[^\s\"'<]+", page))
    assert urls == {"http://www.w3.org/2000/svg", "http://127.0.0.1:1"}  # the SVG namespace and the run's URL


@pytest.fixture(scope="module")
def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None and shutil.which("apt-get") and os.geteuid() == 0:
        install = ["apt-get", "install", "-y", "-qq", "chromium"]
        if subprocess.run(install, capture_output=True, timeout=900).returncode != 0:
            subprocess.run(["apt-get", "update", "-qq"], capture_output=True, timeout=900)
            subprocess.run(install, capture_output=True, timeout=900)
        found = shutil.which("chromium")
    if found is None:
        pytest.skip("no chromium, and apt-get cannot install it here (needs Debian's apt as root)")
    return found


CHECK = """<script>
const svgs = [...document.querySelectorAll('svg')];
console.log('REPORT-CHECK ' + JSON.stringify({
  svgs: svgs.length, drawn: svgs.filter(s => s.getBBox().width > 0).length,
  cdfs: document.querySelectorAll('figure.cdf').length,
  resources: performance.getEntriesByType('resource').length}));
</script></body>"""


def test_the_page_loads_and_draws_in_headless_chromium(chromium: str, tmp_path: Path) -> None:
    page = html_report([a_run("ragflow", 1.0, stages=True), a_run("peer", 3.0, stages=False)])
    # the check script is added to a copy: the report itself has no script
    (tmp_path / "report.html").write_text(page.replace("</body>", CHECK))
    done = subprocess.run(
        [chromium, *CHROMIUM_FLAGS, "--enable-logging=stderr", "--v=0", "--dump-dom",
         (tmp_path / "report.html").as_uri()],
        capture_output=True, text=True, timeout=120, env={**os.environ, "HOME": str(tmp_path)},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    console = [line for line in done.stderr.splitlines() if ":CONSOLE" in line]
    checks = [line for line in console if "REPORT-CHECK" in line]
    assert len(checks) == 1, console
    found = json.loads(checks[0].split("REPORT-CHECK ", 1)[1].rsplit('", source', 1)[0].replace('\\"', '"'))
    svgs = page.count("<svg")
    assert found == {"svgs": svgs, "drawn": svgs, "cdfs": len(KINDS), "resources": 0}
    assert console == checks, "the page logged errors"
    assert done.stdout.count("<svg") == svgs
