"""What one freshness run measured: every change's record and the run's figures, saved as JSON
(``--json``) and read back for tables, reports and ``--compare``; the summaries are always computed from
the records, so a saved file and a fresh run print the same."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ragflow.errors import ConfigError

from ._stats import Summary

FORMAT = "ragflow-freshness/1"


@dataclass
class ChangeRecord:
    """One change and when a query first saw it."""

    kind: str
    phase: str
    """``single`` (one at a time, after an idle gap), ``burst`` or ``restart`` (made while the server was
    down)."""
    doc: str
    at: float
    """When the write returned, in seconds since the run began."""
    write_s: float
    """How long the write itself took."""
    fresh_s: float | None
    """From the write's return to the answer that first showed the new state (``None``: it never did)."""
    lower_s: float | None
    """When the last answer that did not yet show it was asked: the true freshness lies between the two."""
    polls: int
    status: str
    """``visible`` or ``timeout``."""
    server: dict[str, float] = field(default_factory=dict)
    """The server's own view, in seconds after the write returned (ragflow: ``detected``, ``indexed``,
    and stage times where the server reports them)."""

    @property
    def resolution_s(self) -> float | None:
        if self.fresh_s is None or self.lower_s is None:
            return None
        return self.fresh_s - self.lower_s


@dataclass
class FreshnessResult:
    """A run: how it was made (``run``), the phases' figures and every change."""

    run: dict[str, Any]
    initial: dict[str, Any] = field(default_factory=dict)
    records: list[ChangeRecord] = field(default_factory=list)
    bursts: list[dict[str, Any]] = field(default_factory=list)
    restart: dict[str, Any] = field(default_factory=dict)
    queries: dict[str, list[float]] = field(default_factory=dict)
    """Round-trip seconds of ``/v1/retrieve``: ``idle`` (asked between changes), ``polling`` (every poll)."""
    driver: dict[str, float] = field(default_factory=dict)
    server_process: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return str(self.run.get("label") or self.run.get("url") or "run")

    def kinds(self) -> list[str]:
        seen: list[str] = []
        for r in self.records:
            if r.phase == "single" and r.kind not in seen:
                seen.append(r.kind)
        return seen

    def summary(self, kind: str, phase: str = "single") -> Summary:
        return Summary.of(
            [r.fresh_s for r in self.records if r.kind == kind and r.phase == phase and r.fresh_s is not None]
        )

    def lower(self, kind: str, phase: str = "single") -> float:
        """p50 of the lower bounds of one kind's visible changes (when the last answer that did not show
        the change was asked)."""
        return Summary.of(
            [
                r.lower_s
                for r in self.records
                if r.kind == kind and r.phase == phase and r.fresh_s is not None and r.lower_s is not None
            ]
        ).p50

    def timeouts(self, kind: str, phase: str = "single") -> int:
        return sum(1 for r in self.records if r.kind == kind and r.phase == phase and r.status != "visible")

    def resolution(self) -> float:
        """Median of the records' resolutions (how far apart the deciding polls were)."""
        values = sorted(x for r in self.records if (x := r.resolution_s) is not None)
        return values[len(values) // 2] if values else math.nan

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["format"] = FORMAT
        return data

    def save(self, path: Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> FreshnessResult:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read the benchmark result {path}: {exc}") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ConfigError(
                f"{path} is not a freshness benchmark result (format {FORMAT!r}); "
                "write one with `ragflow bench freshness --json FILE`"
            )
        data.pop("format")
        records = [ChangeRecord(**r) for r in data.pop("records", [])]
        return cls(records=records, **data)
