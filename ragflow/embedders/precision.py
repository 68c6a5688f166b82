"""Which numeric precision a local model runs in, per batch size, decided from a short measurement on this
machine (a calibration) rather than assumed, and that measurement cached per model and processor.

bfloat16 autocast roughly triples a batch's speed on a CPU with AVX-512 BF16 or AMX, yet makes a short
query slower; so the choice is made per batch size. Vectors stay float32 and L2-normalised either way,
and bfloat16 is only chosen where its vectors agree with float32 ones to ``COSINE_BOUND``, which is why a
change of precision keeps the model id and with it the embedding cache.
"""

from __future__ import annotations

import enum
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ragflow.errors import ConfigError

__all__ = [
    "CALIBRATION_SIZES",
    "COSINE_BOUND",
    "MIN_GAIN",
    "PRECISION_CHOICES",
    "QUIET_LOAD",
    "Calibration",
    "Measurement",
    "Precision",
    "PrecisionPlan",
    "calibrate",
    "calibration_cache_path",
    "calibration_texts",
    "check_precision",
    "load_calibration",
    "machine_load",
    "plan_precision",
    "store_calibration",
    "worth_recalibrating",
]

logger = logging.getLogger(__name__)


class Precision(enum.StrEnum):
    """The arithmetic a forward pass runs in; the vectors it returns are float32 either way."""

    FLOAT32 = "float32"
    """Full precision: the reference every other precision is held to."""
    BFLOAT16 = "bfloat16"
    """``torch.autocast`` to bfloat16: matrix products in bf16, reductions and norms in float32."""


PRECISION_CHOICES = ("auto", "float32", "bfloat16")
"""What ``precision`` may say: ``auto`` lets the calibration decide, the others force a choice."""

COSINE_BOUND = 0.9999
"""bfloat16 is used only if every calibration vector has at least this cosine with its float32 twin."""

MIN_GAIN = 1.10
"""How much faster bfloat16 must be at a batch size to be chosen there: within noise, float32 stays."""

CALIBRATION_SIZES = (1, 4, 8, 16, 32)
"""Batch sizes the calibration times; 1 is timed on a short query, the others on chunk-sized texts."""

QUIET_LOAD = 1.0
"""Load average per core up to which a calibration counts as undisturbed."""

_NEAR_BEST = 0.95  # a smaller batch within 5% of the fastest rate wins: same throughput, less latency
_DEFAULT_BATCH = 8  # measured best in float32 on 2 cores, used when nothing was calibrated


def check_precision(precision: str) -> str:
    if precision not in PRECISION_CHOICES:
        raise ConfigError(
            f"unknown embedder precision {precision!r}; allowed: {', '.join(PRECISION_CHOICES)}"
        )
    return precision


@dataclass(frozen=True, slots=True)
class Measurement:
    """How fast batches of ``batch_size`` texts ran in one precision: the best of the calibration rounds."""

    batch_size: int
    precision: Precision
    texts_per_second: float


@dataclass(frozen=True, slots=True)
class Calibration:
    """The outcome of ``calibrate``: rates per (batch size, precision), and how close bfloat16 came."""

    measurements: tuple[Measurement, ...]
    min_cosine: float | None = None
    """Lowest cosine between a bfloat16 vector and its float32 twin; ``None`` if bf16 was not run."""
    busy: float | None = None
    """The machine's load average per core when the calibration began: above ``QUIET_LOAD`` other
    processes shared the cores, so the rates are less trustworthy and a quieter moment measures again."""

    @property
    def disturbed(self) -> bool:
        return self.busy is not None and self.busy > QUIET_LOAD

    def rate(self, batch_size: int, precision: Precision) -> float | None:
        for measurement in self.measurements:
            if (measurement.batch_size, measurement.precision) == (batch_size, precision):
                return measurement.texts_per_second
        return None

    @property
    def sizes(self) -> list[int]:
        return sorted({m.batch_size for m in self.measurements})

    def to_dict(self) -> dict[str, Any]:
        return {
            "measurements": [asdict(m) for m in self.measurements],
            "min_cosine": self.min_cosine,
            "busy": self.busy,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Calibration:
        measurements = tuple(
            Measurement(int(m["batch_size"]), Precision(m["precision"]), float(m["texts_per_second"]))
            for m in data["measurements"]
        )
        min_cosine, busy = data.get("min_cosine"), data.get("busy")
        return cls(
            measurements,
            None if min_cosine is None else float(min_cosine),
            None if busy is None else float(busy),
        )


@dataclass(frozen=True, slots=True)
class PrecisionPlan:
    """The precision of each batch size, and the batch size that bulk embedding uses.

    Example:
        >>> plan = PrecisionPlan(16, ((1, Precision.FLOAT32), (4, Precision.BFLOAT16)), "measured")
        >>> plan.for_batch(1), plan.for_batch(3), plan.for_batch(16)
        (<Precision.FLOAT32: 'float32'>, <Precision.FLOAT32: 'float32'>, <Precision.BFLOAT16: 'bfloat16'>)
    """

    batch_size: int
    by_size: tuple[tuple[int, Precision], ...]
    """(smallest batch size, precision) in ascending order; a batch takes the last entry it reaches."""
    reason: str

    def for_batch(self, n: int) -> Precision:
        chosen = self.by_size[0][1]
        for size, precision in self.by_size:
            if n >= size:
                chosen = precision
        return chosen

    @property
    def bulk(self) -> Precision:
        """The precision of a full batch."""
        return self.for_batch(self.batch_size)

    @property
    def single(self) -> Precision:
        """The precision of one text alone (a query, a one-chunk edit)."""
        return self.for_batch(1)


def plan_precision(
    calibration: Calibration | None,
    *,
    native_bf16: bool,
    forced: str = "auto",
    batch_size: int | None = None,
) -> PrecisionPlan:
    """Decide precision per batch size and the bulk batch size.

    ``forced`` (``float32``/``bfloat16``) wins over any measurement. Under ``auto``, bfloat16 is never
    chosen on hardware without native bf16 (it is emulated there, and slower), nor when the calibration's
    vectors strayed below ``COSINE_BOUND``, nor at a batch size where it was not ``MIN_GAIN`` faster.
    ``batch_size`` fixes the bulk batch; otherwise the fastest measured one is taken (the smallest within
    5% of the fastest), or 8 without a calibration.
    """
    check_precision(forced)
    if forced != "auto":
        precision = Precision(forced)
        size = batch_size or _fastest_size(calibration, lambda _size: precision) or _DEFAULT_BATCH
        return PrecisionPlan(size, ((1, precision),), f"{forced} forced by configuration")
    if not native_bf16:
        return _float32_plan(calibration, batch_size, "no native bfloat16 on this device")
    if calibration is None or not any(m.precision is Precision.BFLOAT16 for m in calibration.measurements):
        return _float32_plan(calibration, batch_size, "bfloat16 not measured")
    if calibration.min_cosine is None or calibration.min_cosine < COSINE_BOUND:
        return _float32_plan(
            calibration,
            batch_size,
            f"bfloat16 vectors strayed (cosine {calibration.min_cosine} < {COSINE_BOUND})",
        )
    choice: dict[int, Precision] = {}
    for size in calibration.sizes:
        fp32 = calibration.rate(size, Precision.FLOAT32)
        bf16 = calibration.rate(size, Precision.BFLOAT16)
        faster = fp32 is not None and bf16 is not None and bf16 >= MIN_GAIN * fp32
        choice[size] = Precision.BFLOAT16 if faster else Precision.FLOAT32
    size = batch_size or _fastest_size(calibration, choice.__getitem__) or _DEFAULT_BATCH
    return PrecisionPlan(size, _compact(choice), "measured")


def _float32_plan(calibration: Calibration | None, batch_size: int | None, reason: str) -> PrecisionPlan:
    size = batch_size or _fastest_size(calibration, lambda _size: Precision.FLOAT32) or _DEFAULT_BATCH
    return PrecisionPlan(size, ((1, Precision.FLOAT32),), reason)


def _fastest_size(calibration: Calibration | None, precision_of: Callable[[int], Precision]) -> int | None:
    """The batch size (above 1: one text is not a bulk batch) with the best rate in the precision it
    would run in; the smallest of those within 5% of the best."""
    if calibration is None:
        return None
    rates = {
        size: rate
        for size in calibration.sizes
        if size > 1 and (rate := calibration.rate(size, precision_of(size))) is not None
    }
    if not rates:
        return None
    best = max(rates.values())
    return min(size for size, rate in rates.items() if rate >= _NEAR_BEST * best)


def _compact(choice: dict[int, Precision]) -> tuple[tuple[int, Precision], ...]:
    entries: list[tuple[int, Precision]] = []
    for size in sorted(choice):
        if not entries or entries[-1][1] is not choice[size]:
            entries.append((size, choice[size]))
    if entries[0][0] != 1:
        entries[0] = (1, entries[0][1])
    return tuple(entries)


# -- measuring ------------------------------------------------------------------------------------

EncodeFn = Callable[[list[str], Precision], npt.NDArray[np.float32]]

_CALIBRATION_PROSE = (
    "A database index is a data structure that improves the speed of data retrieval operations on a table "
    "at the cost of additional writes and storage space to maintain it. Indexes are used to quickly locate "
    "rows without having to search every row each time the table is accessed. The river rose after three "
    "days of rain, and the farmers moved their animals to the higher fields before the bridge was closed. "
    "To configure the server, copy the example file, set the listening address and the port, and restart "
    "the service; the log will say which configuration file it read and whether any key was unknown. "
    "Photosynthesis converts light energy into chemical energy stored in glucose, releasing oxygen as a "
    "by-product, and it takes place mainly in the chloroplasts of the leaves. When the function returns "
    "an error, the caller should check the message, retry with a shorter timeout if the network was at "
    "fault, and report the failure with the request identifier so that it can be traced in the logs."
)
_CALIBRATION_QUERY = "how do I restart the server after changing the configuration"


def calibration_texts(count: int = max(CALIBRATION_SIZES), words: int = 96) -> tuple[list[str], str]:
    """``count`` distinct chunk-sized texts (about as many word-pieces as a default chunk) and a query."""
    vocabulary = _CALIBRATION_PROSE.split()
    texts = []
    for i in range(count):
        start = (i * 13) % len(vocabulary)
        texts.append(" ".join((vocabulary * 2)[start : start + words]))
    return texts, _CALIBRATION_QUERY


def calibrate(
    encode: EncodeFn,
    precisions: Sequence[Precision],
    *,
    sizes: Sequence[int] = CALIBRATION_SIZES,
    rounds: int = 3,
    budget_seconds: float = 15.0,
    clock: Callable[[], float] = time.perf_counter,
    busy: float | None = None,
) -> Calibration:
    """Time ``encode`` at each batch size in each precision, alternating them so that load from other
    processes falls on both alike; keep each cell's best round (noise only ever adds time). Rounds after
    the first are skipped once ``budget_seconds`` are spent (a busy machine). ``busy`` is recorded as the
    load the calibration ran under (default: this machine's load average per core now)."""
    if busy is None:
        busy = machine_load()
    chunks, query = calibration_texts(max(sizes))
    started = clock()
    for precision in precisions:  # the first pass of each precision pays one-off setup costs
        encode(chunks[:4], precision)
    best: dict[tuple[int, Precision], float] = {}
    outputs: dict[Precision, list[npt.NDArray[np.float32]]] = {p: [] for p in precisions}
    for round_number in range(rounds):
        if round_number > 0 and clock() - started > budget_seconds:
            break
        order = list(precisions) if round_number % 2 == 0 else list(reversed(precisions))
        for size in sizes:
            texts = [query] if size == 1 else chunks[:size]
            for precision in order:
                start = clock()
                vectors = encode(texts, precision)
                elapsed = max(clock() - start, 1e-9)
                best[size, precision] = min(best.get((size, precision), elapsed), elapsed)
                if round_number == 0:
                    outputs[precision].append(np.asarray(vectors, dtype=np.float32))
    measurements = tuple(
        Measurement(size, precision, (1 if size == 1 else size) / seconds)
        for (size, precision), seconds in sorted(best.items())
    )
    min_cosine = None
    if Precision.BFLOAT16 in outputs and Precision.FLOAT32 in outputs:
        reference = np.vstack(outputs[Precision.FLOAT32])
        candidate = np.vstack(outputs[Precision.BFLOAT16])
        min_cosine = float(np.min(np.sum(reference * candidate, axis=1)))
    return Calibration(measurements, min_cosine, busy)


def machine_load() -> float | None:
    """The 1-minute load average per core (``None`` where the OS does not tell)."""
    try:
        return os.getloadavg()[0] / (os.cpu_count() or 1)
    except OSError:
        return None


def worth_recalibrating(cached: Calibration, busy_now: float | None) -> bool:
    """Whether to measure again: the cached calibration ran on a busy machine and it is quieter now."""
    return cached.disturbed and busy_now is not None and busy_now < (cached.busy or 0)


# -- the cache ------------------------------------------------------------------------------------


def calibration_cache_path() -> Path | None:
    """``$RAGFLOW_CALIBRATION_CACHE`` (empty: no cache), else ``ragflow/calibration.json`` under
    ``$XDG_CACHE_HOME`` or ``~/.cache``."""
    override = os.environ.get("RAGFLOW_CALIBRATION_CACHE")
    if override is not None:
        return Path(override).expanduser() if override else None
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "ragflow" / "calibration.json"


def calibration_key(*parts: object) -> str:
    """A stable key for the things a calibration depends on (model, device, processor, threads, torch)."""
    return hashlib.sha256(json.dumps([str(p) for p in parts]).encode()).hexdigest()[:32]


def load_calibration(path: Path | None, key: str) -> Calibration | None:
    """The cached calibration under ``key``, or ``None`` (no cache, no entry, or an unreadable file)."""
    if path is None:
        return None
    try:
        entry = json.loads(path.read_text(encoding="utf-8")).get(key)
        return None if entry is None else Calibration.from_dict(entry)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        if not isinstance(exc, FileNotFoundError):
            logger.warning("ignoring the unreadable calibration cache %s: %s", path, exc)
        return None


def store_calibration(path: Path | None, key: str, calibration: Calibration, **about: object) -> None:
    """Add ``calibration`` under ``key`` (with ``about`` for people reading the file), atomically; a
    cache that cannot be written only costs the next start a calibration."""
    if path is None:
        return
    try:
        try:
            entries = json.loads(path.read_text(encoding="utf-8"))
            entries = entries if isinstance(entries, dict) else {}
        except (OSError, ValueError):
            entries = {}
        entries[key] = {**calibration.to_dict(), **{k: str(v) for k, v in about.items()}}
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        temporary.write_text(json.dumps(entries, indent=1, sort_keys=True), encoding="utf-8")
        os.replace(temporary, path)
    except OSError as exc:
        logger.warning("cannot write the calibration cache %s: %s", path, exc)
