"""Which numeric precision (and runtime) a local model runs in, per batch size, decided from a short
measurement on this machine (a calibration) rather than assumed, and that measurement cached per model and
processor.

bfloat16 autocast roughly triples a batch's speed on a CPU with AVX-512 BF16 or AMX, yet makes a short
query slower; the same weights exported to onnxruntime run float32 with less overhead per pass, which
pays most for one text alone; so the choice is made per batch size. Vectors stay float32 and
L2-normalised either way, and a path other than torch's float32 is only chosen where its vectors agree
with torch's float32 ones to ``COSINE_BOUND``, which is why a change of path keeps the model id and with
it the embedding cache.
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
    FLOAT32_ONNX = "float32-onnx"
    """float32 through onnxruntime, on a graph exported from the same weights (CPU only)."""


PRECISION_CHOICES = ("auto", "float32", "bfloat16", "float32-onnx")
"""What ``precision`` may say: ``auto`` lets the calibration decide, the others force a choice."""

COSINE_BOUND = 0.9999
"""bfloat16 or onnxruntime is used only if every calibration vector it made has at least this cosine with
its torch float32 twin."""

MIN_GAIN = 1.10
"""How much faster another path must be than torch's float32 at a batch size to be chosen there: within
noise, float32 stays."""

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
    """The outcome of ``calibrate``: rates per (batch size, precision), and how close the other paths
    came to float32."""

    measurements: tuple[Measurement, ...]
    min_cosine: float | None = None
    """Lowest cosine between a bfloat16 vector and its float32 twin; ``None`` if bf16 was not run."""
    busy: float | None = None
    """The machine's load average per core when the calibration began: above ``QUIET_LOAD`` other
    processes shared the cores, so the rates are less trustworthy and a quieter moment measures again."""

    onnx_min_cosine: float | None = None
    """Lowest cosine between an onnxruntime vector and its float32 twin; ``None`` if it was not run."""

    def cosine(self, precision: Precision) -> float | None:
        """How close ``precision``'s vectors came to float32's (1.0 for float32 itself)."""
        if precision is Precision.FLOAT32:
            return 1.0
        return self.min_cosine if precision is Precision.BFLOAT16 else self.onnx_min_cosine

    @property
    def precisions(self) -> set[Precision]:
        return {m.precision for m in self.measurements}

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
            "onnx_min_cosine": self.onnx_min_cosine,
            "busy": self.busy,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Calibration:
        measurements = tuple(
            Measurement(int(m["batch_size"]), Precision(m["precision"]), float(m["texts_per_second"]))
            for m in data["measurements"]
        )
        min_cosine, busy, onnx = data.get("min_cosine"), data.get("busy"), data.get("onnx_min_cosine")
        return cls(
            measurements,
            None if min_cosine is None else float(min_cosine),
            None if busy is None else float(busy),
            None if onnx is None else float(onnx),
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
    def precisions(self) -> set[Precision]:
        """Every precision some batch size runs in."""
        return {precision for _size, precision in self.by_size}

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

    ``forced`` (``float32``/``bfloat16``/``float32-onnx``) wins over any measurement. Under ``auto``, each
    batch size takes the fastest trusted path, where a path other than torch's float32 must be
    ``MIN_GAIN`` faster than it, and the path of the next smaller size where that is within 5% of the
    fastest. bfloat16 is never trusted on hardware without native bf16 (it is
    emulated there, and slower); no path is trusted unless it was measured and its vectors stayed within
    ``COSINE_BOUND`` of float32's. ``batch_size`` fixes the bulk batch; otherwise the fastest measured
    one is taken (the smallest within 5% of the fastest), or 8 without a calibration.
    """
    check_precision(forced)
    if forced != "auto":
        precision = Precision(forced)
        size = batch_size or _fastest_size(calibration, lambda _size: precision) or _DEFAULT_BATCH
        return PrecisionPlan(size, ((1, precision),), f"{forced} forced by configuration")
    trusted, refusals = _trusted_paths(calibration, native_bf16)
    if calibration is None or not trusted:
        return _float32_plan(calibration, batch_size, "; ".join(refusals))
    choice: dict[int, Precision] = {}
    previous: Precision | None = None
    for size in calibration.sizes:
        fp32 = calibration.rate(size, Precision.FLOAT32)
        choice[size] = Precision.FLOAT32
        best = fp32
        rates: dict[Precision, float] = {} if fp32 is None else {Precision.FLOAT32: fp32}
        for precision in trusted:
            rate = calibration.rate(size, precision)
            if rate is None or fp32 is None or rate < MIN_GAIN * fp32:
                continue
            rates[precision] = rate
            if best is None or rate > best:
                choice[size], best = precision, rate
        # within noise of the fastest, the path of the size below stays: fewer switches between paths,
        # and a plan that does not flip from one start to the next on a busy machine
        if previous in rates and best is not None and rates[previous] >= _NEAR_BEST * best:
            choice[size] = previous
        previous = choice[size]
    size = batch_size or _fastest_size(calibration, choice.__getitem__) or _DEFAULT_BATCH
    reason = "; ".join(["measured", *refusals])
    return PrecisionPlan(size, _compact(choice), reason)


def _trusted_paths(calibration: Calibration | None, native_bf16: bool) -> tuple[list[Precision], list[str]]:
    """The paths besides torch's float32 that ``auto`` may choose, and why each other one may not."""
    trusted: list[Precision] = []
    refusals: list[str] = []
    for precision in (Precision.BFLOAT16, Precision.FLOAT32_ONNX):
        cosine = calibration.cosine(precision) if calibration is not None else None
        if precision is Precision.BFLOAT16 and not native_bf16:
            refusals.append("no native bfloat16 on this device")
        elif calibration is None or precision not in calibration.precisions:
            refusals.append(f"{precision} not measured")
        elif cosine is None or cosine < COSINE_BOUND:
            refusals.append(f"{precision} vectors strayed (cosine {cosine} < {COSINE_BOUND})")
        else:
            trusted.append(precision)
    return trusted, refusals


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
    cosines: dict[Precision, float] = {}
    for precision in outputs:
        if precision is not Precision.FLOAT32 and Precision.FLOAT32 in outputs:
            reference = np.vstack(outputs[Precision.FLOAT32])
            candidate = np.vstack(outputs[precision])
            cosines[precision] = float(np.min(np.sum(reference * candidate, axis=1)))
    return Calibration(
        measurements, cosines.get(Precision.BFLOAT16), busy, cosines.get(Precision.FLOAT32_ONNX)
    )


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
