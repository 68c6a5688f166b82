"""A burst's baseline: the time the server's own embedder spent on it, read from ``/v1/statistics`` before
and after, so "visible within 1.5x the time to embed them" is judged in the same run."""

from __future__ import annotations

from typing import Any

from ragflow.bench import FreshnessResult
from ragflow.bench._freshness import _embed_seconds
from ragflow.bench._probe import ProbeError
from ragflow.bench._table import run_figures


class Statistics:
    def __init__(self, answer: Any) -> None:
        self.answer = answer

    def statistics(self) -> Any:
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


def test_the_embedders_seconds_come_from_statistics_where_the_server_says() -> None:
    assert _embed_seconds(Statistics({"file_count": 3, "embedder": {"embed_seconds": 2.5}})) == 2.5  # type: ignore[arg-type]
    assert _embed_seconds(Statistics({"file_count": 3})) is None  # type: ignore[arg-type]  # Pathway's
    assert _embed_seconds(Statistics(ProbeError("503"))) is None  # type: ignore[arg-type]


def test_the_burst_line_gives_its_time_as_a_multiple_of_the_embedding() -> None:
    burst = {"kind": "edit", "size": 100, "write_s": 0.05, "seconds": 1.5, "visible": 100, "embed_s": 1.0}
    result = FreshnessResult(run={"label": "x"}, bursts=[burst])
    line = next(line for line in run_figures(result) if line.startswith("burst"))
    assert "embedder spent 1000 ms on them" in line and "1.50x the time to embed them" in line
