"""The HTML report of one run or several side by side: one self-contained page (inline SVG drawn here,
inline CSS, no script, nothing fetched) with the tables, a freshness CDF per change kind, a timeline of the
changes and their visibility, and the server's stage breakdown where it reports one."""

from __future__ import annotations

import html
import math
from collections.abc import Sequence

from ._results import FreshnessResult
from ._stats import Summary
from ._table import _kinds, ms, run_figures, stage_medians, stage_records

COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b")
KIND_COLORS = {
    "create": "#2ca02c",
    "edit": "#1f77b4",
    "rewrite": "#9467bd",
    "append": "#17becf",
    "rename": "#ff7f0e",
    "delete": "#d62728",
}
WIDTH, HEIGHT, PAD, RIGHT = 560, 260, 48, 24

CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1200px;color:#222;padding:0 1em}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
th:first-child,td:first-child{text-align:left}figure{display:inline-block;margin:.5em 1em .5em 0}
figcaption{font-weight:600}svg text{font-size:11px;fill:#333}
pre{background:#f6f6f6;padding:.6em;overflow:auto}
.legend span{margin-right:1.2em}.swatch{display:inline-block;width:12px;height:12px;margin-right:4px}
"""


def _esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def _nice_max(value: float) -> float:
    if not value or math.isnan(value) or value <= 0:
        return 1.0
    magnitude = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * magnitude:
            return step * magnitude
    return 10 * magnitude


class _Plot:
    """An SVG plot area: x and y scaled from data to pixels, with axes and ticks."""

    def __init__(self, x_max: float, y_max: float, x_label: str, y_label: str, y_ticks: bool = True) -> None:
        self.x_max, self.y_max = _nice_max(x_max), _nice_max(y_max)
        self.parts = [
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
            f'viewBox="0 0 {WIDTH} {HEIGHT}" role="img">',
            f'<rect x="{PAD}" y="10" width="{WIDTH - PAD - RIGHT}" height="{HEIGHT - PAD - 10}" fill="none" '
            'stroke="#999"/>',
        ]
        for i in range(6):
            x, y = self.x_max * i / 5, self.y_max * i / 5
            px, py = self.px(x), self.py(y)
            self.parts.append(f'<text x="{px:.1f}" y="{HEIGHT - PAD + 16}" text-anchor="middle">{x:g}</text>')
            if y_ticks:
                self.parts.append(f'<text x="{PAD - 6}" y="{py + 4:.1f}" text-anchor="end">{y:g}</text>')
                self.parts.append(
                    f'<line x1="{PAD}" x2="{WIDTH - RIGHT}" y1="{py:.1f}" y2="{py:.1f}" stroke="#eee"/>'
                )
        self.parts.append(
            f'<text x="{(PAD + WIDTH) / 2:.0f}" y="{HEIGHT - 8}" text-anchor="middle">{_esc(x_label)}</text>'
        )
        self.parts.append(
            f'<text x="12" y="{HEIGHT / 2:.0f}" text-anchor="middle" '
            f'transform="rotate(-90 12 {HEIGHT / 2:.0f})">{_esc(y_label)}</text>'
        )

    def px(self, x: float) -> float:
        return PAD + (WIDTH - PAD - RIGHT) * min(x, self.x_max) / self.x_max

    def py(self, y: float) -> float:
        return HEIGHT - PAD - (HEIGHT - PAD - 20) * min(y, self.y_max) / self.y_max

    def line(self, points: Sequence[tuple[float, float]], color: str) -> None:
        path = " ".join(f"{self.px(x):.1f},{self.py(y):.1f}" for x, y in points)
        self.parts.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2"/>')

    def dot(self, x: float, y: float, color: str, title: str) -> None:
        self.parts.append(
            f'<circle cx="{self.px(x):.1f}" cy="{self.py(y):.1f}" r="3" fill="{color}" fill-opacity="0.75">'
            f"<title>{_esc(title)}</title></circle>"
        )

    def bar(self, x0: float, x1: float, y: float, height: float, color: str, title: str) -> None:
        self.parts.append(
            f'<rect x="{self.px(x0):.1f}" y="{y:.1f}" width="{max(1.0, self.px(x1) - self.px(x0)):.1f}" '
            f'height="{height:.1f}" fill="{color}"><title>{_esc(title)}</title></rect>'
        )

    def text(self, x: float, y: float, label: str) -> None:
        self.parts.append(f'<text x="{x:.1f}" y="{y:.1f}">{_esc(label)}</text>')

    def svg(self) -> str:
        return "".join([*self.parts, "</svg>"])


def _legend(results: Sequence[FreshnessResult]) -> str:
    items = "".join(
        f'<span><i class="swatch" style="background:{COLORS[i % len(COLORS)]}"></i>{_esc(r.label)}</span>'
        for i, r in enumerate(results)
    )
    return f'<p class="legend">{items}</p>'


def cdf_plot(results: Sequence[FreshnessResult], kind: str) -> str:
    """The CDF of one change kind's freshness, one line per run."""
    values = [
        sorted(r.fresh_s * 1000 for r in res.records if r.kind == kind and r.phase == "single" and r.fresh_s)
        for res in results
    ]
    plot = _Plot(max((v[-1] for v in values if v), default=1.0), 1.0, "ms after the write", "fraction")
    for i, series in enumerate(values):
        points = [(0.0, 0.0)]
        for n, x in enumerate(series, 1):
            points += [(x, (n - 1) / len(series)), (x, n / len(series))]
        plot.line(points, COLORS[i % len(COLORS)])
    return (
        f'<figure class="plot cdf" data-kind="{_esc(kind)}"><figcaption>{_esc(kind)}: freshness CDF'
        f"</figcaption>{plot.svg()}</figure>"
    )


def timeline_plot(result: FreshnessResult) -> str:
    """Every change of a run: when its write returned (x) and how long until it showed (y)."""
    records = [r for r in result.records if r.fresh_s is not None]
    plot = _Plot(
        max((r.at + (r.fresh_s or 0) for r in records), default=1.0),
        max((r.fresh_s * 1000 for r in records if r.fresh_s), default=1.0),
        "seconds since the run began",
        "ms until visible",
    )
    for r in records:
        assert r.fresh_s is not None
        plot.dot(
            r.at,
            r.fresh_s * 1000,
            KIND_COLORS.get(r.kind, "#555"),
            f"{r.phase} {r.kind} {r.doc}: {ms(r.fresh_s)}",
        )
    for r in result.records:
        if r.status != "visible":
            plot.dot(r.at, plot.y_max, "#000", f"{r.kind} {r.doc}: timed out")
    legend = "".join(
        f'<span><i class="swatch" style="background:{c}"></i>{k}</span>' for k, c in KIND_COLORS.items()
    )
    return (
        f'<figure class="plot timeline"><figcaption>{_esc(result.label)}: timeline</figcaption>{plot.svg()}'
        f'<p class="legend">{legend}</p></figure>'
    )


def stage_plot(result: FreshnessResult) -> str:
    """Median time after the write at which the server reached each stage (where it reports them), next
    to the median freshness the driver measured."""
    stages = stage_medians(result)
    if not stages:
        return (
            f"<p>{_esc(result.label)}: the server reports no per-document stage times "
            "(ragflow does through <code>/v1/inputs</code>), so there is no stage breakdown.</p>"
        )
    fresh = Summary.of([r.fresh_s for r in stage_records(result) if r.fresh_s is not None]).p50
    bars = [*stages.items(), ("visible to the driver", fresh)]
    plot = _Plot(max(v for _, v in bars) * 1000, 1.0, "ms after the write (median)", "", y_ticks=False)
    row = (HEIGHT - PAD - 20) / max(1, len(bars))
    previous = 0.0
    for i, (name, value) in enumerate(bars):
        y = 20 + i * row
        plot.bar(
            previous * 1000, value * 1000, y + 2, row - 6, COLORS[i % len(COLORS)], f"{name}: {ms(value)}"
        )
        plot.text(
            plot.px(value * 1000) + 4 if value * 1000 < plot.x_max * 0.7 else PAD + 4, y + row / 2, name
        )
        previous = max(previous, value)
    return (
        f'<figure class="plot stages"><figcaption>{_esc(result.label)}: where the time goes</figcaption>'
        f"{plot.svg()}</figure>"
    )


def summary_table(results: Sequence[FreshnessResult]) -> str:
    head = "".join(f'<th colspan="7">{_esc(r.label)}</th>' for r in results)
    sub = "<th>n</th><th>low</th><th>p50</th><th>p90</th><th>p99</th><th>max</th><th>timeouts</th>" * len(
        results
    )
    rows = []
    for kind in _kinds(results):
        cells = ""
        for r in results:
            s = r.summary(kind)
            cells += (
                f"<td>{s.count}</td><td>{ms(r.lower(kind))}</td><td>{ms(s.p50)}</td><td>{ms(s.p90)}</td><td>{ms(s.p99)}</td>"
                f"<td>{ms(s.max)}</td><td>{r.timeouts(kind)}</td>"
            )
        rows.append(f"<tr><td>{_esc(kind)}</td>{cells}</tr>")
    body = "".join(rows)
    return f'<table class="summary"><tr><th rowspan="2">kind</th>{head}</tr><tr>{sub}</tr>{body}</table>'


def html_report(results: Sequence[FreshnessResult]) -> str:
    """The whole page."""
    title = "Index freshness: " + " vs ".join(r.label for r in results)
    figures = "".join(
        f"<h3>{_esc(r.label)}</h3><pre>{_esc(chr(10).join(run_figures(r)))}</pre>" for r in results
    )
    runs = "".join(
        f"<h3>{_esc(r.label)}</h3><pre>{_esc(chr(10).join(f'{k}: {v}' for k, v in r.run.items()))}</pre>"
        for r in results
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{_esc(title)}</title><style>{CSS}</style></head>
<body><h1>{_esc(title)}</h1>
<p>Freshness of a change: from the return of its write at the source to the first answer of the server's
REST API that shows the new state (new text retrievable, old text and deleted documents gone).
Each value is an upper bound; <em>low</em> is the p50 of when the last answer that did not show the change
was asked, so the true value lies between. In the stage breakdown each bar runs from the previous stage
to the one it names.</p>
<h2>Freshness per kind</h2>{summary_table(results)}
<h2>Freshness CDF per kind</h2>{_legend(results)}{"".join(cdf_plot(results, k) for k in _kinds(results))}
<h2>Timeline</h2>{"".join(timeline_plot(r) for r in results)}
<h2>Stage breakdown</h2>{"".join(stage_plot(r) for r in results)}
<h2>Other figures</h2>{figures}
<h2>How each run was made</h2>{runs}
</body></html>
"""
