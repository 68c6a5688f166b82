"""How much work the engine benchmarks do: the default and the quick settings."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True, slots=True)
class Settings:
    """How much work each benchmark does."""

    repeats: int
    warm_rows: int  # rows in the state before timing starts
    epochs: dict[int, int]  # epoch size -> timed epochs per repeat
    latency_changes: int
    latency_warmup: int
    latency_pause_s: float
    udf_rows: int
    disable_gc: bool = False


DEFAULT = Settings(
    repeats=5,
    warm_rows=50_000,
    epochs={10_000: 8, 100_000: 1},
    latency_changes=2000,
    latency_warmup=200,
    latency_pause_s=0.0005,
    udf_rows=50_000,
)
QUICK = Settings(
    repeats=2,
    warm_rows=10_000,
    epochs={10_000: 2, 50_000: 1},
    latency_changes=300,
    latency_warmup=50,
    latency_pause_s=0.0005,
    udf_rows=10_000,
)
